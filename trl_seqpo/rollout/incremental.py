"""One simultaneous translation driven from outside, step by step: the source arrives unit by unit and each call
writes what the policy writes now (SeqPO-SiMT Alg. 1, one trajectory at a time).

Shared by the SimulEval agent (`trl_seqpo.integrations.simuleval`) and the streaming server (`trl_seqpo.serve`):
both render prompts and apply the policy with `SimultaneousRollout`, the code of training rollouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PENDING_CHUNK = "\u2026"  # stands for "more source to come" until SimulEval says the source has ended


class IncrementalTranslator:
    """Drive one trajectory of a `SimultaneousRollout` as the source arrives.

    The rollout normally knows the whole source; here it only sees the chunks completed so far. While the source is
    still streaming, one placeholder chunk stands for the unknown rest, so the rollout renders the "more to come"
    prompt and applies the "source not finished" stop rules exactly as it would at that step of a full rollout.

    Args:
        rollout: The rollout (its config gives the chunk size, units, prompt format and budgets).
        policy: Optional fixed schedule (`WaitKPolicy`, ``FullSentencePolicy``).
        seed: Sampling seed of step 1 (step ``t`` uses ``seed + t``, as the rollout does).
        source_index: Key of this sentence in the rollout's caches; translators sharing a rollout (the streaming
            server) each need their own.
    """

    def __init__(self, rollout: Any, policy: Any = None, seed: int | None = None, source_index: int = 0) -> None:
        self.rollout = rollout
        self.policy = policy
        self.seed = seed
        self.source_index = source_index
        self.reset()

    def reset(self) -> None:
        """Forget the current sentence."""
        from trl_seqpo.rollout.simultaneous import Trajectory

        config = self.rollout.config
        self.step = 0
        self.trajectory = Trajectory(
            source_index=self.source_index,
            chunks=[],
            source_length=1,
            target_unit=config.resolved_target_unit,
            chunk_size=config.chunk_size,
        )
        self.rollout.forget(self.source_index)  # per-sentence cache of the rollout's inserted chat tokens

    @property
    def finished(self) -> bool:
        """The translation of the current sentence is complete."""
        return self.trajectory.finished

    def _chunks(self, units: Sequence[str], source_finished: bool) -> list[str]:
        size = self.rollout.config.chunk_size
        glue = " " if self.rollout.config.resolved_source_unit == "word" else ""
        groups = [list(units[start : start + size]) for start in range(0, len(units), size)]
        if not source_finished and groups and len(groups[-1]) < size:
            groups.pop()  # an incomplete chunk is not shown before it is complete
        chunks = [glue.join(group) + glue for group in groups]
        if source_finished and chunks and glue:
            chunks[-1] = chunks[-1][: -len(glue)]  # as split_into_chunks: no space after the last unit
        return chunks

    def advance(self, units: Sequence[str], source_finished: bool) -> tuple[str, bool] | None:
        """Run the next step if its chunk is complete.

        Args:
            units: Source units received so far (SimulEval's ``states.source``).
            source_finished: Whether SimulEval has sent the last source unit.

        Returns:
            ``None`` to read more source, else ``(step output, finished)``: the step's text with whitespace
            normalised, and whether the translation is complete.
        """
        if self.finished:
            return "", True
        if not self.prepare(units, source_finished):
            return None
        trajectory = self.trajectory
        seed = None if self.seed is None else self.seed + self.step
        self.rollout.advance([trajectory], self.step, self.policy, seed)
        return " ".join(trajectory.step_outputs[-1].split()), trajectory.finished

    def ready(self, num_units: int, source_finished: bool) -> bool:
        """Whether the next step can run: its chunk is complete, or the source has ended."""
        if self.finished:
            return False
        return source_finished or num_units >= (self.step + 1) * self.rollout.config.chunk_size

    def prepare(self, units: Sequence[str], source_finished: bool) -> bool:
        """Show the trajectory the chunks received so far and count the next step, if it can run (`ready`).

        `advance` then runs the step alone; the streaming server runs the steps of many translators in one backend
        call (`SimultaneousRollout.plan_step`) with ``self.step``.
        """
        if not self.ready(len(units), source_finished):
            return False
        chunks = self._chunks(units, source_finished)
        trajectory = self.trajectory
        trajectory.chunks = chunks if source_finished else [*chunks, _PENDING_CHUNK]
        trajectory.source_length = len(units) if source_finished else len(units) + 1
        self.step += 1
        return True
