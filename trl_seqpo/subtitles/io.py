"""Read and write subtitle files (SRT, ASS/SSA, WebVTT, MicroDVD) as plain `Cue` lists.

Parsing goes through pysubs2, except WebVTT, which `webvtt` reads per the W3C spec.
pysubs2 is lenient: a timing line it cannot read silently becomes text of the previous cue. ALPO's corpus
construction (App. A.2) pairs cues by time, so a wrong time is worse than an error: before pysubs2 parses a text
format, `read_subtitle_file` scans the file for its timing lines and raises
`UserInputError` naming the file and line of the first problem.

An event that ends before it starts (a sign ending 10 ms early, karaoke particles) is not shown by renderers:
it is dropped and counted in `dropped_inverted` (``strict=True`` refuses the file instead).
Encodings are detected per file by `encoding`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pysubs2
from pysubs2.formats import get_format_class

from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import atomic_output
from trl_seqpo.subtitles.encoding import decode_subtitle_bytes, decode_with_note
from trl_seqpo.subtitles.webvtt import clean_vtt_payload, parse_webvtt

__all__ = [
    "EXTENSION_FORMATS",
    "OUTPUT_EXTENSIONS",
    "Cue",
    "SubtitleFile",
    "atomic_output",
    "decode_subtitle_bytes",
    "detect_format",
    "output_format",
    "read_subtitle_file",
    "read_subtitles",
    "subtitle_file_from_events",
    "write_subtitles",
]

# ASS override block that draws a vector shape ({\p1} ... {\p0}): its "text" is drawing commands, not dialogue.
_DRAWING = re.compile(r"\{[^}]*\\p[1-9][^}]*\}")
_HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
_SPACES = re.compile(r"[ \t\u3000\xa0]+")
_ASS_TIME = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?\s*$")
_SRT_TIME = r"\d{1,3}:\d{1,2}:\d{1,2}[,.]\d{1,3}"
_VTT_TIME = r"(?:\d{1,4}:)?\d{2}:\d{2}\.\d{2,3}"
_TIMING_LINE = {
    "srt": re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s.*)?$"),
    "vtt": re.compile(rf"^\s*{_VTT_TIME}\s*-->\s*{_VTT_TIME}(?:\s.*)?$"),
}
_MICRODVD_LINE = re.compile(r"^\s*\{\s*\d+\s*\}\s*\{\s*\d*\s*\}")
#: The subtitle formats by file extension (pysubs2's names): what is read (`read_subtitle_file`, the folders of
#: ``subtitles align``) and written. The one list: every command and function reads it.
EXTENSION_FORMATS: dict[str, str] = {".srt": "srt", ".ass": "ass", ".ssa": "ssa", ".vtt": "vtt", ".sub": "microdvd"}
#: Those a translation is written to (``subtitles translate``): not MicroDVD, whose frames need a frame rate.
OUTPUT_EXTENSIONS: tuple[str, ...] = tuple(ext for ext, fmt in EXTENSION_FORMATS.items() if fmt != "microdvd")


def output_format(path: str | os.PathLike) -> str:
    """The format a translation written to ``path`` gets, from its extension (`OUTPUT_EXTENSIONS`).

    Raises:
        UserInputError: Another extension (the message lists the ones accepted).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_EXTENSIONS:
        accepted = ", ".join(OUTPUT_EXTENSIONS[:-1]) + " or " + OUTPUT_EXTENSIONS[-1]
        raise UserInputError(f"cannot tell the output format; use {accepted}", path=str(path))
    return EXTENSION_FORMATS[suffix]


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle cue.

    Args:
        index: 0-based position of the cue among the file's dialogue events, in the order the file lists them.
        start: Start time in seconds.
        end: End time in seconds (``end >= start``).
        text: Plain text: markup and ASS override tags removed, line breaks normalised to ``"\\n"``, each line
            stripped. Empty for cues with nothing to read (for example ASS vector drawings).
        line: 1-based line number of the cue's timing line in the file, where known.
        style: ASS/SSA style name (``""`` for other formats).
        layer: ASS layer (0 for other formats).
        raw: The event's text as written, markup and override tags included (for the dialogue classifier).
        event: Position of the event in `subs` (to write a translation back in place).
    """

    index: int
    start: float
    end: float
    text: str
    line: int | None = None
    style: str = ""
    layer: int = 0
    raw: str = field(default="", compare=False)
    event: int | None = field(default=None, compare=False)

    @property
    def duration(self) -> float:
        """``end - start`` in seconds."""
        return self.end - self.start


@dataclass
class SubtitleFile:
    """A subtitle file as read by `read_subtitle_file`.

    Args:
        cues: Dialogue cues (ASS ``Comment`` events and inverted events left out), ``cue.index == position``.
        format: pysubs2 format identifier the file was read as.
        subs: The parsed file (styles, header, every event), to write a translation back with its markup.
        dropped_inverted: 1-based line numbers (or event positions when unknown) of events dropped because they
            end before they start.
        text: The decoded file (WebVTT only: a translation is written back into it, settings and notes kept).
        encoding_note: A warning line when the text encoding was a guess (`decode_with_note`), else ``None``.
    """

    cues: list[Cue]
    format: str
    subs: pysubs2.SSAFile
    dropped_inverted: list[int] = field(default_factory=list)
    text: str | None = field(default=None, repr=False)
    encoding_note: str | None = None

    def warnings(self, path: str | os.PathLike[str]) -> list[str]:
        """One line per reading problem that did not stop the read (for the CLI to print)."""
        notes = [self.encoding_note] if self.encoding_note else []
        if not self.dropped_inverted:
            return notes
        shown = ", ".join(str(number) for number in self.dropped_inverted[:5])
        more = ", ..." if len(self.dropped_inverted) > 5 else ""
        return [
            *notes,
            f"{path}: dropped {len(self.dropped_inverted)} event(s) that end before they start "
            f"(line {shown}{more}); pass --strict to refuse such files",
        ]


def read_subtitles(path: str | os.PathLike[str], encoding: str | None = None, **options: Any) -> list[Cue]:
    """Read a subtitle file's dialogue cues (ALPO App. A.1): `read_subtitle_file` without the parsed file.

    Dropped inverted events are reported with `warn`. ``options`` are `read_subtitle_file`'s (``format``, ``fps``,
    ``strict``).
    """
    result = read_subtitle_file(path, encoding, **options)
    for message in result.warnings(path):
        warnings.warn(message, stacklevel=2)
    return result.cues


def read_subtitle_file(
    path: str | os.PathLike[str],
    encoding: str | None = None,
    *,
    format: str | None = None,
    fps: float | None = None,
    strict: bool = False,
) -> SubtitleFile:
    """Read a subtitle file into cues (ALPO App. A.1: programmes come as timed subtitle files).

    Args:
        path: SRT, ASS/SSA, WebVTT or MicroDVD file (other formats pysubs2 knows are read without the line checks).
        encoding: Text encoding; ``None`` detects it (`encoding`).
        format: pysubs2 format identifier (``"srt"``, ``"ass"``, ``"vtt"``, ``"microdvd"``, ...); ``None`` detects
            it from the content.
        fps: Frame rate, needed only for MicroDVD files that do not state it in their first cue.
        strict: Refuse a file with an event that ends before it starts instead of dropping the event.

    Returns:
        A `SubtitleFile`: dialogue cues in file order and the parsed file.

    Raises:
        UserInputError: The file is missing, empty, not text, not a subtitle file, or has a truncated block, a
            timestamp that does not parse, a WebVTT block without timing, or (``strict``) a cue that ends before
            it starts (with the line number).
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError("file not found", path=str(path))
    if path.is_dir():
        raise UserInputError("is a directory, expected a subtitle file", path=str(path))
    text, note = decode_with_note(path.read_bytes(), path=str(path), encoding=encoding)
    if not text.strip():
        raise UserInputError("file is empty", path=str(path))
    fmt = format or detect_format(text, path=str(path))
    if fmt == "vtt":
        result = _read_vtt(text, str(path), strict)
        result.encoding_note = note
        return result
    timing_lines = _check_timing_lines(text, fmt, str(path), strict)
    try:
        subs = pysubs2.SSAFile.from_string(text, format_=fmt, fps=fps)
    except pysubs2.exceptions.UnknownFPSError as exc:
        raise UserInputError(
            "MicroDVD file does not state its frame rate; pass fps= (CLI: --fps)", path=str(path)
        ) from exc
    except (pysubs2.exceptions.Pysubs2Error, ValueError) as exc:
        raise UserInputError(f"not a readable {fmt} subtitle file ({exc})", path=str(path)) from exc
    if timing_lines is not None and len(timing_lines) != len(subs.events):
        timing_lines = None  # the scan and pysubs2 disagree on what a cue is: keep the cues, drop the line numbers
    result = _events_to_cues(subs, fmt, timing_lines, strict=strict, path=str(path))
    if not result.cues:
        raise UserInputError(f"no subtitle cues found (read as {fmt})", path=str(path))
    result.encoding_note = note
    return result


