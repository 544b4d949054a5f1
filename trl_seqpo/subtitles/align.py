"""Pair the cues of two subtitle files of one programme by time (ALPO App. A.2, Sec. 3.2).

Translators merge, split, drop and add lines, so two subtitle files of one programme rarely correspond line by
line (ALPO Sec. 3.2, Table 7). App. A.2 pairs a source line with a target line whose start time differs by at
most 0.7 s, searching a window of 2M target lines around the same index (M = difference of the line counts).
That window is tied to line *indices*: a few extra lines at the start of one file (titles, a song, credits)
shift every index and the window misses the true partners. Time order does not drift that way, so this module
uses start times alone, in one monotonic pass over both files:

1. **Anchors.** Walk both files in start-time order with two pointers. Cues whose starts differ by at most
   ``max_start_diff`` are paired one to one, unless the next cue on either side starts even closer and the current
   cue hardly overlaps the candidate (then the current cue is an extra line and is skipped).
2. **Splits and merges.** A cue left without an anchor is attached to the opposite cue it overlaps most in time,
   if that overlap covers at least ``min_overlap`` of its own duration (a target line split in two, two source lines
   merged into one target line). Attached cues join their partner's group; two unanchored cues that overlap each
   other this way form a group of their own.
3. **Unmatched.** Every other cue is reported in ``unmatched_source`` / ``unmatched_target``, never paired with a
   neighbour. Cues with no text (ASS drawings, empty SRT blocks) are skipped and listed in ``skipped_*``.

The cost is O(N + M) for files in time order (sorting is Timsort on nearly sorted input), plus, for each
unanchored cue, the opposite cues it overlaps.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from trl_seqpo.subtitles.classify import dialogue_only
from trl_seqpo.subtitles.io import Cue

__all__ = ["AlignedGroup", "AlignmentResult", "align_cues", "align_dialogue", "is_cjk_language", "join_texts"]

# Languages written without spaces between words: cue texts are concatenated without a separator.
_NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "yue", "wuu", "cmn", "lzh"})
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class AlignedGroup:
    """One aligned unit: source cues and the target cues that translate them.

    Args:
        source_lines: 0-based indices (``Cue.index``) of the source cues, ascending.
        target_lines: 0-based indices of the target cues, ascending.
        source: Source cue texts in time order, joined by a space (no space for zh/ja).
        target: Target cue texts, joined the same way.
        start: Earliest start of the group's cues, in seconds.
        end: Latest end of the group's cues, in seconds.
    """

    source_lines: list[int]
    target_lines: list[int]
    source: str
    target: str
    start: float
    end: float

    def to_dict(self) -> dict[str, object]:
        """The group as the JSON object ``trl-seqpo subtitles align`` writes (one per line)."""
        return {
            "source_lines": self.source_lines,
            "target_lines": self.target_lines,
            "source": self.source,
            "target": self.target,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
        }


@dataclass
class AlignmentResult:
    """What `align_cues` found.

    Args:
        groups: Aligned groups in time order.
        unmatched_source: Indices of source cues with text but no counterpart.
        unmatched_target: Indices of target cues with text but no counterpart.
        skipped_source: Indices of source cues skipped because they have no text.
        skipped_target: Indices of target cues skipped because they have no text.
        excluded_source: ``{index: reason}`` of source cues left out as not dialogue (`align_dialogue`).
        excluded_target: The same for the target.
    """

    groups: list[AlignedGroup]
    unmatched_source: list[int] = field(default_factory=list)
    unmatched_target: list[int] = field(default_factory=list)
    skipped_source: list[int] = field(default_factory=list)
    skipped_target: list[int] = field(default_factory=list)
    excluded_source: dict[int, str] = field(default_factory=dict)
    excluded_target: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: number of groups and of unmatched cues on each side, with the first unmatched indices."""

        def listed(indices: list[int]) -> str:
            if not indices:
                return "0"
            shown = ", ".join(str(index) for index in indices[:8])
            return f"{len(indices)} ({shown}{', ...' if len(indices) > 8 else ''})"

        def reasons(excluded: dict[int, str]) -> str:
            counts = Counter(excluded.values())
            return ", ".join(f"{reason} {count}" for reason, count in counts.most_common()) or "none"

        text = (
            f"{len(self.groups)} aligned groups; unmatched source cues: {listed(self.unmatched_source)}; "
            f"unmatched target cues: {listed(self.unmatched_target)}"
        )
        if self.excluded_source or self.excluded_target:
            text += (
                f"; not dialogue: source {len(self.excluded_source)} ({reasons(self.excluded_source)}), "
                f"target {len(self.excluded_target)} ({reasons(self.excluded_target)})"
            )
        return text

    def excluded_records(self, source: Sequence[Cue], target: Sequence[Cue]) -> list[dict[str, object]]:
        """One JSON object per excluded cue (``excluded`` reason, ``side``, ``line`` index, ``text``, times)."""
        records: list[dict[str, object]] = []
        for side, cues, excluded in (
            ("source", source, self.excluded_source),
            ("target", target, self.excluded_target),
        ):
            for cue in cues:
                if cue.index in excluded:
                    records.append(
                        {
                            "excluded": excluded[cue.index],
                            "side": side,
                            "line": cue.index,
                            "text": cue.text,
                            "start": round(cue.start, 3),
                            "end": round(cue.end, 3),
                        }
                    )
        return records


