"""The one language table: code -> English name, the unit latency is counted in, and the BLEU tokeniser.

Every place that needs to know something about a language asks here: prompts name the language in English
(`language_name`), latency and chunking count characters for languages written without spaces between words
(`default_unit`, as SimulEval's `--eval-latency-unit char`), and BLEU picks a tokeniser that splits those languages
(`bleu_tokenizer_for`). Codes are matched on their base (`"zh-CN"`, `"zh_Hant"` -> `"zh"`); English names and the
usual ISO 639-2/3 codes are accepted too. Pure Python: no torch, no model.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LANGUAGES",
    "Language",
    "bleu_tokenizer_for",
    "default_unit",
    "language_name",
    "normalize_language",
]

Unit = Literal["word", "char"]


@dataclass(frozen=True)
class Language:
    """One row of the table.

    Args:
        code: ISO 639-1 code (or ISO 639-3 where there is none, e.g. `"yue"`).
        name: English name, as prompts write it.
        unit: `"char"` for languages written without spaces between words (latency and chunks count characters),
            else `"word"`.
        bleu_tokenizer: sacrebleu tokeniser for BLEU on this language (see `bleu_tokenizer_for`).
        aliases: Other spellings mapped to `code` (English names, ISO 639-2/3 codes), lowercase.
    """

    code: str
    name: str
    unit: Unit = "word"
    bleu_tokenizer: str = "13a"
    aliases: tuple[str, ...] = ()


LANGUAGES: dict[str, Language] = {
    row.code: row
    for row in (
        Language("ar", "Arabic", aliases=("ara", "arabic")),
        Language("de", "German", aliases=("deu", "ger", "german")),
        Language("en", "English", aliases=("eng", "english")),
        Language("es", "Spanish", aliases=("spa", "spanish")),
        Language("fr", "French", aliases=("fra", "fre", "french")),
        Language("it", "Italian", aliases=("ita", "italian")),
        # sacrebleu's "ja-mecab" needs MeCab and a dictionary (not dependencies): `bleu_tokenizer_for` falls back to
        # "char" without them; its "zh" tokeniser would leave runs of kana as one token.
        Language("ja", "Japanese", "char", "ja-mecab", ("jpn", "japanese")),
        Language("ko", "Korean", aliases=("kor", "korean")),  # written with spaces: words
        Language("pt", "Portuguese", aliases=("por", "portuguese")),
        Language("ru", "Russian", aliases=("rus", "russian")),
        Language("th", "Thai", "char", "char", ("tha", "thai")),
        Language("vi", "Vietnamese", aliases=("vie", "vietnamese")),
        Language("yue", "Cantonese", "char", "zh", ("cantonese",)),
        Language("zh", "Chinese", "char", "zh", ("zho", "chi", "cmn", "chinese", "mandarin")),
    )
}

_ALIASES: dict[str, str] = {alias: row.code for row in LANGUAGES.values() for alias in (row.code, *row.aliases)}


def normalize_language(language: str | None) -> str | None:
    """The base code of a language: `"zh-CN"`, `"zh_Hans"`, `"Chinese"`, `"cmn"` -> `"zh"`; `None` stays `None`.

    A language missing from the table is returned as its lowercase base code (`"sw-KE"` -> `"sw"`).

    Examples:
        >>> normalize_language("zh_Hans"), normalize_language("Japanese"), normalize_language("sw-KE")
        ('zh', 'ja', 'sw')
    """
    if language is None:
        return None
    key = str(language).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    base = re.split(r"[-_\s]", key, maxsplit=1)[0]
    return _ALIASES.get(base, base)


def language_name(language: str) -> str:
    """English name of a language (`"zh"`, `"zh-Hant"`, `"chinese"` -> `"Chinese"`); a string not in the table is
    returned unchanged (so a name the table lacks, e.g. `"Swahili"`, still reads well in a prompt).

    Examples:
        >>> language_name("zh-Hant"), language_name("de"), language_name("Swahili")
        ('Chinese', 'German', 'Swahili')
    """
    row = LANGUAGES.get(normalize_language(language) or "")
    return row.name if row else language


def default_unit(language: str) -> Unit:
    """The latency/chunking unit of a language: characters for Chinese, Japanese, Thai (and Cantonese), else words.

    Examples:
        >>> default_unit("zh-CN"), default_unit("Japanese"), default_unit("en")
        ('char', 'char', 'word')
    """
    row = LANGUAGES.get(normalize_language(language) or "")
    return row.unit if row else "word"


@functools.lru_cache(maxsize=1)
def _mecab_available() -> bool:
    return importlib.util.find_spec("MeCab") is not None and importlib.util.find_spec("ipadic") is not None


def bleu_tokenizer_for(target_language: str | None) -> str:
    """The sacrebleu tokeniser for BLEU on `target_language`, the same in training rewards and evaluation.

    `"zh"` (sacrebleu's Chinese tokeniser: every CJK ideograph a token) for Chinese and Cantonese; `"ja-mecab"` for
    Japanese when MeCab and its dictionary are installed (`pip install "sacrebleu[ja]"`), else `"char"`; `"char"`
    for Thai; `"13a"` (sacrebleu's default, WMT's) for every other language and for `None`.

    Examples:
        >>> bleu_tokenizer_for("zh-CN"), bleu_tokenizer_for("th"), bleu_tokenizer_for("de"), bleu_tokenizer_for(None)
        ('zh', 'char', '13a', '13a')
    """
    row = LANGUAGES.get(normalize_language(target_language) or "")
    if row is None:
        return "13a"
    if row.bleu_tokenizer == "ja-mecab" and not _mecab_available():
        return "char"
    return row.bleu_tokenizer
