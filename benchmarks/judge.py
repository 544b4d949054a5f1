"""Judge throughput: concurrent requests vs one at a time, against the local judge server with a fixed latency.

A real judge (a vLLM server, a hosted API) spends most of each request generating, so throughput comes from keeping
several requests in flight. This script starts `trl_seqpo.synthetic.local_judge` on 127.0.0.1 with an artificial
per-request delay, scores the same lines with ``max_concurrency=1`` (sequential) and with ``max_concurrency=N``, and
prints requests per second and the speed-up ratio. A third pass replays the run from the sqlite cache to show that a
repeated run makes no HTTP calls.

    python benchmarks/judge.py                       # 24 lines x 4 shuffled votes, 50 ms per request
    python benchmarks/judge.py --lines 64 --delay 0.1 --concurrency 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trl_seqpo.judge.client import JudgeConfig, JudgeRequest, LLMJudge
from trl_seqpo.synthetic.local_judge import serve


def make_requests(num_lines: int, num_candidates: int) -> list[JudgeRequest]:
    words = ["big", "huge", "said", "whispered", "walk", "stroll"]
    return [
        JudgeRequest(
            source=f"source line {line}",
            candidates=[
                f"cand {line}.{k}: {words[k % len(words)]} {words[(k + line) % len(words)]}"
                for k in range(num_candidates)
            ],
            context_before=[f"source line {line - 1}"],
            context_after=[f"source line {line + 1}"],
        )
        for line in range(num_lines)
    ]


def run(judge: LLMJudge, requests: list[JudgeRequest]) -> tuple[float, int]:
    start = time.perf_counter()
    results = judge.score_lines(requests)
    elapsed = time.perf_counter() - start
    return elapsed, sum(result.scores is not None for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=24)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the server waits before each reply")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    requests = make_requests(args.lines, args.candidates)
    rows = []
    with serve(delay=args.delay) as server, tempfile.TemporaryDirectory() as tmp:
        base = dict(base_url=server.base_url, model=server.model, timeout=30.0)
        for name, concurrency, cache in [
            ("sequential", 1, None),
            (f"concurrent ({args.concurrency})", args.concurrency, str(Path(tmp) / "cache.sqlite")),
            ("cached re-run", args.concurrency, str(Path(tmp) / "cache.sqlite")),
        ]:
            judge = LLMJudge(JudgeConfig(**base, max_concurrency=concurrency, cache_path=cache))
            before = server.request_count
            elapsed, scored = run(judge, requests)
            judge.close()
            rows.append((name, elapsed, server.request_count - before, scored))

    sequential = rows[0][1]
    print(f"{args.lines} lines x 4 votes, {args.candidates} candidates, {args.delay * 1000:.0f} ms per request")
    print(f"{'mode':<18} {'seconds':>8} {'HTTP requests':>14} {'lines scored':>13} {'speed-up':>9}")
    for name, elapsed, http, scored in rows:
        print(f"{name:<18} {elapsed:>8.2f} {http:>14d} {scored:>13d} {sequential / elapsed:>8.1f}x")


if __name__ == "__main__":
    main()
