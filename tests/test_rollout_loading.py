"""The one checkpoint -> backend loader: clear errors for bad checkpoints, stop ids, options, and release."""

from __future__ import annotations

import json
import sys
import types

import pytest

from trl_seqpo.errors import UserInputError
from trl_seqpo.rollout import loading
from trl_seqpo.rollout.loading import LoadedModel, load_backend
from trl_seqpo.synthetic.tiny_models import save_tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = save_tiny_model(tmp_path_factory.mktemp("ckpt") / "tiny")
    config = (
        json.loads((path / "generation_config.json").read_text()) if (path / "generation_config.json").exists() else {}
    )
    config["eos_token_id"] = [1, 5]
    (path / "generation_config.json").write_text(json.dumps(config))
    return path


def test_hf_checkpoint_loads_with_its_stop_ids(checkpoint):
    loaded = load_backend(checkpoint, "hf", device="cpu", max_batch_size=2)
    assert loaded.backend.max_batch_size == 2
    assert str(next(loaded.backend.model.parameters()).device) == "cpu"
    assert set(loaded.stop_token_ids) >= {1, 5}
    assert loaded.tokenizer.eos_token_id in loaded.stop_token_ids
    loaded.close()
    assert loaded.backend is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "model checkpoint not found"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no config.json"),
        (lambda tmp: (tmp / "file.bin").write_text("x") and tmp / "file.bin", "is a file"),
    ],
)
def test_bad_checkpoints_raise_a_value_error_naming_the_path(make, message, tmp_path):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        load_backend(path)
    assert isinstance(info.value, UserInputError) and str(path) in str(info.value)


def test_bad_options_are_refused_before_loading(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        load_backend(tmp_path, "tgi")
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        load_backend(tmp_path, gpu_memory_utilization=1.5)
    with pytest.raises(ValueError, match="tensor_parallel_size must be >= 1"):
        load_backend(tmp_path, tensor_parallel_size=0)


def test_vllm_options_reach_the_engine(checkpoint, monkeypatch):
    seen = {}

    class FakeEngine:
        @classmethod
        def from_model(cls, model, **kwargs):
            seen.update(kwargs, model=model)
            return cls()

    fake = types.ModuleType("trl_seqpo.rollout.vllm")
    fake.require_vllm = lambda: None
    fake.VLLMGenerationBackend = FakeEngine
    monkeypatch.setitem(sys.modules, "trl_seqpo.rollout.vllm", fake)
    loaded = load_backend(
        checkpoint,
        "vllm",
        dtype="bfloat16",
        seed=7,
        gpu_memory_utilization=0.4,
        tensor_parallel_size=2,
        max_model_len=512,
    )
    assert isinstance(loaded.backend, FakeEngine)
    assert seen == {
        "model": str(checkpoint),
        "seed": 7,
        "dtype": "bfloat16",
        "gpu_memory_utilization": 0.4,
        "tensor_parallel_size": 2,
        "max_model_len": 512,
    }
    assert {1, 5} <= set(loaded.stop_token_ids)


def test_release_calls_close_and_drops_the_engine():
    class Engine:
        closed = False
        llm = object()

        def close(self):
            self.closed = True

    engine = Engine()
    LoadedModel(engine, tokenizer=None).close()
    assert engine.closed and engine.llm is None
    loading.release_backend(object())  # anything without a model is fine
