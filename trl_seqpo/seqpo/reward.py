"""The fused SeqPO reward as one TRL reward function (SeqPO-SiMT Sec. 2.3, Eq. 2).

`FusedSimultaneousReward` scores quality and latency per trajectory, gathers both from every process (a group of
`num_generations` trajectories may span processes), truncates and z-normalises them within each group with
`trl_seqpo.rewards.fusion.fuse_rewards`, and returns this process's slice.

Columns. TRL passes the dataset columns by their own names, except `prompt`; the configured
`source_column`/`reference_column` are also handed to the quality and latency rewards as `source`/`reference` (the
names every built-in reward reads; with `source_column="prompt"` the source is read from TRL's `prompts` argument),
`target_lang` is the config's `tgt_lang` (BLEU picks its tokenizer from it) unless the dataset or the quality reward
sets one, and `reference_length` is computed from the reference with `trl_seqpo.simt.latency.reference_length`, the
one rule the logs and the evaluation use, so `latency_use_reference_length=True` and `latency_reward="laal"` score
what `simt/average_lagging` and `simt/laal` report.

Missing scores. A row a reward cannot score gets `None` and no advantage. A step on which the quality or the latency
reward scores no row at all (every row `None`, or the reward raised) is a setup mistake, not noise: training on it
would be a zero-advantage step, so `FusedSimultaneousReward` raises a `ValueError` naming the reward and the inputs
it lacked (`source`, `reference`, `translation`, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from accelerate.utils import gather_object

from trl_seqpo.rewards.fusion import fuse_rewards
from trl_seqpo.rewards.registry import get_reward
from trl_seqpo.secret import reveal
from trl_seqpo.seqpo.config import SeqPOConfig
from trl_seqpo.simt.chunking import count_units, default_unit
from trl_seqpo.simt.latency import average_lagging, reference_length, sentence_latency
from trl_seqpo.simt.policies import aligned_delays, eager_delays

if TYPE_CHECKING:  # pragma: no cover
    from trl import GRPOTrainer

RewardFunc = str | Callable[..., list[float | None]]


def latency_rewards() -> tuple[str, ...]:
    """Reward names of the registered latency metrics (`trl_seqpo.simt.latency.register_latency_metric`); the
    trainer logs each as `simt/<reward name>`."""
    from trl_seqpo.simt.latency import LATENCY_REGISTRY

    return tuple(metric.reward for metric in LATENCY_REGISTRY.values())


logger = logging.getLogger(__name__)


class FusedSimultaneousReward:
    """The fused SeqPO reward `r = lambda * q - L` (Eq. 2) as one TRL reward function.

    A trajectory whose quality or latency could not be scored gets `None` (TRL then gives it no advantage); a step
    where a reward scores no trajectory at all raises a `ValueError` naming the reward and its missing inputs. It
    logs `simt/quality`, `simt/average_lagging`, `simt/laal` and
    `simt/fused_reward`.

    Args:
        quality: The quality reward (higher is better), called with TRL's reward arguments.
        latency: The latency reward (raw latency, lower is better).
        args: The `SeqPOConfig` (columns, lambda, truncation, group size).
    """

    __name__ = "seqpo_fused"

    def __init__(self, quality: Callable, latency: Callable, args: SeqPOConfig) -> None:
        self.quality = quality
        self.latency = latency
        self.args = args
        self.trainer: GRPOTrainer | None = None

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        columns = self.reward_columns(kwargs, len(prompts), prompts)
        quality, quality_error = _safe_scores(self.quality, prompts, completions, columns)
        latency, latency_error = _safe_scores(self.latency, prompts, completions, columns)
        all_quality = gather_object(quality)
        all_latency = gather_object(latency)
        # on the gathered scores, so that every process raises together
        _require_some_scores("quality", self.quality, all_quality, columns, quality_error, self.args)
        _require_some_scores("latency", self.latency, all_latency, columns, latency_error, self.args)
        floor = self.args.latency_floor
        if self.args.latency_truncation == "eager":
            floor = np.array(gather_object(self.eager_floors(columns, len(prompts))), dtype=float)
        fused = fuse_rewards(
            np.array([np.nan if q is None else q for q in all_quality], dtype=float),
            np.array([np.nan if v is None else v for v in all_latency], dtype=float),
            group_size=self._group_size(),
            lambda_=self.args.fusion_lambda,
            chunk_size=self.args.chunk_size,
            truncation=self.args.latency_truncation,
            floor=floor,
        )
        rank = self.trainer.accelerator.process_index if self.trainer is not None else 0
        local = fused[rank * len(prompts) : (rank + 1) * len(prompts)]
        self._log(all_quality, columns, fused)
        return [None if not np.isfinite(value) else float(value) for value in local]

    def reward_columns(self, kwargs: dict[str, Any], num_rows: int, prompts: list | None = None) -> dict[str, Any]:
        """TRL's reward kwargs plus `source`/`reference` from the configured columns, `target_lang` and
        `reference_length`.

        Args:
            kwargs: The columns TRL passed (never `prompt`: TRL hands it over as `prompts`).
            num_rows: Rows of the batch.
            prompts: TRL's `prompts`; the source when `source_column="prompt"`.
        """
        columns = dict(kwargs)
        for name, configured in (("source", self.args.source_column), ("reference", self.args.reference_column)):
            if configured in kwargs:
                columns[name] = kwargs[configured]
        if self.args.source_column == "prompt" and prompts is not None:
            columns["source"] = [prompt_text(prompt) for prompt in prompts]
        if "target_lang" not in columns and getattr(self.quality, "target_lang", None) is None:
            columns["target_lang"] = [self.args.tgt_lang] * num_rows
        references = columns.get("reference") or [None] * num_rows
        unit = self.args.latency_unit or default_unit(self.args.tgt_lang)
        columns["reference_length"] = [
            reference_length(reference, unit) if isinstance(reference, str) else None for reference in references
        ]
        return columns

    def eager_floors(self, columns: dict[str, Any], num_rows: int) -> list[float]:
        """Per-row floors of `latency_truncation="eager"`: the AL of the row's honest eager schedule.

        With a reference alignment (the `alignment_column`, `(source_index, target_index)` pairs over source units and
        latency units), the schedule follows it (`aligned_delays`); otherwise it is the proportional `eager_delays`
        for the row's source and reference lengths. A row without a reference (or an empty source) gets NaN: no floor.
        """
        lengths = columns.get("source_length")
        if lengths is None:  # called outside the trainer's rollout: count the source as the rollout does
            unit = self.args.source_unit or default_unit(self.args.src_lang)
            lengths = [count_units(s, unit) if isinstance(s, str) else None for s in columns.get("source") or []]
        alignments = columns.get(self.args.alignment_column) if self.args.alignment_column else None
        alignments = list(alignments) if alignments is not None else [None] * num_rows
        floors = []
        for length, ref_len, alignment in zip(
            list(lengths)[:num_rows], columns["reference_length"][:num_rows], alignments
        ):
            if not length or not ref_len:
                floors.append(float("nan"))
                continue
            if alignment:
                try:
                    delays = aligned_delays(alignment, int(length), int(ref_len), self.args.chunk_size)
                except (ValueError, TypeError, IndexError) as error:
                    raise ValueError(
                        f"column {self.args.alignment_column!r} (SeqPOConfig.alignment_column) must hold "
                        f"(source_index, target_index) pairs over source units and latency units: {error}"
                    ) from error
            else:
                delays = eager_delays(int(length), int(ref_len), self.args.chunk_size)
            floors.append(average_lagging(delays, length, ref_len))
        return floors + [float("nan")] * (num_rows - len(floors))

    def _group_size(self) -> int:
        if self.trainer is None:
            return self.args.num_generations
        mode = "train" if self.trainer.model.training else "eval"
        return self.trainer.num_generations if mode == "train" else self.trainer.num_generations_eval

    def _log(self, all_quality: list, columns: dict, fused: np.ndarray) -> None:
        log_metric = columns.get("log_metric")
        if log_metric is None:
            return
        delays = gather_object(list(columns.get("delays", [])))
        lengths = gather_object(list(columns.get("source_length", [])))
        ref_lengths = gather_object(list(columns["reference_length"])[: len(columns.get("delays", []))])
        from trl_seqpo.simt.latency import LATENCY_REGISTRY, corpus_latency

        values: dict[str, list[float]] = {name: [] for name in LATENCY_REGISTRY}
        for delay, length, ref_len in zip(delays, lengths, ref_lengths):
            row = sentence_latency(delay, length, ref_len)  # every registered metric with the reference length
            # AL with the convention the latency reward uses
            ref_for_al = ref_len if self.args.latency_use_reference_length else None
            row["AL"] = LATENCY_REGISTRY["AL"].function(delay, length, ref_for_al)
            for name in values:
                values[name].append(row[name])
        scored = [q for q in all_quality if q is not None and np.isfinite(q)]
        if scored:
            log_metric("simt/quality", float(np.mean(scored)))
        for name, column in values.items():
            mean = corpus_latency(column)
            if mean is not None:
                log_metric(f"simt/{LATENCY_REGISTRY[name].reward}", mean)
        finite = fused[np.isfinite(fused)]
        if finite.size:
            log_metric("simt/fused_reward", float(finite.mean()))


def _safe_scores(
    reward: Callable, prompts: list, completions: list, kwargs: dict
) -> tuple[list[float | None], str | None]:
    """Call a reward; an exception or a wrong-length answer makes every row unscored (the second value says why)."""
    name = getattr(reward, "__name__", reward)
    try:
        scores = list(reward(prompts=prompts, completions=completions, **kwargs))
    except Exception as exc:  # noqa: BLE001 - reported by _require_some_scores on the gathered batch
        logger.warning("reward %s failed: %s", name, exc)
        return [None] * len(prompts), f"it raised {type(exc).__name__}: {exc}"
    if len(scores) != len(prompts):
        logger.warning(
            "reward %s returned %d values for %d rows; ignoring it for this batch", name, len(scores), len(prompts)
        )
        return [None] * len(prompts), f"it returned {len(scores)} values for {len(prompts)} rows"
    return [None if s is None or not np.isfinite(float(s)) else float(s) for s in scores], None


#: the inputs the built-in rewards read, and where each comes from
_REWARD_INPUTS = {
    "source": "SeqPOConfig.source_column",
    "reference": "SeqPOConfig.reference_column",
    "translation": "the rollout",
    "delays": "the rollout",
    "source_length": "the rollout",
}


def _require_some_scores(
    role: str, reward: Callable, scores: list, columns: dict[str, Any], error: str | None, args: SeqPOConfig
) -> None:
    """Raise when a reward scored no row of the (gathered) batch, naming the reward and the inputs it lacked."""
    if any(score is not None for score in scores) or not scores:
        return
    lacking = []
    for name, origin in _REWARD_INPUTS.items():
        values = columns.get(name)
        if values is None:
            lacking.append(f"'{name}' (absent; from {origin})")
        elif all(value is None for value in values):
            lacking.append(f"'{name}' (None in every row; from {origin})")
    name = getattr(reward, "__name__", repr(reward))
    raise ValueError(
        f"The {role} reward '{name}' scored none of the {len(scores)} trajectories of this step"
        + (f" ({error})" if error else "")
        + (f"; missing inputs: {', '.join(lacking)}" if lacking else "; every input it may read was present")
        + f". Training on it would give every trajectory a zero advantage. Check source_column={args.source_column!r}"
        f" and reference_column={args.reference_column!r} against the dataset, and the reward's own settings."
    )


def prompt_text(prompt: Any) -> str:
    """The source sentence of a SeqPO prompt: the string itself, or the last message's content."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return str(prompt[-1].get("content", ""))
    raise ValueError(f"SeqPOTrainer expects the prompt to be the source sentence, got {type(prompt).__name__}")


