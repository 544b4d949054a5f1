"""SeqPO in the paper's prompt format: each step is its own sequence, trained through TRL's log-prob hook."""

from __future__ import annotations

import pytest
import torch
from tiny_models import save_seqpo_tiny_model, seqpo_config, seqpo_train_rows

from trl_seqpo import SeqPOTrainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_seqpo_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def dataset():
    return seqpo_train_rows()


def _config(tmp_path, **overrides):
    return seqpo_config(tmp_path, **{"max_steps": 1, "prompt_format": "paper", "temperature": 0.7, **overrides})


def _batch(trainer, sources):
    out = trainer._simultaneous_rollout(sources, trainer)
    width_p = max(len(p) for p in out["prompt_ids"])
    width_c = max(len(c) for c in out["completion_ids"])
    rows, masks = [], []
    for prompt, completion in zip(out["prompt_ids"], out["completion_ids"]):
        pad_p, pad_c = width_p - len(prompt), width_c - len(completion)
        rows.append([0] * pad_p + prompt + completion + [0] * pad_c)
        masks.append([0] * pad_p + [1] * (len(prompt) + len(completion)) + [0] * pad_c)
    return out, torch.tensor(rows), torch.tensor(masks), width_c


def test_each_step_is_scored_in_its_own_sequence(tiny, dataset, tmp_path):
    model, tokenizer = tiny
    trainer = SeqPOTrainer(model=model, args=_config(tmp_path), train_dataset=dataset, processing_class=tokenizer)
    out, input_ids, attention_mask, keep = _batch(trainer, dataset["source"][:2])
    with torch.no_grad():
        paper, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention_mask, keep)
        whole, _, _ = super(SeqPOTrainer, trainer)._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, keep
        )
    first_differs = 0
    for row, (env_mask, recorded) in enumerate(zip(out["env_mask"], out["logprobs"])):
        mask = torch.tensor(env_mask, dtype=torch.bool)
        n = len(env_mask)
        # on-policy: the hook gives back the log-probs recorded while sampling at T = 0.7
        torch.testing.assert_close(paper[row, :n][mask], torch.tensor(recorded)[mask], atol=1e-4, rtol=1e-4)
        assert torch.all(paper[row, :n][~mask] == 0)
        # the first step coincides with the packed row's prefix: same log-probs as one pass over the row
        first = int(mask.long().argmin()) if not mask.all() else n
        torch.testing.assert_close(paper[row, :first], whole[row, :first], atol=1e-5, rtol=1e-5)
        # later steps are conditioned on their own prompt only, not on the earlier steps' tokens
        later = mask.clone()
        later[:first] = False
        if later.any():
            first_differs += int(not torch.allclose(paper[row, :n][later], whole[row, :n][later], atol=1e-3))
    assert first_differs > 0


def test_paper_format_trains_through_the_hook_for_policy_and_reference(tiny, dataset, tmp_path):
    model, tokenizer = tiny
    calls = []

    class Recording(SeqPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, *args, **kwargs):
            result = super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)
            calls.append((model is self.ref_model, result[0].requires_grad))
            return result

    trainer = Recording(model=model, args=_config(tmp_path), train_dataset=dataset, processing_class=tokenizer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert (True, False) in calls  # the reference model's log-probs (KL)
    assert (False, True) in calls  # the policy's, with gradient
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"kl", "simt/average_lagging"} <= logged


def test_paper_format_trains_with_truncated_completions_masked_and_reused_generations(tiny, dataset, tmp_path):
    """`mask_truncated_completions` masks the trajectories cut by the step budget; `num_iterations=2` reuses them."""
    model, tokenizer = tiny
    args = _config(tmp_path, max_steps=2, mask_truncated_completions=True, num_iterations=2)
    trainer = SeqPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2
    clipped = [entry.get("completions/clipped_ratio", 0.0) for entry in trainer.state.log_history]
    assert max(clipped) > 0  # some trajectories were cut, so some rows reached the hook masked
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry)


def test_paper_format_trains_with_a_two_batch_evaluation_between_steps_of_one_generation(tiny, dataset, tmp_path):
    """`steps_per_generation=2`: both optimizer steps train on one rollout, with a full evaluation in between."""
    model, tokenizer = tiny
    rollouts = []

    class Counting(SeqPOTrainer):
        def _simultaneous_rollout(self, prompts, trainer):
            rollouts.append("train" if self.model.training else "eval")
            return super()._simultaneous_rollout(prompts, trainer)

    args = _config(
        tmp_path, max_steps=2, per_device_train_batch_size=2, steps_per_generation=2, eval_strategy="steps",
        eval_steps=1, per_device_eval_batch_size=2,
    )  # fmt: skip
    trainer = Counting(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset.select(range(2)),
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    # one rollout for both optimizer steps; after each step a two-batch evaluation (the first one between the steps)
    assert rollouts == ["train", "eval", "eval", "eval", "eval"]
