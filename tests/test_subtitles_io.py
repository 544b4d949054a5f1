"""Reading and writing subtitle files: formats, markup stripping, encodings, and errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import atomic_output
from trl_seqpo.subtitles.io import Cue, read_subtitles, write_subtitles

DATA = Path(__file__).parent / "data" / "subtitles"

CHINESE_SRT = "1\n00:00:01,000 --> 00:00:02,500\n我们这个时候要说的话\n\n2\n00:00:03,000 --> 00:00:04,000\n他来了\n"
TRADITIONAL_SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\n我們這個時候要說的話\n\n2\n00:00:03,000 --> 00:00:04,000\n他來了\n"
)


def test_srt_markup_and_line_breaks_are_normalised():
    cues = read_subtitles(DATA / "harbour.en.srt")
    assert len(cues) == 11
    assert [cue.index for cue in cues] == list(range(11))
    assert cues[1] == Cue(1, 64.5, 67.8, "The ferry broke down halfway across the bay,\nso I walked the last mile.", 6)
    assert cues[8].text == "You never decide. You just disappear."  # <i> ... </i> removed


def test_ass_override_tags_comments_and_drawings():
    cues = read_subtitles(DATA / "harbour.zh.ass")
    texts = [cue.text for cue in cues]
    assert len(cues) == 13  # the Comment event is not a cue
    assert texts[0] == "本字幕仅供学习交流"  # {\an8\fad(300,300)} removed
    assert texts[1] == "第一集 归途"
    assert texts[3] == "渡轮在海湾中间抛锚了\n我只好走完最后一英里"  # {\i1}..{\i0} removed, \N -> newline
    assert texts[4] == ""  # {\p1} vector drawing: nothing to translate
    assert texts[6] == "快坐下 别着凉了"
    assert texts[9] == "我还没想好"  # karaoke timing tags removed
    assert texts[10] == "你从来都想不好 就知道躲"  # \h hard space
    assert (cues[2].start, cues[2].end, cues[2].line) == (62.4, 63.9, 18)


def test_webvtt_and_microdvd(tmp_path):
    vtt = tmp_path / "clip.vtt"
    vtt.write_text(
        "WEBVTT\n\nintro\n00:01.500 --> 00:03.000 align:start\n<v Mei>Sit <b>down</b>.\n\n"
        "00:00:04.000 --> 00:00:05.250\nNow.\n",
        encoding="utf-8",
    )
    cues = read_subtitles(vtt)
    assert [(cue.start, cue.end, cue.text, cue.line) for cue in cues] == [
        (1.5, 3.0, "Sit down.", 4),
        (4.0, 5.25, "Now.", 7),
    ]
    sub = tmp_path / "clip.sub"
    sub.write_text("{25}{75}Sit down.|Now.\n{100}{150}Before you catch cold.\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="frame rate"):
        read_subtitles(sub)
    cues = read_subtitles(sub, fps=25)
    assert [(cue.start, cue.end, cue.text) for cue in cues] == [
        (1.0, 3.0, "Sit down.\nNow."),
        (4.0, 6.0, "Before you catch cold."),
    ]


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (CHINESE_SRT, "utf-8"),
        (CHINESE_SRT, "utf-8-sig"),
        (CHINESE_SRT, "utf-16"),  # BOM
        (CHINESE_SRT, "utf-16-le"),  # no BOM: found from the NUL bytes
        (CHINESE_SRT, "utf-16-be"),
        (CHINESE_SRT, "gbk"),
        (TRADITIONAL_SRT, "big5"),
        (CHINESE_SRT.replace("\n", "\r\n"), "gbk"),
    ],
)
def test_encodings_are_detected(tmp_path, text, encoding):
    path = tmp_path / "show.zh.srt"
    path.write_bytes(text.encode(encoding))
    cues = read_subtitles(path)
    expected = [line for line in text.replace("\r\n", "\n").split("\n") if line and line[0] in "我他"]
    assert [cue.text for cue in cues] == expected


def test_forced_encoding_and_undecodable_file(tmp_path):
    path = tmp_path / "show.srt"
    path.write_bytes(CHINESE_SRT.encode("gbk"))
    with pytest.raises(UserInputError, match="not valid utf-8 text"):
        read_subtitles(path, encoding="utf-8")
    assert read_subtitles(path, encoding="gbk")[1].text == "他来了"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x80\x81")
    with pytest.raises(UserInputError) as info:
        read_subtitles(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("1\n00:00:01,000 --> 00:00:02,000\nHi.\n\n2\n00:00:03,000 --> 00:00:0", 6, "truncated SRT block"),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi.\n\n2\n", 5, "truncated SRT block"),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi.\n\n2\n00:00:03,000 --> 00:00:04,000\n\n", 6, "truncated SRT block"),
        (
            "1\n00:00:01,000 --> 00:00:02,000\nHi.\n\n2\n00:00:03,000 -> 00:00:04,000\nBye.\n",
            6,
            "timestamp does not parse",
        ),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi.\n\n2\nHello again.\n", 6, "expected a timing line"),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi.\n\n2\n00:00:03,0x0 --> 00:00:04,000\nBye.\n", 6, "does not parse"),
        ("1\n00:00:05,000 --> 00:00:04,000\nHi.\n", 2, "ends before it starts"),
    ],
)
def test_bad_srt_names_the_line(tmp_path, content, line, message):
    path = tmp_path / "bad.srt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserInputError, match=message) as info:
        read_subtitles(path, strict=True)
    assert (info.value.path, info.value.line) == (str(path), line)


def test_inverted_event_in_a_format_without_line_checks(tmp_path):
    # MicroDVD has no timing-line scan: the event loop itself drops or (strict) refuses an inverted event
    path = tmp_path / "film.sub"
    path.write_text("{25}{50}Hello there.\n{100}{75}Backwards.\n{125}{150}Bye.\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="dropped 1 event"):
        cues = read_subtitles(path, fps=25)
    assert [cue.text for cue in cues] == ["Hello there.", "Bye."]
    with pytest.raises(UserInputError, match="ends before it starts") as info:
        read_subtitles(path, fps=25, strict=True)
    assert info.value.path == str(path)


def test_bad_ass_names_the_line(tmp_path):
    fields = "Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"
    head = f"[Script Info]\nScriptType: v4.00+\n\n[Events]\nFormat: {fields}\n"
    path = tmp_path / "bad.ass"
    path.write_text(
        head
        + "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,Hi\n"
        + "Dialogue: 0,0:00:0x.00,0:00:02.00,Default,,0,0,0,,Bye\n"
    )
    with pytest.raises(UserInputError, match="timestamp does not parse") as info:
        read_subtitles(path)
    assert info.value.line == 7
    path.write_text(head + "Dialogue: 0,0:00:03.00,0:00:02.00,Default,,0,0,0,,Hi\n")
    with pytest.raises(UserInputError, match="ends before it starts") as info:
        read_subtitles(path, strict=True)
    assert info.value.line == 6
    path.write_text(head + "Dialogue: 0,0:00:01.00,0:00:02.00,Default\n")
    with pytest.raises(UserInputError, match="truncated event") as info:
        read_subtitles(path)
    assert info.value.line == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("\n  \n", "file is empty"),
        ("Dear diary,\ntoday I wrote no subtitles.\n", "not a subtitle file"),
    ],
)
def test_empty_and_non_subtitle_files(tmp_path, content, message):
    path = tmp_path / "notes.srt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserInputError, match=message):
        read_subtitles(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="file not found") as info:
        read_subtitles(tmp_path / "nope.srt")
    assert info.value.path.endswith("nope.srt")


@pytest.mark.parametrize("suffix", [".srt", ".ass", ".vtt"])
def test_write_then_read_keeps_timing_and_text(tmp_path, suffix):
    cues = read_subtitles(DATA / "harbour.en.srt")
    path = tmp_path / f"copy{suffix}"
    write_subtitles(cues, path)
    again = read_subtitles(path)
    assert [cue.text for cue in again] == [cue.text for cue in cues]
    tolerance = 0.01 if suffix == ".ass" else 0.0005  # ASS stores centiseconds
    for new, old in zip(again, cues, strict=True):
        assert abs(new.start - old.start) <= tolerance and abs(new.end - old.end) <= tolerance


def test_write_needs_a_known_format(tmp_path):
    with pytest.raises(ValueError, match="format="):
        write_subtitles([Cue(0, 0.0, 1.0, "Hi.")], tmp_path / "out.subtitles")
    assert not list(tmp_path.iterdir())


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), atomic_output(target) as handle:
        handle.write("half a line")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_output(target) as handle:
        handle.write("new")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1


GERMAN = "1\n00:00:01,000 --> 00:00:02,000\nGrüß Gott!\n\n2\n00:00:03,000 --> 00:00:04,000\nSchöne Grüße, Jürgen.\n"
FRENCH = (
    "1\n00:00:01,000 --> 00:00:02,000\nÇa va?\n\n2\n00:00:03,000 --> 00:00:04,000\nOui, très bien.\n\n"
    "3\n00:00:05,000 --> 00:00:06,000\nÀ bientôt, garçon.\n"
)


GREETING = "1\n00:00:01,000 --> 00:00:02,000\nGrüß Gott!\n\n2\n00:00:03,000 --> 00:00:04,000\nJa.\n"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [(GERMAN, "cp1252"), (GREETING, "cp1252"), (GREETING, "latin-1"), (FRENCH, "latin-1")],
    ids=["german-cp1252", "greeting-cp1252", "greeting-latin1", "french-latin1"],
)
def test_short_legacy_code_page_files_decode_as_written(tmp_path, text, encoding):
    """2 cues of windows-1252 German (read as Korean/mac_iceland before) and 3 cues of Latin-1 French."""
    path = tmp_path / "short.srt"
    path.write_bytes(text.encode(encoding))
    assert [cue.text for cue in read_subtitles(path)] == [block.split("\n")[2] for block in text.split("\n\n")]


def test_an_unsure_guess_warns_with_the_file_and_the_flag(tmp_path):
    from trl_seqpo.subtitles.encoding import decode_with_note

    one_accent = "1\n00:00:01,000 --> 00:00:02,000\nDie Straße.\n".encode("cp1252")
    text, note = decode_with_note(one_accent, path="film.srt")
    assert "Straße" in text and note is not None and "film.srt" in note and "--encoding" in note
    many = ("1\n00:00:01,000 --> 00:00:02,000\nÜber Öl, Äpfel und Grüße: schön, übel, größer, später.\n").encode(
        "cp1252"
    )
    assert decode_with_note(many, path="film.srt")[1] is None  # enough common accents: no doubt
    path = tmp_path / "film.srt"
    path.write_bytes(one_accent)
    from trl_seqpo.subtitles.io import read_subtitle_file

    assert any("--encoding" in line for line in read_subtitle_file(path).warnings(path))


def test_one_list_of_formats_decides_reading_writing_translating_and_folder_listing(tmp_path, monkeypatch):
    """`EXTENSION_FORMATS` is the only list: an extension added there is written, translated to and listed."""
    from trl_seqpo.cli.subtitles import _subtitle_files
    from trl_seqpo.subtitles import io

    assert [io.output_format(f"x{ext}") for ext in io.OUTPUT_EXTENSIONS] == ["srt", "ass", "ssa", "vtt"]
    with pytest.raises(UserInputError, match=r"use \.srt, \.ass, \.ssa or \.vtt"):
        io.output_format("x.sub")  # MicroDVD is read only (frames need a frame rate)
    monkeypatch.setitem(io.EXTENSION_FORMATS, ".subrip", "srt")
    monkeypatch.setattr(io, "OUTPUT_EXTENSIONS", (*io.OUTPUT_EXTENSIONS, ".subrip"))
    assert io.output_format("x.subrip") == "srt"
    write_subtitles([Cue(0, 1.0, 2.0, "Hello")], tmp_path / "a.subrip")
    assert (tmp_path / "a.subrip").read_text(encoding="utf-8").startswith("1\n00:00:01,000 --> 00:00:02,000")
    (tmp_path / "b.txt").write_text("not a subtitle")
    assert _subtitle_files(tmp_path) == [tmp_path / "a.subrip"]
