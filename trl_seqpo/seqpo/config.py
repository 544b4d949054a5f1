"""Configuration of `SeqPOTrainer` (SeqPO-SiMT, arXiv:2505.20622)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trl import GRPOConfig

from trl_seqpo.errors import check_at_least
from trl_seqpo.precision import resolve_bf16
from trl_seqpo.rewards.fusion import DEFAULT_LATENCY_FLOOR, TRUNCATION_MODES
from trl_seqpo.secret import hide_secrets, reveal

if TYPE_CHECKING:  # pragma: no cover
    from trl_seqpo.rollout.simultaneous import SimultaneousRolloutConfig


@dataclass
class SeqPOConfig(GRPOConfig):
    r"""
    Configuration of the [`SeqPOTrainer`]: every [`~trl.GRPOConfig`] option plus the SiMT environment and the fused
    quality-latency reward of SeqPO-SiMT (Sec. 2, Eq. 2).

    Parameters:
        > Simultaneous environment (Sec. 2.1-2.2)

        chunk_size (`int`, *optional*, defaults to `3`):
            Source units (words, or characters for zh/ja/th) revealed per step, `m` in the paper.
        prompt_format (`str`, *optional*, defaults to `"chat"`):
            `"paper"`: the paper's Fig. 2 template re-rendered at every step, each step trained as its own sequence
            (what the paper does; see `trl_seqpo.seqpo.paper_format`). `"chat"`: chunks are user turns and outputs
            assistant turns, one sequence per trajectory trained in one forward pass (cheaper; step t then also
            sees the earlier turns' tokens).
        src_lang / tgt_lang (`str`, *optional*, defaults to `"English"` / `"Chinese"`):
            Language names shown in the prompt; they also choose the default units.
        source_unit / latency_unit (`str` or `None`, *optional*):
            `"word"` or `"char"` for the source chunks / the target delays (SimulEval's `--eval-latency-unit`).
            `None` picks characters for zh/ja/th and words otherwise.
        max_new_tokens_per_step (`int`, *optional*, defaults to `60`):
            Token budget of one step (the paper's "max new tokens 60", Table 6).
        max_steps_after_source (`int`, *optional*, defaults to `2`):
            Extra steps a trajectory may take after the last chunk before it is cut.
        system_prompt (`str` or `None`, *optional*):
            Optional system message for the chat format.
        step_end_token / end_of_translation_token (`str` or `None`, *optional*):
            Tokens that end one step (an assistant turn; `None`: `"<|im_end|>"`) and the whole translation (`None`:
            the tokenizer's EOS, or `"<|endoftext|>"` when the EOS is the step-end token, as for Qwen2.5-Instruct).
        source_column / reference_column (`str`, *optional*, defaults to `"source"` / `"reference"`):
            Dataset columns holding the source sentence and its reference translation.
        alignment_column (`str` or `None`, *optional*, defaults to `"alignment"`):
            Optional dataset column with a reference alignment, `(source_index, target_index)` pairs over source units
            and latency units; where a row has one, the eager latency floor follows it. `None`: never read.

        > Fused reward (Sec. 2.3, Eq. 2)

        quality_reward (`str`, *optional*, defaults to `"comet"`):
            Registered quality reward (`trl_seqpo.rewards.list_rewards()`), used when `reward_funcs` is not given.
        quality_reward_kwargs (`dict`, *optional*):
            Keyword arguments of the quality reward factory (e.g. `{"model": "Unbabel/wmt22-comet-da"}`).
        latency_reward (`str`, *optional*, defaults to `"average_lagging"`):
            A registered latency metric's reward name: `"average_lagging"`, `"laal"`, `"yaal"`, ...
        latency_use_reference_length (`bool`, *optional*, defaults to `False`):
            Compute AL with the reference length (SimulEval's default) instead of the hypothesis length.
        fusion_lambda (`float`, *optional*, defaults to `2.0`):
            `lambda` in `r = lambda * q - L`.
        latency_truncation (`str`, *optional*, defaults to `"eager"`):
            `"eager"`: each trajectory's raw latency floored, before group normalisation, at the AL of the
            honest eager schedule for its source and reference (as early as a policy can write without writing what
            it has not read: `trl_seqpo.simt.policies.aligned_delays` where the row has a reference alignment, else
            the proportional `eager_delays`; Sec. 4.4: latency bought below that comes from guessed or junk output,
            honest differences above it are kept); `"floor"`: floored at
            `latency_floor` instead; `"clamp_then_normalize"`: floored at `chunk_size` (erases honest differences
            below m); `"paper"`: the literal `max(m, normalised L)`; `"none"`: no truncation. See
            `docs/rewards.md`.
        latency_floor (`float`, *optional*, defaults to `0.0`):
            The floor of `latency_truncation="floor"`, in source units.

    > [!NOTE]
    > These parameters have default values different from [`~trl.GRPOConfig`]:
    > - `num_generations`: `5` (the paper's B) instead of `8`.
    > - `beta`: `0.02` (the paper's En->Zh value; use `0.1` for Zh->En) instead of `0.0`.
    > - `temperature`: `1.0` (Table 6).
    > - `max_completion_length`: `None`: the rollout bounds length through the per-step budget.
    > - `scale_rewards`: `"none"` instead of `"group"`. The fused reward is already z-normalised per group (Eq. 2),
    >   so GRPO's advantage is the fused reward itself (its group mean is 0); dividing by the group's std again
    >   would cancel `fusion_lambda` (`"group"` is refused; `"batch"`, one positive factor per batch, is allowed).
    > - `per_device_train_batch_size` / `per_device_eval_batch_size`: `None` instead of `8`, which means
    >   `num_generations` (`num_generations_eval` for evaluation): each device takes the B trajectories of one
    >   source per micro-batch, so any `num_generations` works with the default batch settings.
    > - `multi_objective_aggregation`: only `"sum_then_normalize"`; SeqPO passes one fused reward function, and
    >   `"normalize_then_sum"` would z-normalise it again per group.

    > [!NOTE]
    > Sampling is on-policy in both backends: `repetition_penalty`, `min_p`, `top_p`, `top_k` and
    > `generation_kwargs` must keep their neutral values (a `ValueError` names the one that does not), and a
    > checkpoint's own `generation_config` is never applied to the rollout.
    """

    # Parameters whose default values are overridden from GRPOConfig
    num_generations: int | None = field(
        default=5,
        metadata={"help": "Trajectories per source (B in SeqPO-SiMT, Sec. 3: B=5)."},
    )
    beta: float = field(
        default=0.02,
        metadata={"help": "Per-token KL coefficient (0.02 for En->Zh, 0.1 for Zh->En in the paper)."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature of the rollout (Table 6: 1.0)."},
    )
    max_completion_length: int | None = field(
        default=None,
        metadata={"help": "Unused by SeqPO: steps are bounded by max_new_tokens_per_step and max_steps_after_source."},
    )
    scale_rewards: str = field(
        default="none",
        metadata={
            "help": "'none' (default: the advantage is Eq. 2's fused reward, already z-normalised per group) or "
            "'batch'; 'group' would divide each group by its std again and cancel fusion_lambda."
        },
    )
    per_device_train_batch_size: int | None = field(
        default=None,
        metadata={"help": "Trajectories per device per micro-batch; None: num_generations (one source's group)."},
    )
    per_device_eval_batch_size: int | None = field(
        default=None,
        metadata={"help": "Trajectories per device per eval batch; None: num_generations_eval or num_generations."},
    )

    # Simultaneous environment
    chunk_size: int = field(default=3, metadata={"help": "Source units revealed per step (m in the paper)."})
    prompt_format: str = field(
        default="chat", metadata={"help": "'chat' (one sequence per trajectory) or 'paper' (Fig. 2 template)."}
    )
    src_lang: str = field(default="English", metadata={"help": "Source language name shown in the prompt."})
    tgt_lang: str = field(default="Chinese", metadata={"help": "Target language name shown in the prompt."})
    source_unit: str | None = field(
        default=None, metadata={"help": "'word' or 'char' for source chunks; None picks from src_lang."}
    )
    latency_unit: str | None = field(
        default=None, metadata={"help": "'word' or 'char' for target delays; None picks from tgt_lang."}
    )
    max_new_tokens_per_step: int = field(default=60, metadata={"help": "Token budget of one step (Table 6: 60)."})
    max_steps_after_source: int = field(
        default=2, metadata={"help": "Extra steps allowed after the last chunk before a trajectory is cut."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message (chat format)."})
    step_end_token: str | None = field(
        default=None, metadata={"help": "Token ending one step (assistant turn); None: '<|im_end|>'."}
    )
    end_of_translation_token: str | None = field(
        default=None,
        metadata={"help": "Token ending the translation; None: EOS, or '<|endoftext|>' if EOS ends turns."},
    )
    source_column: str = field(default="source", metadata={"help": "Dataset column with the source sentence."})
    reference_column: str = field(
        default="reference", metadata={"help": "Dataset column with the reference translation."}
    )
    alignment_column: str | None = field(
        default="alignment",
        metadata={"help": "Dataset column with a reference word alignment (eager floor); None: not read."},
    )

    # Fused reward
    quality_reward: str = field(
        default="comet", metadata={"help": "Registered quality reward used when reward_funcs is not given."}
    )
    quality_reward_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Keyword arguments of the quality reward factory."}
    )
    latency_reward: str = field(
        default="average_lagging", metadata={"help": "a registered latency metric: 'average_lagging', 'laal', ..."}
    )
    latency_use_reference_length: bool = field(
        default=False, metadata={"help": "Use the reference length in AL (SimulEval's default)."}
    )
    fusion_lambda: float = field(default=2.0, metadata={"help": "lambda in r = lambda * q - L (Eq. 2)."})
    latency_truncation: str = field(
        default="eager",
        metadata={
            "help": "'eager' (default: raw AL floored per trajectory at the AL of the proportional eager schedule), "
            "'floor' (raw AL floored at latency_floor), 'clamp_then_normalize' (floored at m), "
            "'paper' (literal max(m, z)) or 'none'."
        },
    )
    latency_floor: float = field(
        default=DEFAULT_LATENCY_FLOOR,
        metadata={"help": "Floor of the raw latency for latency_truncation='floor', in source units."},
    )

    _VALID_DICT_FIELDS = GRPOConfig._VALID_DICT_FIELDS + ["quality_reward_kwargs"]

    def __post_init__(self) -> None:
        _check_values(self)  # before TRL's own checks, which divide by num_generations
        _derive_batch_sizes(self)
        resolve_bf16(self)  # bf16 only where a GPU supports it (TRL: always unless fp16)
        super().__post_init__()
        self.quality_reward_kwargs = hide_secrets(self.quality_reward_kwargs)
        _check_reward_scaling(self)
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 source unit, got {self.chunk_size}")
        if self.prompt_format not in ("chat", "paper"):
            raise ValueError(f"prompt_format must be 'chat' or 'paper', got {self.prompt_format!r}")
        for name in ("source_unit", "latency_unit"):
            value = getattr(self, name)
            if value not in (None, "word", "char"):
                raise ValueError(f"{name} must be 'word', 'char' or None (pick from the language), got {value!r}")
        from trl_seqpo.simt.latency import get_latency_metric

        try:
            get_latency_metric(self.latency_reward)  # any registered latency metric
        except ValueError as error:
            raise ValueError(f"latency_reward: {error}") from None
        if self.latency_truncation not in TRUNCATION_MODES:
            raise ValueError(f"latency_truncation must be one of {TRUNCATION_MODES}, got {self.latency_truncation!r}")
        if self.latency_floor != self.latency_floor or abs(self.latency_floor) == float("inf"):
            raise ValueError(f"latency_floor must be a finite number of source units, got {self.latency_floor}")
        if not self.temperature > 0:  # also NaN; GRPO divides the logits by it, so 0 (greedy) cannot train
            raise ValueError(f"temperature must be > 0 to train (greedy is for evaluation), got {self.temperature}")
        if not self.fusion_lambda >= 0:  # also NaN
            raise ValueError(
                f"fusion_lambda must be >= 0 (it weighs quality against latency), got {self.fusion_lambda}"
            )
        check_at_least(self, 1, "max_new_tokens_per_step")
        _check_on_policy_sampling(self)
        if self.loss_type == "dr_grpo" and self.max_completion_length is None:
            raise ValueError(
                "loss_type='dr_grpo' divides the summed token loss by the constant max_completion_length, which SeqPO "
                "leaves None (the step budget bounds trajectories); set max_completion_length to a bound on "
                "trajectory tokens, e.g. (chunks + max_steps_after_source) * (max_new_tokens_per_step + ~10)"
            )
        check_at_least(self, 0, "max_steps_after_source")

    def rollout_config(self) -> SimultaneousRolloutConfig:
        """The settings of the rollout, the one object `SeqPOTrainer` hands it.

        Every field of `SimultaneousRolloutConfig` is read from the same-named field of this config
        (`trl_seqpo.rollout.settings.rollout_config_from`; the target delays' unit is `latency_unit` here, and
        GRPO's ``top_k=None`` is the rollout's 0), so a rollout setting is declared once on each side and never
        copied by hand (`tests/test_rollout_settings.py` checks that every field comes through).
        """
        from trl_seqpo.rollout.settings import rollout_config_from

        return rollout_config_from(self)

    def to_dict(self) -> dict:
        """TRL's config dump (what logging integrations record), with secrets in `quality_reward_kwargs` redacted.

        A judge or COMET reward may take an `api_key` (or another credential) through `quality_reward_kwargs`;
        like `hub_token` in TRL's own dump, its value is replaced, and URLs lose their user:password part.
        """
        from trl_seqpo.judge.config import redact_url

        data = super().to_dict()
        kwargs = data.get("quality_reward_kwargs")
        if isinstance(kwargs, dict):
            data["quality_reward_kwargs"] = {
                key: "<redacted>"
                if _SECRET_KEY.search(key) and value is not None
                else redact_url(reveal(value))
                if isinstance(reveal(value), str) and "://" in reveal(value)
                else value
                for key, value in kwargs.items()
            }
        return data


def _derive_batch_sizes(config: SeqPOConfig) -> None:
    """Unset per-device batch sizes default to one group of trajectories (`num_generations`, eval: `_eval`).

    TRL's fixed default of 8 only divides into groups of 1, 2, 4 or 8; a group of B = 5 (the paper's) would be refused.
    """
    group = config.num_generations or 8
    if config.per_device_train_batch_size is None:
        config.per_device_train_batch_size = group
    if config.per_device_eval_batch_size is None:
        config.per_device_eval_batch_size = config.num_generations_eval or group


def _check_reward_scaling(config: SeqPOConfig) -> None:
    """Refuse advantage normalisations that would undo Eq. 2's weighting of quality against latency."""
    if config.scale_rewards == "group":
        raise ValueError(
            "SeqPOConfig does not support scale_rewards='group' (or True): the fused reward lambda * z(q) - z(L) is "
            "already normalised per group (Eq. 2), and dividing it by its group std again cancels fusion_lambda (a "
            "group where only quality varies and one where only latency varies get the same advantages). Use "
            "scale_rewards='none' (the default: the advantage is the fused reward) or 'batch'."
        )
    if config.multi_objective_aggregation != "sum_then_normalize":
        raise ValueError(
            f"SeqPOConfig does not support multi_objective_aggregation={config.multi_objective_aggregation!r}: SeqPO "
            "passes one fused reward, already normalised per group (Eq. 2); 'normalize_then_sum' would normalise it "
            "again and cancel fusion_lambda. Leave multi_objective_aggregation='sum_then_normalize'."
        )


_SECRET_KEY = re.compile(r"(api_?key|token|secret|password|credential)", re.IGNORECASE)


def _check_values(config: SeqPOConfig) -> None:
    """Refuse out-of-range values at construction, naming the field."""
    if not config.beta >= 0:  # also NaN
        raise ValueError(f"beta must be >= 0 (the KL weight; 0 disables the KL term), got {config.beta}")
    if config.num_generations is not None and config.num_generations < 1:
        raise ValueError(f"num_generations must be >= 1 (trajectories per source, B), got {config.num_generations}")
    for name in ("src_lang", "tgt_lang", "source_column", "reference_column"):
        value = getattr(config, name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _check_on_policy_sampling(config: SeqPOConfig) -> None:
    """Refuse `GRPOConfig` sampling options that would sample from another distribution than the trained one.

    TRL recomputes the policy's log-probs as `log_softmax(logits / temperature)` over the whole vocabulary, and the
    rollout records the same quantity; any other logits processor (penalties, truncation) would make the sampled
    tokens come from a different distribution than the one whose log-probs are trained. The paper samples with
    `temperature=1.0, top_k=0, top_p=1.0` (Table 6).
    """
    changed = []
    if config.repetition_penalty != 1.0:
        changed.append(f"repetition_penalty={config.repetition_penalty}")
    if config.min_p is not None:
        changed.append(f"min_p={config.min_p}")
    if config.top_p != 1.0:
        changed.append(f"top_p={config.top_p}")
    if config.top_k not in (None, 0):
        changed.append(f"top_k={config.top_k}")
    if config.generation_kwargs:
        changed.append(f"generation_kwargs={config.generation_kwargs}")
    if changed:
        raise ValueError(
            f"SeqPOConfig does not support {', '.join(changed)}: SeqPO samples from softmax(logits / temperature), "
            "the distribution whose log-probs GRPO trains, in both backends. Leave repetition_penalty=1.0, "
            "min_p=None, top_p=1.0, top_k=0 and generation_kwargs unset (the paper's Table 6 setting); change only "
            "temperature."
        )
