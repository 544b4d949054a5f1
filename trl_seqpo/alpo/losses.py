"""Per-pair preference losses of ALPO and their document-level weighting (ALPO paper Sec. 3.4, App. C.3.1).

ALPO (Eq. 4 and Eq. 7) sums a per-line preference loss ``L_po(s_i)`` over the lines of a document, each line weighted
by ``w(s_i)`` (Eq. 2-3) and each with its own ``beta_i`` (Eq. 5). This module holds the per-line losses as plain
functions of summed log-probabilities, kept in `ALPO_LOSSES` (a small mapping instead of an ``elif`` chain),
and `reduce_weighted_loss`, which turns per-pair losses and weights into the scalar that is back-propagated.

Every function here is pure torch: no TRL, no trainer state, so it can be tested on hand-made tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PairLogps:
    """Sequence log-probabilities of one batch of (prompt, chosen, rejected) pairs. Shapes are ``[batch]``.

    Args:
        chosen: Summed log-probability of the chosen completion under the policy, ``log pi_theta(t_c | p_i)``.
        rejected: Same for the rejected completion.
        ref_chosen: Summed log-probability of the chosen completion under the reference model (zeros when the
            loss is reference-free).
        ref_rejected: Same for the rejected completion.
        chosen_lengths: Number of completion tokens of the chosen completion (SimPO's length normalisation).
        rejected_lengths: Same for the rejected completion.
        chosen_advantages: Advantage ``A_j`` of the chosen candidate (Eq. 9), only read by the GRPO loss.
        rejected_advantages: Same for the rejected candidate.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    chosen_lengths: torch.Tensor
    rejected_lengths: torch.Tensor
    chosen_advantages: torch.Tensor | None = None
    rejected_advantages: torch.Tensor | None = None

    @property
    def chosen_logratios(self) -> torch.Tensor:
        """``log pi_theta(t_c | p) - log pi_ref(t_c | p)``, shape ``[batch]``."""
        return self.chosen - self.ref_chosen

    @property
    def rejected_logratios(self) -> torch.Tensor:
        """``log pi_theta(t_r | p) - log pi_ref(t_r | p)``, shape ``[batch]``."""
        return self.rejected - self.ref_rejected


@dataclass
class LossSettings:
    """Hyper-parameters of the loss variants that are not per-row.

    Args:
        simpo_gamma: Target reward margin ``gamma`` of SimPO (Meng et al., 2024).
        grpo_epsilon: Clipping range ``epsilon`` of the GRPO loss (Eq. 8).
        grpo_kl_coef: Weight ``eta`` of the KL penalty of the GRPO loss (Eq. 8-9).
    """

    simpo_gamma: float = 0.5
    grpo_epsilon: float = 0.2
    grpo_kl_coef: float = 0.04


def sigmoid_loss(logps: PairLogps, betas: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    """DPO's Bradley-Terry loss with a per-pair ``beta_i`` (ALPO Eq. 4; ``L_po`` = DPO in Eq. 7).

    ``loss_i = -log sigmoid(beta_i * [(log pi_theta(t_c) - log pi_ref(t_c)) - (log pi_theta(t_r) - log pi_ref(t_r))])``

    Args:
        logps: Summed log-probabilities of the batch.
        betas: ``beta_i = beta * gap_i / max_j gap_j`` (Eq. 5), shape ``[batch]``.
        settings: Unused; kept so that every loss has the same signature.

    Returns:
        Per-pair losses, shape ``[batch]``.

    Examples:
        >>> z = torch.zeros(1)
        >>> round(sigmoid_loss(PairLogps(z, z, z, z, z + 1, z + 1), torch.ones(1), LossSettings()).item(), 4)
        0.6931
    """
    margin = logps.chosen_logratios - logps.rejected_logratios
    return -F.logsigmoid(betas * margin)


def simpo_loss(logps: PairLogps, betas: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    """SimPO (Meng et al., 2024) as ``L_po`` of Eq. 7: reference-free, length-normalised, with a target margin.

    ``loss_i = -log sigmoid(beta_i * (log pi_theta(t_c) / |t_c| - log pi_theta(t_r) / |t_r|) - gamma)``

    Args:
        logps: Summed log-probabilities of the batch; the reference log-probabilities are ignored.
        betas: Per-pair ``beta_i``, shape ``[batch]``.
        settings: Reads ``simpo_gamma``.

    Returns:
        Per-pair losses, shape ``[batch]``.
    """
    chosen = logps.chosen / logps.chosen_lengths.clamp(min=1)
    rejected = logps.rejected / logps.rejected_lengths.clamp(min=1)
    return -F.logsigmoid(betas * (chosen - rejected) - settings.simpo_gamma)


def grpo_loss(logps: PairLogps, betas: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    """The advantage-based GRPO loss of ALPO App. C.3.1 (Eq. 8-9), over the two candidates of each pair.

    For each candidate ``j`` in {chosen, rejected} with sequence ratio ``rho_j = pi_theta(t_j | p) / pi_ref(t_j | p)``
    and advantage ``A_j = (E_j - mean(E_i)) / std(E_i)`` (computed over *all* judged candidates of the line when the
    pairs are built):

    ``L_po = 1/2 sum_j [min(rho_j A_j, clip(rho_j, 1 - eps, 1 + eps) A_j) - eta (1/rho_j + log rho_j - 1)]``

    and the loss to minimise is ``-L_po``. Eq. 8 averages over every candidate of the line; a pair dataset keeps two
    of them (a documented deviation). ``betas`` is not used: Eq. 8 has no ``beta_i``.

    Args:
        logps: Summed log-probabilities and the two advantages of the batch.
        betas: Unused.
        settings: Reads ``grpo_epsilon`` and ``grpo_kl_coef``.

    Returns:
        Per-pair losses, shape ``[batch]``.

    Raises:
        ValueError: If the advantages are missing.
    """
    if logps.chosen_advantages is None or logps.rejected_advantages is None:
        raise ValueError(
            "alpo_loss_type='grpo' needs the 'chosen_advantage' and 'rejected_advantage' columns that "
            "`trl-seqpo alpo pairs` writes; rebuild the pairs or use alpo_loss_type='sigmoid'"
        )
    eps = settings.grpo_epsilon
    terms = []
    for logratio, advantage in (
        (logps.chosen_logratios, logps.chosen_advantages),
        (logps.rejected_logratios, logps.rejected_advantages),
    ):
        ratio = torch.exp(logratio)
        surrogate = torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - eps, 1 + eps) * advantage)
        # Eq. 9: pi_ref/pi_theta - log(pi_ref/pi_theta) - 1, the k3 estimator of KL(pi_theta || pi_ref)
        kl = torch.exp(-logratio) + logratio - 1
        terms.append(surrogate - settings.grpo_kl_coef * kl)
    return -(terms[0] + terms[1]) / 2


LossFunction = Callable[[PairLogps, torch.Tensor, LossSettings], torch.Tensor]

# alpo_loss_type -> per-pair loss. Add a variant by adding an entry.
ALPO_LOSSES: dict[str, LossFunction] = {
    "sigmoid": sigmoid_loss,
    "simpo": simpo_loss,
    "grpo": grpo_loss,
}

# Loss types that never read the reference model's log-probabilities.
REFERENCE_FREE_LOSSES: frozenset[str] = frozenset({"simpo"})

WEIGHT_NORMALIZATIONS: tuple[str, ...] = ("document", "micro_batch", "none")


def reduce_weighted_loss(
    losses: torch.Tensor,
    weights: torch.Tensor,
    normalization: str,
    mean_weight: float = 1.0,
) -> torch.Tensor:
    """Combine per-pair losses with the line weights ``w(s_i)`` of Eq. 2-3 into one scalar for this micro-batch.

    - ``"document"``: ``mean_i (w_i / mean_weight) * loss_i``, with ``mean_weight`` the mean weight over the whole
      training set. A pair's share of the gradient does not depend on which micro-batch, accumulation step or device
      it lands on, and since a document's weights sum to one, the expected loss of a global batch is the average over
      documents of ``sum_i w_i loss_i``: Eq. 4's expectation. The trainer's averaging over accumulation steps and
      devices then needs no extra communication.
    - ``"micro_batch"``: ``sum_i w_i loss_i / sum_i w_i`` inside the micro-batch, as in the authors' code. With one
      pair per micro-batch (their setup) the weights cancel and have no effect.
    - ``"none"``: ``mean_i loss_i``; the weights are ignored (plain DPO averaging).

    Args:
        losses: Per-pair losses, shape ``[batch]``.
        weights: ``w(s_i)``, shape ``[batch]``.
        normalization: One of `WEIGHT_NORMALIZATIONS`.
        mean_weight: Mean of the weight column over the training set (``"document"`` only).

    Returns:
        A scalar tensor.

    Examples:
        >>> losses, weights = torch.tensor([1.0, 3.0]), torch.tensor([0.25, 0.75])
        >>> reduce_weighted_loss(losses, weights, "document", mean_weight=0.5).item()
        2.5
        >>> reduce_weighted_loss(losses[:1], weights[:1], "micro_batch").item()
        1.0
    """
    if normalization == "document":
        return (losses * weights / mean_weight).mean()
    if normalization == "micro_batch":
        return (losses * weights).sum() / weights.sum().clamp(min=torch.finfo(weights.dtype).tiny)
    if normalization == "none":
        return losses.mean()
    raise ValueError(f"normalize_weights must be one of {WEIGHT_NORMALIZATIONS}, got {normalization!r}")