def align_cues(
    source: Sequence[Cue],
    target: Sequence[Cue],
    max_start_diff: float = 0.7,
    *,
    min_overlap: float = 0.5,
    source_lang: str | None = None,
    target_lang: str | None = None,
) -> AlignmentResult:
    """Align two cue lists of one programme by time (ALPO App. A.2, with time order instead of an index window).

    Args:
        source: Source-language cues (any order; ``Cue.index`` identifies them).
        target: Target-language cues.
        max_start_diff: Largest start-time difference, in seconds, for two cues to be paired directly (paper: 0.7 s,
            about the length of the shortest utterance, "Hello").
        min_overlap: Fraction of an unanchored cue's duration that must overlap a cue of the other file for it to
            join that cue's group (a split or merged line).
        source_lang: Language code of the source (``"zh"``, ``"en"``, ...); decides whether texts are joined with
            a space. ``None`` guesses from the text (no space for Chinese/Japanese script).
        target_lang: Same for the target.

    Returns:
        An `AlignmentResult` with the groups in time order and the unmatched cues.

    Raises:
        ValueError: ``max_start_diff`` is negative or ``min_overlap`` is not in (0, 1].

    Example:
        >>> from trl_seqpo.subtitles.io import Cue
        >>> src = [Cue(0, 1.0, 3.0, "Where were you?"), Cue(1, 3.2, 4.0, "Hey!")]
        >>> tgt = [Cue(0, 1.4, 2.0, "你去哪"), Cue(1, 2.0, 3.0, "了")]
        >>> result = align_cues(src, tgt)
        >>> result.groups[0].target, result.unmatched_source
        ('你去哪了', [1])
    """
    if max_start_diff < 0:
        raise ValueError(f"max_start_diff must be >= 0 seconds, got {max_start_diff}")
    if not 0 < min_overlap <= 1:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    src, skipped_source = _time_ordered(source)
    tgt, skipped_target = _time_ordered(target)
    n = len(src)
    # Union-find over source positions 0..n-1 and target positions n..n+m-1.
    parent = list(range(n + len(tgt)))

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(a: int, b: int) -> None:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    anchor_src, anchor_tgt = _anchor_pairs(src, tgt, max_start_diff, min_overlap)
    for i, j in enumerate(anchor_src):
        if j >= 0:
            union(i, n + j)
    linked_src = [j >= 0 for j in anchor_src]
    linked_tgt = [i >= 0 for i in anchor_tgt]
    for i, j in _attach(src, tgt, [i for i, j in enumerate(anchor_src) if j < 0], min_overlap):
        union(i, n + j)
        linked_src[i] = linked_tgt[j] = True
    for j, i in _attach(tgt, src, [j for j, i in enumerate(anchor_tgt) if i < 0], min_overlap):
        union(i, n + j)
        linked_src[i] = linked_tgt[j] = True

    members: dict[int, tuple[list[Cue], list[Cue]]] = {}
    for i, cue in enumerate(src):
        if linked_src[i]:
            members.setdefault(find(i), ([], []))[0].append(cue)
    for j, cue in enumerate(tgt):
        if linked_tgt[j]:
            members.setdefault(find(n + j), ([], []))[1].append(cue)
    source_joiner = _joiner(source_lang, src)
    target_joiner = _joiner(target_lang, tgt)
    groups = [
        AlignedGroup(
            source_lines=sorted(cue.index for cue in src_cues),
            target_lines=sorted(cue.index for cue in tgt_cues),
            source=join_texts((cue.text for cue in src_cues), source_joiner),
            target=join_texts((cue.text for cue in tgt_cues), target_joiner),
            start=min(src_cues[0].start, tgt_cues[0].start),
            end=max(max(cue.end for cue in src_cues), max(cue.end for cue in tgt_cues)),
        )
        for src_cues, tgt_cues in members.values()
    ]
    groups.sort(key=lambda group: (group.start, group.end))
    return AlignmentResult(
        groups=groups,
        unmatched_source=sorted(cue.index for i, cue in enumerate(src) if not linked_src[i]),
        unmatched_target=sorted(cue.index for j, cue in enumerate(tgt) if not linked_tgt[j]),
        skipped_source=skipped_source,
        skipped_target=skipped_target,
    )


