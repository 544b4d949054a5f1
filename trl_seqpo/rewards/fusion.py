r"""Fuse a quality and a latency score into one reward per trajectory (SeqPO-SiMT Sec. 2.3, Eq. 2).

For the B trajectories sampled from one source (a *group*), with quality $\hat q_i$ and latency
$\hat L_i$ (e.g. COMET and AL), the paper defines

$$
q_i = \frac{\hat q_i - \mathrm{mean}(\hat q_{1..B})}{\mathrm{std}(\hat q_{1..B})}, \qquad
L_i = \max\Big(m,\ \frac{\hat L_i - \mathrm{mean}(\hat L_{1..B})}{\mathrm{std}(\hat L_{1..B})}\Big), \qquad
r_i = \lambda q_i - L_i \quad (\lambda = 2),
$$

where m is the chunk size in source units. Normalising puts quality and latency on one scale; truncating latency at m
stops the policy from buying latency reward with junk output (the paper's ablation, Sec. 4.4 / Fig. 6, shows AL
going negative without it).

**Readings of the truncation** (``truncation=``):

- ``"floor"`` (default): floor the *raw* latency at ``floor`` (default 0 source units), then z-normalise in the
  group: $z(\max(f, \hat L_i))$. The paper's reason for truncating (Sec. 4.4, Fig. 6) is that without it AL
  falls *below zero* while COMET falls: the policy buys latency reward with meaningless tokens. An AL below zero is
  only reachable by writing more target units than the source read so far can justify, so flooring at 0 removes that
  incentive while every honest difference above the floor is kept: a policy that translates each chunk on arrival
  (AL about (m + 1) / 2, 1.91 at m = 3 on the demo task) still beats a slower one (2.73).
- ``"eager"``: the same with a floor per trajectory, the latency of the proportional eager schedule for its source
  and reference (`trl_seqpo.simt.policies.eager_delays`: target unit i written once the chunk holding source unit
  ceil(i n / |Y*|) has arrived; 1.56 for n = |Y*| = 10 at m = 2, 1.9 at m = 3). That is as early as a policy can
  write on a monotone pair without writing what it has not read, so latency below it is bought with guessed or
  meaningless output; a floor at 0 still pays up to that much for it. `fuse_rewards` takes the floors as ``floor``
  (one per trajectory); `trl_seqpo.seqpo.reward.FusedSimultaneousReward` computes them.
- ``"clamp_then_normalize"``: the same with the floor at the chunk size m, $z(\max(m, \hat L_i))$. It also
  erases honest differences below m (the two policies above tie at m = 3), which is where SeqPO should act; kept
  for comparison with earlier runs.
- ``"paper"``: the formula as printed, $\max(m, z_i)$. It compares a z-score (unit-free, within about
  +-sqrt(B-1) for a group of B; +-2 for B = 5) with a count of source words, so for m >= 2 it is m for almost every
  trajectory and the latency term becomes a constant that carries no signal; only quality is left to learn from.
  Kept for reproducing the paper.
- ``"none"``: no truncation (the paper's "w/o truncation" ablation).

**Edge cases.** A group whose valid values are all equal (zero variance) normalises to 0, never NaN. ``None``/NaN
members are left out of the group's mean and std, and their normalised value and fused reward are NaN (TRL treats
NaN rewards as missing). The standard deviation is the population one (``ddof=0``).

Shapes: scores are given either as ``[num_groups, B]`` arrays or flat ``[num_groups * B]`` with ``group_size=B``
(TRL's layout: the B completions of a prompt are consecutive); outputs have the shape of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Truncation = Literal["floor", "eager", "clamp_then_normalize", "paper", "none"]
TRUNCATION_MODES: tuple[str, ...] = ("floor", "eager", "clamp_then_normalize", "paper", "none")
DEFAULT_TRUNCATION = "floor"
DEFAULT_LATENCY_FLOOR = 0.0

ArrayLike = np.ndarray | Sequence[float | None] | Sequence[Sequence[float | None]]
Floor = float | ArrayLike


def _as_groups(values: ArrayLike, group_size: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Return ``values`` as a float ``[num_groups, B]`` array (``None`` -> NaN) and the original shape."""
    array = np.array(values, dtype=np.float64)  # None becomes NaN
    if array.ndim == 2:
        if group_size is not None and group_size != array.shape[1]:
            raise ValueError(f"group_size={group_size} does not match the [num_groups, B] shape {array.shape}.")
        return array, array.shape
    if array.ndim != 1:
        raise ValueError(f"Scores must be 1-D (with group_size) or 2-D [num_groups, B], got shape {array.shape}.")
    if group_size is None:
        raise ValueError("Flat scores need group_size (the number of generations per prompt, B).")
    if group_size < 1 or array.size % group_size != 0:
        raise ValueError(f"{array.size} scores cannot be split into groups of group_size={group_size}.")
    return array.reshape(-1, group_size), array.shape


