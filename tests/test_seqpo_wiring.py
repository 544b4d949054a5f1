"""Trainer-level wiring of SeqPO: what reaches TRL is what the method needs (fails for the mutations of issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trl_seqpo import SeqPOConfig, SeqPOTrainer
from trl_seqpo.rewards.fusion import group_normalize
from trl_seqpo.synthetic.language_pair import generate_corpus, language_names, to_dataset, vocabulary
from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    tokenizer = build_tokenizer([*vocabulary(), *language_names()])
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=1, num_heads=2, head_dim=32, intermediate_size=128)
    dataset = to_dataset(generate_corpus(8, seed=0, min_words=4, max_words=7)).remove_columns("alignment")
    src, tgt = language_names()[:2]
    args = SeqPOConfig(
        output_dir=str(tmp_path_factory.mktemp("out")), per_device_train_batch_size=4, num_generations=2,
        max_steps=1, chunk_size=2, src_lang=src, tgt_lang=tgt, latency_unit="word", source_unit="word",
        max_new_tokens_per_step=4, max_steps_after_source=1, quality_reward="chrf", beta=0.0, use_cpu=True,
        report_to="none", save_strategy="no", bf16=False, seed=0, temperature=0.7,
    )  # fmt: skip
    return SeqPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def _padded(out):
    width_p = max(len(p) for p in out["prompt_ids"])
    width_c = max(len(c) for c in out["completion_ids"])
    ids, mask = [], []
    for prompt, completion in zip(out["prompt_ids"], out["completion_ids"]):
        pad_p, pad_c = width_p - len(prompt), width_c - len(completion)
        ids.append([0] * pad_p + prompt + completion + [0] * pad_c)
        mask.append([0] * pad_p + [1] * (len(prompt) + len(completion)) + [0] * pad_c)
    return torch.tensor(ids), torch.tensor(mask), width_c


def test_rollout_logprobs_equal_trls_recomputation_at_temperature_07(trainer):
    sources = ["every happy car takes a dog", "the car follows and the teacher finds"]
    out = trainer._simultaneous_rollout([s for s in sources for _ in range(2)], trainer)
    ids, mask, keep = _padded(out)
    with torch.no_grad():
        recomputed, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep)
    for row, (env_mask, recorded) in enumerate(zip(out["env_mask"], out["logprobs"])):
        policy = torch.tensor(env_mask, dtype=torch.bool)
        got = recomputed[row, : len(env_mask)][policy]
        torch.testing.assert_close(got, torch.tensor(recorded)[policy], atol=1e-4, rtol=1e-4)


def test_env_mask_from_the_trainer_hides_exactly_the_inserted_turns(trainer):
    out = trainer._simultaneous_rollout(["every happy car takes a dog"] * 2, trainer)
    im_start = trainer.processing_class.convert_tokens_to_ids("<|im_start|>")
    for completion, env_mask in zip(out["completion_ids"], out["env_mask"]):
        assert 0 in env_mask and 1 in env_mask
        # every user turn the environment inserted is masked; the policy never wrote <|im_start|> here
        starts = [i for i, token in enumerate(completion) if token == im_start]
        assert starts and all(env_mask[i] == 0 for i in starts)
        # and nothing else is: each masked span starts a user turn (or closes a turn the budget cut)
        spans = [i for i in range(len(env_mask)) if env_mask[i] == 0 and (i == 0 or env_mask[i - 1] == 1)]
        im_end = trainer.processing_class.convert_tokens_to_ids("<|im_end|>")
        assert all(completion[i] in (im_start, im_end) or completion[i + 1] == im_start for i in spans)


def test_fused_reward_normalises_per_group_with_the_trainers_group_size(trainer):
    fused = trainer.fused_reward
    quality = [0.9, 0.1, 0.5, 0.3]  # two groups of num_generations = 2, different means
    latency = [1.0, 3.0, 2.0, 2.0]

    def constant_quality(prompts, completions, **kwargs):
        return quality

    def constant_latency(prompts, completions, **kwargs):
        return latency

    saved = fused.quality, fused.latency
    fused.quality, fused.latency = constant_quality, constant_latency
    try:
        rewards = fused(prompts=["p"] * 4, completions=["c"] * 4, reference=["r"] * 4)
    finally:
        fused.quality, fused.latency = saved
    expected = 2.0 * group_normalize(quality, group_size=2) - group_normalize(latency, group_size=2)
    np.testing.assert_allclose(rewards, expected)
    assert sum(rewards[:2]) == pytest.approx(0.0) and sum(rewards[2:]) == pytest.approx(0.0)
