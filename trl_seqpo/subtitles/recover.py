"""Steps 3 and 4 of `align_cues`: lines the first two steps leave alone that still have a partner.

Both are sweeps over cues in start order with a pointer into the other file, so they keep the alignment O(N + M).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from trl_seqpo.subtitles.io import Cue

__all__ = ["mutual_leftovers", "split_halves"]

# Step 3: share of a split half's duration that must overlap the partner of its other half.
_SPLIT_OVERLAP = 0.25
_SPLIT_MIN_SECONDS = 0.5
_SENTENCE_ENDS = (".", "!", "?", "。", "！", "？", "…", "♪")
# A sentence ends inside the cue ("small... Finished?"), or two speakers' lines ("- Clarke.\n- Please.").
_SENTENCE_BREAK = re.compile(r"[.!?。！？…][\"'”’»)]*\s+\S|^\s*[-–—].*\n\s*[-–—]", re.DOTALL)


def split_halves(
    cues: list[Cue],
    others: list[Cue],
    linked: list[bool],
    group_of: Callable[[int], int],
    other_group_of: Callable[[int], int],
) -> list[tuple[int, int]]:
    """Step 3: an unlinked cue joins a group that one of its neighbours and a 25%-overlapping opposite cue are in.

    When both neighbours' groups qualify, a cue holding two sentences (or two speakers' lines) joins both groups;
    otherwise the sentence decides: a cue that does not end a sentence continues into the next one, a cue that
    starts in lower case (or follows one that does not end a sentence) continues the previous one; if that does not
    settle it, the larger overlap wins.
    """
    links: list[tuple[int, int]] = []
    low = 0
    for position, cue in enumerate(cues):
        if linked[position] or cue.end <= cue.start:
            continue
        while low < len(others) and others[low].end <= cue.start:
            low += 1
        overlapping: dict[int, tuple[float, int]] = {}
        k = low
        while k < len(others) and others[k].start < cue.end:
            overlap = _overlap(cue, others[k])
            if overlap >= max(_SPLIT_OVERLAP * (cue.end - cue.start), _SPLIT_MIN_SECONDS):
                group = other_group_of(k)
                if overlap > overlapping.get(group, (0.0, -1))[0]:
                    overlapping[group] = (overlap, k)
            k += 1
        before = position > 0 and (_starts_lower(cue.text) or not _ends_sentence(cues[position - 1].text))
        after = position + 1 < len(cues) and (not _ends_sentence(cue.text) or _starts_lower(cues[position + 1].text))
        votes: dict[int, int] = {}
        for near, continues in ((position - 1, before), (position + 1, after)):
            if 0 <= near < len(cues) and linked[near] and group_of(near) in overlapping:
                votes[group_of(near)] = max(votes.get(group_of(near), 0), int(continues))
        if len(votes) == 2 and _SENTENCE_BREAK.search(cue.text):
            links.extend((position, overlapping[group][1]) for group in votes)  # two sentences: bridge both groups
        elif votes:
            best = max(votes, key=lambda group: (votes[group], overlapping[group][0]))
            links.append((position, overlapping[best][1]))
    return links


def _ends_sentence(text: str) -> bool:
    stripped = text.rstrip(" \"'”’»）)」』")
    return stripped.endswith(_SENTENCE_ENDS)


def _starts_lower(text: str) -> bool:
    stripped = text.lstrip(" -–—.…\"'“‘«")
    return bool(stripped) and stripped[0].islower()


def mutual_leftovers(
    src: list[Cue], tgt: list[Cue], linked_src: list[bool], linked_tgt: list[bool], window: float
) -> list[tuple[int, int]]:
    """Step 4: unlinked cue pairs that overlap, start within ``window`` and have no other unlinked candidate."""

    def candidates(cues: list[Cue], linked: list[bool], others: list[Cue], linked_others: list[bool]) -> list[int]:
        found = [-1] * len(cues)  # -1: none, -2: several, else the one candidate
        low = 0
        for position, cue in enumerate(cues):
            if linked[position]:
                continue
            while low < len(others) and others[low].start < cue.start - window:
                low += 1
            k = low
            while k < len(others) and others[k].start <= cue.start + window:
                shorter = min(cue.end - cue.start, others[k].end - others[k].start)
                if not linked_others[k] and _overlap(cue, others[k]) >= _SPLIT_OVERLAP * shorter > 0:
                    found[position] = k if found[position] == -1 else -2
                k += 1
        return found

    of_src = candidates(src, linked_src, tgt, linked_tgt)
    of_tgt = candidates(tgt, linked_tgt, src, linked_src)
    return [(i, j) for i, j in enumerate(of_src) if j >= 0 and of_tgt[j] == i]


def _overlap(a: Cue, b: Cue) -> float:
    return min(a.end, b.end) - max(a.start, b.start)
