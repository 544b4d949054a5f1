"""SeqPOTrainer: a few real GRPO steps on the tiny model, config validation, reward wiring and failure handling."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import save_seqpo_tiny_model, seqpo_config, seqpo_train_rows

from trl_seqpo import SeqPOTrainer
from trl_seqpo.synthetic.language_pair import language_names, vocabulary
from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_seqpo_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def dataset():
    return seqpo_train_rows()


def _config(tmp_path, **overrides):
    return seqpo_config(tmp_path, **{"max_steps": 2, "gradient_checkpointing": False, **overrides})


def test_training_changes_parameters_and_logs_simt_metrics(tiny, dataset, tmp_path):
    model, tokenizer = tiny
    from transformers import AutoModelForCausalLM

    before = {n: p.detach().clone() for n, p in AutoModelForCausalLM.from_pretrained(model).named_parameters()}
    trainer = SeqPOTrainer(model=model, args=_config(tmp_path), train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed, "no parameter changed after two SeqPO steps"
    logged = {k for entry in trainer.state.log_history for k in entry}
    for key in (
        "simt/quality",
        "simt/average_lagging",
        "simt/laal",
        "simt/fused_reward",
        "simt/empty_step_fraction",
        "kl",
        "rewards/seqpo_fused/mean",
    ):
        assert key in logged, f"{key} not logged: {sorted(logged)}"


def test_unscored_rows_train_but_a_step_with_no_score_stops_with_the_rewards_name(tiny, dataset, tmp_path):
    model, tokenizer = tiny
    calls = []

    def flaky_quality(prompts, completions, **kwargs):
        calls.append(len(prompts))
        if len(calls) == 3:
            raise RuntimeError("scorer exploded")
        return [float("nan") if i % 3 == 1 else None if i % 3 == 2 else 0.1 * i for i in range(len(prompts))]

    trainer = SeqPOTrainer(
        model=model,
        reward_funcs=[flaky_quality, "average_lagging"],
        args=_config(tmp_path, beta=0.0, max_steps=3),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    with pytest.raises(ValueError, match="quality reward 'flaky_quality' scored none.*RuntimeError: scorer exploded"):
        trainer.train()
    assert len(calls) == 3 and trainer.state.global_step == 2  # two steps trained on the rows that were scored
    assert all(math.isfinite(entry.get("loss", 0.0)) for entry in trainer.state.log_history)


def test_fused_reward_uses_the_translation_not_the_raw_completion(tiny, dataset, tmp_path):
    model, tokenizer = tiny
    seen = {}

    def quality(prompts, completions, translation, reference, **kwargs):
        seen["translation"], seen["completions"] = translation, completions
        return [float(len(t.split())) for t in translation]

    trainer = SeqPOTrainer(
        model=model,
        reward_funcs=quality,
        args=_config(tmp_path, max_steps=1, beta=0.0),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    assert len(seen["translation"]) == 4
    assert all("<|im_start|>" not in t and "[END]" not in t for t in seen["translation"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"prompt_format": "streaming"}, "prompt_format"),
        ({"latency_reward": "bleu"}, "latency_reward"),
        ({"latency_truncation": "clip"}, "latency_truncation"),
        ({"num_generations": 1, "per_device_train_batch_size": 1}, "at least 2 generations"),
        ({"latency_unit": "syllable"}, "latency_unit"),
        ({"latency_floor": float("nan")}, "latency_floor"),
        ({"repetition_penalty": 1.05}, "repetition_penalty=1.05"),
        ({"min_p": 0.1}, "min_p=0.1"),
        ({"top_p": 0.9}, "top_p=0.9"),
        ({"top_k": 20}, "top_k=20"),
        ({"generation_kwargs": {"no_repeat_ngram_size": 2}}, "generation_kwargs"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"fusion_lambda": float("nan")}, "fusion_lambda"),
    ],
)
def test_config_validation(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **overrides)


def test_config_dump_redacts_secrets_in_reward_kwargs(tmp_path):
    """What logging integrations record (`to_dict`, `to_json_string`) never carries a reward's credentials."""
    config = _config(
        tmp_path,
        quality_reward="judge",
        quality_reward_kwargs={"api_key": "sk-live-123", "base_url": "http://bob:pw@judge:8000/v1", "aspect": "x"},
    )
    dumped = config.to_json_string()
    assert "sk-live-123" not in dumped and "pw@" not in dumped
    kwargs = config.to_dict()["quality_reward_kwargs"]
    assert kwargs["api_key"] == "<redacted>" and kwargs["aspect"] == "x" and "judge:8000" in kwargs["base_url"]
    assert config.quality_reward_kwargs["api_key"].reveal() == "sk-live-123"  # the trainer still gets the key


