"""Benchmark: bilingual subtitle alignment is linear in the number of cues, and more accurate than App. A.2's window.

Claim (docs/subtitles.md): ``align_cues`` is one monotonic pass, so the cost per cue stays flat from 10k to 100k
cues (ratio of per-cue cost <= 1.5x). The obvious alternative, ALPO App. A.2 read literally (for each source line,
search a window of 2M target lines around the same index, M = difference of the line counts), is run on the same
10k pair for comparison: its cost grows with N * M and, once splits, merges and extra lines shift the indices, it
misses partners that time order finds.

The synthetic programme: cues of 1-4 s with 0.1-1.5 s pauses; the target has an intro of extra cues, timings
jittered by up to 0.6 s, 3% of lines split in two, 3% pairs merged, 2% dropped, 1% extra cues (signs, notes).

Usage::

    python benchmarks/subtitles.py                 # 10k and 100k cues
    python benchmarks/subtitles.py --sizes 10000 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time

from trl_seqpo.subtitles.align import align_cues
from trl_seqpo.subtitles.io import Cue


def synthetic_pair(count: int, seed: int = 0) -> tuple[list[Cue], list[Cue], set[tuple[int, int]]]:
    """A source programme of ``count`` cues, its target, and the true (source index, target index) links."""
    rng = random.Random(seed)
    source: list[Cue] = []
    intro = 40  # extra cues at the start of the target: disclaimer, opening song, credits
    clock = 0.5 * intro + 30.0
    for index in range(count):
        duration = rng.uniform(1.0, 4.0)
        source.append(Cue(index, clock, clock + duration, f"source line {index}"))
        clock += duration + rng.uniform(0.1, 1.5)
    spans: list[tuple[float, float, list[int]]] = [(0.5 * k, 0.5 * k + 0.4, []) for k in range(intro)]
    index = 0
    while index < count:
        cue, draw = source[index], rng.random()
        if draw < 0.02:  # dropped by the translator
            index += 1
            continue
        if draw < 0.05 and index + 1 < count:  # two source lines merged into one target line
            spans.append((cue.start, source[index + 1].end, [index, index + 1]))
            index += 2
            continue
        if draw < 0.08:  # one source line split into two target lines
            middle = (cue.start + cue.end) / 2
            spans += [(cue.start, middle, [index]), (middle, cue.end, [index])]
        else:
            spans.append((cue.start, cue.end, [index]))
        if rng.random() < 0.01:  # an extra note after the line (sign translation, sound label) in the pause
            spans.append((cue.end + 0.05, cue.end + 0.09, []))
        index += 1
    target: list[Cue] = []
    links: set[tuple[int, int]] = set()
    for start, end, sources in sorted(spans, key=lambda span: span[0]):
        shift = rng.uniform(-0.6, 0.6) if sources else 0.0
        position = len(target)
        target.append(Cue(position, max(0.0, start + shift), max(0.0, start + shift) + (end - start), f"t {position}"))
        links.update((source_index, position) for source_index in sources)
    return source, target, links


def paper_window_rule(source: list[Cue], target: list[Cue], max_start_diff: float = 0.7) -> set[tuple[int, int]]:
    """ALPO App. A.2 read literally: for source line i, the first target line in [i - M, i + M] within 0.7 s."""
    margin = abs(len(source) - len(target))
    links = set()
    for i, cue in enumerate(source):
        for j in range(max(0, i - margin), min(len(target), i + margin + 1)):
            if abs(target[j].start - cue.start) <= max_start_diff:
                links.add((i, j))
                break
    return links


def timed(function, repeats: int):  # noqa: ANN001, ANN201 - any zero-argument callable
    """Best wall time of ``repeats`` calls, with the garbage collector paused as ``timeit`` does."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None
        gc.collect()
        gc.disable()
        try:
            begin = time.perf_counter()
            result = function()
            best = min(best, time.perf_counter() - begin)
        finally:
            gc.enable()
    return best, result


def scores(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    """Precision and recall of the found (source, target) links."""
    hits = len(found & truth)
    return hits / max(1, len(found)), hits / len(truth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)

    rows = []
    per_cue = {}
    for size in args.sizes:
        source, target, truth = synthetic_pair(size)
        seconds, result = timed(lambda: align_cues(source, target), args.repeats)  # noqa: B023 - called at once
        found = {(i, j) for group in result.groups for i in group.source_lines for j in group.target_lines}
        cues = len(source) + len(target)
        per_cue[size] = seconds / cues
        rows.append((f"align_cues, {size:,} source cues", cues, seconds, cues / seconds, *scores(found, truth)))
        if size == args.sizes[0]:
            window_seconds, window_found = timed(lambda: paper_window_rule(source, target), 1)  # noqa: B023
            rows.append(
                (
                    f"App. A.2 window, {size:,}",
                    cues,
                    window_seconds,
                    cues / window_seconds,
                    *scores(window_found, truth),
                )
            )
    print(f"{'method':<34} {'cues':>9} {'seconds':>9} {'cues/s':>11} {'precision':>10} {'recall':>8}")
    for name, cues, seconds, rate, precision, share in rows:
        print(f"{name:<34} {cues:>9,} {seconds:>9.3f} {rate:>11,.0f} {precision:>10.1%} {share:>8.1%}")
    small, large = args.sizes
    ratio = per_cue[large] / per_cue[small]
    window_ratio = rows[1][2] / rows[0][2]
    print(f"per-cue cost {large:,} vs {small:,}: {ratio:.2f}x (linear if <= 1.5x)")
    print(f"App. A.2 window vs align_cues at {small:,} cues: {window_ratio:.1f}x the time")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
