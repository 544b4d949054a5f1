"""SeqPO's latency truncations where the floors bind: which latency differences each one rewards (Sec. 2.3, Eq. 2).

No training: the latency term of Eq. 2 (`trl_seqpo.rewards.fusion.truncate_latency`) is computed for one group of
four scripted trajectories per sentence of the synthetic pair (gold alignments, reordering), at chunk size m:

- ``honest``: each target word written once the source words it translates have been read (the gold alignment's
  eager schedule, `trl_seqpo.simt.policies.aligned_delays`): the fastest policy that never guesses;
- ``slower``: the same, one chunk later (capped at the end of the source): an honest policy that waits more;
- ``ahead``: the same, one chunk earlier (not before the first chunk): it writes words whose source it has not
  read yet (anticipation, right or wrong);
- ``junk``: the whole target at the first chunk (the behaviour Sec. 4.4 truncates against; AL can go negative).

With ``--fertility`` every target word becomes 1-3 target units (seeded; like a word written as several Chinese
characters), so the target is no longer spread evenly over the source: a sentence whose first chunk carries more
than its share of the target has an honest schedule *faster* than the proportional eager one.

Quality is equal across the group, so the fused reward is minus the latency term. For each truncation the table gives
the mean advantage gap (latency term of the first minus the second, in z units; positive = the first is rewarded
more) and how often the honest trajectory's AL lies below its floor (its honest lead is then cut).

    python benchmarks/latency_floors.py                 # 2,000 sentences, m = 3
    python benchmarks/latency_floors.py --fertility      # the target's units unevenly spread over the source
"""

from __future__ import annotations

import argparse

import numpy as np

from trl_seqpo.rewards.fusion import truncate_latency
from trl_seqpo.simt.latency import average_lagging
from trl_seqpo.simt.policies import aligned_delays, eager_delays
from trl_seqpo.synthetic.language_pair import generate_corpus

POLICIES = ("honest", "slower", "ahead", "junk")


def with_fertility(alignment: list[tuple[int, int]], rng: np.random.Generator) -> tuple[list[tuple[int, int]], int]:
    """Split every target word into 1-3 units aligned to the same source word; the new alignment and length."""
    pairs, length = [], 0
    for src, _ in sorted(alignment, key=lambda pair: pair[1]):
        units = int(rng.integers(1, 4))
        pairs += [(src, length + k) for k in range(units)]
        length += units
    return pairs, length


def group_latencies(example, m: int, rng: np.random.Generator | None) -> tuple[list[float], float, float]:
    """AL of the four scripted trajectories of one sentence, and its proportional and aligned eager floors."""
    n, length = len(example.source.split()), len(example.reference.split())
    alignment = example.alignment
    if rng is not None:
        alignment, length = with_fertility(alignment, rng)
    honest = aligned_delays(alignment, n, length, m)
    first = min(m, n)
    delays = {
        "honest": honest,
        "slower": [min(n, d + m) for d in honest],
        "ahead": [max(first, d - m) for d in honest],
        "junk": [first] * length,
    }
    latencies = [average_lagging(delays[name], n, length) for name in POLICIES]
    return latencies, average_lagging(eager_delays(n, length, m), n, length), latencies[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk-size", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fertility", action="store_true", help="1-3 target units per target word")
    args = parser.parse_args()
    m = args.chunk_size
    corpus = generate_corpus(args.sentences, seed=args.seed, min_words=4, max_words=14)
    rng = np.random.default_rng(args.seed) if args.fertility else None
    rows = [group_latencies(example, m, rng) for example in corpus]
    latency = np.array([r[0] for r in rows])  # [sentences, 4]
    proportional = np.repeat(np.array([r[1] for r in rows])[:, None], len(POLICIES), axis=1)
    aligned = np.repeat(np.array([r[2] for r in rows])[:, None], len(POLICIES), axis=1)
    modes = {
        "none": ("none", 0.0),
        "floor at 0": ("floor", 0.0),
        f"clamp at m = {m}": ("clamp_then_normalize", 0.0),
        "eager, proportional": ("eager", proportional),
        "eager, aligned (reference alignment)": ("eager", aligned),
    }
    kind = " with fertility 1-3" if args.fertility else ""
    means = ", ".join(f"{name} {value:.2f}" for name, value in zip(POLICIES, latency.mean(axis=0)))
    print(f"{len(corpus)} synthetic sentences{kind}, m = {m}; mean AL: {means}")
    print(f"mean floors: proportional {proportional[:, 0].mean():.2f}, aligned {aligned[:, 0].mean():.2f}")
    print()
    print("| truncation | honest - slower | ahead - honest | junk - honest | honest AL below its floor |")
    print("|---|---:|---:|---:|---:|")
    for label, (mode, floor) in modes.items():
        term = truncate_latency(latency, m, mode, floor=floor)
        advantage = -term  # equal quality: the fused reward is minus the latency term
        gap = {name: advantage[:, POLICIES.index(name)] for name in POLICIES}
        if mode == "eager":
            floored = latency[:, 0] < floor[:, 0] - 1e-9
        elif mode == "clamp_then_normalize":
            floored = latency[:, 0] < m
        elif mode == "floor":
            floored = latency[:, 0] < floor
        else:
            floored = np.zeros(len(latency), dtype=bool)
        cells = [gap["honest"] - gap["slower"], gap["ahead"] - gap["honest"], gap["junk"] - gap["honest"]]
        print(f"| {label} | " + " | ".join(f"{np.mean(cell):+.2f}" for cell in cells) + f" | {floored.mean():.1%} |")


if __name__ == "__main__":
    main()