def test_dataset_without_source_column_is_rejected(tiny, tmp_path):
    from datasets import Dataset

    model, tokenizer = tiny
    with pytest.raises(ValueError, match="source"):
        SeqPOTrainer(
            model=model,
            args=_config(tmp_path),
            processing_class=tokenizer,
            train_dataset=Dataset.from_dict({"text": ["a"], "reference": ["b"]}),
        )


def test_three_rewards_are_rejected(tiny, dataset, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="exactly one quality reward"):
        SeqPOTrainer(
            model=model,
            reward_funcs=["chrf", "bleu", "laal"],
            args=_config(tmp_path),
            train_dataset=dataset,
            processing_class=tokenizer,
        )


def test_lora_and_gradient_accumulation_keep_working(tiny, dataset, tmp_path):
    peft = pytest.importorskip("peft")
    model, tokenizer = tiny
    config = _config(tmp_path, gradient_accumulation_steps=2, per_device_train_batch_size=2, max_steps=1)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = SeqPOTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora
    )
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert lora_before
    changed = [
        n for n, p in trainer.model.named_parameters() if n in lora_before and not torch.equal(lora_before[n], p)
    ]
    assert changed, "LoRA weights did not move"
    assert any("simt/average_lagging" in entry for entry in trainer.state.log_history)


def test_configured_columns_reach_the_rewards_and_the_rollout(tiny, dataset, tmp_path):
    from trl_seqpo.rewards import get_reward
    from trl_seqpo.simt.latency import reference_length

    model, tokenizer = tiny
    renamed = dataset.rename_columns({"source": "src", "reference": "ref"})
    renamed = renamed.add_column("prompt", ["decoy prompt"] * len(renamed))  # must not be what is translated
    seen = {"prompts": [], "source": [], "reference_length": [], "ref": []}
    laal = get_reward("laal")

    def recording_laal(prompts, completions, **columns):
        seen["prompts"] += list(prompts)
        seen["source"] += list(columns["source"])
        seen["ref"] += list(columns["ref"])
        seen["reference_length"] += list(columns["reference_length"])
        return laal(prompts=prompts, completions=completions, **columns)

    trainer = SeqPOTrainer(
        model=model,
        reward_funcs=["chrf", recording_laal],
        args=_config(tmp_path, max_steps=1, beta=0.0, source_column="src", reference_column="ref"),
        train_dataset=renamed,
        processing_class=tokenizer,
    )
    trainer.train()
    assert seen["prompts"] and seen["prompts"] == seen["source"]
    assert set(seen["source"]) <= set(renamed["src"]) and "decoy prompt" not in seen["prompts"]
    assert seen["reference_length"] == [reference_length(r, "word") for r in seen["ref"]]
    stds = [entry["reward_std"] for entry in trainer.state.log_history if "reward_std" in entry]
    assert stds and stds[0] > 0  # the quality reward scored the configured reference column