def _events_to_cues(
    subs: pysubs2.SSAFile, fmt: str, timing_lines: list[int] | None, *, strict: bool, path: str | None
) -> SubtitleFile:
    """The dialogue cues of parsed events; an inverted event is dropped (its line, else its 1-based position, is
    recorded) or, with ``strict``, refused naming ``path`` and its line."""
    cues: list[Cue] = []
    dropped: list[int] = []
    for position, event in enumerate(subs.events):
        if event.is_comment:
            continue
        line = None if timing_lines is None else timing_lines[position]
        if event.end < event.start:
            if strict:
                raise UserInputError("cue ends before it starts", path=path, line=line)
            dropped.append(position + 1 if line is None else line)
            continue
        cues.append(
            Cue(
                len(cues),
                event.start / 1000.0,
                event.end / 1000.0,
                _plain_text(event.text),
                line,
                style=event.style if fmt in ("ass", "ssa") else "",
                layer=event.layer,
                raw=event.text,
                event=position,
            )
        )
    return SubtitleFile(cues, fmt, subs, dropped)


def subtitle_file_from_events(subs: pysubs2.SSAFile, fmt: str) -> SubtitleFile:
    """Wrap an in-memory pysubs2 file (for example one language of a bilingual file) as a `SubtitleFile`.

    Args:
        subs: The parsed file.
        fmt: Its pysubs2 format identifier (decides whether style names count).

    Returns:
        The dialogue cues of ``subs`` (comments and events that end before they start are left out).
    """
    return _events_to_cues(subs, fmt, None, strict=False, path=None)


