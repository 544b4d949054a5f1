"""Streaming server: each session's KV states kept between chunks vs re-encoding its prompt per chunk (issue 25).

Claim: with 16 concurrent sessions, the median time from a chunk's arrival to its target increment is at least 2x
shorter when the server keeps each session's key/value states (`SessionPrefixCache`) than when it re-encodes each
session's whole prompt at every chunk (the obvious alternative; ``--no-kv-cache``).

Usage:
    python benchmarks/serve.py                     # 1, 4, 16 sessions, tiny model, ~60-word sources
    python benchmarks/serve.py --sessions 16 --words 40 --pace 0.02

Both servers run in this process on 127.0.0.1 (real WebSocket clients, uvicorn) over the same tiny model and the
same greedy decoding; clients send one chunk every ``--pace`` seconds (a live source) and the last with the end of
the source. Per increment the server reports ``ready_at`` (its chunk had arrived and the previous step was written)
and ``emitted_at``; the latency is their difference. Throughput is target tokens written per second of wall-clock.
The two modes give the same tokens (checked), so the ratios compare equal work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path


def _tiny_model(directory: Path) -> Path:
    from trl_seqpo.synthetic.tiny_models import IM_END, save_restricted_output_model

    # the tests' word-emitting model: greedy output restricted to target words, waits and the end
    return save_restricted_output_model(directory, lambda tok: {tok.convert_tokens_to_ids(IM_END), tok.eos_token_id})


def _sources(count: int, words: int) -> list[str]:
    from trl_seqpo.synthetic import language_pair as synthetic

    sources = []
    for index in range(count):
        text: list[str] = []
        for example in synthetic.generate_corpus(words, seed=100 + index, min_words=5, max_words=9):
            text.extend(example.source.split())
            if len(text) >= words:
                break
        sources.append(" ".join(text[:words]))
    return sources


async def _client(url: str, source: str, settings: dict, chunk_size: int, pace: float) -> dict:
    from websockets.asyncio.client import connect

    from trl_seqpo.simt.chunking import split_into_chunks

    chunks = split_into_chunks(source, chunk_size, "word")
    increments = []
    async with connect(url.replace("http", "ws") + "/v1/simt/stream", max_size=None) as websocket:
        await websocket.send(json.dumps({"type": "start", **settings}))
        json.loads(await websocket.recv())

        async def send_chunks() -> None:
            for index, chunk in enumerate(chunks):
                await websocket.send(json.dumps({"type": "source", "text": chunk, "end": index == len(chunks) - 1}))
                await asyncio.sleep(pace)

        sender = asyncio.create_task(send_chunks())
        while True:
            message = json.loads(await websocket.recv())
            if message["type"] == "increment":
                increments.append(message)
            elif message["type"] == "done":
                break
            else:
                raise RuntimeError(message)
        await sender
    return {"increments": increments}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(model_dir: Path, sessions: int, keep_kv: bool, args: argparse.Namespace) -> dict:
    from trl_seqpo.rollout.loading import load_backend
    from trl_seqpo.rollout.streaming import StreamingEngine
    from trl_seqpo.serve.app import ServeConfig
    from trl_seqpo.serve.background import serve_in_background

    loaded = load_backend(model_dir, "hf", device="cpu")
    engine = StreamingEngine(loaded.backend, loaded.tokenizer, max_new_tokens_per_step=args.max_new_tokens_per_step,
                             temperature=0.0, keep_kv=keep_kv)  # fmt: skip
    config = ServeConfig(model=str(model_dir), port=0, max_new_tokens_per_step=args.max_new_tokens_per_step)
    settings = {"source_lang": "English", "target_lang": "Synthetic", "chunk_size": args.chunk_size,
                "source_unit": "word", "target_unit": "word"}  # fmt: skip
    sources = _sources(sessions, args.words)
    with serve_in_background(engine, config) as url:

        async def everyone() -> list[dict]:
            return await asyncio.gather(*(_client(url, s, settings, args.chunk_size, args.pace) for s in sources))

        start = time.perf_counter()
        results = asyncio.run(everyone())
        wall = time.perf_counter() - start
    encoded = loaded.backend.encoded_prompt_tokens
    loaded.close()
    seconds = [i["seconds"] for r in results for i in r["increments"]]
    tokens = sum(len(i["token_ids"]) for r in results for i in r["increments"])
    return {
        "p50": _percentile(seconds, 0.5),
        "p95": _percentile(seconds, 0.95),
        "mean": statistics.fmean(seconds),
        "throughput": tokens / wall,
        "increments": len(seconds),
        "tokens": [[i["token_ids"] for i in r["increments"]] for r in results],
        "encoded": encoded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--words", type=int, default=60, help="source words per session")
    parser.add_argument("--chunk-size", type=int, default=2)
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between two chunks of a client")
    parser.add_argument("--max-new-tokens-per-step", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _tiny_model(Path(tmp) / "tiny")
        print(f"torch {torch.__version__}, {args.threads} thread(s), {args.words}-word sources, chunks of "
              f"{args.chunk_size}, one chunk every {args.pace} s, greedy, "
              f"{args.max_new_tokens_per_step} tokens/step")  # fmt: skip
        header = "| sessions | mode | p50 ms | p95 ms | tokens/s | prompt tokens encoded |"
        print(header + "\n|---|---|---|---|---|---|")
        ratios = []
        for sessions in args.sessions:
            kept = run(model_dir, sessions, True, args)
            fresh = run(model_dir, sessions, False, args)
            if kept["tokens"] != fresh["tokens"]:
                raise SystemExit("the two modes wrote different tokens: the comparison would be unfair")
            for mode, result in (("KV kept", kept), ("re-encode", fresh)):
                print(f"| {sessions} | {mode} | {1000 * result['p50']:.1f} | {1000 * result['p95']:.1f} | "
                      f"{result['throughput']:.0f} | {result['encoded']} |")  # fmt: skip
            ratios.append((sessions, fresh["p50"] / kept["p50"], fresh["p95"] / kept["p95"],
                           kept["throughput"] / fresh["throughput"]))  # fmt: skip
        print("\n| sessions | p50 re-encode / kept | p95 re-encode / kept | throughput kept / re-encode |")
        print("|---|---|---|---|")
        for sessions, p50, p95, throughput in ratios:
            print(f"| {sessions} | {p50:.2f}x | {p95:.2f}x | {throughput:.2f}x |")


if __name__ == "__main__":
    main()