def test_source_column_prompt_reaches_a_reward_that_needs_the_source(tiny, dataset, tmp_path):
    from trl_seqpo.rewards.inputs import required_column

    model, tokenizer = tiny
    seen = []

    def comet_like(prompts, completions, **columns):  # COMET's contract: the source is a required column
        seen.extend(required_column(columns, "source", len(completions), "comet_like"))
        return [float(len(t)) for t in columns["translation"]]

    trainer = SeqPOTrainer(
        model=model,
        reward_funcs=[comet_like],
        args=_config(tmp_path, max_steps=1, beta=0.0, source_column="prompt"),
        train_dataset=dataset.rename_column("source", "prompt"),
        processing_class=tokenizer,
    )
    trainer.train()
    assert seen and set(seen) <= set(dataset["source"])


def test_the_readme_config_trains_with_the_default_batch_settings(tiny, dataset, tmp_path):
    """The README's `SeqPOConfig(chunk_size=3, num_generations=5, beta=0.02, ...)`: batch 5 derived, one step."""
    from trl_seqpo import SeqPOConfig

    model, tokenizer = tiny
    args = SeqPOConfig(
        chunk_size=3, num_generations=5, beta=0.02, src_lang="English", tgt_lang="Chinese",
        output_dir=str(tmp_path / "readme"), max_steps=1, max_new_tokens_per_step=4,  # CPU-sized steps
        use_cpu=True, bf16=False, report_to="none", save_strategy="no",
    )  # fmt: skip
    assert (args.per_device_train_batch_size, args.generation_batch_size) == (5, 5)
    trainer = SeqPOTrainer(
        model=model, reward_funcs=["chrf", "average_lagging"], args=args, train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    trainer.train()
    assert trainer.state.global_step == 1


def test_rollout_keeps_the_gradient_checkpointing_settings(tiny, dataset, tmp_path):
    model, tokenizer = tiny
    args = _config(tmp_path, gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True})
    trainer = SeqPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.model.gradient_checkpointing_enable(args.gradient_checkpointing_kwargs)  # as Trainer.train does

    def settings():
        return [
            m._gradient_checkpointing_func.keywords
            for m in trainer.model.modules()
            if hasattr(m, "_gradient_checkpointing_func")
        ]

    assert settings() and all(kw == {"use_reentrant": True} for kw in settings())
    trainer._simultaneous_rollout(dataset["source"][:2], trainer)
    assert trainer.model.is_gradient_checkpointing
    assert all(kw == {"use_reentrant": True} for kw in settings())


def _biased_model(tokenizer, biases):
    """The tiny model with an output bias: `biases` maps token ids to logits, every other token gets -30."""
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=1, num_heads=2, head_dim=32, intermediate_size=128)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.fill_(-30.0)
        for token_id, value in biases.items():
            head.bias[token_id] = value
    model.lm_head = head
    return model


def test_clipped_ratio_counts_budget_cuts_only_for_a_base_checkpoint_with_dr_grpo(dataset, tmp_path):
    tokenizer = build_tokenizer([*vocabulary(), *language_names()])
    im_end, eot = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    (word,) = tokenizer(" " + vocabulary()[-1], add_special_tokens=False)["input_ids"][:1]
    model = _biased_model(tokenizer, {im_end: 3.0, word: 3.0})  # steps like "w w <|im_end|>", often empty
    model.generation_config.eos_token_id = eot  # a base checkpoint: only <|endoftext|> ends generation
    args = _config(tmp_path, max_steps=2, beta=0.0, loss_type="dr_grpo", max_completion_length=256)
    trainer = SeqPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    rows = [entry for entry in trainer.state.log_history if "completions/clipped_ratio" in entry]
    assert rows and all(math.isfinite(entry["loss"]) for entry in rows)
    for entry in rows:
        assert entry["completions/clipped_ratio"] == pytest.approx(entry["simt/cut_by_budget_fraction"])
    assert any(entry["completions/clipped_ratio"] < 1.0 for entry in rows)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"])
def test_every_grpo_loss_type_is_accepted_or_refused_at_config_time(tmp_path, loss_type):
    try:
        _config(tmp_path, loss_type=loss_type)
    except ValueError as error:
        assert loss_type in str(error) and "max_completion_length" in str(error)
    else:
        assert loss_type != "dr_grpo"
    _config(tmp_path, loss_type=loss_type, max_completion_length=256)