def group_normalize(values: ArrayLike, group_size: int | None = None, eps: float = 1e-8) -> np.ndarray:
    r"""Z-normalise scores within each group: $(x_i - \mathrm{mean}) / \mathrm{std}$ (Eq. 2).

    Args:
        values: ``[num_groups, B]`` scores, or flat ``[num_groups * B]`` with ``group_size``; ``None``/NaN allowed.
        group_size: B, for flat input.
        eps: A group whose std is <= ``eps`` (all valid values equal) normalises to 0.

    Returns:
        Float array with the shape of ``values``; NaN where the input was ``None``/NaN.

    Examples:
        >>> group_normalize([1.0, 2.0, 3.0, 5.0, 5.0, None], group_size=3).round(3).tolist()
        [-1.225, 0.0, 1.225, 0.0, 0.0, nan]
    """
    groups, shape = _as_groups(values, group_size)
    valid = ~np.isnan(groups)
    count = valid.sum(axis=1, keepdims=True)
    filled = np.where(valid, groups, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / np.maximum(count, 1)
    centred = np.where(valid, groups - mean, 0.0)
    std = np.sqrt((centred**2).sum(axis=1, keepdims=True) / np.maximum(count, 1))
    safe_std = np.where(std > eps, std, 1.0)
    normalized = np.where(std > eps, centred / safe_std, 0.0)
    return np.where(valid, normalized, np.nan).reshape(shape)


def truncate_latency(
    latency: ArrayLike,
    chunk_size: float | None,
    truncation: Truncation = DEFAULT_TRUNCATION,
    group_size: int | None = None,
    eps: float = 1e-8,
    floor: Floor = DEFAULT_LATENCY_FLOOR,
) -> np.ndarray:
    r"""Normalised, truncated latency `L_i` of Eq. 2 under one of the truncation readings.

    Args:
        latency: Raw latencies `L^` (e.g. AL in source units), `[num_groups, B]` or flat.
        chunk_size: m, in source units; required for `"clamp_then_normalize"` and `"paper"`.
        truncation: `"floor"` (`z(max(floor, L^))`), `"eager"` (the same with one floor per trajectory),
            `"clamp_then_normalize"` (`z(max(m, L^))`), `"paper"` (`max(m, z(L^))`) or `"none"` (`z(L^)`). See the
            module docstring for why the default is not the literal one.
        group_size: B, for flat input.
        eps: Zero-variance threshold of `group_normalize`.
        floor: The floor of `"floor"`, in source units (default 0: AL below zero is junk output): one number, or
            one per trajectory (the shape of `latency`; required for `"eager"`). A NaN floor means no floor there.

    Returns:
        Float array with the shape of `latency`; NaN where the input was `None`/NaN.

    Examples:
        >>> truncate_latency([-0.6, 1.9, 2.7], chunk_size=3, group_size=3).round(3).tolist()
        [-1.354, 0.324, 1.03]
    """
    if truncation not in TRUNCATION_MODES:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION_MODES)}; got {truncation!r}.")
    if truncation == "none":
        return group_normalize(latency, group_size, eps)
    raw = np.array(latency, dtype=np.float64)
    if truncation in ("floor", "eager"):
        floors = np.array(floor, dtype=np.float64)
        if truncation == "eager" and floors.shape != raw.shape:
            raise ValueError(
                f"truncation='eager' needs one floor per trajectory (shape {raw.shape}), got shape {floors.shape}; "
                "see trl_seqpo.simt.policies.eager_delays."
            )
        if floors.ndim == 0 and not np.isfinite(floors):
            raise ValueError(f"floor must be a finite number of source units, got {floor!r}.")
        if np.isinf(floors).any():
            raise ValueError("floors must be finite numbers of source units (NaN = no floor for that row).")
        floors = np.where(np.isnan(floors), -np.inf, floors)
        return group_normalize(np.maximum(raw, floors), group_size, eps)  # np.maximum keeps NaN as NaN
    if chunk_size is None or not np.isfinite(chunk_size) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive number for truncation={truncation!r}, got {chunk_size!r}.")
    if truncation == "clamp_then_normalize":
        return group_normalize(np.maximum(raw, chunk_size), group_size, eps)
    return np.maximum(group_normalize(raw, group_size, eps), chunk_size)


