"""Streaming simultaneous translation: many live sessions stepped in lockstep by one backend (issue 25).

A session receives its source a piece at a time. Whenever the next chunk of ``chunk_size`` units is complete (or the
source has ended), the session is *ready*; `StreamingEngine.step` runs one step of every ready session with **one**
backend call, whichever step each session is at, using the rollout code that training and ``trl-seqpo evaluate
simt`` use (`SimultaneousRollout.plan_step` / `finish_step`, `IncrementalTranslator` for the source seen so far),
so the prompts and the policy's output are the same tokens as an offline rollout given the same chunks.

The HF backend keeps each session's key/value states between its chunks (`SessionPrefixCache`): a step encodes only
the new chunk's tokens, not the whole history. This module holds no web code; ``trl_seqpo.serve`` puts it behind
HTTP.

Examples:
    >>> engine = StreamingEngine(backend, tokenizer)  # doctest: +SKIP
    >>> session = engine.open(SessionSettings(chunk_size=2, target_lang="German"))  # doctest: +SKIP
    >>> session.feed("the big dog ", end=False)  # doctest: +SKIP
    >>> engine.step([s for s in engine.sessions.values() if s.ready])  # doctest: +SKIP
    >>> session.increments[-1].text  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from trl_seqpo.rollout.prefix_cache import SessionPrefixCache
from trl_seqpo.rollout.settings import INFERENCE_DEFAULTS, rollout_config_from
from trl_seqpo.rollout.simultaneous import SimultaneousRollout
from trl_seqpo.simt.chunking import Unit, split_units

__all__ = ["Increment", "SessionSettings", "StreamingEngine", "StreamingSession"]


@dataclass(frozen=True)
class SessionSettings:
    """What a client chooses when it opens a session.

    Args:
        source_lang: Source language name (prompt, default unit).
        target_lang: Target language name.
        policy: ``"model"`` (the model's own read/write decisions) or ``"wait-k"``.
        k: wait-k's ``k`` (``policy="wait-k"``).
        chunk_size: Source units per step (``m``).
        source_unit: ``"word"`` or ``"char"``; ``None`` picks from the source language.
        target_unit: Unit of target delays; ``None`` picks from the target language.
    """

    source_lang: str = "English"
    target_lang: str = "Chinese"
    policy: Literal["model", "wait-k"] = "model"
    k: int = 3
    chunk_size: int = 3
    source_unit: Unit | None = None
    target_unit: Unit | None = None

    def __post_init__(self) -> None:
        if self.policy not in ("model", "wait-k"):
            raise ValueError(f"policy must be 'model' or 'wait-k', got {self.policy!r}")
        for name in ("k", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("source_unit", "target_unit"):
            if getattr(self, name) not in (None, "word", "char"):
                raise ValueError(f"{name} must be 'word', 'char' or null, got {getattr(self, name)!r}")
        for name in ("source_lang", "target_lang"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 64:
                raise ValueError(f"{name} must be a language name (1-64 characters), got {value!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SessionSettings:
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown session setting(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Increment:
    """One step's output of a session.

    Attributes:
        step: The step (1-based).
        text: What the policy wrote at this step (``""`` = it waited).
        token_ids: The step's generated tokens (stop token included), as in `Trajectory.step_token_ids`.
        source_units_read: Source units the step had seen.
        finished: The translation is complete.
        ready_at: Wall-clock (``time.time()``) when the step could start: its chunk had arrived and the previous step
            had been written.
        emitted_at: Wall-clock when the increment was ready to send.
    """

    step: int
    text: str
    token_ids: list[int]
    source_units_read: int
    finished: bool
    ready_at: float
    emitted_at: float

    @property
    def seconds(self) -> float:
        """Compute (and queueing) time of the step: ``emitted_at - ready_at``."""
        return max(0.0, self.emitted_at - self.ready_at)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 6)}


@dataclass
class StreamingSession:
    """One client's translation in progress (created by `StreamingEngine.open`)."""

    key: int
    settings: SessionSettings
    translator: Any
    source_unit: Unit
    text: str = ""
    units: list[str] = field(default_factory=list)
    unit_arrivals: list[float] = field(default_factory=list)
    source_finished: bool = False
    finished_at: float | None = None
    increments: list[Increment] = field(default_factory=list)
    error: str | None = None
    closed: bool = False
    in_flight: bool = False  # a step of this session is being computed (set by the server's scheduler)

    def feed(self, text: str, end: bool = False) -> None:
        """Add source text (and, with ``end``, mark the end of the source).

        A word counts once whitespace follows it or the source has ended, so a word may be split across messages.
        """
        if self.source_finished:
            raise ValueError("the source has already ended; open a new session")
        now = time.time()
        self.text += text
        units = split_units(self.text, self.source_unit)
        if self.source_unit == "word" and not end and units and not self.text[-1:].isspace():
            units = units[:-1]  # the last word may continue in the next message
        self.unit_arrivals.extend([now] * (len(units) - len(self.units)))
        self.units = units
        if end:
            if not self.units:
                raise ValueError("the source is empty: send at least one word before the end")
            self.source_finished, self.finished_at = True, now

    @property
    def finished(self) -> bool:
        return self.translator.finished

    @property
    def ready(self) -> bool:
        """The next step can run (its chunk is complete or the source has ended) and nothing went wrong."""
        return not self.closed and self.error is None and self.translator.ready(len(self.units), self.source_finished)

    def _ready_at(self) -> float:
        needed = (self.translator.step + 1) * self.settings.chunk_size
        arrived = self.unit_arrivals[needed - 1] if needed <= len(self.unit_arrivals) else self.finished_at
        previous = self.increments[-1].emitted_at if self.increments else 0.0
        return max(arrived or 0.0, previous)

    def result(self) -> dict[str, Any]:
        """The finished translation, with the fields of ``evaluate simt``'s ``hypotheses.jsonl``."""
        trajectory = self.translator.trajectory
        return {
            "source": "".join(trajectory.chunks),
            "translation": trajectory.translation,
            "chunks": trajectory.chunks,
            "step_outputs": trajectory.step_outputs,
            "step_token_ids": trajectory.step_token_ids,
            "delays": trajectory.delays,
            "source_length": trajectory.source_length,
            "finished_by": trajectory.finished_by,
            "step_seconds": [round(increment.seconds, 6) for increment in self.increments],
        }


class StreamingEngine:
    """Live sessions of one model, stepped together (module docstring).

    Args:
        backend: A `GenerationBackend`; an `HFGenerationBackend` keeps each session's key/value states.
        tokenizer: The policy's tokenizer.
        seed: Sampling seed (step call ``i`` uses ``seed + i``).
        keep_kv: Keep each session's key/value states between its chunks (``False``: re-encode every prompt, the
            baseline of ``benchmarks/serve.py``).
        **rollout: `SimultaneousRolloutConfig` fields shared by every session (``prompt_format``,
            ``max_new_tokens_per_step``, ``max_steps_after_source``, ``temperature``, ``top_p``, ...), e.g.
            ``**rollout_fields(serve_config)``; a session's own settings (languages, chunk size, units) replace
            these. Defaults: the rollout's, but 60 tokens per step and greedy decoding, as ``evaluate simt``.
    """

    def __init__(self, backend: Any, tokenizer: Any, *, seed: int = 0, keep_kv: bool = True, **rollout: Any) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.rollout_config = rollout_config_from(**{**INFERENCE_DEFAULTS, **rollout})
        self.seed = seed
        # an HF backend keeps prefix states in `_prefix_cache`; the server hands it one that keeps every session's
        keeps_states = hasattr(backend, "_prefix_cache") and getattr(backend, "reuse_cache", False)
        self.cache = SessionPrefixCache() if keep_kv and keeps_states else None
        self.sessions: dict[int, StreamingSession] = {}
        self._rollouts: dict[tuple, SimultaneousRollout] = {}
        self._keys = itertools.count()
        self._calls = 0
        self.rollout_for(SessionSettings())  # fail at start, not at the first client, on a tokenizer it cannot use

    def rollout_for(self, settings: SessionSettings) -> SimultaneousRollout:
        """The rollout of sessions with these languages, chunk size and units (shared by all such sessions)."""
        key = (settings.source_lang, settings.target_lang, settings.chunk_size, settings.source_unit,
               settings.target_unit)  # fmt: skip
        if key not in self._rollouts:
            config = rollout_config_from(settings, self.rollout_config)  # the session's fields, then the engine's
            self._rollouts[key] = SimultaneousRollout(self.backend, self.tokenizer, config)
        return self._rollouts[key]

    def open(self, settings: SessionSettings) -> StreamingSession:
        """Start a session."""
        from trl_seqpo.rollout.incremental import IncrementalTranslator
        from trl_seqpo.simt.policies import WaitKPolicy

        rollout = self.rollout_for(settings)
        key = next(self._keys)
        policy = WaitKPolicy(settings.k) if settings.policy == "wait-k" else None
        translator = IncrementalTranslator(rollout, policy, seed=None, source_index=key)
        session = StreamingSession(key, settings, translator, rollout.config.resolved_source_unit)
        self.sessions[key] = session
        return session

    def close(self, session: StreamingSession) -> None:
        """Forget a session and free its key/value states (call between steps, never during one)."""
        session.closed = True
        self.sessions.pop(session.key, None)
        session.translator.rollout.forget(session.key)
        if self.cache is not None:
            self.cache.drop(session.key)

    def step(self, sessions: list[StreamingSession]) -> list[StreamingSession]:
        """Run the next step of every ready session in ``sessions`` with one backend call.

        A session whose prompt cannot be built gets ``error`` set and is left out; the others go on. Returns the
        sessions that got a new `Increment`.
        """
        plans, stepped = [], []
        for session in sessions:
            if not session.ready:
                continue
            ready_at = session._ready_at()
            translator = session.translator
            try:
                translator.prepare(session.units, session.source_finished)
                item = (translator.trajectory, translator.step, translator.policy)
                plans.append((session, translator.rollout.plan_step([item]), ready_at))
            except Exception as error:  # noqa: BLE001 - one session's bad input never stops the others
                session.error = f"{type(error).__name__}: {error}"
        if not plans:
            return []
        self._calls += 1
        params = plans[0][0].translator.rollout.generation_params(self.seed + self._calls)
        prompts = [prompt for _, plan, _ in plans for prompt in plan.prompts]
        keys = [session.key for session, plan, _ in plans for _ in plan.prompts]
        outputs = []
        if prompts:
            with _session_states(self.backend, self.cache) if self.cache is not None else nullcontext():
                outputs = self.backend.generate(prompts, params)
            if self.cache is not None:
                self.cache.keep(keys)
        position = 0
        for session, plan, ready_at in plans:
            count = len(plan.prompts)
            session.translator.rollout.finish_step(plan, outputs[position : position + count])
            position += count
            trajectory = session.translator.trajectory
            session.increments.append(
                Increment(
                    step=session.translator.step,
                    text=trajectory.step_outputs[-1],
                    token_ids=list(trajectory.step_token_ids[-1]),
                    source_units_read=min(session.translator.step * session.settings.chunk_size, len(session.units)),
                    finished=trajectory.finished,
                    ready_at=ready_at,
                    emitted_at=time.time(),
                )
            )
            stepped.append(session)
        return stepped


@contextmanager
def _session_states(backend: Any, cache: SessionPrefixCache) -> Iterator[None]:
    """Let `HFGenerationBackend.generate` read and remember prefix states in the server's per-session cache (as its
    `cache_session` does with a cache that lives for one rollout)."""
    outer = backend._prefix_cache
    backend._prefix_cache = cache
    try:
        yield
    finally:
        backend._prefix_cache = outer
