"""Reading speed of subtitles: characters per second and per line against per-script limits.

A translation can be right and still unreadable on screen: too many characters for the time the cue is shown, or a
line too long for the frame. The defaults follow the figures of Netflix's public Timed Text Style Guides for adult
programmes, per script; every limit can be set by the caller:

==========================  ===================  ==================
script (language codes)     characters / second  characters / line
==========================  ===================  ==================
Latin, Cyrillic, Greek, ...  17                   42
Chinese (``zh``, Han)       9                    16
Japanese (``ja``, kana)     4                    13
Korean (``ko``, Hangul)     12                   16
==========================  ===================  ==================

Characters are counted as displayed: markup removed, line breaks not counted, spaces counted. A cue's speed is its
characters divided by its duration; a cue shorter than a frame is skipped (its speed says nothing). Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trl_seqpo.subtitles.classify import dominant_script, script_of

__all__ = ["READING_LIMITS", "ReadingSpeed", "reading_limits", "reading_speed"]

# script -> (characters per second, characters per line)
READING_LIMITS: dict[str, tuple[float, int]] = {
    "latin": (17.0, 42),
    "chinese": (9.0, 16),
    "japanese": (4.0, 13),
    "korean": (12.0, 16),
}
_LANGUAGE_SCRIPT = {"zh": "chinese", "ja": "japanese", "ko": "korean"}
_MIN_DURATION = 0.04


@dataclass
class ReadingSpeed:
    """How fast the cues of one file read, against the limits used.

    Args:
        script: The limits' script (a key of `READING_LIMITS`).
        cps_limit: Characters per second allowed.
        line_limit: Characters per line allowed.
        cues: Cues counted (with text and a duration of at least a frame).
        over_cps: Cues read faster than ``cps_limit``.
        over_line: Cues with a line longer than ``line_limit``.
        mean_cps: Mean characters per second over the counted cues.
        max_cps: Fastest cue.
    """

    script: str
    cps_limit: float
    line_limit: int
    cues: int = 0
    over_cps: int = 0
    over_line: int = 0
    mean_cps: float = 0.0
    max_cps: float = 0.0

    def summary(self) -> str:
        """One line for a command's summary."""
        return (
            f"reading speed ({self.script} limits {self.cps_limit:g} cps, {self.line_limit} chars/line): "
            f"{self.over_cps} of {self.cues} cues over the cps limit (mean {self.mean_cps:.1f}, max "
            f"{self.max_cps:.1f}), {self.over_line} with a line over {self.line_limit} characters"
        )


def reading_limits(language: str | None = None, texts: Sequence[str] = ()) -> tuple[str, float, int]:
    """The default ``(script, cps, chars per line)`` for a language code, or for the dominant script of ``texts``.

    Examples:
        >>> reading_limits("zh"), reading_limits("de"), reading_limits(None, ["こんにちは"])
        (('chinese', 9.0, 16), ('latin', 17.0, 42), ('japanese', 4.0, 13))
    """
    script = _LANGUAGE_SCRIPT.get((language or "").split("-")[0].split("_")[0].lower())
    if script is None and language is None and texts:
        found = dominant_script(texts)
        if found == "hangul":
            script = "korean"
        elif found == "cjk":
            kana = any("\u3040" <= char <= "\u30ff" for text in texts for char in text if script_of(char))
            script = "japanese" if kana else "chinese"
    script = script or "latin"
    cps, line = READING_LIMITS[script]
    return script, cps, line


def reading_speed(
    cues: Sequence[tuple[float, float, str]],
    language: str | None = None,
    *,
    cps_limit: float | None = None,
    line_limit: int | None = None,
) -> ReadingSpeed:
    """Count the cues that read too fast or have a line too long.

    Args:
        cues: ``(start seconds, end seconds, text)`` per cue, lines separated by ``"\\n"``; ``start = end = 0``
            for text without timing (only the line length is counted then).
        language: Language code of the text (picks the default limits); ``None`` looks at the text's script.
        cps_limit: Characters per second allowed (default: the script's).
        line_limit: Characters per line allowed (default: the script's).

    Returns:
        A `ReadingSpeed`.

    Raises:
        ValueError: A limit that is not positive.

    Examples:
        >>> speed = reading_speed([(0.0, 1.0, "Hello there, my old friend!"), (1.0, 3.0, "Yes.")], "en")
        >>> speed.over_cps, speed.max_cps
        (1, 27.0)
    """
    script, default_cps, default_line = reading_limits(language, [text for _, _, text in cues[:200]])
    cps_limit = default_cps if cps_limit is None else float(cps_limit)
    line_limit = default_line if line_limit is None else int(line_limit)
    if cps_limit <= 0 or line_limit <= 0:
        raise ValueError(f"reading-speed limits must be positive, got {cps_limit} cps and {line_limit} chars/line")
    report = ReadingSpeed(script, cps_limit, line_limit)
    speeds = []
    for start, end, text in cues:
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if not lines:
            continue
        if max(len(line) for line in lines) > line_limit:
            report.over_line += 1
        duration = end - start
        if duration < _MIN_DURATION:
            continue
        report.cues += 1
        speed = sum(len(line) for line in lines) / duration
        speeds.append(speed)
        report.over_cps += speed > cps_limit
    if speeds:
        report.mean_cps = sum(speeds) / len(speeds)
        report.max_cps = max(speeds)
    return report
