"""ALPO's per-pair losses (Eq. 4, 7-9) and the weight normalisation, on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trl_seqpo.alpo.losses import (
    ALPO_LOSSES,
    LossSettings,
    PairLogps,
    grpo_loss,
    reduce_weighted_loss,
    sigmoid_loss,
    simpo_loss,
)


def make_pair(chosen, rejected, ref_chosen, ref_rejected, chosen_len=(1.0,), rejected_len=(1.0,), adv=None):
    t = lambda values: torch.tensor(values, dtype=torch.float64, requires_grad=True)  # noqa: E731
    advantages = (None, None) if adv is None else (torch.tensor(adv[0]), torch.tensor(adv[1]))
    return PairLogps(
        t(chosen), t(rejected), torch.tensor(ref_chosen), torch.tensor(ref_rejected),
        torch.tensor(chosen_len), torch.tensor(rejected_len), *advantages,
    )  # fmt: skip


def test_registry_has_the_three_paper_variants():
    assert set(ALPO_LOSSES) == {"sigmoid", "simpo", "grpo"}


def test_sigmoid_uses_the_per_pair_beta():
    pair = make_pair([-2.0, -3.0], [-4.0, -1.0], [-3.0, -2.0], [-3.0, -2.0])
    betas = torch.tensor([0.5, 2.0], dtype=torch.float64)
    losses = sigmoid_loss(pair, betas, LossSettings())
    # margins: (1 - (-1)) = 2 and (-1 - 1) = -2
    expected = [-math.log(1 / (1 + math.exp(-0.5 * 2))), -math.log(1 / (1 + math.exp(-2.0 * -2)))]
    assert losses.tolist() == pytest.approx(expected)


def test_sigmoid_with_constant_beta_is_dpo():
    pair = make_pair([-2.0, -5.0, -1.0], [-4.0, -1.0, -2.5], [-3.0, -2.0, -1.0], [-3.5, -2.0, -2.0])
    beta = 0.1
    margin = (pair.chosen - pair.ref_chosen) - (pair.rejected - pair.ref_rejected)
    dpo = -F.logsigmoid(beta * margin)
    assert torch.allclose(sigmoid_loss(pair, torch.full((3,), beta, dtype=torch.float64), LossSettings()), dpo)


def test_simpo_is_length_normalised_reference_free_with_margin():
    pair = make_pair([-6.0], [-6.0], [100.0], [-100.0], chosen_len=(2.0,), rejected_len=(6.0,))
    loss = simpo_loss(pair, torch.tensor([2.0], dtype=torch.float64), LossSettings(simpo_gamma=0.5))
    # average log-probs -3 and -1: beta * (-3 - (-1)) - gamma = -4.5; reference values do not matter
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(4.5))))


def test_grpo_at_ratio_one_is_minus_mean_advantage_and_its_gradient():
    pair = make_pair([-2.0], [-3.0], [-2.0], [-3.0], adv=([1.5], [-0.5]))
    loss = grpo_loss(pair, torch.ones(1), LossSettings(grpo_kl_coef=0.04))
    assert loss.item() == pytest.approx(-(1.5 - 0.5) / 2)  # KL(k3) = 0 at ratio 1
    loss.sum().backward()
    # d/dlogp of -(rho * A)/2 at rho = 1 is -A/2
    assert pair.chosen.grad.item() == pytest.approx(-0.75)
    assert pair.rejected.grad.item() == pytest.approx(0.25)


def test_grpo_clips_a_positive_advantage_and_penalises_drift():
    pair = make_pair([-1.0], [-3.0], [-2.0], [-3.0], adv=([1.0], [0.0]))  # chosen ratio e > 1 + eps
    loss = grpo_loss(pair, torch.ones(1), LossSettings(grpo_epsilon=0.2, grpo_kl_coef=0.0))
    assert loss.item() == pytest.approx(-1.2 / 2)
    loss.sum().backward()
    assert pair.chosen.grad.item() == pytest.approx(0.0)  # clipped: no push further up
    with_kl = grpo_loss(pair, torch.ones(1), LossSettings(grpo_epsilon=0.2, grpo_kl_coef=0.5))
    kl = math.exp(-1.0) + 1.0 - 1.0
    assert with_kl.item() == pytest.approx(-1.2 / 2 + 0.5 * kl / 2)


def test_grpo_without_advantages_says_what_to_do():
    pair = make_pair([-1.0], [-2.0], [-1.0], [-2.0])
    with pytest.raises(ValueError, match="chosen_advantage"):
        grpo_loss(pair, torch.ones(1), LossSettings())


def test_micro_batch_normalisation_cancels_weights_at_batch_size_one():
    losses, weights = torch.tensor([1.0, 3.0]), torch.tensor([0.9, 0.1])
    per_micro_batch = [reduce_weighted_loss(losses[i : i + 1], weights[i : i + 1], "micro_batch") for i in range(2)]
    assert torch.stack(per_micro_batch).mean().item() == pytest.approx(2.0)  # = unweighted mean


def test_document_normalisation_keeps_weights_across_micro_batches():
    losses, weights = torch.tensor([1.0, 3.0, 2.0, 5.0]), torch.tensor([0.9, 0.1, 0.3, 0.7])
    mean_weight = weights.mean().item()
    # gradient accumulation over 4 micro-batches of one pair (or 2 of two) gives the same global loss ...
    singles = torch.stack([reduce_weighted_loss(losses[i : i + 1], weights[i : i + 1], "document", mean_weight)
                           for i in range(4)]).mean()  # fmt: skip
    pairs = torch.stack([reduce_weighted_loss(losses[i : i + 2], weights[i : i + 2], "document", mean_weight)
                         for i in (0, 2)]).mean()  # fmt: skip
    # ... equal to sum_i w_i l_i / sum_i w_i over the whole batch (Eq. 4 with per-document weights summing to 1)
    expected = (losses * weights).sum() / weights.sum()
    assert singles.item() == pytest.approx(expected.item())
    assert pairs.item() == pytest.approx(expected.item())
    assert expected.item() != pytest.approx(losses.mean().item())


def test_none_normalisation_ignores_weights_and_unknown_mode_raises():
    losses, weights = torch.tensor([1.0, 3.0]), torch.tensor([0.9, 0.1])
    assert reduce_weighted_loss(losses, weights, "none").item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="normalize_weights"):
        reduce_weighted_loss(losses, weights, "batch")