def fuse_rewards(
    quality: ArrayLike,
    latency: ArrayLike,
    group_size: int | None,
    lambda_: float = 2.0,
    chunk_size: float | None = None,
    truncation: Truncation = DEFAULT_TRUNCATION,
    eps: float = 1e-8,
    floor: Floor = DEFAULT_LATENCY_FLOOR,
) -> np.ndarray:
    r"""SeqPO-SiMT's fused reward $r_i = \lambda q_i - L_i$ (Sec. 2.3, Eq. 2).

    Args:
        quality: Raw quality $\hat q$ (higher is better, e.g. COMET), ``[num_groups, B]`` or flat.
        latency: Raw latency $\hat L$ (lower is better, e.g. AL), same shape as ``quality``.
        group_size: B, the trajectories per source (``num_generations``); may be ``None`` for 2-D input.
        lambda_: $\lambda$, the weight of quality against latency (paper: 2).
        chunk_size: m, the chunk size in source units; required unless ``truncation="none"``.
        truncation: `"floor"` (default), `"eager"`, `"clamp_then_normalize"`, `"paper"` or `"none"`; see
            `truncate_latency`.
        eps: Zero-variance threshold of `group_normalize`.
        floor: The floor of `truncation="floor"` or the per-trajectory floors of `"eager"`, in source units.

    Returns:
        Float array with the shape of ``quality``; NaN for a row whose quality or latency is ``None``/NaN (such a
        row is left out of both the quality and the latency statistics of its group).

    Examples:
        >>> fuse_rewards([0.8, 0.6], [3.0, 5.0], group_size=2, chunk_size=2).round(6).tolist()
        [3.0, -3.0]
    """
    if not np.isfinite(lambda_):
        raise ValueError(f"lambda_ must be a finite number, got {lambda_!r}.")
    quality_array = np.array(quality, dtype=np.float64)
    latency_array = np.array(latency, dtype=np.float64)
    if quality_array.shape != latency_array.shape:
        raise ValueError(f"quality {quality_array.shape} and latency {latency_array.shape} must have the same shape.")
    # A row missing either score is missing from both groups' statistics, so the two terms see the same rows.
    missing = np.isnan(quality_array) | np.isnan(latency_array)
    quality_array[missing] = np.nan
    latency_array[missing] = np.nan
    q = group_normalize(quality_array, group_size, eps)
    latency_term = truncate_latency(latency_array, chunk_size, truncation, group_size, eps, floor)
    return lambda_ * q - latency_term
