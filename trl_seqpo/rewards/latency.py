"""Latency rewards from rollout delays: one per registered latency metric (``average_lagging`` = AL, ``laal``,
``dal``, ``average_proportion``, ``yaal``, ``long_yaal``, and any metric added with
`trl_seqpo.simt.latency.register_latency_metric`).

SeqPO-SiMT (Sec. 2.3, Eq. 2) scores each trajectory with a latency scorer f_l; the paper uses AL (Sec. 3). These
rewards return the **raw latency in source units, lower is better** - they are not negated. Do not give them to a
trainer as if higher were better: SeqPO's fusion (`trl_seqpo.rewards.fusion.fuse_rewards`,
r = lambda * q - L) applies the sign, and in a plain TRL trainer use a negative ``reward_weights`` entry.

Columns (added by the SeqPO rollout, ``trl_seqpo.rollout``):

- ``delays``: ``list[list[int]]``, per row the number of source units read when each target unit was written;
- ``source_length``: ``list[int]``, source units per row;
- ``reference_length``: optional ``list[int | None]``, reference units per row, in the same unit as ``delays``.

The metric functions come from the latency registry (`trl_seqpo.simt.latency.get_latency_metric`); AL, LAAL, DAL
and AP match SimulEval 1.1, YAAL and LongYAAL match OmniSTEval. A sentence a metric leaves undefined (YAAL when the
first unit waited for the whole source) scores the source length, the latency of an offline translation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from trl_seqpo.rewards.inputs import optional_column, required_column, warn_once
from trl_seqpo.rewards.registry import register_reward


class LatencyReward:
    """Per-row latency (lower is better) from the ``delays``/``source_length``/``reference_length`` columns.

    Args:
        metric: The reward name of a registered latency metric (``"average_lagging"``, ``"laal"``, ``"yaal"``, ...).
        use_reference_length: Pass the ``reference_length`` column to the metric when present (SimulEval's default);
            ``False`` always uses the hypothesis length (SimulEval's ``--no-use-ref-len``). LAAL always needs it.
    """

    def __init__(self, metric: str, use_reference_length: bool = True) -> None:
        from trl_seqpo.simt.latency import get_latency_metric

        self.metric = get_latency_metric(metric).reward  # raises ValueError naming the registered ones
        self.use_reference_length = use_reference_length
        self.__name__ = metric

    def _metric_function(self) -> Callable[..., float]:
        from trl_seqpo.simt.latency import get_latency_metric

        return get_latency_metric(self.metric).function

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        num_rows = len(completions)
        delays = required_column(columns, "delays", num_rows, self.__name__)
        source_lengths = required_column(columns, "source_length", num_rows, self.__name__)
        reference_lengths = optional_column(columns, "reference_length", num_rows)
        if not self.use_reference_length:
            reference_lengths = [None] * num_rows
        elif self.metric == "laal" and all(length is None for length in reference_lengths):
            warn_once(
                "laal-no-reference-length",
                "Reward 'laal' got no 'reference_length' column; LAAL then equals AL with the hypothesis length.",
            )
        metric = self._metric_function()
        rewards: list[float | None] = []
        for row_delays, source_length, reference_length in zip(delays, source_lengths, reference_lengths):
            try:
                value = float(metric(list(row_delays), source_length, reference_length))
                if math.isnan(value):  # undefined for this sentence (e.g. YAAL of an offline translation)
                    value = float(source_length)
                rewards.append(value if math.isfinite(value) else None)
            except Exception as error:  # a reward never crashes training: this row gets None
                warn_once(f"{self.__name__}-error", f"Reward '{self.__name__}' could not score a row ({error!r}).")
                rewards.append(None)
        return rewards


@register_reward("average_lagging", factory=True)
def make_average_lagging_reward(use_reference_length: bool = True) -> LatencyReward:
    r"""Average Lagging (Ma et al., 2019), SeqPO-SiMT's latency scorer f_l. Lower is better (not negated).

    AL = (1/tau) * sum_{i=1..tau} (d_i - (i - 1) / gamma), gamma = |Y| / |X|, tau = first i with d_i >= |X|;
    |Y| is the reference length when the ``reference_length`` column is present and ``use_reference_length`` is
    on (SimulEval's default), else the hypothesis length. An empty hypothesis scores |X|.

    Columns: ``delays``, ``source_length``, optional ``reference_length``.

    Args:
        use_reference_length: Use ``reference_length`` for |Y| when present.

    Returns:
        A reward function ``(prompts, completions, **columns) -> list[float | None]``.

    Examples:
        >>> from trl_seqpo.rewards import get_reward
        >>> al = get_reward("average_lagging")
        >>> al(prompts=["p"], completions=["c"], delays=[[2, 3, 4, 4]], source_length=[4])  # wait-2
        [2.0]
    """
    return LatencyReward("average_lagging", use_reference_length=use_reference_length)


@register_reward("laal", factory=True)
def make_laal_reward() -> LatencyReward:
    """Length-Adaptive Average Lagging (Papi et al., 2022). Lower is better (not negated).

    AL with |Y| = max(hypothesis length, reference length), so writing more than the reference cannot lower the
    lagging. Without a ``reference_length`` column it equals AL with the hypothesis length (a warning says so once).

    Columns: ``delays``, ``source_length``, ``reference_length``.

    Returns:
        A reward function ``(prompts, completions, **columns) -> list[float | None]``.
    """
    return LatencyReward("laal")


def registered_latency_reward(name: str, **settings: Any) -> LatencyReward | None:
    """The reward of a latency metric registered with `register_latency_metric` (``None`` if ``name`` is none).

    `trl_seqpo.rewards.get_reward` falls back to it, so every registered latency metric is a reward by its name.
    """
    from trl_seqpo.simt.latency import LATENCY_REGISTRY

    if not any(metric.reward == name for metric in LATENCY_REGISTRY.values()):
        return None
    return LatencyReward(name, **settings)
