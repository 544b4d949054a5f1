"""Split a source sentence into the chunks a simultaneous translator reads one at a time.

SeqPO-SiMT (Sec. 2.1-2.2) cuts a source of ``n`` units into ``T = ceil(n / m)`` chunks of ``m`` units; units are
words, or characters for languages written without spaces (Chinese, Japanese, Thai), as in SimulEval's
``--eval-latency-unit``. Chunks keep the original spacing, so ``"".join(chunks) == source``.
"""

from __future__ import annotations

import math
import re

from trl_seqpo.languages import Unit
from trl_seqpo.languages import default_unit as default_unit  # re-exported: the unit of a language

UNITS: tuple[str, ...] = ("word", "char")

_WORD_WITH_SPACE = re.compile(r"\S+\s*")
_CHAR_WITH_SPACE = re.compile(r"\S\s*")


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


def split_units(text: str, unit: Unit) -> list[str]:
    """The units of ``text``: whitespace-separated words, or the non-whitespace characters.

    Used to count target units for latency (each element gets one delay).

    Args:
        text: Any text.
        unit: ``"word"`` or ``"char"``.

    Returns:
        The list of units, without whitespace.

    Examples:
        >>> split_units("a big  dog", "word"), split_units("下 雨", "char")
        (['a', 'big', 'dog'], ['下', '雨'])
    """
    _check_unit(unit)
    if unit == "word":
        return text.split()
    return [ch for ch in text if not ch.isspace()]


def count_units(text: str, unit: Unit) -> int:
    """Number of units in ``text`` (words, or characters ignoring whitespace).

    Args:
        text: Any text.
        unit: ``"word"`` or ``"char"``.

    Returns:
        ``len(split_units(text, unit))``.
    """
    _check_unit(unit)
    if unit == "word":
        return len(text.split())
    return sum(1 for ch in text if not ch.isspace())


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer (the paper's m), got {chunk_size!r}")


def split_into_chunks(text: str, chunk_size: int, unit: Unit) -> list[str]:
    """Split a source into consecutive chunks of ``chunk_size`` units (SeqPO-SiMT Sec. 2.2, the environment).

    Whitespace is kept: the whitespace after a unit belongs to the chunk holding that unit, and whitespace before
    the first unit belongs to the first chunk, so ``"".join(chunks) == text``. The last chunk may hold fewer units;
    a source shorter than one chunk is one chunk. A source with no units (empty or only whitespace) has no chunks:
    the result is ``[]`` (the only case where the join does not give back ``text``).

    Args:
        text: The full source sentence.
        chunk_size: Units per chunk (the paper's ``m``), >= 1.
        unit: ``"word"`` or ``"char"`` (see `default_unit`).

    Returns:
        ``ceil(n / m)`` chunks, ``n = count_units(text, unit)``.

    Examples:
        >>> split_into_chunks("Despite the pouring rain, hikers kept", 3, "word")
        ['Despite the pouring ', 'rain, hikers kept']
        >>> split_into_chunks("尽管下着大雨", 4, "char")
        ['尽管下着', '大雨']
    """
    _check_unit(unit)
    _check_chunk_size(chunk_size)
    pattern = _WORD_WITH_SPACE if unit == "word" else _CHAR_WITH_SPACE
    pieces = [match.group(0) for match in pattern.finditer(text)]
    if not pieces:
        return []
    leading = text[: len(text) - len(text.lstrip())]
    chunks = ["".join(pieces[start : start + chunk_size]) for start in range(0, len(pieces), chunk_size)]
    chunks[0] = leading + chunks[0]
    return chunks


def num_chunks(text: str, chunk_size: int, unit: Unit) -> int:
    """Number of chunks (the paper's ``T = ceil(n / m)``) without building them.

    Args:
        text: The full source sentence.
        chunk_size: Units per chunk (``m``), >= 1.
        unit: ``"word"`` or ``"char"``.

    Returns:
        ``ceil(count_units(text, unit) / chunk_size)``; 0 for a source without units.
    """
    _check_chunk_size(chunk_size)
    return math.ceil(count_units(text, unit) / chunk_size)
