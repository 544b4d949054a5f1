"""The TRL internals trl_seqpo relies on (listed in CONTRIBUTING.md). A TRL upgrade that breaks one fails here,
with the name of the hook, before it fails somewhere deep inside a training run."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import torch
import trl
from packaging.version import Version
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

PACKAGE = Path(__file__).resolve().parents[1] / "trl_seqpo"


def _trl_module(name: str):
    """Import a TRL module, failing (never skipping) with its name when TRL moved or removed it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pytest.fail(f"TRL module {name} moved or is gone in trl {trl.__version__}: {error}")


def _trl_imports() -> dict[tuple[str, str], list[str]]:
    """(module, name) -> where trl_seqpo imports it, for every ``from trl... import ...`` in the package."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trl":
                for alias in node.names:
                    where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                    found.setdefault((node.module, alias.name), []).append(where)
    return found


def test_every_trl_name_the_package_imports_is_where_it_was():
    imports = _trl_imports()
    assert ("trl", "GRPOTrainer") in imports and ("trl.generation.vllm_client", "VLLMClient") in imports
    missing = []
    for (module, name), places in sorted(imports.items()):
        try:
            found = hasattr(importlib.import_module(module), name)
        except ImportError as error:
            missing.append(f"module {module} ({error}), imported at {places[0]}")
            continue
        if not found:
            missing.append(f"{module}.{name}, imported at {places[0]}")
    assert not missing, f"trl {trl.__version__} moved what trl_seqpo imports: " + "; ".join(missing)


def test_trl_version_is_in_the_tested_range():
    assert Version("1.16.0") <= Version(trl.__version__) < Version("1.17"), (
        f"trl {trl.__version__} is outside the range trl_seqpo was tested with (see pyproject.toml)"
    )


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory):
    """One GRPO step with a scripted `rollout_func`, recording what TRL hands to each hook SeqPO relies on."""
    from datasets import Dataset

    from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

    tokenizer = build_tokenizer(["a", "b", "c", "d", "e"])
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, head_dim=16, intermediate_size=64)
    a, b, c = (tokenizer.convert_tokens_to_ids(t) for t in ("a", "b", "c"))
    marker = tokenizer.convert_tokens_to_ids("d")  # every completion ends with it; it is not an EOS token
    seen = {"rollout": [], "reward": [], "loss_inputs": [], "logp_calls": []}

    def rollout_func(prompts, trainer):
        seen["rollout"].append((list(prompts), trainer))
        completions = [[a, b, c, a, marker] for _ in prompts]
        return {
            "prompt_ids": [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts],
            "completion_ids": completions,
            "logprobs": [[-1.0] * 5 for _ in prompts],
            "env_mask": [[1, 1, 0, 0, 1] for _ in prompts],
            "extra": [f"extra-{i}" for i in range(len(prompts))],
        }

    def reward(prompts, completions, reference, extra, log_metric, **kwargs):
        seen["reward"].append({"reference": list(reference), "extra": list(extra)})
        log_metric("contract/metric", 7.0)
        return [float(i) for i in range(len(prompts))]

    class Recording(GRPOTrainer):
        def _compute_loss(self, model, inputs):
            seen["loss_inputs"].append({k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
            return super()._compute_loss(model, inputs)

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kw):
            result = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kw
            )
            seen["logp_calls"].append((input_ids.shape, logits_to_keep, result[0].shape, result[0].requires_grad))
            return result

    dataset = Dataset.from_dict({"prompt": ["a b", "b c"], "reference": ["r0", "r1"]})
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("grpo")), per_device_train_batch_size=4, num_generations=2,
        max_steps=1, max_completion_length=16, beta=0.0, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=1, bf16=False,
    )  # fmt: skip
    trainer = Recording(
        model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer,
        rollout_func=rollout_func,
    )  # fmt: skip
    trainer.eos_token_ids = [*trainer.eos_token_ids, marker]  # as SeqPOTrainer adds its step-end token
    trainer.train()
    return trainer, seen


def test_grpo_rollout_func_is_called_with_prompts_and_trainer(grpo_run):
    trainer, seen = grpo_run
    prompts, passed = seen["rollout"][0]
    assert passed is trainer and sorted(set(prompts)) == ["a b", "b c"] and len(prompts) == 4


def test_grpo_reward_kwargs_carry_columns_extra_fields_and_log_metric(grpo_run):
    trainer, seen = grpo_run
    call = seen["reward"][0]
    assert sorted(set(call["reference"])) == ["r0", "r1"]
    assert call["extra"] == [f"extra-{i}" for i in range(4)]
    assert any(entry.get("contract/metric") == 7.0 for entry in trainer.state.log_history)


def test_grpo_masks_the_loss_with_the_env_mask(grpo_run):
    _, seen = grpo_run
    inputs = seen["loss_inputs"][0]
    mask = inputs["completion_mask"] * inputs["tool_mask"]
    assert mask[:, :5].tolist() == [[1, 1, 0, 0, 1]] * mask.size(0)


def test_grpo_log_prob_hook_scores_the_completion_for_the_loss(grpo_run):
    _, seen = grpo_run
    shape, keep, logps_shape, requires_grad = seen["logp_calls"][-1]
    assert keep == 5 and logps_shape == (shape[0], 5) and requires_grad


def test_grpo_eos_token_ids_decide_truncation(grpo_run):
    trainer, _ = grpo_run
    clipped = [e["completions/clipped_ratio"] for e in trainer.state.log_history if "completions/clipped_ratio" in e]
    assert clipped == [0.0]  # every completion ends with a token added to eos_token_ids


def test_grpo_attributes_used_by_the_rollout(grpo_run):
    trainer, _ = grpo_run
    assert trainer.use_vllm is False and trainer.num_generations == 2 and trainer.num_generations_eval == 2
    assert "train" in trainer._metrics and trainer.model_wrapped is not None
    assert hasattr(trainer.args, "ds3_gather_for_generation")
    unwrap_model_for_generation = _trl_module("trl.models.utils").unwrap_model_for_generation
    parameters = inspect.signature(unwrap_model_for_generation).parameters
    assert {"gather_deepspeed3_params", "gradient_checkpointing_kwargs"} <= set(parameters)


def test_vllm_generation_exposes_llm_and_client():
    VLLMGeneration = _trl_module("trl.generation.vllm_generation").VLLMGeneration

    source = inspect.getsource(VLLMGeneration._init_vllm)
    assert "self.llm" in source and "self.vllm_client" in source


def test_dpo_trainer_hooks_used_by_alpo():
    # ALPOTrainer overrides these methods; their signatures must stay as TRL 1.16 defines them
    expected = {
        "_compute_loss": ["self", "model", "inputs", "return_outputs"],
        "compute_ref_log_probs": ["self", "model", "inputs"],
        "_set_signature_columns_if_needed": ["self"],
        "_prepare_dataset": None,
    }
    for name, parameters in expected.items():
        assert hasattr(DPOTrainer, name), f"DPOTrainer.{name} is gone"
        if parameters is not None:
            assert list(inspect.signature(getattr(DPOTrainer, name)).parameters) == parameters, name
    assert hasattr(DPOConfig, "precompute_ref_log_probs")
    init = inspect.getsource(DPOTrainer.__init__)
    attributes = ("self.precompute_ref_logps", "self.aux_loss_enabled", "self._total_train_tokens", "self._tp_size")
    for attribute in attributes:
        assert attribute in init, f"DPOTrainer no longer sets {attribute}"
    # the loss reads summed per-token log-probs from the fused LM head
    assert "fused_lm_head=True" in inspect.getsource(DPOTrainer._compute_loss)
    DataCollatorForPreference = _trl_module("trl.trainer.dpo_trainer").DataCollatorForPreference
    assert "chosen_ids" in inspect.getsource(DataCollatorForPreference)
