"""Pure helpers of ALPO's segment-wise sampling (`trl_seqpo.alpo.sampler`): units, batches, seeds.

The line prompt, the newline ids and the marker reading are the shared decoder's (`trl_seqpo.rollout.linewise`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from trl_seqpo.rollout.linewise import line_prompt, newline_token_ids, strip_line_marker
from trl_seqpo.subtitles.documents import Document

__all__ = [
    "UNITS",
    "derive_seed",
    "document_batches",
    "line_prompt",
    "newline_token_ids",
    "segment_line_ids",
    "strip_line_marker",
]

UNITS = ("line", "segment")
# sentence-final punctuation, optionally followed by closing quotes / brackets, at the end of a line
_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’»)\]）」』】]*\s*$")


def segment_line_ids(
    source_lines: Sequence[str], unit: str = "segment", max_segment_lines: int = 4
) -> list[list[int]]:
    """Cut a document's lines into preference units (0-based line ids).

    Args:
        source_lines: The document's source lines.
        unit: ``"line"``: one unit per line (ALPO Alg. 1). ``"segment"``: consecutive lines joined until one ends
            with sentence-final punctuation, the document ends, or ``max_segment_lines`` lines are joined.
        max_segment_lines: Most lines of a segment.

    Returns:
        One list of line ids per unit, covering every line once, in order.

    Examples:
        >>> segment_line_ids(["He said", "that it was late.", "Go!"], "segment")
        [[0, 1], [2]]
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if unit == "line":
        return [[i] for i in range(len(source_lines))]
    units: list[list[int]] = []
    current: list[int] = []
    for index, line in enumerate(source_lines):
        current.append(index)
        if _SENTENCE_END.search(line) or len(current) >= max_segment_lines:
            units.append(current)
            current = []
    if current:
        units.append(current)
    return units


def document_batches(documents: Sequence[Document], size: int) -> list[list[Document]]:
    """Split documents into lockstep batches of ``size``, in order (the same split on a resumed run)."""
    if size < 1:
        raise ValueError(f"documents_per_batch must be >= 1, got {size}")
    return [list(documents[start : start + size]) for start in range(0, len(documents), size)]


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any parts (stable across processes and Python versions)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
