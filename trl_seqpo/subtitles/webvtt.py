"""WebVTT reader following the W3C block structure (https://www.w3.org/TR/webvtt1/, Sec. 4 and 6).

pysubs2 reads WebVTT like SRT, so a cue identifier, a ``NOTE`` comment or a text block without timing is glued
onto the previous cue's text, and YouTube's inline karaoke timestamps (``this<00:05:04.199><c> will</c>``) stay
in the text. This module splits the file the way the spec's parser does:

* the header is everything up to the first blank line (``WEBVTT``, ``Kind:``, ``Language:``, YouTube's
  ``Style:`` lines);
* a block ends at a blank line, or at a line holding ``-->`` once the block already has its timing line
  (YouTube files omit the blank line between cues);
* ``NOTE``, ``STYLE`` and ``REGION`` blocks are skipped; a cue block is ``[identifier]`` + timing line (cue
  settings such as ``align:start position:0%`` after the end time are ignored) + payload;
* a block with no timing line is an error (as for SRT), not a caption;
* in the payload, inline timestamps and tags (``<c.x>``, ``<v Name>``, ``<i>``, ``<b>``, ``<u>``, ``<lang>``) are
  removed, ``<rt>`` ruby text (furigana) is dropped with its content, and character references are decoded.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trl_seqpo.errors import UserInputError

__all__ = ["VttCue", "clean_vtt_payload", "parse_webvtt", "rewrite_webvtt"]

_TIME = r"(?:(\d{1,4}):)?(\d{2}):(\d{2})\.(\d{3})"
_TIMING = re.compile(rf"^\s*{_TIME}[ \t]+-->[ \t]+{_TIME}(?:[ \t]+.*)?$")
_RUBY_TEXT = re.compile(r"<rt(?:[.\s][^>]*)?>.*?</rt>", re.DOTALL)
_TAG = re.compile(r"</?(?:\d[\d:.]*|[a-zA-Z][^>]*)>")
_SPACES = re.compile(r"[ \t]+")
_OPENING = re.compile(r"^(?:\s*<(?!/)[^>]*>)*")
_CLOSING = re.compile(r"(?:</[^>]*>\s*)*$")


@dataclass(frozen=True, slots=True)
class VttCue:
    """One WebVTT cue: times in milliseconds, the payload with markup, and the 1-based line of its timing line."""

    start: int
    end: int
    payload: str
    line: int
    identifier: str = ""


def parse_webvtt(text: str, *, path: str = "<text>") -> list[VttCue]:
    """Split a decoded WebVTT file into cues.

    Args:
        text: File content with ``"\\n"`` line ends.
        path: File name used in error messages.

    Returns:
        The cues in file order (times as written: a cue may end before it starts; the caller decides).

    Raises:
        UserInputError: No ``WEBVTT`` signature, a timing line that does not parse, or a text block without a
            timing line (with its line number).

    Examples:
        >>> cues = parse_webvtt("WEBVTT\\n\\nNOTE hi\\n\\nid1\\n00:01.000 --> 00:02.500 align:start\\nHello\\n")
        >>> [(c.start, c.end, c.payload, c.identifier) for c in cues]
        [(1000, 2500, 'Hello', 'id1')]
    """
    lines = text.removeprefix("\ufeff").split("\n")
    if not lines or not lines[0].startswith("WEBVTT") or lines[0][6:7] not in ("", " ", "\t"):
        raise UserInputError("not a WebVTT file: the first line must be 'WEBVTT'", path=path, line=1)
    number = 1
    while number < len(lines) and lines[number].strip():
        if "-->" in lines[number]:
            break  # a timing line right under the signature: no header block
        number += 1
    cues: list[VttCue] = []
    block: list[tuple[int, str]] = []
    for index in range(number, len(lines) + 1):
        line = lines[index] if index < len(lines) else ""
        has_timing = any("-->" in text for _, text in block)
        if not line.strip() or ("-->" in line and has_timing):
            if block:
                cue = _block_to_cue(block, path)
                if cue is not None:
                    cues.append(cue)
            block = [(index + 1, line)] if line.strip() else []
            continue
        block.append((index + 1, line))
    return cues


def clean_vtt_payload(payload: str) -> str:
    """Plain text of a cue payload: tags and inline timestamps removed, ruby text dropped, entities decoded.

    Examples:
        >>> clean_vtt_payload("this<00:05:04.199><c> will</c> <v Bob>go</v> &amp; <ruby>漢<rt>かん</rt></ruby>")
        'this will go & 漢'
    """
    text = _TAG.sub("", _RUBY_TEXT.sub("", payload))
    text = html.unescape(text).replace("\u200e", "").replace("\u200f", "").replace("\xa0", " ")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _block_to_cue(block: list[tuple[int, str]], path: str) -> VttCue | None:
    first_line, first = block[0]
    keyword = first.split(None, 1)[0] if first.strip() else ""
    has_timing = [number for number, text in block[:2] if "-->" in text]
    if keyword in ("NOTE", "STYLE", "REGION") and not has_timing:
        return None
    if not has_timing:
        if any("-->" in text for _, text in block):
            raise UserInputError(
                "WebVTT cue identifier spans several lines before the timing line", path=path, line=first_line
            )
        raise UserInputError(
            f"WebVTT text block without a timing line: {first.strip()[:60]!r}", path=path, line=first_line
        )
    timing_number = has_timing[0]
    position = timing_number - first_line
    timing = block[position][1]
    match = _TIMING.match(timing)
    if match is None:
        raise UserInputError(f"timestamp does not parse: {timing.strip()!r}", path=path, line=timing_number)
    groups = match.groups()
    start, end = _ms(groups[:4]), _ms(groups[4:])
    identifier = block[0][1].strip() if position == 1 else ""
    payload = "\n".join(text for _, text in block[position + 1 :])
    return VttCue(start, end, payload, timing_number, identifier)


def _ms(parts: tuple[str | None, ...]) -> int:
    hours, minutes, seconds, millis = parts
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds or 0)) * 1000 + int(millis or 0)


def rewrite_webvtt(text: str, cues: Sequence[Any], translations: Mapping[int, str], *, bilingual: bool = False) -> str:
    """The WebVTT file ``text`` with the payload of each translated cue replaced, everything else as written.

    The header, ``NOTE``/``STYLE``/``REGION`` blocks, cue identifiers and timing lines with their cue settings
    (``align:start position:10%``) stay; the tags that open and close a payload (``<i>``, ``<v Bob>``, ``</i>``)
    wrap the translation.

    Args:
        text: The decoded file, as `parse_webvtt` read it.
        cues: The file's cues (``.index`` and ``.line``, the 1-based line of the timing line).
        translations: ``{cue index: translation}``; other cues keep their payload.
        bilingual: Keep the original payload under the translation.

    Returns:
        The new file text.

    Examples:
        >>> from types import SimpleNamespace as Cue
        >>> vtt = "WEBVTT\\n\\nNOTE keep me\\n\\n00:01.000 --> 00:02.000 line:10%\\n<i>Hello</i>\\n"
        >>> rewrite_webvtt(vtt, [Cue(index=0, line=5)], {0: "Hallo"}).splitlines()[2:]
        ['NOTE keep me', '', '00:01.000 --> 00:02.000 line:10%', '<i>Hallo</i>']
    """
    lines = text.split("\n")
    for cue in sorted(cues, key=lambda c: -(c.line or 0)):
        if cue.index not in translations or not cue.line:
            continue
        first = cue.line  # 0-based index of the payload's first line
        end = first
        while end < len(lines) and lines[end].strip() and "-->" not in lines[end]:
            end += 1
        payload = "\n".join(lines[first:end])
        opening = _OPENING.match(payload).group(0).strip()
        closing = _CLOSING.search(payload).group(0).strip()
        new = opening + translations[cue.index].replace("\n", " ").strip() + closing
        lines[first:end] = [new, *(lines[first:end] if bilingual else [])]
    return "\n".join(lines)
