"""WebVTT per the spec, per-file encodings with a plausibility check, and inverted events dropped (issue 14, 1)."""

from __future__ import annotations

import re
import warnings

import pytest

from trl_seqpo.errors import UserInputError
from trl_seqpo.subtitles.encoding import decode_subtitle_bytes, implausible_reason
from trl_seqpo.subtitles.io import read_subtitle_file, read_subtitles

YOUTUBE = """WEBVTT
Kind: captions
Language: en
Style:
::cue(c.colorCCCCCC) { color: rgb(204,204,204);
 }
##


00:04:46.070 --> 00:04:46.470 align:start position:0%
yeah

00:04:46.470 --> 00:05:04.080 align:start position:0%
yeah
<c.colorCCCCCC>what</c>
00:05:04.080 --> 00:05:05.069 align:start position:0%
this<00:05:04.199><c> will</c><c.colorE5E5E5><00:05:04.379><c> happen</c></c>
"""

BLOCKS = """WEBVTT - a title

NOTE
This translation was done by Kyle.

STYLE
::cue(b) { color: peachpuff; }

REGION
id:fred width:40%

intro
00:00:01.000 --> 00:00:02.000
<v Alba>Hello</v> &amp; <i>welcome</i>

2
00:00:02.500 --> 00:00:04.000 line:0 position:20%
<ruby>漢<rt>かん</rt></ruby>字

NOTE a last remark
"""


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_youtube_inline_timestamps_class_spans_and_missing_blank_lines(tmp_path):
    cues = read_subtitles(write(tmp_path, "yt.vtt", YOUTUBE))
    assert [(cue.start, cue.end, cue.text) for cue in cues] == [
        (286.07, 286.47, "yeah"),
        (286.47, 304.08, "yeah\nwhat"),
        (304.08, 305.069, "this will happen"),
    ]


def test_identifiers_notes_styles_regions_and_settings_are_not_text(tmp_path):
    cues = read_subtitles(write(tmp_path, "blocks.vtt", BLOCKS))
    assert [(cue.start, cue.end, cue.text, cue.line) for cue in cues] == [
        (1.0, 2.0, "Hello & welcome", 13),
        (2.5, 4.0, "漢字", 17),
    ]


def test_block_without_timing_is_rejected_with_its_line(tmp_path):
    text = "WEBVTT\n\n00:00:00.500 --> 00:00:07.000\nOne\n\nTwo\n\n00:00:11.890 --> 00:00:16.320\nThree\n"
    with pytest.raises(UserInputError, match="without a timing line") as info:
        read_subtitles(write(tmp_path, "bad.vtt", text))
    assert info.value.line == 6


def test_bad_vtt_timestamp_names_the_line(tmp_path):
    text = "WEBVTT\n\n00:00:00.500 --> 00:00:07.000\nOne\n\n00:00:08,000 --> 00:00:09.000\nTwo\n"
    with pytest.raises(UserInputError, match="timestamp does not parse") as info:
        read_subtitles(write(tmp_path, "bad.vtt", text))
    assert info.value.line == 6


SERBIAN = "".join(
    f"{n}\n00:00:{n:02d},000 --> 00:00:{n:02d},900\n{line}\n\n"
    for n, line in enumerate(["Čekaj, šta ćemo sada", "Mi ćemo to srediti", "Đorđe, dođi ovamo", "Žena čeka tamo"], 1)
)


def test_short_cp1250_file_is_not_read_as_chinese(tmp_path):
    assert SERBIAN.encode("cp1250").decode("gb18030", errors="strict")  # the trap: it is valid GB18030
    cues = read_subtitles(write(tmp_path, "film.sr.srt", SERBIAN, "cp1250"))
    assert cues[0].text == "Čekaj, šta ćemo sada" and cues[2].text == "Đorđe, dođi ovamo"