def resolve_rewards(reward_funcs: RewardFunc | Sequence[RewardFunc] | None, args: SeqPOConfig) -> tuple:
    """The (quality, latency) reward pair of `SeqPOTrainer` from `reward_funcs` and the config."""
    quality_kwargs = {name: reveal(value) for name, value in (args.quality_reward_kwargs or {}).items()}
    if reward_funcs is None:
        funcs: list[RewardFunc] = [args.quality_reward]
    elif isinstance(reward_funcs, str) or callable(reward_funcs):
        funcs = [reward_funcs]
    else:
        funcs = list(reward_funcs)
    if not 1 <= len(funcs) <= 2:
        raise ValueError(
            "SeqPOTrainer fuses exactly one quality reward and one latency reward: pass reward_funcs=[quality] or "
            f"[quality, latency] (names or callables), got {len(funcs)} rewards"
        )
    if isinstance(funcs[0], str) and funcs[0] in latency_rewards():
        raise ValueError(f"The first reward is the quality reward; {funcs[0]!r} is a latency reward")
    quality = get_reward(funcs[0], **quality_kwargs) if isinstance(funcs[0], str) else funcs[0]
    latency_name: RewardFunc = funcs[1] if len(funcs) == 2 else args.latency_reward
    if isinstance(latency_name, str):
        if latency_name not in latency_rewards():
            raise ValueError(f"The latency reward must be one of {latency_rewards()}, got {latency_name!r}")
        latency_kwargs = {"use_reference_length": args.latency_use_reference_length}
        latency = get_reward(latency_name, **(latency_kwargs if latency_name == "average_lagging" else {}))
    else:
        latency = latency_name
    return quality, latency
