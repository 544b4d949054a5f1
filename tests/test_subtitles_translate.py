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
    assert counts["cue_status"][2] == "not_dialogue" and counts["failed"] == 0
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


SRT = (
    "1\n00:00:01,000 --> 00:00:03,000\nthe cat sees the dog\n\n"
    "2\n00:00:03,500 --> 00:00:05,000\na big house\n\n"
    "3\n00:00:05,500 --> 00:00:07,000\n♪ the red bird ♪\n\n"
    "4\n01:02:03,000 --> 01:02:05,250\nthe dog runs\n"
)


def silent_model(path):
    """A model that writes nothing useful: every output weight zeroed, so greedy decoding repeats token 0."""
    import torch
    from transformers import AutoModelForCausalLM

    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    save_tiny_model(path, seed=2, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(path)
    return path


def test_a_model_that_writes_nothing_useful_exits_1_and_counts_the_failed_lines(tmp_path, capsys):
    source, out = tmp_path / "show.srt", tmp_path / "show.zh.srt"
    source.write_text(SRT, encoding="utf-8")
    model = silent_model(tmp_path / "silent")
    args = ["subtitles", "translate", str(source), "-o", str(out), "--model", str(model), "--tgt-lang", "zh",
            "--max-new-tokens-per-line", "2", "--device", "cpu"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "3 dialogue cues: 0 translated, 0 regenerated one by one, 3 failed" in err
    assert "1 not dialogue" in err and "untranslated dialogue cues: 1, 2, 4" in err
    assert [cue.text for cue in read_subtitle_file(out).cues] == [cue.text for cue in read_subtitle_file(source).cues]
    assert main([*args, "--allow-untranslated"]) == 0


def test_a_model_that_translates_exits_0_with_every_dialogue_cue_translated_and_timings_kept(
    model_dir, tmp_path, capsys
):
    source, out = tmp_path / "show.srt", tmp_path / "show.zh.srt"
    source.write_text(SRT, encoding="utf-8")
    args = ["subtitles", "translate", str(source), "-o", str(out), "--model", str(model_dir), "--tgt-lang", "zh",
            "--max-new-tokens-per-line", "6", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "3 dialogue cues" in err and " 0 failed" in err and "reading speed (chinese limits 9 cps" in err
    before, after = read_subtitle_file(source).cues, read_subtitle_file(out).cues
    assert [(c.start, c.end) for c in after] == [(c.start, c.end) for c in before]
    assert after[3].start == 3723.0  # 01:02:03 past the first hour
    for k in (0, 1, 3):
        assert after[k].text.strip() and after[k].text != before[k].text
    assert after[2].text == before[2].text  # a song: not dialogue, kept as it was


def test_keep_translates_the_named_non_dialogue_cues(tmp_path):
    source = tmp_path / "show.srt"
    source.write_text(SRT, encoding="utf-8")
    cues = read_subtitle_file(source).cues
    assert [len(d.source_lines) for d in plan_documents(cues)[0]] == [3]
    assert [len(d.source_lines) for d in plan_documents(cues, keep=["song"])[0]] == [4]
    with pytest.raises(ValueError, match="unknown reason"):
        plan_documents(cues, keep=["songs"])


class NumberedBackend:
    """Answers a whole document with ``answer(n)`` and a line prompt with ``"i.T<i>\\n"`` (char tokenizer)."""

    def __init__(self, tokenizer, answer):
        self.tokenizer, self.answer, self.line_prompts = tokenizer, answer, []

    def generate(self, prompts, params):
        from trl_seqpo.rollout.engine import GenerationOutput

        outputs = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt)
            body = text.rsplit("Translation:\n", 1)[1]
            count = int(text.split("Translate these ", 1)[1].split(" ", 1)[0])
            if body:  # a line prompt after its prefix
                number = body.count("\n") + 1
                self.line_prompts.append(number)
                reply = f"{number}.T{number}\n"
            elif 0 in params.stop_token_ids and ord("\n") in params.stop_token_ids:  # line 1 of a line-by-line pass
                self.line_prompts.append(1)
                reply = "1.T1\n"
            else:
                reply = self.answer(count)
            outputs.append(GenerationOutput(self.tokenizer.encode(reply), [], "stop"))
        return outputs


ALL = [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("name", "answer", "regenerated"),
    [
        # lines 2 and 3 merged on one line, the rest renumbered: one line short, every later line shifted
        ("merged", lambda n: "1.A1\n2.A2 A3\n" + "".join(f"{i - 1}.A{i}\n" for i in range(4, n + 1)), ALL),
        # a line split in two and renumbered: a number past the last line
        (
            "split",
            lambda n: "1.A1\n2.A2a\n3.A2b\n" + "".join(f"{i + 1}.A{i}\n" for i in range(3, n + 1)),
            [1, 2, 3, 4, 5],
        ),
        ("clean", lambda n: "".join(f"{i}.A{i}\n" for i in range(1, n + 1)), []),
        ("one lost", lambda n: "".join(f"{i}.A{i}\n" for i in range(1, n + 1) if i != 4), [4]),
    ],
)
def test_a_misnumbered_answer_is_detected_and_generated_line_by_line(name, answer, regenerated):
    from test_alpo_sampler import CharTokenizer

    from trl_seqpo.rollout.linewise import LineDecoder
    from trl_seqpo.subtitles.documents import make_documents

    documents = make_documents([f"source {i}" for i in range(1, 6)], lines_per_document=5)
    tokenizer = CharTokenizer()
    backend = NumberedBackend(tokenizer, answer)
    decoder = LineDecoder(backend, tokenizer)
    answers = decoder.answer(documents, "en", "zh", 8)

    def translate(batch):
        return [[None] * len(a.parsed.lines) if not a.aligned else a.parsed.lines for a in answers]

    def regenerate(batch, lines):
        return decoder.complete(batch, "en", "zh", 8, lines)[0]

    record = translate_documents(documents, translate, regenerate, progress=False)[documents[0].doc_id]
    assert sorted(set(backend.line_prompts)) == regenerated
    expected = [f"T{i}" if i in regenerated else f"A{i}" for i in range(1, 6)]
    assert record["lines"] == expected
    assert record["status"] == ["regenerated" if i in regenerated else "translated" for i in range(1, 6)]


VTT = (
    "WEBVTT\nKind: captions\n\nNOTE made by hand\n\ncue-1\n00:00:01.000 --> 00:00:03.000 line:10% align:start\n"
    "<i>the cat sees the dog</i>\n\n00:00:03.500 --> 00:00:05.000\n<v Mei>a big house\n\n"
    "01:02:03.000 --> 01:02:05.250 position:20%\nthe dog runs\n"
)


def test_vtt_output_keeps_settings_notes_identifiers_and_markup(model_dir, tmp_path):
    source, out = tmp_path / "show.vtt", tmp_path / "show.zh.vtt"
    source.write_text(VTT, encoding="utf-8")
    assert main(["subtitles", "translate", str(source), "-o", str(out), "--model", str(model_dir), "--tgt-lang",
                 "zh", "--max-new-tokens-per-line", "6", "--device", "cpu"]) == 0  # fmt: skip
    text = out.read_text(encoding="utf-8")
    lines = text.split("\n")
    kept = [
        "WEBVTT",
        "Kind: captions",
        "NOTE made by hand",
        "cue-1",
        "00:00:01.000 --> 00:00:03.000 line:10% align:start",
    ]
    for line in [*kept, "01:02:03.000 --> 01:02:05.250 position:20%"]:
        assert line in lines, line
    payloads = [lines[lines.index(timing) + 1] for timing in lines if "-->" in timing]
    assert payloads[0].startswith("<i>") and payloads[0].endswith("</i>") and "cat" not in payloads[0]
    assert payloads[1].startswith("<v Mei>") and "house" not in payloads[1]
    assert [(c.start, c.end) for c in read_subtitle_file(out).cues] == [(1.0, 3.0), (3.5, 5.0), (3723.0, 3725.25)]


def test_an_unknown_reason_to_keep_exits_2_before_the_model_loads(tmp_path, capsys):
    source = tmp_path / "show.srt"
    source.write_text(SRT, encoding="utf-8")
    args = ["subtitles", "translate", str(source), "-o", str(tmp_path / "out.srt"), "--model", str(tmp_path / "none"),
            "--tgt-lang", "zh", "--keep", "songs"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--keep: unknown reason(s) to keep: songs" in err and err.count("\n") == 1
