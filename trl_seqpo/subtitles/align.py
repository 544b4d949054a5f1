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
3. **Split halves.** A cue still alone that overlaps an opposite cue by at least 25% of its duration and 0.5 s
   joins that cue's group when its neighbour in its own file already belongs to that group: the early half of a
   split line often starts before its partner (48.9% overlap in a real film) and would otherwise be dropped.
4. **Mutual leftovers.** Two cues still alone that overlap (by 25% of the shorter one) and start at most
   ``recover_start_diff`` (1 s) apart are paired when each is the other's only candidate among the cues still
   alone (independent timing puts one-to-one partners 0.8-0.9 s apart, past step 1's 0.7 s).
5. **Unmatched.** Every other cue is reported in ``unmatched_source`` / ``unmatched_target``, never paired with a
   neighbour. Cues with no text (ASS drawings, empty SRT blocks) are skipped and listed in ``skipped_*``.

The cost is O(N + M) for files in time order (sorting is Timsort on nearly sorted input), plus, for each
unanchored cue, the opposite cues it overlaps.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trl_seqpo.subtitles.classify import dialogue_only
from trl_seqpo.subtitles.io import Cue
from trl_seqpo.subtitles.recover import mutual_leftovers, split_halves

__all__ = ["AlignedGroup", "AlignmentResult", "align_cues", "align_dialogue", "is_cjk_language", "join_texts"]

# Languages written without spaces between words: a wrap inside a cue gets no space.
_NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "yue", "wuu", "cmn", "lzh"})
# CJK characters and punctuation (a wrap between two of them is not a word space).
_CJK_CHAR = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


