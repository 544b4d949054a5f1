"""Batched numpy latency metrics vs a per-sentence Python loop (claim: >= 30x faster on 1M sentences).

Usage:
    python benchmarks/latency.py                 # 1M sentences of ~25 units
    python benchmarks/latency.py --n 100000 --loop-n 10000

The batched functions run on all ``--n`` sentences (flat delays + offsets). The per-sentence loop calls the
scalar functions of ``trl_seqpo.simt.latency`` sentence by sentence; it runs on the first ``--loop-n`` sentences
(all of them if ``--loop-n`` >= ``--n``) and its time is extrapolated linearly to ``--n``. Both are measured in the
same run (fastest of ``--repeat`` timings); the batched results are checked against the loop's on shared sentences.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trl_seqpo.simt.latency import (
    average_lagging,
    average_proportion,
    differentiable_average_lagging,
    latency_batch,
    length_adaptive_average_lagging,
)


def make_corpus(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chunked-rollout-like delays: ~25 target units per sentence, non-decreasing, capped at the source length."""
    rng = np.random.default_rng(seed)
    source = rng.integers(15, 36, n)
    hypothesis = np.maximum(1, source + rng.integers(-5, 6, n))
    reference = np.maximum(1, source + rng.integers(-5, 6, n))
    offsets = np.concatenate([[0], np.cumsum(hypothesis)])
    row = np.repeat(np.arange(n), hypothesis)
    position = np.arange(offsets[-1]) - offsets[row]
    # a wait-k-like schedule with per-sentence k and rate, chunk size 3
    k = rng.integers(1, 8, n)[row]
    rate = rng.uniform(0.7, 1.3, n)[row]
    delays = np.minimum(np.ceil((k + position * rate) / 3) * 3, source[row]).astype(np.float64)
    return delays, offsets, source, reference


def best_of(repeat: int, function):
    """Fastest of ``repeat`` timings (the machine may be shared) and the function's result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="sentences for the batched metrics")
    parser.add_argument("--loop-n", type=int, default=50_000, help="sentences for the per-sentence loop")
    parser.add_argument("--repeat", type=int, default=3, help="timings per measurement; the fastest is kept")
    args = parser.parse_args()

    delays, offsets, source, reference = make_corpus(args.n)
    loop_n = min(args.loop_n, args.n)
    lists = [delays[offsets[i] : offsets[i + 1]].tolist() for i in range(loop_n)]
    source_list, reference_list = source[:loop_n].tolist(), reference[:loop_n].tolist()

    singles = {
        "AL": lambda d, s, r: average_lagging(d, s, r),
        "LAAL": lambda d, s, r: length_adaptive_average_lagging(d, s, r),
        "DAL": lambda d, s, r: differentiable_average_lagging(d, s),
        "AP": lambda d, s, r: average_proportion(d, s, r),
    }
    metrics = [
        (name, lambda name=name: latency_batch(delays, source, reference, metrics=name, offsets=offsets)[name], single)
        for name, single in singles.items()
    ]
    mean_units = len(delays) / args.n
    print(f"{args.n:,} sentences, {mean_units:.1f} target units on average; loop measured on {loop_n:,}\n")
    header = f"{'metric':<6} {'batched (s)':>12} {'loop (s, ' + format(args.n, ',') + ')':>22} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    total_batched = total_loop = 0.0
    for name, batched, single in metrics:
        batched_seconds, batched_values = best_of(args.repeat, batched)
        loop_seconds, loop_values = best_of(
            args.repeat, lambda single=single: [single(*row) for row in zip(lists, source_list, reference_list)]
        )
        loop_seconds *= args.n / loop_n

        np.testing.assert_allclose(batched_values[:loop_n], loop_values, rtol=1e-9, atol=1e-9)
        total_batched += batched_seconds
        total_loop += loop_seconds
        print(f"{name:<6} {batched_seconds:>12.3f} {loop_seconds:>22.3f} {loop_seconds / batched_seconds:>7.1f}x")
    print("-" * len(header))
    print(f"{'all 4':<6} {total_batched:>12.3f} {total_loop:>22.3f} {total_loop / total_batched:>7.1f}x")
    if loop_n < args.n:
        print(f"\n(loop time extrapolated linearly from {loop_n:,} to {args.n:,} sentences)")


if __name__ == "__main__":
    main()
