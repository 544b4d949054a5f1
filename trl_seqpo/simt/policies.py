"""Fixed read/write schedules (wait-k, full sentence) that turn any translation model into a chunked SiMT system.

A fixed policy decides *how much* may be written, the model decides *what*. At each step the environment reveals
one more chunk; the model is asked to continue its translation (any prompt format, any backend); the policy keeps
only the first ``allowed - already written`` target units of that continuation and drops the rest, which the
model may write again, better informed, at a later step. This is the "SFT + wait-k" baseline of SeqPO-SiMT
(Sec. 3, Baselines; wait-k from Ma et al., 2019) applied at chunk granularity: the policy is consulted once per
chunk rather than once per source unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trl_seqpo.simt.chunking import Unit, _check_chunk_size, _check_unit, count_units, split_into_chunks

_WORD_END = re.compile(r"\S+")
_CHAR = re.compile(r"\S")


def truncate_to_units(text: str, n_units: int | None, unit: Unit) -> str:
    """Keep the first ``n_units`` units of ``text`` with their original spacing.

    Whitespace before the first kept unit and between kept units is kept; whitespace after the last kept unit is
    dropped (the next step's continuation brings its own).

    Args:
        text: A model's continuation.
        n_units: How many units to keep; ``None`` keeps everything.
        unit: ``"word"`` or ``"char"``.

    Returns:
        A prefix of ``text``.

    Examples:
        >>> truncate_to_units(" the cat sat down", 2, "word"), truncate_to_units("下着 大雨", 3, "char")
        (' the cat', '下着 大')
    """
    _check_unit(unit)
    if n_units is None:
        return text
    if n_units < 0:
        raise ValueError(f"n_units must be >= 0 or None, got {n_units!r}")
    if n_units == 0:
        return ""
    pattern = _WORD_END if unit == "word" else _CHAR
    end = None
    for count, match in enumerate(pattern.finditer(text), start=1):
        if count == n_units:
            end = match.end()
            break
    return text if end is None else text[:end]


class ReadWritePolicy(Protocol):
    """A fixed schedule: how many target units may exist after reading some of the source."""

    def allowed_target_units(self, source_units_read: int, source_length: int) -> int | None:
        """Total target units allowed so far; ``None`` = unlimited."""
        ...


@dataclass(frozen=True)
class WaitKPolicy:
    """Wait-k (Ma et al., 2019): write target unit ``i`` only after reading ``k + i - 1`` source units.

    With ``s`` of ``n`` source units read, ``floor(rate * (s - k + 1))`` target units are allowed (0 while
    ``s < k``), and any number once ``s == n``. ``rate`` (target units per source unit, 1.0 in the paper) lets a
    word-to-character pair such as En->Zh keep pace.

    Args:
        k: Source units to wait for before the first target unit (>= 1).
        rate: Target units written per further source unit read (> 0).

    Examples:
        >>> policy = WaitKPolicy(3)
        >>> [policy.allowed_target_units(read, 8) for read in (2, 3, 6, 8)]
        [0, 1, 4, None]
    """

    k: int
    rate: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"wait-k needs an integer k >= 1, got {self.k!r}")
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, got {self.rate!r}")

    @property
    def name(self) -> str:
        return f"wait-{self.k}" if self.rate == 1.0 else f"wait-{self.k}x{self.rate:g}"

    def allowed_target_units(self, source_units_read: int, source_length: int) -> int | None:
        """Target units allowed after reading ``source_units_read`` of ``source_length`` units (None = all)."""
        if source_units_read >= source_length:
            return None
        return max(0, math.floor(self.rate * (source_units_read - self.k + 1) + 1e-9))


@dataclass(frozen=True)
class FullSentencePolicy:
    """Offline translation: write nothing until the whole source is read (AL = source length).

    Examples:
        >>> FullSentencePolicy().allowed_target_units(5, 6), FullSentencePolicy().allowed_target_units(6, 6)
        (0, None)
    """

    @property
    def name(self) -> str:
        return "full-sentence"

    def allowed_target_units(self, source_units_read: int, source_length: int) -> int | None:
        """0 before the end of the source, then ``None`` (unlimited)."""
        return None if source_units_read >= source_length else 0


def full_sentence() -> FullSentencePolicy:
    """The full-sentence (offline) policy; see `FullSentencePolicy`."""
    return FullSentencePolicy()


def policy_from_name(name: str) -> WaitKPolicy | FullSentencePolicy:
    """Parse ``"wait-3"`` / ``"wait3"`` / ``"wait-3x1.5"`` (k and rate) or ``"full-sentence"`` / ``"full"``.

    Args:
        name: Policy name, case-insensitive.

    Returns:
        The policy.

    Raises:
        ValueError: Unknown name.
    """
    key = name.strip().lower().replace("_", "-")
    if key in ("full", "full-sentence", "offline"):
        return FullSentencePolicy()
    match = re.fullmatch(r"wait-?(\d+)(?:x(\d+(?:\.\d+)?))?", key)
    if match is None:
        raise ValueError(
            f"unknown policy {name!r}: use 'wait-K' (e.g. 'wait-3', or 'wait-3x1.5' with a rate) or 'full'"
        )
    return WaitKPolicy(int(match.group(1)), float(match.group(2) or 1.0))


def constrain_step(
    policy: ReadWritePolicy,
    continuation: str,
    units_written: int,
    source_units_read: int,
    source_length: int,
    unit: Unit,
) -> str:
    """The part of a model's continuation a fixed policy lets it write at this step.

    Args:
        policy: A `WaitKPolicy`, `FullSentencePolicy` or anything with ``allowed_target_units``.
        continuation: What the model generated after the translation so far.
        units_written: Target units already written (in earlier steps).
        source_units_read: Source units read including this step's chunk.
        source_length: Source units in total.
        unit: Target unit, ``"word"`` or ``"char"``.

    Returns:
        A prefix of ``continuation`` (``""`` = wait).
    """
    allowed = policy.allowed_target_units(source_units_read, source_length)
    if allowed is None:
        return continuation
    return truncate_to_units(continuation, max(0, allowed - units_written), unit)


ContinueFn = Callable[[str, str, bool], str]
"""``continue_fn(source_prefix, translation_prefix, source_complete) -> continuation`` wraps any model."""


def simulate_policy(
    policy: ReadWritePolicy,
    source: str,
    chunk_size: int,
    source_unit: Unit,
    target_unit: Unit,
    continue_fn: ContinueFn,
) -> list[str]:
    """Run a fixed policy with any model over one source, one chunk per step (SeqPO-SiMT Sec. 3, Baselines).

    At step ``t`` the model sees chunks ``1..t`` and the translation so far and proposes a continuation; the policy
    keeps what its schedule allows. At the last chunk the schedule is unlimited, so the model finishes the
    translation in that step; the result has one output per chunk.

    Args:
        policy: The schedule.
        source: Full source sentence.
        chunk_size: Source units per chunk (``m``).
        source_unit: Unit of the source (chunking); see `default_unit`.
        target_unit: Unit of the target (what the schedule counts).
        continue_fn: Wraps the model, e.g. renders `render_paper_prompt` and
            returns the generated text.

    Returns:
        Step outputs ``y_1..y_T``; the translation is ``"".join(outputs)`` and
        `delays_from_steps` gives its delays.

    Examples:
        >>> lexicon = {"the": "le", "black": "noir", "cat": "chat", "sleeps": "dort"}
        >>> def word_by_word(source_prefix, translation_prefix, source_complete):
        ...     done = len(translation_prefix.split())
        ...     return "".join(" " + lexicon[word] for word in source_prefix.split()[done:])
        >>> simulate_policy(WaitKPolicy(2), "the black cat sleeps", 1, "word", "word", word_by_word)
        ['', ' le', ' noir', ' chat dort']
    """
    _check_chunk_size(chunk_size)
    chunks = split_into_chunks(source, chunk_size, source_unit)
    source_length = count_units(source, source_unit)
    outputs: list[str] = []
    translation, written = "", 0
    for step in range(1, len(chunks) + 1):
        complete = step == len(chunks)
        continuation = continue_fn("".join(chunks[:step]), translation, complete)
        read = min(step * chunk_size, source_length)
        kept = constrain_step(policy, continuation, written, read, source_length, target_unit)
        outputs.append(kept)
        translation += kept
        written = count_units(translation, target_unit)
    return outputs


def eager_delays(source_length: int, target_length: int, chunk_size: int) -> list[int]:
    """Delays of the *proportional eager* schedule: the fastest pace that never writes ahead of what was read.

    Target unit ``i`` (1-based) of ``target_length`` is due at source unit ``ceil(i * n / target_length)`` and is
    written as soon as the chunk holding that unit has arrived, so its delay is that chunk's end,
    ``min(n, chunk_size * ceil(due / chunk_size))``. On a monotone pair this is how early an honest policy can write
    when the source arrives ``chunk_size`` units at a time; writing earlier means writing what has not been read.

    Args:
        source_length: ``n``, source units (> 0).
        target_length: Target units to place (the reference length; > 0).
        chunk_size: Source units per chunk (the paper's ``m``).

    Returns:
        ``target_length`` non-decreasing delays for `trl_seqpo.simt.latency.average_lagging`.

    Examples:
        >>> eager_delays(5, 5, 2), eager_delays(4, 8, 2)
        ([2, 2, 4, 4, 5], [2, 2, 2, 2, 4, 4, 4, 4])
    """
    _check_chunk_size(chunk_size)
    if not (source_length > 0 and target_length > 0):
        raise ValueError(f"source_length and target_length must be positive, got {source_length}, {target_length}")
    delays = []
    for i in range(1, target_length + 1):
        due = -(-i * source_length // target_length)  # ceil without floats
        delays.append(min(source_length, chunk_size * -(-due // chunk_size)))
    return delays


def aligned_delays(
    alignment: Sequence[Sequence[int]], source_length: int, target_length: int, chunk_size: int
) -> list[int]:
    """Delays of the *aligned eager* schedule: each target unit written once the source it translates was read.

    Target unit ``j`` needs ``1 + max`` of the source indices aligned to units ``0..j`` (a prefix is writable when
    its most demanding unit is; an unaligned unit needs what the one before it needs), and is written when the chunk
    holding that source unit arrives: delay ``min(n, chunk_size * ceil(need / chunk_size))``, at least the first
    chunk. The same rule as `trl_seqpo.seqpo.sft_data.gold_step_outputs` with no extra wait. Unlike
    `eager_delays` it follows the pair's own word order: a sentence whose first chunk carries more than its share of
    the target gets an earlier schedule, a reordered one a later one.

    Args:
        alignment: ``(source_index, target_index)`` pairs over source and target units (0-based).
        source_length: ``n``, source units (> 0).
        target_length: Target units (the reference length; > 0).
        chunk_size: Source units per chunk (the paper's ``m``).

    Returns:
        ``target_length`` non-decreasing delays.

    Examples:
        >>> aligned_delays([(0, 0), (2, 1), (1, 2), (3, 3)], 4, 4, 2)
        [2, 4, 4, 4]
    """
    _check_chunk_size(chunk_size)
    if not (source_length > 0 and target_length > 0):
        raise ValueError(f"source_length and target_length must be positive, got {source_length}, {target_length}")
    needs = [0] * target_length
    for pair in alignment:
        src, tgt = int(pair[0]), int(pair[1])
        if not (0 <= src < source_length and 0 <= tgt < target_length):
            raise ValueError(
                f"alignment pair {(src, tgt)} out of range for {source_length} source and {target_length} target units"
            )
        needs[tgt] = max(needs[tgt], src + 1)
    delays, running = [], 0
    for need in needs:
        running = max(running, need)
        chunks = max(1, -(-running // chunk_size))
        delays.append(min(source_length, chunk_size * chunks))
    return delays
