"""Several processes sampling into one candidates file (`trl-seqpo alpo sample` under `accelerate launch`).

Each process appends the documents it samples to its own part file beside the output (`CANDIDATES.part-R.jsonl`
for rank R), so no two processes write to one file. The main process merges the parts into the output: before
sampling (the parts a killed run left behind: their whole, fully judged documents are kept, the rest is re-done) and
after (every document the processes wrote), then deletes them. A document already in the output is never appended
twice, so the merged file holds each document once, whatever the number of processes of the earlier runs.

The work is split by lockstep batch (`trl_seqpo.alpo.segments.document_batches`, cut from the full input so a
batch is sampled, and seeded, exactly as in one process): the batches with documents still to do go round-robin to
the processes, and every process runs as many batches as the busiest one, an empty batch when it has none left.
That keeps them in lockstep when generation makes a collective per forward pass (ZeRO-3, FSDP: `synced_gpus`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from trl_seqpo.jsonl import ResumableJsonl

__all__ = ["assign_batches", "merge_parts", "part_path", "part_paths"]

T = TypeVar("T")


def part_path(output: str | Path, index: int) -> Path:
    """The part file of process `index` beside `output` (`cands.jsonl` -> `cands.part-1.jsonl`)."""
    output = Path(output)
    return output.with_name(f"{output.name.removesuffix('.jsonl')}.part-{index}.jsonl")


def part_paths(output: str | Path) -> list[Path]:
    """The part files beside `output`, in rank order."""
    output = Path(output)
    stem = output.name.removesuffix(".jsonl")
    found = []
    for path in output.parent.glob(f"{stem}.part-*.jsonl"):
        rank = path.name[len(stem) + len(".part-") : -len(".jsonl")]
        if rank.isdigit():
            found.append((int(rank), path))
    return [path for _, path in sorted(found)]


def merge_parts(
    store: ResumableJsonl, complete: Callable[[list[dict[str, Any]]], bool] | None = None
) -> tuple[int, set[str]]:
    """Append the documents of the part files beside `store.path` to `store`, then delete the parts.

    Args:
        store: The output, opened (and resumed) by the main process.
        complete: Keep only the documents that pass it (the others are re-done); `None` keeps every whole document.

    Returns:
        How many documents were appended, and the ids of those dropped as unfinished.
    """
    appended, dropped = 0, set()
    for path in part_paths(store.path):
        part = ResumableJsonl(path, resume=True, key=store.key_of, complete=complete)  # drops a cut last line
        dropped |= part.dropped_keys
        for key, rows in part.groups.items():
            if key not in store.done:
                store.append(rows)
                appended += 1
        path.unlink()
    return appended, dropped - store.done


def assign_batches(batches: Sequence[list[T]], index: int, count: int) -> list[list[T]]:
    """The batches process `index` of `count` samples: every `count`-th one, then empty ones up to the busiest's.

    Every process gets the same number of batches, so all make the same sequence of lockstep rounds.

    Examples:
        >>> assign_batches([["a"], ["b"], ["c"]], 1, 2)
        [['b'], []]
    """
    rounds = -(-len(batches) // count)
    mine = list(batches[index::count])
    return mine + [[] for _ in range(rounds - len(mine))]
