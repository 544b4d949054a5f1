"""``trl-seqpo subtitles translate``: documents as in training, lost lines generated again, file kept intact."""

from __future__ import annotations

import pysubs2
import pytest
from tiny_models import line_writing_model

from trl_seqpo.cli.main import main
from trl_seqpo.subtitles.io import read_subtitle_file
from trl_seqpo.subtitles.translate import plan_documents, translate_documents, translate_file

FIELDS = "Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"
STYLE_FIELDS = (
    "Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, "
    "StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, "
    "Encoding"
)
STYLE = "{},Arial,{},&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,0,2,10,10,10,1"
SHOW = (
    f"[Script Info]\nScriptType: v4.00+\nPlayResX: 1920\n\n[V4+ Styles]\nFormat: {STYLE_FIELDS}\n"
    f"Style: {STYLE.format('Default', 60)}\nStyle: {STYLE.format('Top', 40)}\n\n[Events]\nFormat: {FIELDS}\n"
    "Dialogue: 0,0:00:01.00,0:00:03.00,Default,,0,0,0,,{\\an8\\fad(200,0)}the cat sees the dog\n"
    "Dialogue: 0,0:00:03.50,0:00:05.00,Top,Mei,0,0,0,,{\\i1}a big house{\\i0}\\Nthe red bird\n"
    "Dialogue: 1,0:00:05.00,0:00:06.00,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100{\\p0}\n"
    "Comment: 0,0:00:06.00,0:00:07.00,Default,,0,0,0,,a note for the typesetter\n"
    "Dialogue: 0,0:00:07.00,0:00:09.50,Default,,0,0,0,,the dog runs\n"
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return line_writing_model(tmp_path_factory.mktemp("model") / "tiny")


def test_plan_documents_one_cue_per_line_with_context():
    cues = read_subtitles_text(SHOW)
    documents, indices = plan_documents(cues, lines_per_document=2, context=1)
    assert [d.source_lines for d in documents] == [
        ["the cat sees the dog", "a big house the red bird"],
        ["the dog runs"],
    ]
    assert indices == [[0, 1], [3]] and documents[1].context_before == ["a big house the red bird"]


def read_subtitles_text(text, tmp_path_factory=None):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "show.ass"
    path.write_text(text, encoding="utf-8")
    return read_subtitle_file(path).cues


def test_only_lost_lines_are_generated_again_with_their_document():
    cues = read_subtitles_text(SHOW)
    documents, _ = plan_documents(cues, lines_per_document=2, context=1)
    asked = []

    def translate(batch):
        return [["", "B"] if len(d.source_lines) == 2 else [None] for d in batch]

    def regenerate(batch, lines):
        asked.extend(zip(batch, lines))
        return [["A" if line is None else line for line in doc] if len(doc) == 2 else [""] for doc in lines]

    records = []
    results = translate_documents(
        documents, translate, regenerate, batch_size=1, on_batch=records.extend, progress=False
    )
    assert [results[d.doc_id]["lines"] for d in documents] == [["A", "B"], [""]]
    # the lost line is generated in its own document, the lines the answer kept given as they are
    assert asked[0] == (documents[0], [None, "B"]) and asked[1] == (documents[1], [None])
    assert [record["status"] for record in records] == [["regenerated", "translated"], ["failed"]]


def test_ass_round_trip_keeps_events_times_styles_and_tags(model_dir, tmp_path, capsys):
    source = tmp_path / "show.en.ass"
    source.write_text(SHOW, encoding="utf-8")
    out = tmp_path / "show.zh.ass"
    args = ["subtitles", "translate", str(source), "-o", str(out), "--model", str(model_dir), "--tgt-lang", "zh"]
    assert main([*args, "--lines", "2", "--max-new-tokens-per-line", "6", "--device", "cpu"]) == 0
    before, after = pysubs2.load(str(source)), pysubs2.load(str(out))
    assert len(after.events) == len(before.events) == 5
    assert [(e.start, e.end, e.style, e.layer, e.type) for e in after.events] == [
        (e.start, e.end, e.style, e.layer, e.type) for e in before.events
    ]
    assert set(after.styles) == {"Default", "Top"} and after.styles["Top"].fontsize == 40
    assert after.events[0].text.startswith("{\\an8\\fad(200,0)}")
    translated = [after.events[k].plaintext for k in (0, 1, 4)]
    assert all(text.strip() for text in translated)
    assert all(text != before.events[k].plaintext for text, k in zip(translated, (0, 1, 4)))
    assert after.events[2].text == before.events[2].text and after.events[3].text == before.events[3].text
    assert not (tmp_path / "show.zh.ass.partial.jsonl").exists()
    err = capsys.readouterr().err
    assert "3 dialogue cues" in err and "0 failed" in err and "1 not dialogue" in err and "reading speed" in err


def test_interrupted_run_resumes_and_bilingual_keeps_the_original(model_dir, tmp_path):
    from trl_seqpo.rollout.linewise import load_translator

    source = tmp_path / "show.ass"
    source.write_text(SHOW, encoding="utf-8")
    out = tmp_path / "show.zh.srt"
    translate, regenerate = load_translator(str(model_dir), "en", "zh", device="cpu", max_new_tokens_per_line=6)
    calls = []

    def failing(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return translate(batch)

    with pytest.raises(KeyboardInterrupt):
        translate_file(source, out, failing, regenerate, lines_per_document=2, batch_size=1, progress=False)
    assert not out.exists() and (tmp_path / "show.zh.srt.partial.jsonl").exists()
    counts = translate_file(
        source, out, failing, regenerate, lines_per_document=2, batch_size=1, bilingual=True, progress=False
    )
    assert counts["resumed"] == 1 and counts["translated"] + counts["regenerated"] == 3 and len(calls) == 3
    cues = read_subtitle_file(out).cues
    assert cues[0].text.endswith("\nthe cat sees the dog") and len(cues[0].text.split("\n")) == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "file not found"),
        ("bad", "timestamp does not parse"),
        ("format", "cannot tell the output format"),
        ("model", "model checkpoint not found"),
    ],
)
def test_bad_input_exits_2(tmp_path, capsys, setup, message, model_dir):
    source = tmp_path / "in.srt"
    if setup != "missing":
        source.write_text(
            "1\n00:00:01,000 --> 00:00:0x,000\nHi\n" if setup == "bad" else "1\n00:00:01,000 --> 00:00:02,000\nHi\n"
        )
    out = tmp_path / ("out.txt" if setup == "format" else "out.srt")
    model = str(tmp_path / "no-such-model") if setup == "model" else str(model_dir)
    assert main(["subtitles", "translate", str(source), "-o", str(out), "--model", model, "--tgt-lang", "zh"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()