def _read_vtt(text: str, path: str, strict: bool) -> SubtitleFile:
    subs = pysubs2.SSAFile()
    cues: list[Cue] = []
    dropped: list[int] = []
    for vtt_cue in parse_webvtt(text, path=path):
        if vtt_cue.end < vtt_cue.start:
            if strict:
                raise UserInputError("cue ends before it starts", path=path, line=vtt_cue.line)
            dropped.append(vtt_cue.line)
            continue
        plain = clean_vtt_payload(vtt_cue.payload)
        event = pysubs2.SSAEvent(start=vtt_cue.start, end=vtt_cue.end)
        event.plaintext = plain
        subs.events.append(event)
        cues.append(
            Cue(
                len(cues),
                vtt_cue.start / 1000.0,
                vtt_cue.end / 1000.0,
                plain,
                vtt_cue.line,
                raw=vtt_cue.payload,
                event=len(subs.events) - 1,
            )
        )
    if not cues:
        raise UserInputError("no subtitle cues found (read as vtt)", path=path)
    return SubtitleFile(cues, "vtt", subs, dropped, text=text)


def write_subtitles(
    cues: Sequence[Cue], path: str | os.PathLike[str], format: str | None = None, *, fps: float | None = None
) -> None:
    """Write cues to a subtitle file, keeping their timing (to the millisecond; ASS keeps centiseconds).

    The file is written to a temporary file next to ``path`` and renamed, so a failed write leaves no partial
    file.

    Args:
        cues: Cues to write, in the order they should appear.
        path: Output file; its extension picks the format when ``format`` is ``None``.
        format: pysubs2 format identifier (``"srt"``, ``"ass"``, ``"vtt"``, ...).
        fps: Frame rate, needed for MicroDVD.

    Raises:
        ValueError: The format cannot be told from ``path``; pass ``format=``.
    """
    path = Path(path)
    fmt = format or EXTENSION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the subtitle format from {path.name!r}; pass format='srt', 'ass' or 'vtt'")
    subs = pysubs2.SSAFile()
    for cue in cues:
        event = pysubs2.SSAEvent(start=round(cue.start * 1000), end=round(cue.end * 1000))
        event.plaintext = cue.text
        subs.events.append(event)
    content = subs.to_string(fmt, fps=fps)
    with atomic_output(path) as handle:
        handle.write(content)


def detect_format(text: str, *, path: str = "<text>") -> str:
    """Tell the subtitle format from the content: ASS/SSA, WebVTT, SRT, MicroDVD, else pysubs2's guess.

    Args:
        text: Decoded file content.
        path: File name used in error messages.

    Returns:
        A pysubs2 format identifier.

    Raises:
        UserInputError: The text is not a subtitle format pysubs2 can read.
    """
    head = text.lstrip()
    if "[Script Info]" in text or "[Events]" in text or "[V4+ Styles]" in text:
        return "ssa" if "[V4 Styles]" in text and "[V4+ Styles]" not in text else "ass"
    if head.startswith("WEBVTT"):
        return "vtt"
    if "-->" in text:
        return "srt"
    if any(_MICRODVD_LINE.match(line) for line in head.splitlines()[:20]):
        return "microdvd"
    try:
        return pysubs2.formats.autodetect_format(text)
    except pysubs2.exceptions.FormatAutodetectionError as exc:
        raise UserInputError(
            "not a subtitle file (no SRT/WebVTT timing line, ASS [Events] section or MicroDVD frame found)", path=path
        ) from exc


