"""SeqPOConfig defaults: batch sizes derived from the group size, advantage normalisation that keeps Eq. 2's lambda."""

from __future__ import annotations

import pytest

from trl_seqpo import SeqPOConfig

CPU = {"use_cpu": True, "bf16": False, "report_to": "none"}  # TRL's own bf16 default needs a GPU


@pytest.mark.parametrize("num_generations", [2, 3, 5, 7, 8])
def test_any_num_generations_constructs_with_the_default_batch_settings(tmp_path, num_generations):
    config = SeqPOConfig(num_generations=num_generations, output_dir=str(tmp_path), **CPU)
    assert config.per_device_train_batch_size == num_generations
    assert config.generation_batch_size % num_generations == 0
    assert config.per_device_eval_batch_size == num_generations


def test_the_readme_config_constructs(tmp_path):
    config = SeqPOConfig(
        chunk_size=3, num_generations=5, beta=0.02, src_lang="English", tgt_lang="Chinese", output_dir=str(tmp_path),
        **CPU,
    )  # fmt: skip
    assert (config.per_device_train_batch_size, config.generation_batch_size, config.scale_rewards) == (5, 5, "none")


def test_explicit_batch_sizes_are_kept(tmp_path):
    config = SeqPOConfig(
        num_generations=4, per_device_train_batch_size=8, num_generations_eval=2, output_dir=str(tmp_path), **CPU
    )
    assert (config.per_device_train_batch_size, config.per_device_eval_batch_size) == (8, 2)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"scale_rewards": "group"}, "scale_rewards='group'.*fusion_lambda"),
        ({"scale_rewards": True}, "scale_rewards='group'"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "normalize_then_sum"),
    ],
)
def test_normalisations_that_cancel_lambda_are_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        SeqPOConfig(output_dir=str(tmp_path), **CPU, **overrides)


def test_batch_scaling_is_allowed(tmp_path):
    assert SeqPOConfig(output_dir=str(tmp_path), scale_rewards="batch", **CPU).scale_rewards == "batch"


def test_the_rollout_gets_every_rollout_setting_from_the_one_config(tmp_path):
    from dataclasses import asdict

    from trl_seqpo.rollout.simultaneous import SimultaneousRolloutConfig

    settings = dict(
        chunk_size=4, src_lang="German", tgt_lang="Japanese", source_unit="char", latency_unit="word",
        prompt_format="paper", max_new_tokens_per_step=17, max_steps_after_source=3, temperature=0.7,
        system_prompt="Translate.", step_end_token="<eos_step>", end_of_translation_token="<eot>",
    )  # fmt: skip
    rollout = SeqPOConfig(output_dir=str(tmp_path), **CPU, **settings).rollout_config()
    assert isinstance(rollout, SimultaneousRolloutConfig)
    expected = {**settings, "top_p": 1.0, "top_k": 0}
    expected["target_unit"] = expected.pop("latency_unit")  # SimulEval's "latency unit" is the rollout's target unit
    assert asdict(rollout) == expected


def test_the_paper_group_size_constructs_with_every_other_setting_at_its_default(tmp_path):
    # no use_cpu, no bf16: on this CPU-only machine TRL's own default (bf16=True) would be refused by transformers
    config = SeqPOConfig(num_generations=5, output_dir=str(tmp_path))
    assert config.generation_batch_size % config.num_generations == 0
    assert config.bf16 is False


@pytest.mark.parametrize("config_class", ["SeqPOConfig", "ALPOConfig"])
def test_bf16_defaults_to_what_the_machine_supports_and_an_explicit_value_is_kept(config_class, tmp_path, monkeypatch):
    import transformers.utils

    import trl_seqpo

    cls = getattr(trl_seqpo, config_class)
    extra = {"num_generations": 4} if config_class == "SeqPOConfig" else {}
    assert cls(output_dir=str(tmp_path), **extra).bf16 is False  # no bf16 GPU here
    assert cls(output_dir=str(tmp_path), use_cpu=True, bf16=True, **extra).bf16 is True  # kept as given
    monkeypatch.setattr(transformers.utils, "is_torch_bf16_gpu_available", lambda: True)
    from trl_seqpo.precision import resolve_bf16

    class Args:  # the three fields resolve_bf16 reads; a real config would ask transformers for a GPU
        bf16, fp16, use_cpu = None, False, False

    resolve_bf16(Args)
    assert Args.bf16 is True  # a bf16 GPU: TRL's default
    Args.bf16, Args.fp16 = None, True
    resolve_bf16(Args)
    assert Args.bf16 is False
