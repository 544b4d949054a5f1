"""``trl-seqpo subtitles align|documents``: outputs, folder mode, resume, and exit code 2 for every bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trl_seqpo.cli.main import main

DATA = Path(__file__).parent / "data" / "subtitles"
GOOD_SRT = "1\n00:00:01,000 --> 00:00:02,000\nHi.\n\n2\n00:00:03,000 --> 00:00:04,000\nBye.\n"


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def groups_in(path):
    return [record for record in read_jsonl(path) if "excluded" not in record]


def test_align_writes_groups_and_summary(tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    assert (
        main(["subtitles", "align", str(DATA / "harbour.en.srt"), str(DATA / "harbour.zh.srt"), "-o", str(out)]) == 0
    )
    everything = read_jsonl(out)
    # the fansub notice is listed as left out, with its reason, not paired or counted as unmatched
    assert everything[0] == {
        "excluded": "credit",
        "side": "target",
        "line": 0,
        "text": "本字幕仅供学习交流",
        "start": 1.0,
        "end": 5.0,
    }
    records = [record for record in everything if "excluded" not in record]
    assert len(records) == 9 and len(everything) == 10
    assert set(records[0]) >= {"source_lines", "target_lines", "source", "target", "start", "end"}
    assert records[4]["target_lines"] == [6, 7] and records[4]["target"] == "你爸打了两次电话 问你过节回不回家"
    assert [r["start"] for r in records] == sorted(r["start"] for r in records)
    err = capsys.readouterr().err
    assert (
        "9 aligned groups" in err
        and "unmatched source cues: 1 (3)" in err
        and "unmatched target cues: 1 (1)" in err
        and "not dialogue: source 0 (none), target 1 (credit 1)" in err
    )
    assert (
        main(
            [
                "subtitles",
                "align",
                str(DATA / "harbour.en.srt"),
                str(DATA / "harbour.zh.srt"),
                "-o",
                str(out),
                "--keep",
                "credit",
            ]
        )
        == 0
    )
    assert not any("excluded" in record for record in read_jsonl(out))
    assert "unmatched target cues: 2 (0, 1)" in capsys.readouterr().err
    assert (
        main(
            [
                "subtitles",
                "align",
                str(DATA / "harbour.en.srt"),
                str(DATA / "harbour.zh.srt"),
                "-o",
                str(out),
                "--keep",
                "sings",
            ]
        )
        == 2
    )
    assert "unknown reason(s) to keep: sings" in capsys.readouterr().err


def test_documents_and_sft_from_aligned(tmp_path, capsys):
    aligned = tmp_path / "harbour.jsonl"
    main(["subtitles", "align", str(DATA / "harbour.en.srt"), str(DATA / "harbour.zh.ass"), "-o", str(aligned)])
    docs = tmp_path / "docs.jsonl"
    assert main(["subtitles", "documents", str(aligned), "-o", str(docs), "--lines", "4", "--context", "1"]) == 0
    records = read_jsonl(docs)
    assert [len(r["source_lines"]) for r in records] == [4, 4, 1]
    assert records[0]["doc_id"] == "harbour-0000" and records[1]["context_before"] == [records[0]["source_lines"][-1]]
    assert records[0]["target_lines"][3] == "快坐下 别着凉了"
    sft = tmp_path / "sft.jsonl"
    args = ["subtitles", "documents", str(aligned), "-o", str(sft), "--format", "sft"]
    assert main([*args, "--source-lang", "en", "--target-lang", "zh"]) == 0
    examples = read_jsonl(sft)
    assert len(examples) == 1 and examples[0]["completion"].startswith("1.你又迟到了\n2.渡轮")
    assert "wrote 1 SFT examples (9 lines)" in capsys.readouterr().err
    assert main(args) == 2
    assert "--source-lang" in capsys.readouterr().err


def make_programmes(root: Path) -> None:
    (root / "src").mkdir()
    (root / "tgt").mkdir()
    shutil.copy(DATA / "harbour.en.srt", root / "src" / "ep1.en.srt")
    shutil.copy(DATA / "harbour.zh.srt", root / "tgt" / "ep1.zh.srt")
    shutil.copy(DATA / "harbour.en.srt", root / "src" / "ep2.en.srt")
    shutil.copy(DATA / "harbour.zh.ass", root / "tgt" / "ep2.zh.ass")
    (root / "src" / "ep3.en.srt").write_text(GOOD_SRT)  # no Chinese file: reported, not an error


def test_folder_mode_two_folders_and_resume(tmp_path, capsys):
    make_programmes(tmp_path)
    out = tmp_path / "aligned"
    args = ["subtitles", "align", str(tmp_path / "src"), str(tmp_path / "tgt"), "-o", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ep1.jsonl", "ep2.jsonl"]
    assert len(groups_in(out / "ep2.jsonl")) == 9
    err = capsys.readouterr().err
    assert "aligned 2 programme(s), 0 already done" in err and "1 without a partner (ep3)" in err
    before = (out / "ep1.jsonl").read_text()
    (out / "ep2.jsonl").unlink()  # as if the run had been killed before ep2
    assert main(args) == 0
    assert "aligned 1 programme(s), 1 already done" in capsys.readouterr().err
    assert (out / "ep1.jsonl").read_text() == before and len(groups_in(out / "ep2.jsonl")) == 9


def test_folder_mode_one_folder_with_language_suffixes(tmp_path, capsys):
    folder = tmp_path / "show"
    folder.mkdir()
    shutil.copy(DATA / "harbour.en.srt", folder / "harbour.s01e01.en.srt")
    shutil.copy(DATA / "harbour.zh.srt", folder / "harbour.s01e01.zh.srt")
    out = tmp_path / "aligned"
    assert main(["subtitles", "align", str(folder), "-o", str(out)]) == 2
    assert "--source-lang and --target-lang" in capsys.readouterr().err
    assert main(["subtitles", "align", str(folder), "-o", str(out), "--source-lang", "en", "--target-lang", "zh"]) == 0
    assert [p.name for p in out.iterdir()] == ["harbour.s01e01.jsonl"]


def test_folder_mode_bad_file_stops_or_is_skipped(tmp_path, capsys):
    make_programmes(tmp_path)
    (tmp_path / "tgt" / "ep1.zh.srt").write_text("1\n00:00:05,000 --> 00:00:0x,000\n你好\n")
    out = tmp_path / "aligned"
    args = ["subtitles", "align", str(tmp_path / "src"), str(tmp_path / "tgt"), "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ep1.zh.srt:2: timestamp does not parse" in err
    assert not out.exists() or not list(out.iterdir())
    assert main([*args, "--skip-bad"]) == 0
    assert [p.name for p in out.iterdir()] == ["ep2.jsonl"]
    assert "1 unreadable" in capsys.readouterr().err


BAD_INPUTS = {
    "missing file": (None, "bad.srt: file not found"),
    "not a subtitle file": ("Shopping list\n- rice\n- tea\n", "bad.srt: not a subtitle file"),
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad.srt: not a text file"),
    "truncated block": (GOOD_SRT + "\n3\n00:00:05,000 --> 00:00:0", "bad.srt:10: truncated SRT block"),
    "truncated after number": (GOOD_SRT + "\n3\n", "bad.srt:9: truncated SRT block"),
    "bad timestamp": (GOOD_SRT.replace("00:00:03,000", "00:00:03.5OO"), "bad.srt:6: timestamp does not parse"),
    "only cue ends before start": (
        GOOD_SRT.split("\n\n")[0].replace("00:00:02,000", "00:00:00,500") + "\n",
        "bad.srt: no subtitle cues found",
    ),
    "empty file": ("", "bad.srt: file is empty"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("side", ["source", "target"])
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, capsys, case, side):
    content, message = BAD_INPUTS[case]
    bad = tmp_path / "bad.srt"
    if content is not None:
        bad.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    good = tmp_path / "good.srt"
    good.write_text(GOOD_SRT)
    out = tmp_path / "out" / "pairs.jsonl"
    files = [str(bad), str(good)] if side == "source" else [str(good), str(bad)]
    assert main(["subtitles", "align", *files, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trl-seqpo: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"source": "Hi.", "target": "嗨"}\n{"source": "Bye.", "target": \n', "aligned.jsonl:2: not valid JSON"),
        (
            '{"source": "Hi.", "target": "嗨"}\n{"target": "再见"}\n',
            "aligned.jsonl:2: expected an object with a string",
        ),
        ("", "aligned.jsonl: no aligned groups"),
    ],
)
def test_documents_bad_input(tmp_path, capsys, content, message):
    aligned = tmp_path / "aligned.jsonl"
    aligned.write_text(content, encoding="utf-8")
    out = tmp_path / "docs.jsonl"
    assert main(["subtitles", "documents", str(aligned), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_bad_options_and_missing_action(tmp_path, capsys):
    good = tmp_path / "good.srt"
    good.write_text(GOOD_SRT)
    out = str(tmp_path / "o.jsonl")
    assert main(["subtitles", "align", str(good), str(good), "-o", out, "--max-start-diff", "-1"]) == 2
    assert "--max-start-diff must be >= 0" in capsys.readouterr().err
    assert main(["subtitles", "align", str(good), "-o", out]) == 2
    assert "give SOURCE and TARGET" in capsys.readouterr().err
    assert main(["subtitles", "documents", str(tmp_path / "nope.jsonl"), "-o", out, "--lines", "0"]) == 2
    assert main(["subtitles"]) == 2
    assert "align" in capsys.readouterr().err


def test_console_script_in_a_subprocess(tmp_path):
    script = Path(sys.executable).with_name("trl-seqpo")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "trl_seqpo.cli.main"]
    out = tmp_path / "pairs.jsonl"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    ok = subprocess.run(
        [*command, "subtitles", "align", str(DATA / "harbour.en.srt"), str(DATA / "harbour.zh.srt"), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0 and "9 aligned groups" in ok.stderr and len(groups_in(out)) == 9
    bad = subprocess.run(
        [*command, "subtitles", "align", str(tmp_path / "nope.srt"), str(out), "-o", str(tmp_path / "new.jsonl")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2
    assert bad.stderr == f"trl-seqpo: error: {tmp_path / 'nope.srt'}: file not found\n"


def test_subtitles_package_does_not_import_torch_or_trl():
    code = (
        "import sys, trl_seqpo.subtitles, trl_seqpo.cli.subtitles; "
        "print(sorted(name for name in ('torch', 'trl', 'transformers') if name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
