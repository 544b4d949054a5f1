"""ALPOConfig and ALPOTrainer: DPO equivalence, weights under gradient accumulation, collation, EOS, stages."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from trl_seqpo.alpo.config import ALPOConfig
from trl_seqpo.alpo.pairs import build_preference_pairs
from trl_seqpo.alpo.trainer import BETA_SCALE_KEY, WEIGHT_KEY, ALPOTrainer, StageOrderedSampler
from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Translate to Synthetic :\n1. the dog sees the cat\nTranslation:\n1. "
COMPLETIONS = ["lo hundo lo mizo vidas", "lo hundo vidas", "un viro lo libo prenas", "lo kido amas", "ko domo"]
WORDS = ["Translate", "to", "Synthetic", "Translation", "the", "dog", "sees", "cat", *" ".join(COMPLETIONS).split()]
COMMON = {"use_cpu": True, "report_to": "none", "bf16": False, "gradient_checkpointing": False, "save_strategy": "no"}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(WORDS)


@pytest.fixture(scope="module")
def base_model(tokenizer):
    return build_tiny_model(tokenizer, hidden_size=64, num_layers=1, num_heads=2, head_dim=32, intermediate_size=128)


@pytest.fixture(scope="module")
def policy(base_model):
    """The reference model with its weights moved a little, so log-ratios are not zero."""
    model = copy.deepcopy(base_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model


def pairs(n=4, weights=None, beta_scales=None, ends_document=True):
    rows = {
        "prompt": [PROMPT.replace("dog", ["dog", "cat"][i % 2]) for i in range(n)],
        "chosen": [COMPLETIONS[i % 5] + "\n" for i in range(n)],
        "rejected": [COMPLETIONS[(i + 2) % 5] + "\n" for i in range(n)],
        "weight": weights or [1.0] * n,
        "beta_scale": beta_scales or [1.0] * n,
        "ends_document": [ends_document] * n,
    }
    return Dataset.from_dict(rows)


def collate(trainer, n):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def loss_and_grads(trainer, batch):
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("precompute", [False, True])
def test_one_line_documents_weight_one_constant_beta_equal_dpo(tmp_path, tokenizer, base_model, policy, precompute):
    dataset = pairs(4)
    ref = None if precompute else base_model
    settings = {**COMMON, "beta": 0.3, "per_device_train_batch_size": 4, "precompute_ref_log_probs": precompute}
    dpo = DPOTrainer(
        model=copy.deepcopy(base_model if precompute else policy),
        ref_model=copy.deepcopy(ref) if ref is not None else None,
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **settings),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    alpo = ALPOTrainer(
        model=copy.deepcopy(base_model if precompute else policy),
        ref_model=copy.deepcopy(ref) if ref is not None else None,
        args=ALPOConfig(output_dir=str(tmp_path / "alpo"), **settings),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    if precompute:  # the reference log-probs came from the initial weights: now move both policies the same way
        for trainer in (dpo, alpo):
            trainer.model.load_state_dict(policy.state_dict())
    batch_dpo, batch_alpo = collate(dpo, 4), collate(alpo, 4)
    assert torch.equal(batch_dpo["input_ids"], batch_alpo["input_ids"])
    loss_dpo, grads_dpo = loss_and_grads(dpo, batch_dpo)
    loss_alpo, grads_alpo = loss_and_grads(alpo, batch_alpo)
    assert loss_dpo.item() != pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-4)  # non-trivial margins
    torch.testing.assert_close(loss_alpo, loss_dpo, rtol=1e-6, atol=1e-6)
    assert grads_alpo.keys() == grads_dpo.keys()
    for name, grad in grads_dpo.items():
        torch.testing.assert_close(grads_alpo[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def one_sgd_step(tmp_path, tokenizer, model, dataset, normalize_weights):
    """Parameter change of one optimiser step: 2 micro-batches of one pair, SGD lr 1 -> minus the gradient."""
    args = ALPOConfig(
        output_dir=str(tmp_path / normalize_weights),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=2,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=0.0,
        normalize_weights=normalize_weights,
        **COMMON,
    )
    trainer = ALPOTrainer(
        model=copy.deepcopy(model), ref_model=copy.deepcopy(model), args=args, train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    return {name: before[name] - p.detach() for name, p in trainer.model.named_parameters()}, trainer


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors.values()])


@pytest.mark.slow
def test_weights_act_with_one_pair_per_device_and_gradient_accumulation(tmp_path, tokenizer, base_model):
    weights = [0.9, 0.1]
    dataset = pairs(2, weights=weights)
    step_document, trainer = one_sgd_step(tmp_path, tokenizer, base_model, dataset, "document")
    step_micro, _ = one_sgd_step(tmp_path, tokenizer, base_model, dataset, "micro_batch")
    step_plain, _ = one_sgd_step(tmp_path, tokenizer, base_model, dataset, "none")

    # the authors' per-micro-batch normalisation: at one pair per micro-batch the weights cancel
    torch.testing.assert_close(flat(step_micro), flat(step_plain), rtol=1e-5, atol=1e-8)
    # document normalisation: the accumulated step is the gradient of sum_i w_i l_i / sum_i w_i over both pairs
    reference = copy.deepcopy(trainer)
    reference.model.load_state_dict(base_model.state_dict())
    reference.args.normalize_weights = "micro_batch"
    _, expected = loss_and_grads(reference, collate(reference, 2))
    torch.testing.assert_close(flat(step_document), flat(expected), rtol=1e-4, atol=1e-7)
    assert not torch.allclose(flat(step_document), flat(step_plain), rtol=1e-3, atol=1e-6)


def test_weight_and_beta_columns_survive_collation(tmp_path, tokenizer, base_model):
    dataset = pairs(4, weights=[0.1, 0.2, 0.3, 0.4], beta_scales=[1.0, 0.5, 0.25, 0.75])
    trainer = ALPOTrainer(
        model=copy.deepcopy(base_model), ref_model=copy.deepcopy(base_model), train_dataset=dataset,
        args=ALPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, prefix_mix_order="shuffle",
                        dataloader_drop_last=False, seed=0, **COMMON),
        processing_class=tokenizer,
    )  # fmt: skip
    assert trainer.args.remove_unused_columns
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(batch[WEIGHT_KEY].tolist()) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert sorted(batch[BETA_SCALE_KEY].tolist()) == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert trainer.mean_weight == pytest.approx(0.25)


def test_loss_uses_per_row_beta(tmp_path, tokenizer, base_model, policy):
    """beta_scale 0.5 on every row equals constant beta / 2."""
    kwargs = {"model": copy.deepcopy(policy), "ref_model": copy.deepcopy(base_model), "processing_class": tokenizer}
    half = ALPOTrainer(train_dataset=pairs(2, beta_scales=[0.5, 0.5]), args=ALPOConfig(str(tmp_path), **COMMON),
                       **kwargs)  # fmt: skip
    plain = ALPOTrainer(train_dataset=pairs(2), args=ALPOConfig(str(tmp_path), beta=0.5, **COMMON), **kwargs)
    half.model.train(), plain.model.train()
    torch.testing.assert_close(
        half.compute_loss(half.model, collate(half, 2)), plain.compute_loss(plain.model, collate(plain, 2))
    )
    metrics = half._metrics["train"]
    assert metrics["alpo/mean_beta"][-1] == pytest.approx(0.5)
    assert {"alpo/weighted_margin", "rewards/accuracies"} <= set(metrics)


@pytest.mark.parametrize("loss_type", ["simpo", "grpo"])
def test_loss_variants_train(tmp_path, tokenizer, base_model, policy, loss_type):
    dataset = pairs(2).add_column("chosen_advantage", [1.2, 0.8]).add_column("rejected_advantage", [-0.3, 0.1])
    trainer = ALPOTrainer(
        model=copy.deepcopy(policy), ref_model=copy.deepcopy(base_model), train_dataset=dataset,
        args=ALPOConfig(str(tmp_path), alpo_loss_type=loss_type, **COMMON), processing_class=tokenizer,
    )  # fmt: skip
    loss, grads = loss_and_grads(trainer, collate(trainer, 2))
    assert torch.isfinite(loss)
    assert flat(grads).abs().sum() > 0


def test_grpo_without_advantage_columns_is_refused(tmp_path, tokenizer, base_model):
    with pytest.raises(ValueError, match="chosen_advantage"):
        ALPOTrainer(
            model=copy.deepcopy(base_model),
            ref_model=copy.deepcopy(base_model),
            train_dataset=pairs(2),
            args=ALPOConfig(str(tmp_path), alpo_loss_type="grpo", **COMMON),
            processing_class=tokenizer,
        )


def test_missing_weight_column_says_how_to_fix(tmp_path, tokenizer, base_model):
    with pytest.raises(ValueError, match="weight_column=None"):
        ALPOTrainer(model=copy.deepcopy(base_model), ref_model=copy.deepcopy(base_model),
                    train_dataset=pairs(2).remove_columns("weight"), args=ALPOConfig(str(tmp_path), **COMMON),
                    processing_class=tokenizer)  # fmt: skip


def test_eos_only_after_the_last_unit_of_a_document(tmp_path, tokenizer, base_model):
    dataset = pairs(2)
    dataset = dataset.remove_columns("ends_document").add_column("ends_document", [False, True])
    trainer = ALPOTrainer(model=copy.deepcopy(base_model), ref_model=copy.deepcopy(base_model), train_dataset=dataset,
                          args=ALPOConfig(str(tmp_path), **COMMON), processing_class=tokenizer)  # fmt: skip
    eos = tokenizer.eos_token_id
    inner, last = trainer.train_dataset[0], trainer.train_dataset[1]
    assert inner["chosen_ids"][-1] != eos and inner["rejected_ids"][-1] != eos
    assert last["chosen_ids"][-1] == eos and last["rejected_ids"][-1] == eos
    trl_style = ALPOTrainer(model=copy.deepcopy(base_model), ref_model=copy.deepcopy(base_model),
                            train_dataset=dataset, processing_class=tokenizer,
                            args=ALPOConfig(str(tmp_path), eos_at_document_end=False, **COMMON))  # fmt: skip
    assert trl_style.train_dataset[0]["chosen_ids"][-1] == eos


def test_pairs_from_builder_train_in_stage_order_and_log_gated_fraction(tmp_path, tokenizer, base_model):
    candidates = [("lo hundo vidas", 90), ("lo kido amas", 70), ("ko domo", 60), ("un viro", 40), ("lo mizo", 20)]
    records = [
        {"doc_id": f"d{d}", "unit_index": i, "line_ids": [i], "source": "s", "reference": None,
         "document_prompt": "Translate to Synthetic :\nTranslation:\n", "prefix": ["lo mizo"] * i,
         "candidates": [{"text": t, "origin": "policy", "score": s} for t, s in candidates],
         "judge_failed": d == 0 and i == 0}
        for d in range(2) for i in range(2)
    ]  # fmt: skip
    dataset, stats = build_preference_pairs(records, prefix_mix_stages=3)
    trainer = ALPOTrainer(model=copy.deepcopy(base_model), ref_model=copy.deepcopy(base_model), train_dataset=dataset,
                          args=ALPOConfig(str(tmp_path), **COMMON), processing_class=tokenizer,
                          pair_stats=stats.to_dict())  # fmt: skip
    assert trainer.pair_stats["gated_fraction"] == pytest.approx(0.25)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, StageOrderedSampler)
    stages = [dataset[i]["stage"] for i in sampler]
    assert stages == sorted(stages) and len(stages) == 9
    trainer.model.train()
    trainer.compute_loss(trainer.model, collate(trainer, 2))
    assert trainer._metrics["train"]["alpo/gated_fraction"] == [pytest.approx(0.25)]


def test_stage_sampler_shuffles_inside_stages():
    sampler = StageOrderedSampler([2, 0, 1, 0, 2, 1, 0], seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(7))
    assert [[2, 0, 1, 0, 2, 1, 0][i] for i in order] == [0, 0, 0, 1, 1, 2, 2]


def test_config_defaults_follow_table9_and_authors_code(tmp_path):
    config = ALPOConfig(str(tmp_path), use_cpu=True, report_to="none")
    assert (config.beta, config.learning_rate, config.num_train_epochs) == (1.0, 1e-6, 1.0)
    assert config.max_length is None  # never drop or cut a long document row (TRL's DPO default is 1024)
    assert not hasattr(config, "prefix_mix_start")  # the schedule is set where the pairs are built
    assert config.alpo_loss_type == "sigmoid" and config.normalize_weights == "document"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"alpo_loss_type": "ipo"}, "alpo_loss_type"),
        ({"loss_type": ["hinge"]}, "alpo_loss_type"),
        ({"normalize_weights": "batch"}, "normalize_weights"),
        ({"beta": -0.1}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"simpo_gamma": float("nan")}, "simpo_gamma"),
        ({"grpo_kl_coef": float("nan")}, "grpo_kl_coef"),
        ({"max_length": 0}, "max_length"),
        ({"prefix_mix_order": "random"}, "prefix_mix_order"),
        ({"use_weighting": True}, "use_weighting"),
        ({"grpo_epsilon": 0.0}, "grpo_epsilon"),
    ],
)
def test_config_rejects_bad_values_with_a_hint(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        ALPOConfig(str(tmp_path), use_cpu=True, report_to="none", **overrides)


@pytest.mark.slow
def test_example_script_runs_two_steps_on_cpu_and_saves_a_checkpoint(tmp_path):
    output_dir = tmp_path / "out"
    script, config = REPO / "examples/scripts/alpo.py", REPO / "examples/configs/alpo_synthetic.yaml"
    command = [
        sys.executable,
        str(script),
        "--config",
        str(config),
        "--max_steps",
        "2",
        "--output_dir",
        str(output_dir),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (output_dir / "checkpoint-2" / "model.safetensors").exists()
    assert (output_dir / "model.safetensors").exists()
    state = json.loads((output_dir / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


@pytest.mark.slow
def test_peft_adapter_trains_without_a_reference_model(tmp_path, tokenizer, base_model):
    peft = pytest.importorskip("peft")
    args = ALPOConfig(str(tmp_path), per_device_train_batch_size=2, max_steps=2, learning_rate=1e-2, **COMMON)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    trainer = ALPOTrainer(
        model=copy.deepcopy(base_model), args=args, train_dataset=pairs(4, weights=[0.1, 0.2, 0.3, 0.4]),
        processing_class=tokenizer, peft_config=lora,
    )  # fmt: skip
    assert trainer.ref_model is None  # the reference is the base model with the adapter disabled
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)


def test_simpo_loads_no_reference_model(tmp_path, tokenizer, base_model):
    args = ALPOConfig(str(tmp_path), alpo_loss_type="simpo", per_device_train_batch_size=2, **COMMON)
    trainer = ALPOTrainer(
        model=copy.deepcopy(base_model), args=args, train_dataset=pairs(2), processing_class=tokenizer
    )
    assert trainer.ref_model is None and args.precompute_ref_log_probs is False
    assert "ref_chosen_logps" not in trainer.train_dataset.column_names
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, collate(trainer, 2))
    assert torch.isfinite(loss)
    # the sigmoid loss does load a reference (here it fails: the in-memory test model has no checkpoint to load from)
    sigmoid = ALPOConfig(str(tmp_path), per_device_train_batch_size=2, **COMMON)
    with pytest.raises(OSError):
        ALPOTrainer(model=copy.deepcopy(base_model), args=sigmoid, train_dataset=pairs(2), processing_class=tokenizer)


def hand_logps(model, prompt_ids, completion_ids):
    """Summed log-probability of ``completion_ids`` after ``prompt_ids``, from one plain forward pass."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    positions = range(len(prompt_ids) - 1, ids.shape[1] - 1)
    return sum(logprobs[t, ids[0, t + 1]].item() for t in positions)


