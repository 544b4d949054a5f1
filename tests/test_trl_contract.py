"""The TRL internals trl_seqpo relies on (listed in CONTRIBUTING.md). A TRL upgrade that breaks one fails here,
with the name of the hook, before it fails somewhere deep inside a training run."""

from __future__ import annotations

import inspect

import pytest
import trl
from packaging.version import Version
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer


def test_trl_version_is_in_the_tested_range():
    assert Version("1.16.0") <= Version(trl.__version__) < Version("1.17"), (
        f"trl {trl.__version__} is outside the range trl_seqpo was tested with (see pyproject.toml)"
    )


def test_grpo_trainer_accepts_rollout_func():
    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters


def test_grpo_rollout_func_contract():
    source = inspect.getsource(GRPOTrainer._generate)
    # rollout_func(prompts, trainer) -> dict with these keys; extra keys are forwarded to reward functions
    assert "self.rollout_func(prompts, self)" in source
    for key in ('"prompt_ids"', '"completion_ids"', '"logprobs"'):
        assert key in source
    # env_mask marks policy tokens (1) vs inserted environment tokens (0) and becomes the loss mask
    assert 'extra_fields.pop("env_mask"' in source


def test_grpo_masks_the_loss_with_the_env_mask():
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "completion_mask * tool_mask" in source
    assert "tool_mask" in inspect.getsource(GRPOTrainer._compute_loss)


def test_grpo_reward_kwargs_carry_columns_extra_fields_and_log_metric():
    source = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert 'reward_kwargs["log_metric"]' in source
    assert "gather(rewards_per_func)" in source  # rewards are gathered after the reward functions run
    assert "inp[key] = values[i]" in inspect.getsource(GRPOTrainer._generate_and_score_completions)


def test_grpo_attributes_used_by_the_rollout():
    names = set(inspect.getsource(GRPOTrainer.__init__).split())
    for attribute in ("self.use_vllm", "self.num_generations", "self.num_generations_eval", "self._metrics"):
        assert any(attribute in token for token in names), attribute
    assert hasattr(GRPOConfig, "ds3_gather_for_generation")
    from trl.models.utils import unwrap_model_for_generation

    assert "gather_deepspeed3_params" in inspect.signature(unwrap_model_for_generation).parameters


def test_vllm_generation_exposes_llm_and_client():
    pytest.importorskip("trl.generation.vllm_generation")
    from trl.generation.vllm_generation import VLLMGeneration

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
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    assert "chosen_ids" in inspect.getsource(DataCollatorForPreference)
