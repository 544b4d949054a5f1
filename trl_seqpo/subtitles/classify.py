"""Tell dialogue from everything else a subtitle file shows: signs, credits, songs, karaoke, SDH descriptions.

ALPO trains on pairs of dialogue lines (App. A.2). Real files also hold on-screen text (a sign, a date caption, a
phone screen), staff credits, fansub notices, song lyrics and karaoke effects, and SDH sound descriptions; paired by
time, these become training pairs that teach nothing (a staff credit "translated" as the film title). Each cue gets a
reason when it is not dialogue, from signals real files carry:

==================  ======================================================================================
reason              signal
==================  ======================================================================================
``empty``           no text after markup removal
``zero_length``     ends when it starts (hidden cues; karaoke particles)
``flash``           shorter than 0.1 s (one or two frames: animation steps of a sign)
``drawing``         an ASS vector drawing (``{\\p1}``)
``karaoke``         ASS karaoke timing (``{\\k20}``, ``\\kf``) outside a dialogue style (``Default``, ``Dial-*``)
``positioned``      placed by hand (``\\pos``/``\\move``): signs follow the picture, dialogue sits at the bottom
``sign``            ASS style named like on-screen text (``Sign``, ``Scr``, ``Screen``, ``Title``, ``Note``), or
                    every word in capitals (``BASED ON A TRUE STORY``)
``credit``          style ``Staff``/``Credit``, or text of a fansub/ripper notice (``字幕制作：``, ``www.``)
``song``            style ``OP``/``ED``/``IN``/``Song``/``Lyrics``/``Kara``, or text between music notes
``layered``         the same text at the same time more than once (a sign drawn in several layers)
``description``     SDH only: ``[door slams]``, ``(laughs)``, ``（走る足音）``
``other_script``    written in another script than the file (Chinese ads inside an English file)
``overlay``         SRT/WebVTT only: overlaps two or more other dialogue cues (a name card, a date caption)
==================  ======================================================================================

Inside dialogue cues, `strip_sdh` removes SDH speaker labels (``JOHN:``, ``[Claire]``, ``（律花）``), bracketed
sound descriptions and furigana readings (``律花(りっか)``). Everything here is pure Python, O(N log N) at worst.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace

from trl_seqpo.subtitles.io import Cue

__all__ = ["REASONS", "classify_cues", "dialogue_only", "dominant_script", "script_of", "strip_sdh"]

REASONS = (
    "empty",
    "zero_length",
    "flash",
    "drawing",
    "karaoke",
    "positioned",
    "sign",
    "credit",
    "song",
    "layered",
    "description",
    "other_script",
    "overlay",
)
_FLASH = 0.1
_DRAWING = re.compile(r"\{[^}]*\\p[1-9]")
_KARAOKE = re.compile(r"\{[^}]*\\[kK][fo]?\d")
_POSITIONED = re.compile(r"\{[^}]*\\(?:pos|move)\s*\(")
_STYLE_WORDS = {
    "credit": {"staff", "credit", "credits"},
    "song": {"op", "ed", "in", "song", "songs", "lyric", "lyrics", "kara", "karaoke", "opening", "ending", "insert"},
    "sign": {"sign", "signs", "scr", "screen", "title", "note", "notes", "logo", "comment", "tip", "tips"},
}
# A style named like this is dialogue whatever its tags (a karaoke-timed line in "Default" is still spoken).
_DIALOGUE_STYLE_WORDS = {"default", "dialogue", "dial", "main"}
# "opjp", "edcn", "OP-CHS", "ED_JP2": a song style glued to a language tag.
_GLUED_SONG = re.compile(r"^(?:op|ed|in)(?:jp|jpn|ja|cn|ch|chs|cht|sc|tc|zh|en|\d)")
_CREDIT_TEXT = re.compile(
    r"(?:字幕|翻[译譯]|校[对對]|[时時]轴|[时時]軸|[压壓]制|后期|後期|片源|[监監]制|特效|总监|總監|调轴|調軸)\s*[:：]"
    r"|本字幕|字幕[组組]|仅供|僅供|www\.|https?://|\.(?:com|net|org|tv|cn)\b|QQ群|微博"
    r"|(?:subtitles?|captions?|translat(?:ed|ion)|sync(?:ed|hroni[sz]ed)?|ripped|corrected)\s+(?:by|:)"
    r"|^\s*subtitles?\s*:",
    re.IGNORECASE,
)
_MUSIC = "♪♫♬🎵🎶"
_BRACKETED = re.compile(r"\[[^\]\n]{0,80}\]|\([^)\n]{0,80}\)|（[^）\n]{0,80}）|【[^】\n]{0,80}】")
_FURIGANA = re.compile(r"([\u3400-\u9fff々〆]+)[（(][\u3040-\u30ffー]+[）)]")
_LABEL = re.compile(r"^(\s*-?\s*)[A-Z][A-Z0-9 .'’-]{1,24}:\s*(?=\S)")
_SCRIPTS = {"LATIN": "latin", "CYRILLIC": "cyrillic", "GREEK": "greek", "ARABIC": "arabic", "HEBREW": "hebrew"}
_CJK_NAMES = ("CJK", "HIRAGANA", "KATAKANA")


def strip_sdh(text: str) -> str:
    """Remove SDH additions from dialogue: bracketed descriptions and speaker labels, and furigana readings.

    Args:
        text: Plain cue text (lines separated by ``"\\n"``).

    Returns:
        The spoken words only; ``""`` when the cue held nothing else.

    Examples:
        >>> strip_sdh("[Claire] Raoul!\\nJOHN: (sighs) Fine.")
        'Raoul!\\nFine.'
        >>> strip_sdh("（律花(りっか)）ハァハァ")
        'ハァハァ'
    """
    text = _FURIGANA.sub(r"\1", text)
    lines = []
    for line in text.split("\n"):
        line = _BRACKETED.sub(" ", line)
        line = _LABEL.sub(r"\1", line)
        line = " ".join(line.split())
        if line.strip("-–— "):
            lines.append(line)
    return "\n".join(lines)


def script_of(char: str) -> str | None:
    """Script family of one letter: ``"latin"``, ``"cyrillic"``, ``"cjk"`` (Han and kana), ``"hangul"``, ...

    Examples:
        >>> [script_of(c) for c in "aЖ中あ한1"]
        ['latin', 'cyrillic', 'cjk', 'cjk', 'hangul', None]
    """
    if char.isascii():
        return "latin" if char.isalpha() else None
    return _script_of_non_ascii(char)


@functools.lru_cache(maxsize=8192)
def _script_of_non_ascii(char: str) -> str | None:
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    if name.startswith(_CJK_NAMES) or "IDEOGRAPH" in name:
        return "cjk"
    if name.startswith("HANGUL"):
        return "hangul"
    first = name.split(" ", 1)[0]
    return _SCRIPTS.get(first, first.lower() or None)


def dominant_script(texts: Sequence[str]) -> str | None:
    """The script most letters of ``texts`` are written in (``None`` when there are no letters)."""
    counts = Counter(script for text in texts for char in text if (script := script_of(char)))
    return counts.most_common(1)[0][0] if counts else None


def classify_cues(cues: Sequence[Cue], *, script: str | None = None) -> list[str | None]:
    """Why each cue is not dialogue (a name from `REASONS`), or ``None`` for dialogue.

    Args:
        cues: The cues of one file, as `read_subtitles` returns them.
        script: The file's script (``"latin"``, ``"cjk"``, ...); ``None`` takes the dominant one.

    Returns:
        One entry per cue, in the order of ``cues``.

    Examples:
        >>> cues = [Cue(0, 1.0, 2.0, "Hi."), Cue(1, 2.0, 3.0, "[door slams]"), Cue(2, 3.0, 3.04, "Bye.")]
        >>> classify_cues(cues)
        [None, 'description', 'flash']
    """
    reasons: list[str | None] = [_cue_reason(cue) for cue in cues]
    copies = Counter((cue.start, cue.end, cue.text) for cue in cues if cue.text)
    texts = [strip_sdh(cue.text) if reason is None else "" for cue, reason in zip(cues, reasons)]
    script = script or dominant_script([text for text, reason in zip(texts, reasons) if reason is None])
    for position, cue in enumerate(cues):
        if reasons[position] is not None:
            continue
        if copies[(cue.start, cue.end, cue.text)] > 1:
            reasons[position] = "layered"
        elif not texts[position]:
            reasons[position] = "description"
        elif script is not None and _foreign(texts[position], script):
            reasons[position] = "other_script"
        elif _all_caps(texts[position]):
            reasons[position] = "sign"
    if not any(cue.style for cue in cues):
        _mark_overlays(cues, reasons)  # in ASS files on-screen text has its own styles; dialogue overlaps freely
    return reasons


def dialogue_only(
    cues: Sequence[Cue], *, keep: Collection[str] = (), strip: bool = True, script: str | None = None
) -> tuple[list[Cue], dict[int, str]]:
    """The dialogue cues of one file, SDH removed, and the cues left out with their reason.

    Args:
        cues: The cues of one file.
        keep: Reasons to keep anyway (``{"song"}`` keeps lyrics; ``{"all"}`` keeps everything).
        strip: Remove SDH labels, descriptions and furigana from the kept cues' text (`strip_sdh`).
        script: The file's script; ``None`` takes the dominant one.

    Returns:
        ``(kept cues with their original index, {Cue.index: reason} for the others)``.

    Raises:
        ValueError: ``keep`` names an unknown reason.
    """
    unknown = set(keep) - set(REASONS) - {"all"}
    if unknown:
        raise ValueError(f"unknown reason(s) to keep: {', '.join(sorted(unknown))}; choose from {', '.join(REASONS)}")
    kept: list[Cue] = []
    excluded: dict[int, str] = {}
    for cue, reason in zip(cues, classify_cues(cues, script=script)):
        if reason is not None and reason not in keep and "all" not in keep:
            excluded[cue.index] = reason
            continue
        text = strip_sdh(cue.text) if strip else cue.text
        kept.append(replace(cue, text=text or cue.text))
    return kept, excluded


def _cue_reason(cue: Cue) -> str | None:
    raw = cue.raw or cue.text
    if _DRAWING.search(raw):
        return "drawing"
    if not cue.text.strip():
        return "empty"
    if cue.end <= cue.start:
        return "zero_length"
    if cue.end - cue.start < _FLASH:
        return "flash"
    style_reason = _style_reason(cue.style)
    if style_reason is not None:
        return style_reason
    if _KARAOKE.search(raw) and not set(re.findall(r"[a-z]+", cue.style.lower())) & _DIALOGUE_STYLE_WORDS:
        return "karaoke"
    if _POSITIONED.search(raw):
        return "positioned"
    if _CREDIT_TEXT.search(cue.text):
        return "credit"
    stripped = cue.text.strip()
    if stripped[0] in _MUSIC or stripped[-1] in _MUSIC:
        return "song"
    return None


def _style_reason(style: str) -> str | None:
    if not style:
        return None
    lowered = style.lower()
    words = set(re.findall(r"[a-z]+", lowered))
    for reason in ("credit", "song", "sign"):
        if words & _STYLE_WORDS[reason]:
            return reason
    if _GLUED_SONG.match(re.sub(r"[^a-z0-9]", "", lowered)):
        return "song"
    return None


def _foreign(text: str, script: str) -> bool:
    """Under 30% of the text's units in ``script``: a CJK character is a unit, so is a run of other letters."""
    units: list[str] = []
    previous = None
    for char in text:
        found = script_of(char)
        if found is not None and (found == "cjk" or found != previous):
            units.append(found)
        previous = found
    return len(units) >= 2 and sum(found == script for found in units) < 0.3 * len(units)