@pytest.mark.parametrize("loss_type", ["simpo", "grpo"])
def test_loss_variants_equal_a_hand_computation_through_the_trainer(
    tmp_path, tokenizer, base_model, policy, loss_type
):
    """SimPO (lengths per side, gamma, no reference) and GRPO (advantages per side, clipping, KL) as ALPOTrainer
    computes them on a batch: swapping the lengths or the advantages it hands to the loss changes the value."""
    advantages = {"chosen": [1.2, 0.8], "rejected": [-0.3, 0.1]}
    dataset = pairs(2).remove_columns(["chosen", "rejected"])
    dataset = dataset.add_column("chosen", [COMPLETIONS[0] + "\n", COMPLETIONS[4] + "\n"])
    dataset = dataset.add_column("rejected", [COMPLETIONS[4] + "\n", COMPLETIONS[1] + "\n"])
    dataset = dataset.add_column("chosen_advantage", advantages["chosen"])
    dataset = dataset.add_column("rejected_advantage", advantages["rejected"])
    args = ALPOConfig(str(tmp_path), alpo_loss_type=loss_type, beta=0.7, simpo_gamma=0.3, grpo_epsilon=0.2,
                      grpo_kl_coef=0.05, normalize_weights="none", **COMMON)  # fmt: skip
    trainer = ALPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(base_model), train_dataset=dataset,
                          args=args, processing_class=tokenizer)  # fmt: skip
    trainer.model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, collate(trainer, 2)).item()
    expected = []
    for i in range(2):
        row = trainer.train_dataset[i]
        sides = {}
        for side in ("chosen", "rejected"):
            ids = row[f"{side}_ids"]
            logp = hand_logps(trainer.model, row["prompt_ids"], ids)
            ref = hand_logps(base_model, row["prompt_ids"], ids)
            sides[side] = (logp, ref, len(ids), advantages[side][i])
        assert sides["chosen"][2] != sides["rejected"][2]  # the lengths differ, so swapping them shows
        if loss_type == "simpo":
            (c, _, lc, _), (r, _, lr, _) = sides["chosen"], sides["rejected"]
            expected.append(-math.log(1 / (1 + math.exp(-(0.7 * (c / lc - r / lr) - 0.3)))))
        else:
            total = 0.0
            for logp, ref, _, advantage in sides.values():
                ratio = math.exp(logp - ref)
                surrogate = min(ratio * advantage, min(max(ratio, 0.8), 1.2) * advantage)
                total += surrogate - 0.05 * (1 / ratio + math.log(ratio) - 1)
            expected.append(-total / 2)
    assert loss == pytest.approx(sum(expected) / 2, rel=1e-4, abs=1e-5)
