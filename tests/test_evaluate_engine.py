"""Evaluation on a GPU budget: engine flags reach the loader, and the engine is freed before COMET is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import word_emitting_model

from trl_seqpo.cli.main import main
from trl_seqpo.evaluate import common
from trl_seqpo.evaluate import metrics as quality
from trl_seqpo.evaluate.simt import SimTEvalConfig
from trl_seqpo.rollout import loading
from trl_seqpo.synthetic import language_pair as synthetic


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return word_emitting_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def events(monkeypatch, model_dir):
    """Record the loader's options, the engine's release and each COMET call, in order."""
    log: list[tuple[str, dict]] = []
    real_load = loading.load_backend

    def load_backend(model, backend="hf", **options):
        log.append(("load", {"backend": backend, **options}))
        loaded = real_load(model, "hf", device="cpu")  # a real model decodes; the vLLM options are only recorded
        real_close = loaded.close
        loaded.close = lambda: (log.append(("close", {})), real_close())
        return loaded

    def comet_scores(sources, hypotheses, references, model=None, *, kind="comet", batch_size=16):
        log.append(("comet", {"model": model, "batch_size": batch_size, "rows": len(hypotheses)}))
        return [0.5] * len(hypotheses)

    monkeypatch.setattr(loading, "load_backend", load_backend)
    monkeypatch.setattr(quality, "comet_scores", comet_scores)
    monkeypatch.setattr(common, "check_metric_dependencies", lambda *args, **kwargs: None)
    return log


def _data(tmp_path: Path, n: int = 4) -> Path:
    examples = synthetic.generate_corpus(n, seed=2, max_words=6)
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"source": e.source, "reference": e.reference}) + "\n" for e in examples))
    return path


def test_vllm_flags_reach_the_loader_and_the_engine_is_freed_before_comet(events, model_dir, tmp_path):
    args = ["evaluate", "simt", "--model", str(model_dir), "--data", str(_data(tmp_path)), "--output-dir",
            str(tmp_path / "out"), "--backend", "vllm", "--gpu-memory-utilization", "0.45", "--tensor-parallel-size",
            "2", "--max-model-len", "1024", "--comet-model", "my/comet", "--comet-batch-size", "3",
            "--chunk-sizes", "2", "3", "--target-lang", "Synthetic", "--max-new-tokens-per-step", "3",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    names = [name for name, _ in events]
    assert names == ["load", "close", "comet", "comet"]  # both points decoded, engine closed, then COMET per point
    load = events[0][1]
    assert load["backend"] == "vllm"
    assert (load["gpu_memory_utilization"], load["tensor_parallel_size"], load["max_model_len"]) == (0.45, 2, 1024)
    assert all(details["batch_size"] == 3 and details["model"] == "my/comet" for name, details in events[2:])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["metric_models"] == {"COMET": "my/comet"}
    assert results["runs"][0]["metrics"]["COMET"] == 0.5


def test_a_finished_run_rescored_on_resume_does_not_load_the_model(events, model_dir, tmp_path):
    args = ["evaluate", "simt", "--model", str(model_dir), "--data", str(_data(tmp_path)), "--output-dir",
            str(tmp_path / "out"), "--target-lang", "Synthetic", "--max-new-tokens-per-step", "3",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    events.clear()
    assert main([*args, "--resume", "--comet-model", "my/comet"]) == 0
    assert [name for name, _ in events] == ["comet"]


def test_subtitles_engine_is_freed_before_comet(events, tmp_path):
    from tiny_models import line_writing_model

    from trl_seqpo.subtitles.documents import Document

    model = line_writing_model(tmp_path / "lines")
    pairs = synthetic.generate_corpus(6, seed=1, max_words=5)
    documents = [
        Document(f"show-{n}", [e.source for e in pairs[n::2]], [e.reference for e in pairs[n::2]]) for n in (0, 1)
    ]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(document.to_dict()) + "\n" for document in documents))
    args = ["evaluate", "subtitles", "--model", str(model), "--documents", str(path), "--output-dir",
            str(tmp_path / "out"), "--comet-model", "my/comet", "--comet-batch-size", "5", "--max-model-len", "64",
            "--max-new-tokens-per-line", "4", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert [name for name, _ in events] == ["load", "close", "comet"]
    assert events[0][1]["max_model_len"] == 64 and events[2][1]["batch_size"] == 5


def test_engine_fields_are_the_loaders_own_options():
    import inspect

    parameters = inspect.signature(loading.load_backend).parameters
    assert set(common.EvalConfig.engine_fields) <= set(parameters)
    config = SimTEvalConfig(model="m", data="d", output_dir="o", seed=7, max_model_len=512, dtype="bfloat16")
    assert config.engine_options() == {"device": None, "dtype": "bfloat16", "seed": 7, "gpu_memory_utilization": None,
                                       "tensor_parallel_size": None, "max_model_len": 512}  # fmt: skip
