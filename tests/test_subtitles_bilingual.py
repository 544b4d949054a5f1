"""Bilingual files: split by script into two files, and aligned directly (issue 14, 5 and 7)."""

from __future__ import annotations

import pytest

from trl_seqpo.cli.main import main
from trl_seqpo.subtitles.bilingual import language_of, split_bilingual, split_output_paths
from trl_seqpo.subtitles.io import read_subtitle_file

TWO_LINE_ASS = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
STYLE_FORMAT
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:03.00,Default,,0,0,0,,我们走吧{\\r}\\N{\\fs14}Let's go.{\\r}
Dialogue: 0,0:00:03.50,0:00:05.00,Default,,0,0,0,,{\\i1}等等{\\i0}\\NWait!
Dialogue: 0,0:00:06.00,0:00:08.00,Default,,0,0,0,,1985
Dialogue: 0,0:00:08.50,0:00:10.00,Default,,0,0,0,,你好\\NHello.
""".replace(
    "STYLE_FORMAT",
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
    "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, "
    "MarginV, Encoding",
)

SEPARATE_EVENTS = """[Script Info]
ScriptType: v4.00+

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
""" + "".join(
    f"Dialogue: 0,0:00:{2 * n:02d}.00,0:00:{2 * n + 1:02d}.00,Dial-JP,,0,0,0,,{ja}\n"
    f"Dialogue: 0,0:00:{2 * n:02d}.00,0:00:{2 * n + 1:02d}.00,Dial-CH,,0,0,0,,{zh}\n"
    for n, (ja, zh) in enumerate(
        [
            ("行こう", "走吧"),
            ("待って", "等等"),
            ("石動律花", "石动律花"),
            ("ありがとう", "谢谢"),
            ("本当に", "真的"),
            ("大丈夫", "没事"),
            ("そうだね", "是啊"),
        ]
    )
)


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_language_of_tells_scripts_and_chinese_from_japanese():
    assert [language_of(text, ("zh", "en")) for text in ("嗨! 大家好，我Jiun", "Hi, I'm Jiun.", "1985")] == [
        "zh",
        "en",
        None,
    ]
    assert [language_of(text, ("ja", "zh")) for text in ("ありがとう", "谢谢", "大丈夫")] == ["ja", "zh", "zh"]
    assert language_of("Привет", ("ru", "en")) == "ru"


def test_two_line_events_are_split_keeping_times_styles_and_tags(tmp_path):
    halves = split_bilingual(read_subtitle_file(write(tmp_path, "a.ass", TWO_LINE_ASS)), ("zh", "en"))
    zh, en = halves["zh"], halves["en"]
    assert [cue.text for cue in zh.cues] == ["我们走吧", "等等", "1985", "你好"]
    assert [cue.text for cue in en.cues] == ["Let's go.", "Wait!", "1985", "Hello."]
    assert [(cue.start, cue.end) for cue in zh.cues] == [(cue.start, cue.end) for cue in en.cues]
    assert zh.subs.events[1].text == "{\\i1}等等{\\i0}" and en.subs.events[0].text == "{\\fs14}Let's go.{\\r}"
    assert "Default" in en.subs.styles and en.subs.styles["Default"].fontname == "Arial"


def test_separate_events_follow_their_style_for_kanji_only_lines(tmp_path):
    halves = split_bilingual(read_subtitle_file(write(tmp_path, "a.JPSC.ass", SEPARATE_EVENTS)), ("ja", "zh"))
    assert [cue.text for cue in halves["ja"].cues] == [
        "行こう",
        "待って",
        "石動律花",
        "ありがとう",
        "本当に",
        "大丈夫",
        "そうだね",
    ]
    assert [cue.style for cue in halves["zh"].cues] == ["Dial-CH"] * 7


def test_same_script_languages_and_monolingual_files_are_refused(tmp_path):
    file = read_subtitle_file(write(tmp_path, "a.ass", TWO_LINE_ASS))
    with pytest.raises(ValueError, match="both are written in latin script"):
        split_bilingual(file, ("en", "fr"))
    with pytest.raises(ValueError, match="almost no ru lines"):
        split_bilingual(file, ("zh", "ru"))


def test_split_output_paths_drop_a_language_tag():
    assert split_output_paths("dir/film.JPSC.ass", ("ja", "zh"), "out")["ja"].as_posix() == "out/film.ja.ass"
    assert split_output_paths("film.srt", ("zh", "en"), "out")["en"].as_posix() == "out/film.en.srt"


def test_split_and_bilingual_align_commands(tmp_path, capsys):
    srt = "".join(
        f"{n}\n00:00:{2 * n:02d},000 --> 00:00:{2 * n + 1:02d},500\n{zh}\n{en}\n\n"
        for n, (zh, en) in enumerate([("我们走吧", "Let's go."), ("等等", "Wait!"), ("你好", "Hello.")], 1)
    )
    path = write(tmp_path, "film.eng_chs.srt", srt, "gb18030")
    out = tmp_path / "out"
    assert main(["subtitles", "split", str(path), "--langs", "zh,en", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["film.en.srt", "film.zh.srt"]
    assert "Wait!" in (out / "film.en.srt").read_text() and "等等" not in (out / "film.en.srt").read_text()
    assert main(["subtitles", "split", str(path), "--langs", "zh,en", "-o", str(out)]) == 0  # its own outputs
    (out / "film.zh.srt").unlink()
    (out / "film.zh.srt").write_text("someone else's file\n")  # no record of `subtitles split`
    assert main(["subtitles", "split", str(path), "--langs", "zh,en", "-o", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "film.zh.srt").read_text() == "someone else's file\n"
    aligned = tmp_path / "a.jsonl"
    args = ["subtitles", "align", str(path), "-o", str(aligned), "--source-lang", "en", "--target-lang", "zh"]
    assert main(args) == 0
    assert "(bilingual): 3 aligned groups" in capsys.readouterr().err
    assert main(["subtitles", "align", str(path), "-o", str(aligned)]) == 2
    assert "--source-lang and --target-lang" in capsys.readouterr().err
