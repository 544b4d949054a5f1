"""Tell a subtitle file's text encoding, and refuse a decoding whose text is implausible.

Order: a byte-order mark (UTF-8, UTF-16 LE/BE), UTF-16 without a BOM (from the NUL bytes), strict UTF-8, then a
charset detector (charset-normalizer) over the legacy code pages subtitle files come in: GB18030/GBK, Big5,
windows-1250/1251/1252, Shift-JIS and the ISO-8859 family.

Byte-level detection alone is not enough for short files: 2 KB of windows-1250 Serbian is also valid GB18030,
and decodes to rare Chinese characters glued to Latin letters (``衖no!``). Every candidate decoding is
therefore checked against its script (`implausible_reason`): Chinese text must be made mostly of the
frequent characters (the 3,755 of GB2312 level 1, JIS X 0208 level 1, or Big5's "frequently used" block), Korean
text must be mostly the 2,350 KS X 1001 syllables and not mixed with Chinese characters, half-width katakana must be
rare, and no text may hold control characters. A file none of whose candidate decodings is plausible is refused
with a message asking for ``--source-encoding``/``--target-encoding`` rather than read as nonsense.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata

import charset_normalizer

from trl_seqpo.errors import UserInputError

__all__ = ["decode_subtitle_bytes", "decode_with_note", "implausible_reason"]

# Encodings tried after UTF-8, besides charset-normalizer's own proposals (in this order on a tie).
_LEGACY = ("gb18030", "big5", "cp1252", "cp1250", "cp1251", "shift_jis")
_WORD = re.compile(r"[^\W\d_]+")
# Bytes the charset detector looks at (the whole file is still decoded and checked): 32 KB is ~10x faster than 200 KB.
_DETECTOR_SAMPLE = 32_768
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_HALFWIDTH_KANA = re.compile(r"[\uff61-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# a Chinese character between Latin letters ("Gr廻 Gott" is "Grüß Gott" in cp1252 read as a double-byte code page)
_HAN_CLASS = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_GLUED_HAN = re.compile(rf"(?<=[A-Za-z]){_HAN_CLASS}|{_HAN_CLASS}(?=[A-Za-z])")
# Share of Chinese characters that must be frequent ones for a decoding to count as Chinese text.
_MIN_FREQUENT_HAN = 0.6
# Single-byte code pages in order of preference on a tie (how often subtitle files come in them).
_PREFERRED = ("cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "cp1257", "cp1251")
# Common accented letters above which a single-byte guess is taken as certain (no warning).
_CONFIDENT_ACCENTS = 8
# Accented letters frequent in French, Spanish, Portuguese, Italian, German, the Nordic languages, Czech, Polish
# and Serbo-Croatian; rare ones ("ŕ", "ð", "ì") are left out on purpose.
_COMMON_ACCENTED = frozenset("éèàçêâôûîëïüöäßñáíóúãõåæøčćšžđřěůąęłńśźż")
# Frequent characters of written Chinese, simplified and traditional forms, to choose between GB18030 and Big5.
_COMMON_HANZI = frozenset(
    "的一是不了人我在有他这這个個们們中来來上大为為和国國地到以说說时時要就出会會也你对對生能而子那得于"
)


def decode_subtitle_bytes(data: bytes, *, path: str = "<bytes>", encoding: str | None = None) -> str:
    """Decode a subtitle file's bytes, normalising line ends to ``"\\n"`` (see the module docstring).

    `decode_with_note` also says when the encoding was a guess.

    Args:
        data: Raw file content.
        path: File name used in error messages.
        encoding: Force this encoding instead of detecting one (no plausibility check: the user knows best).

    Returns:
        The text, without BOM, with ``"\\n"`` line ends.

    Raises:
        UserInputError: The bytes are not text in ``encoding``, or no candidate encoding gives plausible text.

    Examples:
        >>> decode_subtitle_bytes("Đorđe, dođi ovamo!".encode("cp1250"))
        'Đorđe, dođi ovamo!'
    """
    return decode_with_note(data, path=path, encoding=encoding)[0]


def decode_with_note(data: bytes, *, path: str = "<bytes>", encoding: str | None = None) -> tuple[str, str | None]:
    """`decode_subtitle_bytes`, plus a warning line when the encoding is not certain, else ``None``.

    Not certain: a short file in a single-byte code page that another plausible code page reads as different
    letters with as many common accents (the bytes alone cannot tell them apart).

    Examples:
        >>> decode_with_note("Schöne Grüße".encode("cp1252"))
        ('Schöne Grüße', None)
    """
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except LookupError as exc:
            raise UserInputError(f"unknown encoding {encoding!r}", path=path) from exc
        except UnicodeDecodeError as exc:
            raise UserInputError(f"not valid {encoding} text (byte {exc.start})", path=path) from exc
        return _check_nul(_normalise_newlines(text.removeprefix("\ufeff")), path), None
    if data.startswith(b"\xef\xbb\xbf"):
        forced = "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        forced = "utf-16"
    elif len(data) >= 4 and data[1:200:2].count(0) > 0.4 * len(data[1:200:2]) and 0 not in data[0:200:2]:
        forced = "utf-16-le"
    elif len(data) >= 4 and data[0:200:2].count(0) > 0.4 * len(data[0:200:2]) and 0 not in data[1:200:2]:
        forced = "utf-16-be"
    else:
        forced = None
    if forced is not None:
        try:
            return _check_nul(_normalise_newlines(data.decode(forced).removeprefix("\ufeff")), path), None
        except UnicodeDecodeError as exc:
            raise UserInputError(
                f"starts like {forced} but does not decode as it; pass --source-encoding/--target-encoding", path=path
            ) from exc
    with contextlib.suppress(UnicodeDecodeError):
        return _check_nul(_normalise_newlines(data.decode("utf-8")), path), None
    _check_nul(data.decode("latin-1"), path)
    plausible: dict[str, str] = {}
    rejected: list[str] = []
    for name in _candidates(data):
        try:
            text = data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        reason = implausible_reason(text)
        if reason is None:
            plausible.setdefault(name, text)
        else:
            rejected.append(f"{name}: {reason}")
    if not plausible:
        tried = "; ".join(rejected[:3]) or "no legacy encoding decodes it"
        raise UserInputError(
            f"cannot tell the text encoding ({tried}); pass --source-encoding/--target-encoding "
            "(or convert the file to UTF-8)",
            path=path,
        )
    names = list(plausible)
    best = names[0]
    if best in ("gb18030", "big5") and {"gb18030", "big5"} <= set(names):
        best = max(("gb18030", "big5"), key=lambda name: sum(char in _COMMON_HANZI for char in plausible[name]))
    note = None
    if len(plausible[best]) == len(data):  # a single-byte code page (cp1252, latin-1, mac_iceland, ...)
        # Short Latin-script files fit several code pages equally well (byte E0 is "à" in cp1252, "ŕ" in cp1250):
        # prefer the decoding with more of the accented letters European languages use often, then the usual
        # Windows code pages over the detector's exotic proposals (mac_iceland reads "Grüße" as "Gr¸þe").
        latin = [name for name in names if len(plausible[name]) == len(data)]
        order = {name: (_PREFERRED.index(name) if name in _PREFERRED else len(_PREFERRED)) for name in latin}
        best = max(latin, key=lambda name: (_common_accents(plausible[name]), -order[name], -latin.index(name)))
        score = _common_accents(plausible[best])
        rivals = [n for n in latin if _common_accents(plausible[n]) == score and plausible[n] != plausible[best]]
        if rivals and score < _CONFIDENT_ACCENTS:
            note = (
                f"{path}: the text encoding is a guess ({best}; {rivals[0]} reads its accented letters otherwise); "
                "pass --encoding (align: --source-encoding/--target-encoding) if they look wrong"
            )
    return _normalise_newlines(plausible[best]), note


def implausible_reason(text: str) -> str | None:
    """Why ``text`` cannot be a correct decoding of a subtitle file, or ``None`` when it may be.

    Args:
        text: A candidate decoding.

    Returns:
        ``None`` for plausible text; else a short reason (control characters, rare Chinese characters).

    Examples:
        >>> implausible_reason("我该走了")
        >>> implausible_reason("衖，鎒！")
        'only 0% of its 2 Chinese characters are common ones'
        >>> implausible_reason("Gr廻 Gott")
        '1 of its 1 Chinese characters sit inside Latin words (a Latin code page misread)'
    """
    controls = sum(1 for char in text if unicodedata.category(char) == "Cc" and char not in "\t\n\r")
    if controls > max(2, len(text) // 1000):
        return f"{controls} control characters"
    latin_words = [word for word in _WORD.findall(text) if len(word) > 2 and all(_is_latin(char) for char in word)]
    accented = sum(1 for word in latin_words if 2 * sum(ord(char) > 127 for char in word) > len(word))
    if latin_words and accented > 0.3 * len(latin_words):
        return f"{accented} of its {len(latin_words)} Latin-script words are mostly accented letters"
    han = _HAN.findall(text)
    glued = len(_GLUED_HAN.findall(text))
    if han and glued > 0.3 * len(han):
        return f"{glued} of its {len(han)} Chinese characters sit inside Latin words (a Latin code page misread)"
    hangul = _HANGUL.findall(text)
    if hangul:
        rare = sum(1 for char in hangul if not _encodes(char, "euc_kr"))
        if rare > 0.2 * len(hangul) or len(han) > 0.1 * (len(han) + len(hangul)):
            return f"{len(hangul)} Hangul syllables, {rare} of them rare, mixed with {len(han)} Chinese characters"
    halfwidth = len(_HALFWIDTH_KANA.findall(text))
    if halfwidth > 0.05 * (len(han) + halfwidth) and halfwidth > 2:
        return f"{halfwidth} half-width katakana"
    if han:
        frequent = sum(_is_frequent_han(char) for char in han)
        if frequent < _MIN_FREQUENT_HAN * len(han):
            return f"only {100 * frequent // len(han)}% of its {len(han)} Chinese characters are common ones"
    return None


def _is_latin(char: str) -> bool:
    return char.isascii() or "LATIN" in unicodedata.name(char, "")


#: the frequently used han block of each legacy encoding: (encoding, lead bytes compared, first and last code).
_FREQUENT_HAN_BLOCKS: tuple[tuple[str, int, int, int], ...] = (
    ("gb2312", 1, 0xB0, 0xD7),  # GB2312 level 1 (rows 16-55)
    ("shift_jis", 1, 0x88, 0x98),  # JIS X 0208 level 1
    ("big5", 2, 0xA440, 0xC67E),  # Big5's frequently used characters
)


def _is_frequent_han(char: str) -> bool:
    """In GB2312 level 1 (rows 16-55), JIS X 0208 level 1 or Big5's frequently used block (A440-C67E)."""
    for encoding, width, first, last in _FREQUENT_HAN_BLOCKS:
        try:
            code = int.from_bytes(char.encode(encoding)[:width], "big")
        except UnicodeEncodeError:
            continue
        if first <= code <= last:
            return True
    return False


def _encodes(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _common_accents(text: str) -> int:
    return sum(char.lower() in _COMMON_ACCENTED for char in text if ord(char) > 127)


def _candidates(data: bytes) -> list[str]:
    names: list[str] = []
    for match in charset_normalizer.from_bytes(data[:_DETECTOR_SAMPLE]):
        if match.encoding not in ("utf_8", "ascii"):
            names.append(match.encoding)
    for name in _LEGACY:
        if name not in names:
            names.append(name)
    return names


def _check_nul(text: str, path: str) -> str:
    if "\x00" in text:
        raise UserInputError("not a text file (contains NUL bytes); expected a subtitle file", path=path)
    return text


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