def _plain_text(ass_text: str) -> str:
    if _DRAWING.search(ass_text):
        return ""
    text = pysubs2.SSAEvent(text=ass_text).plaintext
    text = _HTML_TAG.sub("", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _check_timing_lines(text: str, fmt: str, path: str, strict: bool) -> list[int] | None:
    """Validate every timing line and return their 1-based line numbers, one per pysubs2 event (or ``None``)."""
    if fmt == "srt":
        return _check_srt_like(text, fmt, path, strict)
    if fmt in ("ass", "ssa"):
        return _check_ass(text, path, strict)
    return None


def _check_srt_like(text: str, fmt: str, path: str, strict: bool) -> list[int]:
    format_class = get_format_class(fmt)
    kind = "SRT" if fmt == "srt" else "WebVTT"
    lines = text.split("\n")
    timing_lines: list[int] = []
    state = "between"  # "between" blocks, after a cue "index", after a "timing" line, inside the cue "text"
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        stamps = format_class.TIMESTAMP.findall(line)
        if (len(stamps) == 2 or "-->" in line) and _TIMING_LINE[fmt].match(line) is None:
            if not any(rest.strip() for rest in lines[number:]):
                raise UserInputError(
                    f"truncated {kind} block: the file ends inside a timing line", path=path, line=number
                )
            raise UserInputError(f"timestamp does not parse: {stripped!r}", path=path, line=number)
        if len(stamps) == 2:
            start, end = (format_class.timestamp_to_ms(stamp) for stamp in stamps)
            if end < start and strict:
                raise UserInputError(f"cue ends before it starts ({stripped})", path=path, line=number)
            timing_lines.append(number)
            state = "timing"
        elif state == "index":
            if stripped:
                raise UserInputError(
                    f"expected a timing line 'HH:MM:SS,mmm --> HH:MM:SS,mmm' after the cue number, got {stripped!r}",
                    path=path,
                    line=number,
                )
            raise UserInputError("truncated SRT block: cue number without a timing line", path=path, line=number - 1)
        elif not stripped:
            state = "between" if state == "text" else state
        elif state == "between" and fmt == "srt" and stripped.isdigit():
            state = "index"
        else:
            state = "text"
    if state == "index":
        last = max(number for number, line in enumerate(lines, start=1) if line.strip())
        raise UserInputError("truncated SRT block: the file ends after a cue number", path=path, line=last)
    if state == "timing" and fmt == "srt":
        raise UserInputError(
            "truncated SRT block: the file ends after a timing line", path=path, line=timing_lines[-1]
        )
    if not timing_lines:
        raise UserInputError(f"not a subtitle file: no {kind} timing line found", path=path)
    return timing_lines


def _check_ass(text: str, path: str, strict: bool) -> list[int]:
    timing_lines: list[int] = []
    fields = ["layer", "start", "end", "style", "name", "marginl", "marginr", "marginv", "effect", "text"]
    in_events = False
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            in_events = stripped.lower() == "[events]"
        elif in_events and stripped.lower().startswith("format:"):
            fields = [name.strip().lower() for name in stripped.split(":", 1)[1].split(",")]
        elif in_events and stripped.startswith(("Dialogue:", "Comment:")):
            if "start" not in fields or "end" not in fields:
                raise UserInputError("the [Events] Format line has no Start/End field", path=path, line=number)
            values = stripped.split(":", 1)[1].split(",", len(fields) - 1)
            if len(values) < len(fields):
                raise UserInputError(
                    f"truncated event: {len(values)} of the {len(fields)} fields of the Format line",
                    path=path,
                    line=number,
                )
            start, end = (_ass_seconds(values[fields.index(key)], path, number) for key in ("start", "end"))
            if end < start and strict:
                raise UserInputError("cue ends before it starts", path=path, line=number)
            timing_lines.append(number)
    if not timing_lines:
        raise UserInputError("no Dialogue lines in the [Events] section", path=path)
    return timing_lines


def _ass_seconds(value: str, path: str, line: int) -> float:
    match = _ASS_TIME.match(value)
    if match is None:
        raise UserInputError(
            f"timestamp does not parse: {value.strip()!r} (expected H:MM:SS.cc)", path=path, line=line
        )
    hours, minutes, seconds, fraction = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + (float(f"0.{fraction}") if fraction else 0.0)
