"""``trl-seqpo evaluate subtitles``: line-by-line and whole-document translation, format counts, judge, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import line_writing_model

from trl_seqpo.cli.main import main
from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig, evaluate_subtitles, line_format_problems
from trl_seqpo.rollout import loading
from trl_seqpo.rollout.engine import GenerationOutput
from trl_seqpo.subtitles.documents import Document, render_document_prompt
from trl_seqpo.synthetic import language_pair as synthetic


def write_documents(path: Path, sizes: list[int]) -> list[Document]:
    examples = iter(synthetic.generate_corpus(sum(sizes), seed=11, max_words=6))
    documents = []
    for number, size in enumerate(sizes):
        pairs = [next(examples) for _ in range(size)]
        documents.append(Document(f"show-{number:04d}", [e.source for e in pairs], [e.reference for e in pairs]))
    path.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in documents))
    return documents


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return line_writing_model(tmp_path_factory.mktemp("model") / "tiny")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_line_mode_translates_every_line_and_resumes(model_dir, tmp_path):
    documents = write_documents(tmp_path / "docs.jsonl", [3, 2, 3, 2])
    config = dict(model=str(model_dir), documents=tmp_path / "docs.jsonl", output_dir=tmp_path / "out",
                  source_lang="English", target_lang="Synthetic", batch_size=2, max_new_tokens_per_line=4,
                  progress=False)  # fmt: skip

    def interrupt(decoded: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate_subtitles(SubtitleEvalConfig(**config), on_batch=interrupt)
    assert len(read_jsonl(tmp_path / "out" / "line" / "hypotheses.jsonl")) == 2
    results = evaluate_subtitles(SubtitleEvalConfig(**config, resume=True))
    run = results["runs"][0]
    assert run["generated"] == 2
    rows = read_jsonl(tmp_path / "out" / "line" / "hypotheses.jsonl")
    assert [row["id"] for row in rows] == [d.doc_id for d in documents]
    for row, document in zip(rows, documents):
        assert len(row["hypothesis_lines"]) == len(document.source_lines)
        assert all("\n" not in line for line in row["hypothesis_lines"])
        assert row["missing_lines"] == sum(not line for line in row["hypothesis_lines"])
    counts = run["counts"]
    assert counts["documents"] == 4 and counts["lines"] == 10
    assert counts["missing_lines"] == sum(row["missing_lines"] for row in rows)
    assert counts["truncated_lines"] == sum(row["truncated_lines"] for row in rows)
    assert {"BLEU", "chrF"} <= set(run["metrics"])
    assert (tmp_path / "out" / "results.md").read_text().count("| line |") == 1


class ScriptedBackend:
    """Answers whole-document prompts with a fixed numbered text and line prompts with a fixed line."""

    def __init__(self, tokenizer, answers: dict[str, str]):
        self.tokenizer, self.answers, self.prompts = tokenizer, answers, []

    def generate(self, prompts, params):
        outputs = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt)
            self.prompts.append(text)
            squeezed = "".join(text.split())  # compare without whitespace: the tiny tokenizer's decode adds spaces
            answer = next(
                reply for start, reply in self.answers.items() if squeezed.startswith("".join(start.split()))
            )
            outputs.append(GenerationOutput(self.tokenizer(answer, add_special_tokens=False)["input_ids"], [], "stop"))
        return outputs


def test_document_mode_counts_missing_merged_and_extra_lines(model_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    documents = write_documents(tmp_path / "docs.jsonl", [4, 2])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answers = {
        render_document_prompt(documents[0], "English", "Synthetic"): "1.lo hundo\n2.un mizo 3.lo viro\n9.ci kido\n",
        render_document_prompt(documents[1], "English", "Synthetic"): "Sure!\n1.lo domo\n2.un arbo\n",
    }
    backend = ScriptedBackend(tokenizer, answers)
    monkeypatch.setattr(loading, "load_backend", lambda *args, **kwargs: loading.LoadedModel(backend, tokenizer))
    results = evaluate_subtitles(
        SubtitleEvalConfig(
            model=str(model_dir),
            documents=tmp_path / "docs.jsonl",
            output_dir=tmp_path / "out",
            mode="document",
            source_lang="English",
            target_lang="Synthetic",
            progress=False,
        )  # fmt: skip
    )
    rows = read_jsonl(tmp_path / "out" / "document" / "hypotheses.jsonl")
    assert rows[0]["hypothesis_lines"] == ["lo hundo", "un mizo", "lo viro", ""]
    assert (rows[0]["missing_lines"], rows[0]["merged_lines"], rows[0]["extra_lines"]) == (1, 1, 1)
    assert rows[1]["hypothesis_lines"] == ["lo domo", "un arbo"] and rows[1]["missing_lines"] == 0
    counts = results["runs"][0]["counts"]
    assert counts["missing_lines"] == 1 and counts["merged_lines"] == 1 and counts["documents_with_problems"] == 1
    assert counts["misaligned_documents"] == 1  # line 9 of a 4-line document: the numbering went wrong
    assert (counts["lines_over_chars_per_line"], counts["chars_per_line_limit"]) == (0, 42)


def test_judge_scores_each_aspect_per_document(model_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from trl_seqpo.synthetic.local_judge import serve

    write_documents(tmp_path / "docs.jsonl", [2, 3])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    backend = ScriptedBackend(tokenizer, {"Translate": " lo hundo\n"})  # every line prompt starts so
    monkeypatch.setattr(loading, "load_backend", lambda *args, **kwargs: loading.LoadedModel(backend, tokenizer))
    with serve() as server:
        code = main(["evaluate", "subtitles", "--model", str(model_dir), "--documents", str(tmp_path / "docs.jsonl"),
                     "--output-dir", str(tmp_path / "out"), "--source-lang", "en", "--target-lang", "de",
                     "--judge-base-url", server.base_url, "--judge-aspects", "accuracy,vividness",
                     "--no-progress"])  # fmt: skip
        requests = server.requests[1:]
    assert code == 0
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["metrics"]["Accuracy"] == 50.0 and run["metrics"]["Vividness"] == 50.0
    assert "Naturalness" not in run["metrics"] and run["counts"]["unscored_vividness"] == 0
    assert len(requests) == 4  # 2 documents x 2 aspects, one candidate each
    assert sorted(len(request.evaluated) for request in requests) == [2, 2, 3, 3]  # a document's lines
    assert {request.candidates["A"] for request in requests} == {
        "lo hundo / lo hundo",
        "lo hundo / lo hundo / lo hundo",
    }
    assert sum("ACCURACY" in request.messages[-1]["content"] for request in requests) == 2
    # each line prompt ends at the newline before its line; the model writes the number marker itself
    assert all(prompt.rstrip(" ").endswith("\n") for prompt in backend.prompts)


def test_line_format_problems_counts_merges():
    assert line_format_problems(["a", "b 3. c", "", "d"]) == {"missing_lines": 1, "merged_lines": 1}
    assert line_format_problems(["it costs 3.50", "fine"]) == {"missing_lines": 0, "merged_lines": 0}


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"doc_id": "a", "source_lines": ["hi"]}\n{"doc_id": "b"}\n',
            "docs.jsonl:2: field 'source_lines' is missing",
        ),
        ('{"doc_id": "a", "source_lines": ["hi"], "target_lines": ["x", "y"]}\n', "2 target lines for 1 source"),
        ("not json\n", "docs.jsonl:1: not valid JSON"),
    ],
)
def test_bad_documents_exit_2(content, message, tmp_path, capsys):
    (tmp_path / "docs.jsonl").write_text(content)
    code = main(["evaluate", "subtitles", "--model", str(tmp_path / "no-model"), "--documents",
                 str(tmp_path / "docs.jsonl"), "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and message in capsys.readouterr().err


def test_every_judge_rubric_is_an_evaluation_aspect_and_a_table_column(tmp_path, monkeypatch):
    """The judge's rubrics (`trl_seqpo.judge.prompts.ASPECTS`) are the one list evaluation and the tables read."""
    from trl_seqpo.evaluate.report import metric_columns
    from trl_seqpo.judge import prompts

    def config(**values):
        return SubtitleEvalConfig(model="m", documents="d.jsonl", output_dir=str(tmp_path), **values)

    assert config().judge_aspects == ("accuracy", "naturalness", "vividness")  # every rubric, as ALPO's tables
    with pytest.raises(ValueError, match="unknown judge aspect.*humour.*choose from accuracy, naturalness, vivid"):
        config(judge_aspects=("humour",))
    monkeypatch.setitem(prompts.ASPECTS, "humour", prompts.ASPECTS["vividness"])  # a new rubric, one entry
    assert config().judge_aspects == ("accuracy", "humour", "naturalness", "vividness")
    assert config(judge_aspects=("humour",)).judge_aspects == ("humour",)
    # the quality columns (aspects alphabetical) before the latency ones
    metrics = dict.fromkeys(["AL", "Vividness", "Humour", "BLEU", "Accuracy"], 1.0)
    assert metric_columns([{"metrics": metrics}]) == ["BLEU", "Accuracy", "Humour", "Vividness", "AL"]