def test_cp1252_and_cp1251_files(tmp_path):
    french = "1\n00:00:01,000 --> 00:00:02,000\nÇa va très bien, merci à vous.\n"
    assert read_subtitles(write(tmp_path, "a.fr.srt", french, "cp1252"))[0].text == "Ça va très bien, merci à vous."
    russian = "1\n00:00:01,000 --> 00:00:02,000\nОсновано на реальных событиях. Вы слушаете?\n"
    assert read_subtitles(write(tmp_path, "a.ru.srt", russian, "cp1251"))[0].text.startswith("Основано")


def test_implausible_decodings_are_refused():
    garbage = SERBIAN.encode("cp1250").decode("gb18030")
    assert "sit inside Latin words" in implausible_reason(garbage)
    # without the Latin letters around them, the same rare characters still give the misreading away
    assert "Chinese characters are common" in implausible_reason(re.sub(r"[A-Za-z]", "", garbage))
    assert implausible_reason("都已经三周了 我们还是毫无头绪") is None
    assert implausible_reason("都已經三週了 我們還是毫無頭緒") is None
    assert implausible_reason("聽說與畫對嗎") is None  # common in Big5 only (not in GB2312 or JIS level 1)
    assert "control characters" in implausible_reason("a\x01b\x02c\x03d\x04")
    with pytest.raises(UserInputError, match="source-encoding"):  # decodes in every code page, never plausibly
        decode_subtitle_bytes("Café \x01\x02\x03\x04\x05\x06".encode("cp1252"), path="x.srt")


def test_a_detector_that_prefers_chinese_is_overruled_by_the_script_check(monkeypatch):
    from trl_seqpo.subtitles import encoding

    monkeypatch.setattr(encoding, "_candidates", lambda data: ["gb18030", "cp1250"])  # the old order
    data = SERBIAN.encode("cp1250")
    assert data.decode("gb18030")  # valid GB18030, rare characters
    assert decode_subtitle_bytes(data) == SERBIAN


def test_inverted_event_is_dropped_with_a_warning_and_refused_when_strict(tmp_path):
    fields = "Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"
    text = (
        f"[Script Info]\nScriptType: v4.00+\n\n[Events]\nFormat: {fields}\n"
        "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,Hi\n"
        "Dialogue: 0,0:00:03.00,0:00:02.99,Sign,,0,0,0,,A sign\n"
        "Dialogue: 0,0:00:04.00,0:00:05.00,Default,,0,0,0,,Bye\n"
    )
    path = write(tmp_path, "film.ass", text)
    result = read_subtitle_file(path)
    assert [cue.text for cue in result.cues] == ["Hi", "Bye"] and result.dropped_inverted == [7]
    assert "dropped 1 event(s) that end before they start (line 7)" in result.warnings(path)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(read_subtitles(path)) == 2
    assert len(caught) == 1
    with pytest.raises(UserInputError, match="ends before it starts") as info:
        read_subtitle_file(path, strict=True)
    assert info.value.line == 7
    srt = "1\n00:00:05,000 --> 00:00:04,000\nHi.\n\n2\n00:00:06,000 --> 00:00:07,000\nBye.\n"
    vtt = "WEBVTT\n\n00:00:05.000 --> 00:00:04.000\nHi.\n\n00:00:06.000 --> 00:00:07.000\nBye.\n"
    for name, content in (("a.srt", srt), ("a.vtt", vtt)):
        result = read_subtitle_file(write(tmp_path, name, content))
        assert [cue.text for cue in result.cues] == ["Bye."] and len(result.dropped_inverted) == 1


def test_times_past_the_first_hour():
    """``HH:MM:SS.mmm``: 01:02:03.000 is 3723 s, not 183 s (hours read as minutes) nor 62 min 3 s."""
    from trl_seqpo.subtitles.webvtt import parse_webvtt

    cues = parse_webvtt("WEBVTT\n\n01:02:03.000 --> 01:02:05.250\nLate\n\n10:00:00.001 --> 10:00:01.000\nLater\n")
    assert [(cue.start, cue.end) for cue in cues] == [(3_723_000, 3_725_250), (36_000_001, 36_001_000)]
