"""Pure helpers of ALPO's segment-wise sampling (`trl_seqpo.rollout.segmentwise`): units, stop ids, batches, seeds.

No torch: the tokenizer is only asked for its vocabulary and ``decode``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from trl_seqpo.subtitles.documents import Document, render_numbered_lines

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
_MARKER = re.compile(r"^\s*(\d{1,5})\s*[.)．、:：]\s*(.*)$")
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


def newline_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Every non-special token id whose text contains a newline (``"\\n"``, ``".\\n"``, ``"\\n\\n"``, ...).

    Byte-level BPE vocabularies spell the newline byte ``"Ċ"``, SentencePiece ones ``"<0x0A>"``; candidates are
    filtered on the vocabulary string and confirmed by decoding, so one pass over the vocabulary is enough.

    Args:
        tokenizer: A Hugging Face tokenizer (``get_vocab``, ``decode``).

    Returns:
        The sorted ids.

    Raises:
        ValueError: No token decodes to text with a newline.
    """
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    found = []
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in special or not ("\n" in token or "Ċ" in token or "0x0A" in token):
            continue
        if "\n" in tokenizer.decode([token_id]):
            found.append(int(token_id))
    if not found:
        raise ValueError("the tokenizer has no token that decodes to a newline; ALPO candidates end at a newline")
    return tuple(sorted(found))


def document_batches(documents: Sequence[Document], size: int) -> list[list[Document]]:
    """Split documents into lockstep batches of ``size``, in order (the same split on a resumed run)."""
    if size < 1:
        raise ValueError(f"documents_per_batch must be >= 1, got {size}")
    return [list(documents[start : start + size]) for start in range(0, len(documents), size)]


def line_prompt(document_prompt: str, prefix: Sequence[str]) -> str:
    """The prompt of the line after ``prefix``: the document prompt and the numbered prefix, ending at a newline.

    The model writes the line's marker itself, so the prompt ends on a token boundary for any byte-level BPE.

    Examples:
        >>> line_prompt("Translation:\\n", ["Hi.", "Bye."])
        'Translation:\\n1.Hi.\\n2.Bye.\\n'
    """
    return document_prompt + render_numbered_lines(prefix)


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any parts (stable across processes and Python versions)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def strip_line_marker(text: str, number: int) -> str | None:
    """Line ``number`` as the model wrote it, without its marker and with spaces normalised.

    A line without a marker is taken as it is; one numbered for another line is ``None`` (unreadable), as is an
    empty one.

    Examples:
        >>> strip_line_marker("12. Hello  there", 12), strip_line_marker("Hi", 3), strip_line_marker("4. x", 3)
        ('Hello there', 'Hi', None)
    """
    match = _MARKER.match(text)
    if match is not None:
        if int(match.group(1)) != number:
            return None
        text = match.group(2)
    return " ".join(text.split()) or None
