"""Lockstep multi-step simultaneous-translation rollout (SeqPO-SiMT Sec. 2.2, Alg. 1 lines 2-5).

For a batch of sources x ``num_generations`` trajectories, every live trajectory advances one source chunk at a
time and all of them are continued with **one** batched backend call per step; trajectories that finish drop out.
After the last chunk a trajectory keeps going until it ends its turn with some output, emits the end-of-translation
token, or runs out of ``max_steps_after_source`` extra steps.

Two prompt formats (``trl_seqpo.simt.templates``):

* ``chat`` (default): chunk t is a user turn and the policy's output y_t an assistant turn, so a trajectory is one
  token sequence: ``prompt_ids`` (instruction + chunk 1) then ``completion_ids`` interleaving the policy's tokens
  (``env_mask`` 1) with the tokens the environment inserts between turns (``env_mask`` 0). TRL's GRPO trains on it
  in one forward pass through ``rollout_func`` + ``env_mask``.
* ``paper``: the Fig. 2 template is re-rendered at every step, so each step is its own (prompt, output) sequence.

Stop rules. A step ends at the first stop token or after ``max_new_tokens_per_step`` tokens. In the chat format the
stop tokens are the end of the assistant turn (``step_end_token``, ``<|im_end|>`` for ChatML) and the end of the
translation (the tokenizer's EOS); in the paper format the step ends at EOS. No trajectory ends before the whole
source has been shown; after that it is finished when

1. it emitted the end-of-translation token (chat format), or
2. the step ended on its stop token with a non-empty output, or
3. ``max_steps_after_source`` further steps were used up.

**End of translation before the last chunk** is read as the end of that step (a wait when nothing was written): the
environment closes the turn and shows the next chunk. The token stays in the trajectory as the policy sampled it,
with its recorded log-probability, so the gradient stays on-policy without masking the distribution (masking it
would need the same mask in TRL's log-prob recomputation). The reward then always scores a translation of the whole
source; a policy that "stops" after chunk 1 can no longer get a low AL from a one-chunk translation.

Delays follow DESIGN.md: a target unit first emitted at step t has delay ``min(t * m, n)`` source units, units emitted
after the last chunk get ``n``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from trl_seqpo.errors import check_at_least
from trl_seqpo.rollout.engine import GenerationBackend, GenerationOutput, GenerationParams, StepPlan
from trl_seqpo.simt.chunking import Unit, count_units, default_unit, split_into_chunks
from trl_seqpo.simt.latency import delays_from_steps
from trl_seqpo.simt.templates import build_chat_messages, render_chat, render_paper_prompt

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

    from trl_seqpo.simt.policies import WaitKPolicy

PromptFormat = Literal["chat", "paper"]
_SENTINEL = "\u2063SEQPO_STEP_OUTPUT\u2063"


@dataclass(frozen=True)
class SimultaneousRolloutConfig:
    """Settings of a simultaneous rollout.

    Args:
        chunk_size: Source units per chunk, ``m`` in the paper.
        src_lang: Source language name, used in the prompt and (when ``source_unit`` is ``None``) for the unit.
        tgt_lang: Target language name, likewise.
        source_unit: ``"word"`` or ``"char"``; ``None`` picks characters for zh/ja/th, words otherwise.
        target_unit: Unit in which target delays are counted (SimulEval's ``--eval-latency-unit``); ``None`` as above.
        prompt_format: ``"chat"`` or ``"paper"``.
        max_new_tokens_per_step: Token budget of one step.
        max_steps_after_source: Extra steps allowed once the whole source has been shown.
        temperature: Sampling temperature (``0`` = greedy).
        top_p: Nucleus sampling threshold.
        top_k: Top-k sampling (``0`` disables).
        system_prompt: Optional system message (chat format).
        step_end_token: Token that ends an assistant turn in the chat format; ``None`` uses ``"<|im_end|>"``.
        end_of_translation_token: Token the policy emits to end the whole translation (chat format). ``None`` uses
            the tokenizer's EOS, or ``"<|endoftext|>"`` when the EOS is the step-end token (Qwen2.5-Instruct's EOS
            is ``<|im_end|>``).
    """

    chunk_size: int = 3
    src_lang: str = "English"
    tgt_lang: str = "Chinese"
    source_unit: Unit | None = None
    target_unit: Unit | None = None
    prompt_format: PromptFormat = "chat"
    max_new_tokens_per_step: int = 32
    max_steps_after_source: int = 2
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    system_prompt: str | None = None
    step_end_token: str | None = None
    end_of_translation_token: str | None = None

    def __post_init__(self) -> None:
        check_at_least(self, 1, "chunk_size")
        if self.prompt_format not in ("chat", "paper"):
            raise ValueError(f"prompt_format must be 'chat' or 'paper', got {self.prompt_format!r}")
        check_at_least(self, 1, "max_new_tokens_per_step")
        check_at_least(self, 0, "max_steps_after_source")

    @property
    def resolved_source_unit(self) -> Unit:
        return self.source_unit or default_unit(self.src_lang)

    @property
    def resolved_target_unit(self) -> Unit:
        return self.target_unit or default_unit(self.tgt_lang)


@dataclass
class Trajectory:
    """One simultaneous translation of one source.

    Attributes:
        source_index: Position of the source in the batch given to `SimultaneousRollout.run`.
        chunks: The source chunks, ``"".join(chunks) == source``.
        source_length: Source length ``n`` in source units.
        step_outputs: Decoded output of every step (``""`` = wait), in order.
        step_token_ids: Generated token ids of every step, stop token included.
        step_logprobs: Log-probabilities of those tokens as the backend recorded them (``[]`` when a policy edited
            the step).
        step_prompt_ids: Paper format only: the prompt of every step.
        prompt_ids: Chat format: instruction + first chunk; paper format: the first step's prompt.
        completion_ids: Chat format: everything after ``prompt_ids`` (policy and environment tokens).
        completion_logprobs: Per token of ``completion_ids``; ``0.0`` for environment tokens.
        env_mask: Per token of ``completion_ids``: 1 for tokens the policy generated, 0 for inserted ones.
        finished_by: ``"eos"``, ``"stop"`` (rule 2 of the module docstring) or ``"budget"`` (rule 3).
    """

    source_index: int
    chunks: list[str]
    source_length: int
    target_unit: Unit
    chunk_size: int
    step_outputs: list[str] = field(default_factory=list)
    step_token_ids: list[list[int]] = field(default_factory=list)
    step_logprobs: list[list[float]] = field(default_factory=list)
    step_prompt_ids: list[list[int]] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    completion_logprobs: list[float] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    finished_by: str | None = None
    policy_edited: bool = False

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)

    @property
    def finished(self) -> bool:
        return self.finished_by is not None

    @property
    def source(self) -> str:
        return "".join(self.chunks)

    @property
    def translation(self) -> str:
        return join_step_outputs(self.step_outputs, self.target_unit)

    @property
    def delays(self) -> list[int]:
        # every step's output is a whole number of units, as join_step_outputs treats it
        separated = [output.strip() + " " if output.strip() else "" for output in self.step_outputs]
        return delays_from_steps(separated, self.chunk_size, self.source_length, self.target_unit)

    @property
    def num_empty_steps(self) -> int:
        return sum(1 for output in self.step_outputs if not output.strip())


def _single_token_id(tokenizer: PreTrainedTokenizerBase, token: str, name: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or tokenizer.convert_ids_to_tokens(token_id) != token:
        raise ValueError(
            f"{name} {token!r} is not a single token of this tokenizer; set SimultaneousRolloutConfig.{name} to a "
            "token of its vocabulary"
        )
    return int(token_id)


def join_step_outputs(outputs: Sequence[str], unit: Unit) -> str:
    """Concatenate step outputs into the running translation: with spaces for word units, directly for characters."""
    parts = [output.strip() for output in outputs if output.strip()]
    return (" " if unit == "word" else "").join(parts)


class SimultaneousRollout:
    """Run lockstep simultaneous translation with any `GenerationBackend`.

    Args:
        backend: Continues token-id prompts (HF ``generate`` or vLLM).
        tokenizer: Tokenizer of the policy (chat template needed for the chat format).
        config: `SimultaneousRolloutConfig`.

    Examples:
        >>> backend = HFGenerationBackend(model, tok)  # doctest: +SKIP
        >>> rollout = SimultaneousRollout(backend, tok, SimultaneousRolloutConfig())  # doctest: +SKIP
        >>> trajectories = rollout.run(["the big dog runs"], num_generations=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        backend: GenerationBackend,
        tokenizer: PreTrainedTokenizerBase,
        config: SimultaneousRolloutConfig | None = None,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.config = config or SimultaneousRolloutConfig()
        if tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer needs an eos_token (it ends the translation)")
        self.eos_token_id = int(tokenizer.eos_token_id)
        if self.config.prompt_format == "chat":
            if getattr(tokenizer, "chat_template", None) is None:
                raise ValueError(
                    "prompt_format='chat' needs a tokenizer with a chat template; set tokenizer.chat_template or use "
                    "prompt_format='paper'"
                )
            self.step_end_token = self.config.step_end_token or "<|im_end|>"
            self.step_end_token_id = _single_token_id(tokenizer, self.step_end_token, "step_end_token")
            end_token = self.config.end_of_translation_token
            if end_token is None:
                end_token = tokenizer.eos_token if self.eos_token_id != self.step_end_token_id else "<|endoftext|>"
            self.eos_token_id = _single_token_id(tokenizer, end_token, "end_of_translation_token")
            if self.eos_token_id == self.step_end_token_id:
                raise ValueError(
                    f"end_of_translation_token and step_end_token are the same token ({end_token!r}): every step "
                    "would end the translation; pick another end_of_translation_token"
                )
            self.stop_token_ids: tuple[int, ...] = (self.step_end_token_id, self.eos_token_id)
        else:
            self.step_end_token = tokenizer.eos_token
            self.step_end_token_id = self.eos_token_id
            self.stop_token_ids = (self.eos_token_id,)
        self._env_cache: dict[tuple[int, int], list[int]] = {}

    # ------------------------------------------------------------------ public API
    def run(
        self,
        sources: Sequence[str],
        num_generations: int = 1,
        policy: WaitKPolicy | None = None,
        seed: int | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> list[Trajectory]:
        """Translate every source ``num_generations`` times, all trajectories in lockstep.

        Args:
            sources: Source sentences.
            num_generations: Trajectories per source (``B`` in the paper); they are returned grouped by source:
                ``[s0_g0, s0_g1, ..., s1_g0, ...]``, the order TRL's GRPO expects.
            policy: Optional fixed read/write schedule (e.g. wait-k): a step's output is cut to what the schedule
                allows; such steps are marked ``policy_edited`` and carry no log-probabilities.
            seed: Seed for the first backend call (each step adds its index).
            on_step: Called with the step index after each lockstep step (evaluation times the steps with it).

        Returns:
            One `Trajectory` per (source, generation).
        """
        if num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {num_generations}")
        cfg = self.config
        trajectories = []
        for index, source in enumerate(sources):
            if not isinstance(source, str) or not source.strip():
                raise ValueError(f"source {index} is empty; every source needs at least one word")
            chunks = split_into_chunks(source, cfg.chunk_size, cfg.resolved_source_unit)
            length = count_units(source, cfg.resolved_source_unit)
            for _ in range(num_generations):
                trajectories.append(
                    Trajectory(
                        source_index=index,
                        chunks=list(chunks),
                        source_length=length,
                        target_unit=cfg.resolved_target_unit,
                        chunk_size=cfg.chunk_size,
                    )
                )
        self.reset()
        step = 0
        # a backend that can keep key/value states between steps (HF) does so for this rollout only
        session = getattr(self.backend, "cache_session", None)
        with session() if session is not None else nullcontext():
            while True:
                live = [t for t in trajectories if not t.finished]
                # in lockstep, a finished process keeps stepping (idle) until all are
                if not self._any_rank(bool(live)):
                    break
                step += 1
                self._step(live, step, policy, None if seed is None else seed + step)
                if on_step is not None:
                    on_step(step)
        return trajectories

    def _any_rank(self, flag: bool) -> bool:
        any_rank = getattr(self.backend, "any_rank", None)
        return any_rank(flag) if any_rank is not None else flag

    @property
    def _lockstep(self) -> bool:
        return bool(getattr(self.backend, "synced_gpus", False))

    def reset(self) -> None:
        """Forget the per-source caches; call it before driving new trajectories step by step with `advance`."""
        self._env_cache = {}

    def advance(
        self, trajectories: list[Trajectory], step: int, policy: WaitKPolicy | None = None, seed: int | None = None
    ) -> None:
        """Run step ``step`` (1-based) for unfinished ``trajectories`` with one backend call.

        `run` is a loop over this method; a streaming agent (e.g. the SimulEval agent) calls it itself as the
        source arrives. ``trajectory.source_index`` keys the cache of inserted chat tokens, so indices must be unique
        among the trajectories driven since the last `reset`.
        """
        live = [t for t in trajectories if not t.finished]
        if live:
            self._step(live, step, policy, seed)

    # ------------------------------------------------------------------ one lockstep step
    def _step(self, live: list[Trajectory], step: int, policy: WaitKPolicy | None, seed: int | None) -> None:
        plan = self.plan_step([(trajectory, step, policy) for trajectory in live])
        outputs = (
            self.backend.generate(plan.prompts, self.generation_params(seed)) if plan.prompts or self._lockstep else []
        )
        self.finish_step(plan, outputs)

    def generation_params(self, seed: int | None = None) -> GenerationParams:
        """The sampling parameters of one step's backend call."""
        cfg = self.config
        return GenerationParams(
            max_new_tokens=cfg.max_new_tokens_per_step,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            stop_token_ids=self.stop_token_ids,
            seed=seed,
        )

    def plan_step(self, items: Sequence[tuple[Trajectory, int, WaitKPolicy | None]]) -> StepPlan:
        """Prompts of ``(trajectory, step, policy)`` items, each at its own step (a server batches sessions at
        different steps): ``backend.generate(plan.prompts, generation_params(seed))``, then `finish_step`."""
        plan = StepPlan()
        for trajectory, step, policy in items:
            budget = self._policy_budget(trajectory, step, policy)
            if budget == 0:
                plan.skipped.append((trajectory, step))
                continue
            plan.prompts.append(self._prompt_for_step(trajectory, step))
            plan.to_generate.append((trajectory, step, budget))
        return plan

    def finish_step(self, plan: StepPlan, outputs: Sequence[GenerationOutput]) -> None:
        """Apply the policies to the backend's ``outputs`` for ``plan.prompts`` and record every trajectory's step."""
        if len(outputs) != len(plan.prompts):
            raise RuntimeError(f"The generation backend returned {len(outputs)} outputs for {len(plan.prompts)}")
        for (trajectory, step, budget), output in zip(plan.to_generate, outputs):
            if budget is not None:
                output = self._apply_policy(output, budget)
                trajectory.policy_edited = True
            self._record(trajectory, step, output)
        for trajectory, step in plan.skipped:  # the schedule says wait: an empty step that costs no model call
            trajectory.policy_edited = True
            self._prompt_for_step(trajectory, step)  # the chunk is still read: its user turn joins the history
            self._record(trajectory, step, GenerationOutput([self.step_end_token_id], [], "stop"))

    def forget(self, source_index: int) -> None:
        """Drop the cached inserted tokens of one source (a streaming session that ended)."""
        for key in [key for key in list(self._env_cache) if key[0] == source_index]:  # list(): a snapshot
            self._env_cache.pop(key, None)

    def _prompt_for_step(self, trajectory: Trajectory, step: int) -> list[int]:
        cfg = self.config
        source_complete = step >= trajectory.num_chunks
        if cfg.prompt_format == "paper":
            shown = trajectory.chunks[: min(step, trajectory.num_chunks)]
            text = render_paper_prompt(
                "".join(shown),
                "".join(trajectory.step_outputs),
                cfg.src_lang,
                cfg.tgt_lang,
                source_complete=source_complete,
            )
            ids = self._encode(text)
            trajectory.step_prompt_ids.append(ids)
            if step == 1:
                trajectory.prompt_ids = ids
            return ids
        if step == 1:
            # the first prompt depends only on the source: rendered once per source, shared by its group (key
            # (source, 1); `_env_tokens` uses (source, step >= 2))
            key = (trajectory.source_index, 1)
            if key not in self._env_cache:
                messages = self._messages(trajectory, step, outputs=[])
                self._env_cache[key] = self._encode(render_chat(self.tokenizer, messages, add_generation_prompt=True))
            trajectory.prompt_ids = list(self._env_cache[key])
            return list(trajectory.prompt_ids)
        # later steps: close the previous assistant turn if the budget cut it, then add the next user turn
        previous = trajectory.step_token_ids[-1]
        if not previous or previous[-1] != self.step_end_token_id:
            self._append_env(trajectory, [self.step_end_token_id])
        self._append_env(trajectory, self._env_tokens(trajectory, step))
        return trajectory.prompt_ids + trajectory.completion_ids

    # ------------------------------------------------------------------ chat-format helpers
    def _messages(self, trajectory: Trajectory, step: int, outputs: list[str]) -> list[dict]:
        shown = trajectory.chunks[: min(step, trajectory.num_chunks)]
        return build_chat_messages(
            shown,
            outputs,
            self.config.src_lang,
            self.config.tgt_lang,
            source_complete=step >= trajectory.num_chunks,
            system_prompt=self.config.system_prompt,
        )

    def _env_tokens(self, trajectory: Trajectory, step: int) -> list[int]:
        """Tokens between the end of assistant turn ``step - 1`` and the start of assistant turn ``step``.

        They depend only on the source and the step (not on what the policy wrote), so they are rendered once per
        (source, step) and shared by the trajectories of a group.
        """
        key = (trajectory.source_index, step)
        cached = self._env_cache.get(key)
        if cached is not None:
            return cached
        outputs = [*(["x"] * (step - 2)), _SENTINEL]
        text = render_chat(self.tokenizer, self._messages(trajectory, step, outputs), add_generation_prompt=True)
        if text.count(_SENTINEL) != 1:
            raise ValueError("The chat template dropped or repeated an assistant turn; cannot build the chat rollout")
        tail = text.split(_SENTINEL, 1)[1]
        if not tail.startswith(self.step_end_token):
            raise ValueError(
                f"The chat template does not end assistant turns with {self.step_end_token!r}; set "
                "step_end_token to the token that does"
            )
        ids = self._encode(tail[len(self.step_end_token) :])
        self._env_cache[key] = ids
        return ids

    def _append_env(self, trajectory: Trajectory, ids: list[int]) -> None:
        trajectory.completion_ids.extend(ids)
        trajectory.completion_logprobs.extend([0.0] * len(ids))
        trajectory.env_mask.extend([0] * len(ids))

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, trajectory: Trajectory, step: int, output: GenerationOutput) -> None:
        cfg = self.config
        ids = list(output.token_ids)
        content = [t for t in ids if t not in self.stop_token_ids]
        text = self.tokenizer.decode(content, skip_special_tokens=True)
        trajectory.step_outputs.append(text)
        trajectory.step_token_ids.append(ids)
        trajectory.step_logprobs.append(list(output.logprobs))
        if cfg.prompt_format == "chat":
            trajectory.completion_ids.extend(ids)
            logprobs = list(output.logprobs) if len(output.logprobs) == len(ids) else [0.0] * len(ids)
            trajectory.completion_logprobs.extend(logprobs)
            trajectory.env_mask.extend([1] * len(ids))
        if step < trajectory.num_chunks:
            return  # never finished before every chunk has been read (an early end of translation ends the step)
        if cfg.prompt_format == "chat" and output.stop_token_id == self.eos_token_id:
            trajectory.finished_by = "eos"
        elif output.finish_reason == "stop" and text.strip():
            trajectory.finished_by = "stop"
        elif step - trajectory.num_chunks >= cfg.max_steps_after_source:
            trajectory.finished_by = "budget"

    # ------------------------------------------------------------------ fixed policies
    def _policy_budget(self, trajectory: Trajectory, step: int, policy: WaitKPolicy | None) -> int | None:
        """Target units the policy still allows at this step (``None`` = no limit)."""
        if policy is None:
            return None
        read = min(step * self.config.chunk_size, trajectory.source_length)
        allowed = policy.allowed_target_units(read, trajectory.source_length)
        if allowed is None:
            return None
        emitted = count_units(trajectory.translation, trajectory.target_unit)
        return max(0, allowed - emitted)

    def _apply_policy(self, output: GenerationOutput, budget: int) -> GenerationOutput:
        from trl_seqpo.simt.policies import truncate_to_units

        content = [t for t in output.token_ids if t not in self.stop_token_ids]
        text = self.tokenizer.decode(content, skip_special_tokens=True)
        kept = truncate_to_units(text, budget, self.config.resolved_target_unit)
        if kept == text:
            return GenerationOutput(list(output.token_ids), [], output.finish_reason)
        ids = self._encode(kept) + [self.step_end_token_id]
        return GenerationOutput(ids, [], "stop")

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