@dataclass(frozen=True)
class AlignedGroup:
    """One aligned unit: source cues and the target cues that translate them.

    Args:
        source_lines: 0-based indices (``Cue.index``) of the source cues, ascending.
        target_lines: 0-based indices of the target cues, ascending.
        source: Source cue texts in time order, cues joined by a space (a wrap inside a zh/ja cue: no space).
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

    def records(self, source: Sequence[Cue], target: Sequence[Cue]) -> list[dict[str, object]]:
        """What ``trl-seqpo subtitles align`` writes: the groups and the excluded cues, in time order."""
        records = [group.to_dict() for group in self.groups] + self.excluded_records(source, target)
        records.sort(key=lambda record: (record["start"], "excluded" in record))
        return records

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
    recover_start_diff: float = 1.0,
) -> AlignmentResult:
    """Align two cue lists of one programme by time (ALPO App. A.2, with time order instead of an index window).

    Args:
        source: Source-language cues (any order; ``Cue.index`` identifies them).
        target: Target-language cues.
        max_start_diff: Largest start-time difference, in seconds, for two cues to be paired directly (paper: 0.7 s,
            about the length of the shortest utterance, "Hello").
        min_overlap: Fraction of an unanchored cue's duration that must overlap a cue of the other file for it to
            join that cue's group (a split or merged line).
        source_lang: Language code of the source (``"zh"``, ``"en"``, ...); decides whether a wrap
            inside a cue becomes a space. ``None`` guesses from the text (no space for Chinese/Japanese script).
        target_lang: Same for the target.
        recover_start_diff: Step 4's window: two cues left unpaired that overlap and start at most this far apart
            are paired when each is the other's only unpaired candidate (0 turns step 4 off).

    Returns:
        An `AlignmentResult` with the groups in time order and the unmatched cues.

    Raises:
        ValueError: ``max_start_diff`` is negative or ``min_overlap`` is not in (0, 1].

    Examples:
        >>> from trl_seqpo.subtitles.io import Cue
        >>> src = [Cue(0, 1.0, 3.0, "Where were you?"), Cue(1, 3.2, 4.0, "Hey!")]
        >>> tgt = [Cue(0, 1.4, 2.0, "你去哪了"), Cue(1, 2.0, 3.0, "我等你好久")]
        >>> result = align_cues(src, tgt)
        >>> result.groups[0].target, result.unmatched_source
        ('你去哪了 我等你好久', [1])
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
    # Step 3: the half of a split line that overlaps its partner less than min_overlap, next to the other half.
    for i, j in split_halves(src, tgt, linked_src, lambda k: find(k), lambda k: find(n + k)):
        union(i, n + j)
        linked_src[i] = True
    for j, i in split_halves(tgt, src, linked_tgt, lambda k: find(n + k), lambda k: find(k)):
        union(i, n + j)
        linked_tgt[j] = True
    # Step 4: two leftover cues that overlap, start within recover_start_diff and are each other's only candidate.
    for i, j in mutual_leftovers(src, tgt, linked_src, linked_tgt, recover_start_diff):
        union(i, n + j)
        linked_src[i] = linked_tgt[j] = True

    members: dict[int, tuple[list[Cue], list[Cue]]] = {}
    for i, cue in enumerate(src):
        if linked_src[i]:
            members.setdefault(find(i), ([], []))[0].append(cue)
    for j, cue in enumerate(tgt):
        if linked_tgt[j]:
            members.setdefault(find(n + j), ([], []))[1].append(cue)
    source_cjk = _no_space_language(source_lang, src)
    target_cjk = _no_space_language(target_lang, tgt)
    groups = [
        AlignedGroup(
            source_lines=sorted(cue.index for cue in src_cues),
            target_lines=sorted(cue.index for cue in tgt_cues),
            source=join_texts((cue.text for cue in src_cues), no_space_wraps=source_cjk),
            target=join_texts((cue.text for cue in tgt_cues), no_space_wraps=target_cjk),
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
    *,
    keep: Collection[str] = (),
    strip_sdh: bool = True,
    **options: Any,
) -> AlignmentResult:
    """Align the dialogue of two files: cues `dialogue_only` leaves out
    (signs, credits, songs, SDH descriptions, ...) take no part and are reported in ``excluded_*``.

    Args:
        source: Source-language cues.
        target: Target-language cues.
        keep: Reasons to keep anyway (``{"song"}``, or ``{"all"}`` to classify nothing away).
        strip_sdh: Remove SDH speaker labels, bracketed descriptions and furigana from the paired text.
        **options: The alignment settings of `align_cues` (``max_start_diff``, ``min_overlap``, ``source_lang``,
            ``target_lang``, ``recover_start_diff``), with its defaults.

    Returns:
        An `AlignmentResult` with ``excluded_source`` / ``excluded_target`` filled in.

    Raises:
        ValueError: Bad ``max_start_diff``/``min_overlap``, or ``keep`` names an unknown reason.
        TypeError: An option `align_cues` does not take.
    """
    kept_source, excluded_source = dialogue_only(source, keep=keep, strip=strip_sdh)
    kept_target, excluded_target = dialogue_only(target, keep=keep, strip=strip_sdh)
    result = align_cues(kept_source, kept_target, **options)
    result.excluded_source, result.excluded_target = excluded_source, excluded_target
    return result


def is_cjk_language(lang: str | None) -> bool:
    """Whether ``lang`` (a code such as ``"zh"``, ``"zh-Hant"``, ``"ja_JP"``) is written without word spaces."""
    if not lang:
        return False
    return re.split(r"[-_.]", lang.lower(), maxsplit=1)[0] in _NO_SPACE_LANGUAGES


def join_texts(texts: Iterable[str], joiner: str = " ", *, no_space_wraps: bool = False) -> str:
    """Join cue texts into one line: cues are joined by ``joiner``, line breaks inside a cue become spaces.

    Subtitles of languages written without word spaces still separate phrases and speakers with a space
    (``我该走了 嗯``), so cues are joined by a space in every language; a line break inside one cue of such a
    language is only a wrap, and vanishes where both sides are CJK characters.

    Args:
        texts: Cue texts in time order.
        joiner: Separator between cues (a space).
        no_space_wraps: The language does not use spaces (zh, ja): a wrap between two CJK characters gets no space.

    Returns:
        A single line of text.

    Examples:
        >>> join_texts(["我该走了", "嗯"], no_space_wraps=True)
        '我该走了 嗯'
        >>> join_texts(["渡轮在海湾中间抛锚了\\n我只好走完最后一英里", "OK\\nfine"], no_space_wraps=True)
        '渡轮在海湾中间抛锚了我只好走完最后一英里 OK fine'
    """
    joined = []
    for text in texts:
        lines = [" ".join(line.split()) for line in text.split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            continue
        out = lines[0]
        for line in lines[1:]:
            glue = "" if no_space_wraps and _CJK_CHAR.match(out[-1]) and _CJK_CHAR.match(line[0]) else " "
            out += glue + line
        joined.append(out)
    return joiner.join(joined)


def _no_space_language(lang: str | None, cues: Sequence[Cue]) -> bool:
    if lang is not None:
        return is_cjk_language(lang)
    sample = "".join(cue.text for cue in cues[:200])
    letters = sum(char.isalpha() for char in sample)
    return bool(letters) and len(_CJK_CHAR.findall(sample)) > 0.3 * letters


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
