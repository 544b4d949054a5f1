"""ALPO sampling (Alg. 1) throughput: lockstep batching across documents vs per-line loops, and judge concurrency.

Three claims, measured in one run on the same documents, the same k and the same tiny model:

1. **Sampling**: `SegmentwiseSampler` advances all documents of a batch unit by
   unit, so one ``generate`` call serves every document's k candidates of a unit index. Compared with a loop over
   documents (one call per line, k rows) and a naive loop over candidates (one call per sample). No judge here.
2. **Judging**: the candidate sets of the batched run scored by the LLM judge over HTTP (the local server of
   `trl_seqpo.synthetic.local_judge` with a fixed per-request latency standing in for the model), one request at
   a time vs ``--concurrency`` requests in flight.
3. **End to end** (sample + judge): lockstep over all documents (every document's unit i judged together) vs one
   document at a time (only one unit's votes in flight).

The model is `save_line_writer_model` (untrained, writes short lines), so the
numbers measure the machinery, not translation quality.

    python benchmarks/alpo_sampling.py                      # 6 documents x 4 lines, k = 15, 50 ms judge latency
    python benchmarks/alpo_sampling.py --documents 8 --lines 6 --delay 0.1 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_seqpo.alpo.sampler import SegmentwiseConfig, SegmentwiseSampler
from trl_seqpo.judge.client import JudgeConfig, JudgeRequest, LLMJudge
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.synthetic.local_judge import serve
from trl_seqpo.synthetic.subtitles import (
    SOURCE_LANGUAGE,
    TARGET_LANGUAGE,
    make_subtitle_documents,
    save_line_writer_model,
)


def timed_sampling(model, tokenizer, documents, config, max_batch_size=None, judge=None):
    sampler = SegmentwiseSampler(HFGenerationBackend(model, tokenizer, max_batch_size), tokenizer, config, judge)
    start = time.perf_counter()
    records = sampler.sample(documents)
    return time.perf_counter() - start, sampler, records


def judge_requests(records) -> list[JudgeRequest]:
    return [
        JudgeRequest(source=record["source"], candidates=[c["text"] for c in record["candidates"]])
        for doc in records
        for record in doc
        if record["candidates"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.05, help="judge server latency per request (s)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    parser.add_argument("--model", help="checkpoint directory (default: a freshly built line-writer tiny model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or save_line_writer_model(Path(tmp) / "model", lines_per_document=args.lines)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    documents = make_subtitle_documents(args.documents, args.lines, seed=0)
    base = dict(
        source_language=SOURCE_LANGUAGE,
        target_language=TARGET_LANGUAGE,
        num_candidates=args.k,
        max_new_tokens=args.max_new_tokens,
    )
    lockstep = SegmentwiseConfig(**base, documents_per_batch=len(documents))
    per_document = SegmentwiseConfig(**base, documents_per_batch=1)
    timed_sampling(model, tokenizer, documents[:1], per_document)  # warm-up

    rows = [
        ("lockstep, all documents", *timed_sampling(model, tokenizer, documents, lockstep)),
        ("per line (k rows/call)", *timed_sampling(model, tokenizer, documents, per_document)),
        ("per candidate (1 row)", *timed_sampling(model, tokenizer, documents, per_document, max_batch_size=1)),
    ]
    units = sum(len(doc.source_lines) for doc in documents)
    print(f"Sampling: {len(documents)} documents x {args.lines} lines, k = {args.k}, {args.max_new_tokens} new tokens")
    print(f"{'mode':<26} {'seconds':>8} {'generate calls':>15} {'samples/s':>10} {'slower than lockstep':>21}")
    fastest = rows[0][1]
    for (name, seconds, sampler, _), row_per_call in zip(rows, (False, False, True)):
        samples = sampler.stats.rows
        calls = samples if row_per_call else sampler.stats.backend_calls
        print(f"{name:<26} {seconds:>8.2f} {calls:>15d} {samples / seconds:>10.1f} {seconds / fastest:>20.1f}x")

    requests = judge_requests(rows[0][3])
    print(f"\nJudge: {len(requests)} units x 4 votes, {args.delay * 1000:.0f} ms per request")
    print(f"{'mode':<26} {'seconds':>8} {'requests':>9} {'speed-up':>9}")
    with serve(delay=args.delay) as server:  # length scorer: distinct scores, so no vote is retried
        judged = []
        for name, concurrency in (("sequential", 1), (f"concurrent ({args.concurrency})", args.concurrency)):
            judge = LLMJudge(JudgeConfig(base_url=server.base_url, model="local", max_concurrency=concurrency))
            before, start = server.request_count, time.perf_counter()
            judge.score_lines(requests)
            judged.append((name, time.perf_counter() - start, server.request_count - before))
        for name, seconds, count in judged:
            print(f"{name:<26} {seconds:>8.2f} {count:>9d} {judged[0][1] / seconds:>8.1f}x")

        print(f"\nEnd to end (sample + judge, concurrency {args.concurrency}): {units} units")
        print(f"{'mode':<26} {'seconds':>8} {'speed-up':>9}")
        end_to_end = []
        for name, config in (("lockstep, all documents", lockstep), ("one document at a time", per_document)):
            judge = LLMJudge(JudgeConfig(base_url=server.base_url, model="local", max_concurrency=args.concurrency))
            seconds, _, _ = timed_sampling(model, tokenizer, documents, config, judge=judge)
            end_to_end.append((name, seconds))
        for name, seconds in end_to_end:
            print(f"{name:<26} {seconds:>8.2f} {end_to_end[1][1] / seconds:>8.1f}x")


if __name__ == "__main__":
    main()