def _all_caps(text: str) -> bool:
    words = [
        word for word in re.findall(r"[^\W\d_]{2,}", text) if script_of(word[0]) in ("latin", "cyrillic", "greek")
    ]
    return len(words) >= 2 and all(word.isupper() for word in words)


def _mark_overlays(cues: Sequence[Cue], reasons: list[str | None]) -> None:
    """Mark cues overlapping two or more other dialogue cues by over 0.2 s each (a sweep in start order).

    Greedy, most overlaps first, each marked cue no longer counting for its partners: a dialogue line overlapped
    by a name card and by a date caption is left alone once both captions are marked.
    """
    live = sorted((position for position, reason in enumerate(reasons) if reason is None), key=lambda p: cues[p].start)
    partners: dict[int, list[int]] = {position: [] for position in live}
    active: list[int] = []
    for position in live:
        cue = cues[position]
        active = [other for other in active if cues[other].end > cue.start + 0.2]
        for other in active:
            if min(cues[other].end, cue.end) - cue.start > 0.2:
                partners[other].append(position)
                partners[position].append(other)
        active.append(position)
    degree = {position: len(found) for position, found in partners.items()}
    for position in sorted(live, key=lambda p: -degree[p]):
        if degree[position] >= 2:
            reasons[position] = "overlay"
            for other in partners[position]:
                degree[other] -= 1
