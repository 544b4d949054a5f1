"""Split a subtitle file that holds two languages into one file per language, by script.

The usual Chinese release is bilingual (中英双语): each event holds the Chinese line and the English line separated by
``\\N`` (``我们走吧\\NLet's go``), sometimes with their own override tags (``中文{\\r}\\N{\\fs14}English``); other
files put each language in its own events and styles (``Dial-JP`` and ``Dial-CH`` in a Japanese-Chinese release).
Read as one language such a file pairs nothing. `split_bilingual` decides each ``\\N``-separated part's language
from its script (`classify.script_of`): Latin, Cyrillic, Hangul, Chinese (Han without kana) and Japanese (kana, or Han
in a style whose lines are mostly Japanese) are told apart; two languages written in the same script (en and fr)
cannot be. Parts with no letters (``1985``, drawings) go to both files. Timing, styles, override tags and the file's
header are kept, so each half renders as the original did.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import pysubs2

from trl_seqpo.subtitles.classify import script_of
from trl_seqpo.subtitles.io import SubtitleFile, subtitle_file_from_events

__all__ = ["language_of", "script_of_language", "split_bilingual", "split_output_paths"]

_SCRIPT_OF_LANGUAGE = {
    "zh": "zh",
    "yue": "zh",
    "cmn": "zh",
    "ja": "ja",
    "ko": "hangul",
    "ru": "cyrillic",
    "uk": "cyrillic",
    "bg": "cyrillic",
    "sr": "cyrillic",
    "el": "greek",
    "ar": "arabic",
    "he": "hebrew",
    "th": "thai",
}
# Language words in style names (``Dial-JP``, ``OP-CHS``, ``ED-CN``, ``Eng``); digits are dropped first.
_STYLE_LANGUAGE_WORDS = {
    "ja": {"jp", "jpn", "ja", "jap", "jpsc"},
    "zh": {"cn", "ch", "chs", "cht", "sc", "tc", "zh", "chn", "gb", "big"},
    "latin": {"en", "eng", "english"},
}
_DRAWING = re.compile(r"\{[^}]*\\p[1-9]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_PART = re.compile(r"\\N")
_LANGUAGE_TAG = re.compile(r"^(?:[a-z]{2,3}(?:[-_&][A-Za-z0-9]{2,8})*|[A-Z]{2,6})$")


def script_of_language(lang: str) -> str:
    """The script a language code is written in: ``"zh"``, ``"ja"`` (CJK told apart by kana), ``"cyrillic"``, ...

    Examples:
        >>> [script_of_language(lang) for lang in ("zh-Hant", "en", "ja", "ru")]
        ['zh', 'latin', 'ja', 'cyrillic']
    """
    return _SCRIPT_OF_LANGUAGE.get(re.split(r"[-_.]", lang.lower(), maxsplit=1)[0], "latin")


def language_of(text: str, langs: tuple[str, str]) -> str | None:
    """Which of two languages ``text`` is written in, from its script; ``None`` when it has no letters.

    Examples:
        >>> [language_of(text, ("zh", "en")) for text in ("我们走吧", "Let's go!", "1985")]
        ['zh', 'en', None]
        >>> language_of("行こう", ("ja", "zh")), language_of("走吧", ("ja", "zh"))
        ('ja', 'zh')
    """
    counts: Counter[str] = Counter()
    latin = 0
    for char in text:
        if char.isascii():
            latin += char.isalpha()
            continue
        found = script_of(char)
        if found == "cjk":
            found = "kana" if _KANA.match(char) else "han"
        if found is not None:
            counts[found] += 2 if found in ("kana", "han") else 1  # a CJK character carries more than a letter
    counts["latin"] += latin
    scripts = {lang: script_of_language(lang) for lang in langs}
    if set(scripts.values()) == {"zh", "ja"} and (counts["kana"] or counts["han"]):
        return next(lang for lang in langs if scripts[lang] == ("ja" if counts["kana"] else "zh"))
    score = {
        lang: counts["kana"] + counts["han"] if script in ("zh", "ja") else counts[script]
        for lang, script in scripts.items()
    }
    best = max(langs, key=lambda lang: score[lang])
    return best if score[best] else None


def split_bilingual(file: SubtitleFile, langs: tuple[str, str]) -> dict[str, SubtitleFile]:
    """Split a two-language subtitle file into one `SubtitleFile` per language (see the module docstring).

    Args:
        file: The bilingual file, as `read_subtitle_file` returns it.
        langs: The two language codes, e.g. ``("zh", "en")``.

    Returns:
        ``{lang: SubtitleFile}`` for both languages, events in the original order.

    Raises:
        ValueError: The two languages share a script, or one of them has (almost) no lines in the file.
    """
    first, second = langs
    if first == second or script_of_language(first) == script_of_language(second):
        raise ValueError(f"cannot split {first} from {second}: both are written in {script_of_language(first)} script")
    parts_of: list[list[tuple[str, str | None]]] = []
    for event in file.subs.events:
        parts = [part for part in _PART.split(event.text) if part]
        parts_of.append([(part, language_of(_plain(part), langs)) for part in parts])
    style_language = _style_languages(file.subs, parts_of, langs)
    for position, (event, parts) in enumerate(zip(file.subs.events, parts_of)):
        if len({lang for _, lang in parts if lang is not None}) == 1 and event.style in style_language:
            parts_of[position] = [(text, style_language[event.style] if lang else None) for text, lang in parts]
    halves = {lang: copy.copy(file.subs) for lang in langs}
    for lang in langs:
        halves[lang].events = []
    for event, parts in zip(file.subs.events, parts_of):
        languages = {lang for _, lang in parts if lang is not None}
        for lang in langs:
            kept = [text for text, found in parts if found in (lang, None)]
            if any(found == lang for _, found in parts) or (kept and not languages):
                halves[lang].events.append(copy.copy(event))
                halves[lang].events[-1].text = r"\N".join(kept)
    result = {lang: subtitle_file_from_events(halves[lang], file.format) for lang in langs}
    lettered = sum(1 for parts in parts_of if any(found is not None for _, found in parts))
    for lang in langs:
        with_text = sum(1 for parts in parts_of if any(found == lang for _, found in parts))
        if with_text < max(1, 0.05 * lettered):
            raise ValueError(
                f"the file holds almost no {lang} lines ({with_text} of {lettered} cues with text): "
                f"not a {first}+{second} bilingual file"
            )
    return result


def split_output_paths(path: str | Path, langs: tuple[str, str], folder: str | Path) -> dict[str, Path]:
    """Where `trl-seqpo subtitles split` writes each language: ``FOLDER/STEM.LANG.EXT``.

    A last dot-part that names languages (``show.eng_chs.srt``, ``show.JPSC.ass``) is dropped from the stem.

    Examples:
        >>> split_output_paths("film.eng_chs.srt", ("zh", "en"), "out")
        {'zh': PosixPath('out/film.zh.srt'), 'en': PosixPath('out/film.en.srt')}
    """
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    base, dot, tag = stem.rpartition(".")
    if dot and base and _LANGUAGE_TAG.match(tag):
        stem = base
    return {lang: Path(folder) / f"{stem}.{lang}{path.suffix}" for lang in langs}


def _plain(ass_text: str) -> str:
    if _DRAWING.search(ass_text):
        return ""  # vector drawing commands ("m 0 0 l 10 0"), not text
    return pysubs2.SSAEvent(text=ass_text).plaintext


def _style_languages(
    subs: pysubs2.SSAFile, parts_of: list[list[tuple[str, str | None]]], langs: tuple[str, str]
) -> dict[str, str]:
    """The language of each one-language style: named so (``OP-JP2``, ``Dial-CH``), else 60% of its events."""
    votes: dict[str, Counter[str]] = {}
    for event, parts in zip(subs.events, parts_of):
        languages = {lang for _, lang in parts if lang is not None}
        if len(languages) == 1:
            votes.setdefault(event.style, Counter())[languages.pop()] += 1
    styles = {}
    for style in subs.styles:
        words = set(re.findall(r"[a-z]+", style.lower()))
        for lang in langs:
            if words & _STYLE_LANGUAGE_WORDS.get(script_of_language(lang), set()):
                styles[style] = lang
    for style, counter in votes.items():
        if style in styles:
            continue
        lang, count = counter.most_common(1)[0]
        if count >= 0.6 * sum(counter.values()) and sum(counter.values()) >= 5 and len(votes) > 1:
            styles[style] = lang
    return {style: lang for style, lang in styles.items() if lang in langs}
