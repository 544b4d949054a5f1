"""``trl-seqpo evaluate simt``: outputs, latency agreement, resume, fixed policies and errors (issue 7)."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
from tiny_models import word_emitting_model

from trl_seqpo.cli.main import main
from trl_seqpo.evaluate.simt import SimTEvalConfig, evaluate_simt
from trl_seqpo.simt.chunking import count_units
from trl_seqpo.simt.latency import (
    average_lagging,
    average_proportion,
    differentiable_average_lagging,
    length_adaptive_average_lagging,
)
from trl_seqpo.synthetic import language_pair as synthetic

COMMON = ["--source-lang", "English", "--target-lang", "Synthetic", "--max-new-tokens-per-step", "3", "--no-progress"]


def write_pairs(path: Path, n: int, seed: int = 3) -> Path:
    examples = synthetic.generate_corpus(n, seed=seed, max_words=7)
    path.write_text("".join(json.dumps({"source": e.source, "reference": e.reference}) + "\n" for e in examples))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return word_emitting_model(tmp_path_factory.mktemp("model") / "tiny")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_cli_outputs_and_latency_agree_with_latency_functions(model_dir, tmp_path, capsys):
    data = write_pairs(tmp_path / "data.jsonl", 8)
    out = tmp_path / "out"
    code = main(["evaluate", "simt", "--model", str(model_dir), "--data", str(data), "--output-dir", str(out),
                 "--chunk-sizes", "2", "--batch-size", "4", *COMMON[:-1]])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "simt m=2" in captured.err and "8/8" in captured.err  # tqdm progress bar
    assert "AL" in captured.out and "LAAL" in captured.out  # the rich table
    rows = read_jsonl(out / "model-m2" / "hypotheses.jsonl")
    assert [row["id"] for row in rows] == [str(i) for i in range(8)]
    for row in rows:
        assert len(row["delays"]) == count_units(row["translation"], "word")
        assert len(row["step_outputs"]) >= len(row["chunks"]) and "".join(row["chunks"]) == row["source"]
        assert all(1 <= d <= row["source_length"] for d in row["delays"])
    assert any(len(set(row["delays"])) > 1 for row in rows)  # the model wrote before the source ended
    results = json.loads((out / "results.json").read_text())
    metrics = results["runs"][0]["metrics"]
    ref = [count_units(row["reference"], "word") for row in rows]
    expected = {
        "AL": [average_lagging(r["delays"], r["source_length"], n) for r, n in zip(rows, ref)],
        "LAAL": [length_adaptive_average_lagging(r["delays"], r["source_length"], n) for r, n in zip(rows, ref)],
        "DAL": [differentiable_average_lagging(r["delays"], r["source_length"]) for r in rows],
        "AP": [average_proportion(r["delays"], r["source_length"], n) for r, n in zip(rows, ref)],
    }
    for name, values in expected.items():
        assert metrics[name] == pytest.approx(statistics.mean(values), abs=1e-12)
    assert 0 <= metrics["BLEU"] <= 100 and 0 <= metrics["chrF"] <= 100
    markdown = (out / "results.md").read_text()
    assert "| AL ↓ |" in markdown and "m=2" in markdown
    # MT reporting conventions: sacrebleu signatures, package versions and hardware, in both files
    assert results["signatures"]["BLEU"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|")
    assert "version:" in results["signatures"]["chrF"]
    assert results["environment"]["packages"]["sacrebleu"] and results["environment"]["hardware"]
    assert results["signatures"]["BLEU"] in markdown and "sacrebleu" in markdown
    # per-step wall-clock gives computation-aware latency, never below the plain one
    assert all(len(row["step_seconds"]) == len(row["step_outputs"]) for row in rows)
    assert metrics["AL_CA"] > metrics["AL"] and metrics["LAAL_CA"] > metrics["LAAL"]
    assert "computation-aware" in markdown


def test_resume_after_interrupt_decodes_only_missing_rows(model_dir, tmp_path):
    data = write_pairs(tmp_path / "data.jsonl", 24, seed=5)
    config = dict(model=str(model_dir), data=data, output_dir=tmp_path / "out", chunk_sizes=[3], batch_size=8,
                  source_lang="English", target_lang="Synthetic", max_new_tokens_per_step=3,
                  progress=False)  # fmt: skip

    def stop_after_first_batch(decoded: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate_simt(SimTEvalConfig(**config), on_batch=stop_after_first_batch)
    hypotheses = tmp_path / "out" / "model-m3" / "hypotheses.jsonl"
    first = hypotheses.read_text().splitlines()
    assert len(first) == 8
    with hypotheses.open("a") as handle:  # a kill in the middle of writing the next row
        handle.write('{"id": "8", "source": "the ca')
    results = evaluate_simt(SimTEvalConfig(**config, resume=True))
    assert results["runs"][0]["generated"] == 16
    lines = hypotheses.read_text().splitlines()
    assert lines[:8] == first
    assert sorted(int(json.loads(line)["id"]) for line in lines) == list(range(24))
    again = evaluate_simt(SimTEvalConfig(**config, resume=True))  # nothing left to do
    assert again["runs"][0]["generated"] == 0 and again["runs"][0]["metrics"] == results["runs"][0]["metrics"]
    with pytest.raises(ValueError, match="other settings"):
        evaluate_simt(SimTEvalConfig(**{**config, "max_new_tokens_per_step": 4}, resume=True))


def test_wait_k_and_full_sentence_respect_their_schedules(model_dir, tmp_path):
    data = write_pairs(tmp_path / "data.jsonl", 4, seed=9)
    base = dict(model=str(model_dir), data=data, output_dir=tmp_path / "out", batch_size=6, source_lang="English",
                target_lang="Synthetic", max_new_tokens_per_step=3, progress=False)  # fmt: skip
    results = evaluate_simt(SimTEvalConfig(**base, policy="wait-k", wait_k=[1, 3]))
    assert [run["label"] for run in results["runs"]] == ["k=1, m=1", "k=3, m=1"]
    for run in results["runs"]:
        rows = read_jsonl(tmp_path / "out" / run["dir"] / "hypotheses.jsonl")
        for row in rows:  # target unit i is written after reading at least min(k + i - 1, n) source units
            assert all(d >= min(run["k"] + i, row["source_length"]) for i, d in enumerate(row["delays"]))
    assert results["runs"][0]["metrics"]["AL"] < results["runs"][1]["metrics"]["AL"]
    full = evaluate_simt(SimTEvalConfig(**{**base, "output_dir": tmp_path / "full"}, policy="full-sentence"))
    rows = read_jsonl(tmp_path / "full" / "full-sentence-m3" / "hypotheses.jsonl")
    assert all(set(row["delays"]) <= {row["source_length"]} for row in rows)
    assert full["runs"][0]["metrics"]["AL"] == pytest.approx(statistics.mean(row["source_length"] for row in rows))


def test_judge_failing_mid_run_leaves_rows_unscored_and_resume_scores_them(model_dir, tmp_path):
    from trl_seqpo.synthetic.local_judge import Reply, serve

    data = write_pairs(tmp_path / "data.jsonl", 6, seed=4)
    args = ["evaluate", "simt", "--model", str(model_dir), "--data", str(data), "--output-dir", str(tmp_path / "out"),
            "--batch-size", "6", "--judge-max-retries", "0", "--judge-max-concurrency", "1", *COMMON]  # fmt: skip
    # request 0 is the reachability probe; requests 1-2 are answered, then the endpoint drops every connection
    with serve(fault=lambda request: Reply(close=True) if request.index >= 3 else None) as server:
        assert main([*args, "--judge-base-url", server.base_url]) == 0
        prompts = [request.evaluated for request in server.requests[1:3]]
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["counts"]["unscored_judge"] == 4 and run["metrics"]["Judge"] == 50.0
    assert all(len(prompt) == 1 for prompt in prompts)  # one source sentence per request
    with serve() as server:
        assert main([*args, "--judge-base-url", server.base_url, "--resume"]) == 0
        assert server.request_count == 1 + 4  # probe + the unscored rows only
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["counts"]["unscored_judge"] == 0 and run["generated"] == 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("model", "model checkpoint not found: no such folder"),
        ("columns", "data.tsv:3: column 'reference' must be a non-empty string"),
        ("header", "column 'reference' is missing (columns found: source, target)"),
        ("judge", "could not be reached"),
        ("bleurt", "pip install bleurt-pytorch"),
        ("k", "--wait-k takes positive integers"),
        ("vllm", "vLLM is not installed"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(case, message, model_dir, tmp_path, capsys):
    model, data = str(model_dir), write_pairs(tmp_path / "data.jsonl", 2)
    extra: list[str] = []
    if case == "model":
        model = str(tmp_path / "missing-model")
    elif case == "columns":
        data = tmp_path / "data.tsv"
        data.write_text("source\treference\nthe dog\tlo hundo\nthe cat\t \n")
    elif case == "header":
        data = tmp_path / "data.jsonl"
        data.write_text('{"source": "the dog", "target": "lo hundo"}\n')
    elif case == "judge":
        extra = ["--judge-base-url", "http://127.0.0.1:9/v1", "--judge-max-retries", "0"]
    elif case == "bleurt":
        if importlib.util.find_spec("bleurt_pytorch") is not None:
            pytest.skip("bleurt-pytorch is installed here")
        extra = ["--metrics", "bleu,bleurt"]
    elif case == "vllm":
        if importlib.util.find_spec("vllm") is not None:
            pytest.skip("vLLM is installed here")
        extra = ["--backend", "vllm"]
    else:
        extra = ["--policy", "wait-k", "--wait-k", "2", "0"]
    code = main(["evaluate", "simt", "--model", model, "--data", str(data), "--output-dir", str(tmp_path / "o"),
                 *COMMON, *extra])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