def align_dialogue(
    source: Sequence[Cue],
    target: Sequence[Cue],
    max_start_diff: float = 0.7,
    *,
    min_overlap: float = 0.5,
    source_lang: str | None = None,
    target_lang: str | None = None,
    keep: Collection[str] = (),
    strip_sdh: bool = True,
) -> AlignmentResult:
    """Align the dialogue of two files: cues `dialogue_only` leaves out
    (signs, credits, songs, SDH descriptions, ...) take no part and are reported in ``excluded_*``.

    Args:
        source: Source-language cues.
        target: Target-language cues.
        max_start_diff: As in `align_cues`.
        min_overlap: As in `align_cues`.
        source_lang: As in `align_cues`.
        target_lang: As in `align_cues`.
        keep: Reasons to keep anyway (``{"song"}``, or ``{"all"}`` to classify nothing away).
        strip_sdh: Remove SDH speaker labels, bracketed descriptions and furigana from the paired text.

    Returns:
        An `AlignmentResult` with ``excluded_source`` / ``excluded_target`` filled in.

    Raises:
        ValueError: Bad ``max_start_diff``/``min_overlap``, or ``keep`` names an unknown reason.
    """
    kept_source, excluded_source = dialogue_only(source, keep=keep, strip=strip_sdh)
    kept_target, excluded_target = dialogue_only(target, keep=keep, strip=strip_sdh)
    result = align_cues(
        kept_source,
        kept_target,
        max_start_diff,
        min_overlap=min_overlap,
        source_lang=source_lang,
        target_lang=target_lang,
    )
    result.excluded_source, result.excluded_target = excluded_source, excluded_target
    return result


def is_cjk_language(lang: str | None) -> bool:
    """Whether ``lang`` (a code such as ``"zh"``, ``"zh-Hant"``, ``"ja_JP"``) is written without word spaces."""
    if not lang:
        return False
    return re.split(r"[-_.]", lang.lower(), maxsplit=1)[0] in _NO_SPACE_LANGUAGES


def join_texts(texts: Iterable[str], joiner: str = " ") -> str:
    """Join cue texts into one line: line breaks inside a cue become spaces, cues are joined by ``joiner``.

    Args:
        texts: Cue texts in time order.
        joiner: ``" "`` for languages with word spaces, ``""`` for Chinese and Japanese.

    Returns:
        A single line of text.
    """
    return joiner.join(" ".join(text.split()) for text in texts if text.strip())


def _joiner(lang: str | None, cues: Sequence[Cue]) -> str:
    if lang is not None:
        return "" if is_cjk_language(lang) else " "
    sample = "".join(cue.text for cue in cues[:200])
    letters = sum(char.isalpha() for char in sample)
    return "" if letters and len(_CJK_CHAR.findall(sample)) > 0.3 * letters else " "


def _time_ordered(cues: Sequence[Cue]) -> tuple[list[Cue], list[int]]:
    kept = [cue for cue in cues if cue.text.strip()]
    skipped = [cue.index for cue in cues if not cue.text.strip()]
    kept.sort(key=lambda cue: (cue.start, cue.index))  # Timsort: linear on files already in time order
    return kept, skipped


def _overlap(a: Cue, b: Cue) -> float:
    return min(a.end, b.end) - max(a.start, b.start)


def _covers(a: Cue, b: Cue, min_overlap: float) -> bool:
    """Whether ``b`` overlaps at least ``min_overlap`` of ``a``'s duration."""
    return a.end > a.start and _overlap(a, b) >= min_overlap * (a.end - a.start)


def _anchor_pairs(
    src: list[Cue], tgt: list[Cue], max_start_diff: float, min_overlap: float
) -> tuple[list[int], list[int]]:
    """Step 1: one-to-one pairs by start time, two pointers moving forward only."""
    anchor_src, anchor_tgt = [-1] * len(src), [-1] * len(tgt)
    i = j = 0
    while i < len(src) and j < len(tgt):
        diff = abs(src[i].start - tgt[j].start)
        if diff <= max_start_diff:
            if (
                i + 1 < len(src)
                and abs(src[i + 1].start - tgt[j].start) < diff
                and not _covers(src[i], tgt[j], min_overlap)
            ):
                i += 1  # src[i] is an extra line: the next source cue is the better partner of tgt[j]
                continue
            if (
                j + 1 < len(tgt)
                and abs(src[i].start - tgt[j + 1].start) < diff
                and not _covers(tgt[j], src[i], min_overlap)
            ):
                j += 1
                continue
            anchor_src[i], anchor_tgt[j] = j, i
            i += 1
            j += 1
        elif src[i].start < tgt[j].start:
            i += 1
        else:
            j += 1
    return anchor_src, anchor_tgt


def _attach(cues: list[Cue], others: list[Cue], positions: list[int], min_overlap: float) -> list[tuple[int, int]]:
    """Step 2: for each unanchored cue (ascending ``positions``), the opposite cue it overlaps most, if enough."""
    links: list[tuple[int, int]] = []
    low = 0
    for position in positions:
        cue = cues[position]
        while low < len(others) and others[low].end <= cue.start:
            low += 1
        best, best_overlap = -1, 0.0
        k = low
        while k < len(others) and others[k].start < cue.end:
            overlap = _overlap(cue, others[k])
            if overlap > best_overlap:
                best, best_overlap = k, overlap
            k += 1
        if best >= 0 and _covers(cue, others[best], min_overlap):
            links.append((position, best))
    return links
