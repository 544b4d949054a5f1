"""The generation backend protocol shared by the SiMT and ALPO rollouts.

A backend turns token ids into token ids: the rollouts own all prompt rendering and bookkeeping, so the same
rollout code drives transformers ``generate`` (`trl_seqpo.rollout.hf`) and vLLM
(`trl_seqpo.rollout.vllm`). Sampling parameters are given per call because one rollout mixes several kinds of
call (a SiMT step is short and stops at the end of the assistant turn; an ALPO candidate stops at the newline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from trl_seqpo.errors import check_at_least


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters of one backend call.

    Args:
        max_new_tokens: Budget of generated tokens per prompt (the stop token counts).
        temperature: Sampling temperature; ``0`` means greedy decoding.
        top_p: Nucleus sampling threshold (``1.0`` disables it).
        top_k: Top-k sampling (``0`` disables it).
        stop_token_ids: Generation of a row ends when it emits one of these ids; the id is kept in the output.
        seed: Optional seed for reproducible sampling (backends that support per-call seeds use it).
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        check_at_least(self, 1, "max_new_tokens")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class GenerationOutput:
    """What a backend returns for one prompt.

    Attributes:
        token_ids: Generated ids, including the stop token when one was emitted (``[]`` never happens: at least one
            token is generated).
        logprobs: Log-probability of each generated token under the temperature-scaled distribution it was sampled
            from (``log_softmax(logits / temperature)``; temperature 1 for greedy calls), as TRL's GRPO computes
            the policy's log-probabilities; ``len(logprobs) == len(token_ids)``.
        finish_reason: ``"stop"`` when a stop token ended the row, ``"length"`` when the budget did.
    """

    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)
    finish_reason: Literal["stop", "length"] = "length"

    @property
    def stop_token_id(self) -> int | None:
        return self.token_ids[-1] if self.finish_reason == "stop" and self.token_ids else None


@dataclass
class StepPlan:
    """One step of a multi-step rollout, planned before its backend call (`SimultaneousRollout.plan_step`).

    Attributes:
        prompts: Token-id prompts for the backend.
        to_generate: Per prompt, ``(trajectory, step, budget)``; ``budget`` = target units a fixed policy allows.
        skipped: ``(trajectory, step)`` that a fixed policy makes wait without a model call.
    """

    prompts: list[list[int]] = field(default_factory=list)
    to_generate: list[tuple[Any, int, int | None]] = field(default_factory=list)
    skipped: list[tuple[Any, int]] = field(default_factory=list)


@runtime_checkable
class GenerationBackend(Protocol):
    """Anything that can continue a batch of token-id prompts.

    Implementations must return one `GenerationOutput` per prompt, in order, and should process the whole
    batch in as few model calls as they can (the SiMT rollout calls them once per step for every live trajectory).
    """

    def generate(self, prompts: list[list[int]], params: GenerationParams) -> list[GenerationOutput]: ...
