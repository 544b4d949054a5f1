r"""Latency metrics for simultaneous translation (AL, LAAL, DAL, AP, YAAL, LongYAAL), per sentence and batched.

Every latency metric lives in one registry (`register_latency_metric`): the SeqPO latency reward, the trainer's
``simt/*`` logs, ``trl-seqpo evaluate simt`` and the streaming server all read it, so adding a metric is one function
and one registration.

Notation: a hypothesis of ``|Y|`` target units, ``delays[i]`` = number of source units read when target unit
``i + 1`` was written ($d_i$, non-decreasing in practice), a source of $n = |X|$ units and, optionally,
a reference of ``|Y*|`` units. The values agree with SimulEval 1.1.4's scorers
(``simuleval/evaluator/scorers/latency_scorer.py``) on every input SimulEval accepts:

* AL (Ma et al., 2019, STACL): $AL = \frac{1}{\tau}\sum_{i=1}^{\tau} \big(d_i - \frac{i-1}{\gamma}\big)$,
  $\gamma = |Y| / |X|$, $\tau$ = the first index with $d_i \ge |X|$ (or $|Y|$ if none);
  $|Y|$ is the reference length when given (SimulEval's default), the hypothesis length otherwise (its
  ``--no-use-ref-len``). When $d_1 > |X|$ the value is $d_1$.
* LAAL (Papi et al., 2022): AL with $|Y| = \max(|Y_{hyp}|, |Y^*|)$, so over-long hypotheses are not rewarded.
* DAL (Cherry & Foster, 2019): $d'_1 = d_1$, $d'_i = \max(d_i, d'_{i-1} + 1/\gamma)$,
  $DAL = \frac{1}{|Y|}\sum_{i=1}^{|Y|} \big(d'_i - \frac{i-1}{\gamma}\big)$, always with the hypothesis length.
* AP (Cho & Esipova, 2016): $AP = \frac{1}{|X|\,|Y|}\sum_{i=1}^{|Y_{hyp}|} d_i$, $|Y|$ as for AL.
* YAAL (Polák et al., 2025, "Better Late Than Never"; IWSLT's latency metric, as OmniSTEval 0.1.10 computes it):
  LAAL's $\gamma$, summed only over the target units written *before* the source ended ($d_i < |X|$); undefined
  (NaN, left out of corpus averages as OmniSTEval does) when the first unit waited for the whole source.
  LongYAAL is its long-form variant: every unit counts until the end of the recording (default: all).

An empty hypothesis (SimulEval skips it) is scored as an offline translation written after the whole source:
AL = LAAL = DAL = ``source_length`` and AP = 1.0; no exception. See ``docs/latency.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from trl_seqpo.simt.chunking import Unit, _check_chunk_size, count_units
from trl_seqpo.simt.latency_kernels import (
    _as_float_array,
    _batched_differentiable,
    _batched_lagging,
    _batched_proportion,
    _to_ragged,
)

LatencyFunction = Callable[[Sequence[float], float, "float | None"], float]
"""``(delays, source_length, reference_length) -> latency``: the signature of every registered metric."""


@dataclass(frozen=True)
class LatencyMetric:
    """One registered latency metric.

    Args:
        name: Its key in results, ``sentence_latency`` and tables (``"AL"``).
        function: ``(delays, source_length, reference_length) -> float`` in source units; NaN = undefined for this
            sentence (corpus averages leave it out).
        reward: The name of its SeqPO latency reward and trainer log (``simt/<reward>``), e.g. ``"average_lagging"``.
        batched: Optional vectorised ``(flat, bounds, source, reference) -> [batch]`` used by `latency_batch`
            (default: the sentence function row by row).
    """

    name: str
    function: LatencyFunction
    reward: str
    batched: Callable[..., np.ndarray] | None = None


LATENCY_REGISTRY: dict[str, LatencyMetric] = {}
"""Registered latency metrics by name, in registration order. Add with `register_latency_metric`."""


def register_latency_metric(
    name: str, *, reward: str, batched: Callable[..., np.ndarray] | None = None
) -> Callable[[LatencyFunction], LatencyFunction]:
    """Register ``(delays, source_length, reference_length) -> float`` as the latency metric ``name``.

    The metric then appears in `sentence_latency`, `latency_batch`, ``trl-seqpo evaluate simt`` results, the
    trainer's ``simt/<reward>`` logs and the streaming server, and ``get_reward(reward)`` scores it.

    Args:
        name: The metric's name in results (``"AL"``); must not be taken.
        reward: Lowercase name of its reward and log key (``"average_lagging"``); must not be taken.
        batched: Optional vectorised version (see `LatencyMetric`).

    Returns:
        A decorator that registers the function and returns it unchanged.

    Examples:
        >>> @register_latency_metric("LAST_DELAY", reward="last_delay")
        ... def last_delay(delays, source_length, reference_length=None):
        ...     return float(delays[-1]) if len(delays) else float(source_length)
        >>> sentence_latency([1, 3], 3)["LAST_DELAY"]
        3.0
        >>> _ = unregister_latency_metric("LAST_DELAY")
    """
    taken = [m.name for m in LATENCY_REGISTRY.values() if m.name == name or m.reward == reward]
    if taken:
        raise ValueError(f"a latency metric named {name!r} or with reward {reward!r} is already registered")
    if not reward or reward != reward.lower():
        raise ValueError(f"the reward name of a latency metric is lowercase, got {reward!r}")

    def decorator(function: LatencyFunction) -> LatencyFunction:
        LATENCY_REGISTRY[name] = LatencyMetric(name, function, reward, batched)
        return function

    return decorator


def unregister_latency_metric(name: str) -> LatencyMetric:
    """Remove a registered metric (tests and interactive use); returns its entry."""
    return LATENCY_REGISTRY.pop(name)


def latency_metric_names() -> tuple[str, ...]:
    """Names of every registered latency metric, built-ins first (the keys of `sentence_latency`)."""
    return tuple(LATENCY_REGISTRY)


def get_latency_metric(name: str) -> LatencyMetric:
    """The registered metric called ``name`` (``"AL"``) or whose reward is ``name`` (``"average_lagging"``)."""
    for metric in LATENCY_REGISTRY.values():
        if name in (metric.name, metric.reward):
            return metric
    known = ", ".join(f"{m.name} ({m.reward})" for m in LATENCY_REGISTRY.values())
    raise ValueError(f"unknown latency metric {name!r}; registered: {known}")


def _check_lengths(source_length: float, reference_length: float | None) -> None:
    if not source_length > 0:
        raise ValueError(f"source_length must be positive, got {source_length!r}")
    if reference_length is not None and not reference_length > 0:
        raise ValueError(
            f"reference_length must be positive (or None to use the hypothesis length), got {reference_length!r}"
        )


def _lagging(delays: Sequence[float], source_length: float, target_length: float) -> float:
    # Shared by AL and LAAL; same accumulation order as SimulEval.
    if delays[0] > source_length:
        return float(delays[0])
    gamma = target_length / source_length
    total, tau = 0.0, 0
    for index, delay in enumerate(delays):
        total += delay - index / gamma
        tau = index + 1
        if delay >= source_length:
            break
    return total / tau


def average_lagging(delays: Sequence[float], source_length: float, reference_length: float | None = None) -> float:
    r"""Average Lagging (Ma et al., 2019, Eq. 4), as SimulEval's ``AL`` scorer; SeqPO-SiMT Sec. 2.3 uses it.

    $AL = \frac{1}{\tau}\sum_{i=1}^{\tau}(d_i - (i-1)\frac{|X|}{|Y|})$ with $\tau$ the first index whose
    delay reaches $|X|$ (included); returns $d_1$ when $d_1 > |X|$.

    Args:
        delays: ``delays[i]`` = source units read when target unit ``i + 1`` was written.
        source_length: $|X|$, source units (> 0).
        reference_length: $|Y|$ = reference units when given (SimulEval's default); ``None`` uses the
            hypothesis length ``len(delays)`` (SimulEval's ``--no-use-ref-len``).

    Returns:
        AL in source units; ``float(source_length)`` for an empty hypothesis.

    Examples:
        >>> average_lagging([2, 3, 4, 4], 4)  # wait-2: two words behind the source
        2.0
    """
    _check_lengths(source_length, reference_length)
    if len(delays) == 0:
        return float(source_length)
    target_length = len(delays) if reference_length is None else reference_length
    return _lagging(delays, source_length, target_length)


def length_adaptive_average_lagging(
    delays: Sequence[float], source_length: float, reference_length: float | None
) -> float:
    r"""Length-Adaptive Average Lagging (Papi et al., 2022), as SimulEval's ``LAAL`` scorer.

    AL with $\gamma = \max(|Y_{hyp}|, |Y^*|) / |X|$: a hypothesis longer than the reference cannot lower its
    lagging by over-generating.

    Args:
        delays: ``delays[i]`` = source units read when target unit ``i + 1`` was written.
        source_length: $|X|$ (> 0).
        reference_length: $|Y^*|$; ``None`` gives AL with the hypothesis length.

    Returns:
        LAAL in source units; ``float(source_length)`` for an empty hypothesis.
    """
    _check_lengths(source_length, reference_length)
    if len(delays) == 0:
        return float(source_length)
    target_length = len(delays) if reference_length is None else max(len(delays), reference_length)
    return _lagging(delays, source_length, target_length)


def differentiable_average_lagging(delays: Sequence[float], source_length: float) -> float:
    r"""Differentiable Average Lagging (Cherry & Foster, 2019, Eq. 4-5), as SimulEval's ``DAL`` scorer.

    $d'_1 = d_1$, $d'_i = \max(d_i, d'_{i-1} + |X|/|Y|)$,
    $DAL = \frac{1}{|Y|}\sum_i (d'_i - (i-1)|X|/|Y|)$, with $|Y|$ the hypothesis length (SimulEval
    ignores the reference here too).

    Args:
        delays: ``delays[i]`` = source units read when target unit ``i + 1`` was written.
        source_length: $|X|$ (> 0).

    Returns:
        DAL in source units; ``float(source_length)`` for an empty hypothesis.
    """
    _check_lengths(source_length, None)
    if len(delays) == 0:
        return float(source_length)
    gamma = len(delays) / source_length
    total, previous = 0.0, 0.0
    for index, delay in enumerate(delays):
        adjusted = delay if index == 0 else max(delay, previous + 1 / gamma)
        total += adjusted - index / gamma
        previous = adjusted
    return total / len(delays)


def average_proportion(delays: Sequence[float], source_length: float, reference_length: float | None = None) -> float:
    r"""Average Proportion (Cho & Esipova, 2016), as SimulEval's ``AP`` scorer.

    $AP = \frac{1}{|X|\,|Y|}\sum_i d_i$, the sum over the hypothesis' delays, $|Y|$ the reference length
    when given, else the hypothesis length.

    Args:
        delays: ``delays[i]`` = source units read when target unit ``i + 1`` was written.
        source_length: $|X|$ (> 0).
        reference_length: $|Y|$ when given; ``None`` uses ``len(delays)``.

    Returns:
        AP (1.0 = everything written after the whole source); 1.0 for an empty hypothesis.
    """
    _check_lengths(source_length, reference_length)
    if len(delays) == 0:
        return 1.0
    target_length = len(delays) if reference_length is None else reference_length
    return float(sum(delays)) / (source_length * target_length)


def yet_another_average_lagging(
    delays: Sequence[float],
    source_length: float,
    reference_length: float | None = None,
    *,
    long_form: bool = False,
    recording_end: float | None = None,
) -> float:
    r"""YAAL (Polák et al., 2025), IWSLT's latency metric, equal to OmniSTEval 0.1.10's ``YAALScorer``.

    $YAAL = \frac{1}{\tau'}\sum_{i=1}^{\tau'}(d_i - (i-1)\frac{|X|}{\max(|Y_{hyp}|, |Y^*|)})$ where $\tau'$
    counts the units written before the source ended ($d_i < |X|$; with ``long_form``, before ``recording_end``):
    unlike AL, the unit that reaches the end of the source is not counted, and a first unit written after the whole
    source leaves YAAL undefined.

    Args:
        delays: ``delays[i]`` = source units read when target unit ``i + 1`` was written.
        source_length: $|X|$ (> 0).
        reference_length: $|Y^*|$; ``None`` uses the hypothesis length.
        long_form: LongYAAL: units at or after the end of the source count too, up to ``recording_end``.
        recording_end: Delay at which the recording ends (long form); ``None`` = never.

    Returns:
        YAAL in source units, or NaN when undefined (empty hypothesis, or no unit before the end); OmniSTEval leaves
        such sentences out of its corpus average, and so does `corpus_latency`.

    Examples:
        >>> yet_another_average_lagging([1, 2, 4, 4], 4)  # AL also counts the first 4: 1.33
        1.0
        >>> yet_another_average_lagging([1, 2, 4, 4], 4, long_form=True)
        1.25
    """
    _check_lengths(source_length, reference_length)
    end = math.inf if recording_end is None else recording_end
    limit = min(end, math.inf if long_form else source_length)
    if len(delays) == 0 or delays[0] >= limit:
        return math.nan
    target_length = len(delays) if reference_length is None else max(len(delays), reference_length)
    gamma = target_length / source_length
    total, tau = 0.0, 0
    for index, delay in enumerate(delays):
        if delay >= limit:
            break
        total += delay - index / gamma
        tau = index + 1
    return total / tau


def delays_from_steps(step_outputs: Sequence[str], chunk_size: int, source_length: int, unit: Unit) -> list[int]:
    """Per-target-unit delays of a chunked rollout (SeqPO-SiMT Sec. 2.2).

    Step ``t`` (1-based) has read ``min(t * chunk_size, source_length)`` source units, so every target unit that
    first appears in output ``y_t`` gets that delay; steps after the last chunk get ``source_length``. The
    translation is ``"".join(step_outputs)`` and units are counted on it, so the result always has
    ``count_units("".join(step_outputs), unit)`` entries; a word split across steps (``"ca"`` then ``"t"``) is one
    unit, delayed by the step where it started.

    Args:
        step_outputs: ``y_1..y_S`` (``""`` = the policy waited at that step).
        chunk_size: Source units per chunk (the paper's ``m``).
        source_length: Source units ``n``.
        unit: Target latency unit, ``"word"`` or ``"char"``.

    Returns:
        ``delays`` for `average_lagging` and friends.

    Examples:
        >>> delays_from_steps(["", "the cat", " sat", " down"], 2, 5, "word")
        [4, 4, 5, 5]
    """
    _check_chunk_size(chunk_size)
    if not source_length > 0:
        raise ValueError(f"source_length must be positive, got {source_length!r}")
    delays: list[int] = []
    inside_word = False  # the translation so far ends inside a word (only matters for the word unit)
    for step, output in enumerate(step_outputs, start=1):
        new_units = count_units(output, unit)
        if unit == "word" and new_units and inside_word and not output[0].isspace():
            new_units -= 1  # the output continues the previous step's last word
        if output:
            inside_word = not output[-1].isspace()
        delays.extend([min(step * chunk_size, source_length)] * new_units)
    return delays


REFERENCE_LENGTH_RULES: tuple[str, ...] = ("units", "simuleval", "hypothesis")


def reference_length(reference: str, unit: Unit, rule: str = "units") -> int | None:
    """``|Y*|`` of AL, LAAL and AP for one reference: the one rule used by rewards, logs, evaluation and demo.

    Rules: ``"units"`` (default) counts the reference in the latency unit, as the target is counted (words, or
    non-space characters, `count_units`); ``"simuleval"`` copies SimulEval 1.1's own count (``reference.split(" ")``
    words, or ``len(reference.strip())`` characters, spaces included), for numbers that match a SimulEval run on
    references with odd spacing; ``"hypothesis"`` returns ``None`` (SimulEval's ``--no-use-ref-len``: the hypothesis
    length is used). ``"units"`` and ``"simuleval"`` agree on single-spaced word references and on character
    references without spaces.

    Args:
        reference: The reference translation.
        unit: ``"word"`` or ``"char"``.
        rule: ``"units"``, ``"simuleval"`` or ``"hypothesis"``.

    Returns:
        The length, or ``None`` (use the hypothesis length) for ``"hypothesis"`` or an empty reference.

    Examples:
        >>> reference_length("lo hundo  vidas", "word"), reference_length("lo hundo  vidas", "word", "simuleval")
        (3, 4)
    """
    if rule not in REFERENCE_LENGTH_RULES:
        raise ValueError(f"reference length rule must be one of {REFERENCE_LENGTH_RULES}, got {rule!r}")
    if rule == "hypothesis":
        return None
    if rule == "simuleval":
        length = len(reference.split(" ")) if unit == "word" else len(reference.strip())
    else:
        length = count_units(reference, unit)
    return length or None


def sentence_latency(
    delays: Sequence[float], source_length: float, reference_length: float | None = None
) -> dict[str, float]:
    """Every registered latency metric of one sentence (SeqPO-SiMT Sec. 3.1 reports AL and LAAL).

    Every number called AL, LAAL, YAAL, ... in this package (the SeqPO latency reward, the trainer's ``simt/*``
    logs, ``trl-seqpo evaluate simt``, the server, the demo) comes from the registry through here, with
    ``reference_length`` from `reference_length`.

    Args:
        delays: Source units read before each target unit was written.
        source_length: ``n``.
        reference_length: ``|Y*|`` (``None``: the hypothesis length).

    Returns:
        ``{"AL": ..., "LAAL": ..., "DAL": ..., "AP": ..., "YAAL": ..., "LongYAAL": ...}`` (registration order).

    Examples:
        >>> sentence_latency([2, 3, 4, 4], 4, reference_length=4)
        {'AL': 2.0, 'LAAL': 2.0, 'DAL': 2.0, 'AP': 0.8125, 'YAAL': 2.0, 'LongYAAL': 1.75}
    """
    return {
        name: metric.function(delays, source_length, reference_length) for name, metric in LATENCY_REGISTRY.items()
    }


def corpus_latency(values: Sequence[float]) -> float | None:
    """Corpus score of a latency metric: the mean of its sentence values, NaN (undefined) ones left out.

    SimulEval and OmniSTEval average sentence scores the same way; ``None`` when no sentence is defined.

    Examples:
        >>> corpus_latency([1.0, float("nan"), 2.0])
        1.5
    """
    finite = [float(value) for value in values if value is not None and not math.isnan(value)]
    return sum(finite) / len(finite) if finite else None


def _row_by_row(metric: LatencyMetric, flat, bounds, source, reference) -> np.ndarray:
    """A metric without a vectorised version, sentence by sentence."""
    return np.array(
        [
            metric.function(
                flat[bounds[row] : bounds[row + 1]].tolist(),
                float(source[row]),
                None if reference is None else float(reference[row]),
            )
            for row in range(len(bounds) - 1)
        ],
        dtype=np.float64,
    )


def latency_batch(
    delays: object,
    source_lengths: object,
    reference_lengths: object = None,
    *,
    metrics: Sequence[str] | None = None,
    lengths: object = None,
    offsets: object = None,
) -> dict[str, np.ndarray]:
    """`sentence_latency` for many sentences at once, vectorised with numpy (no per-sentence Python loop).

    Args:
        delays: One of three layouts: a padded ``[batch, max_len]`` array (``lengths`` gives each row's number of
            valid delays; default: all), a flat ``[total]`` array of all sentences' delays one after the other with
            ``offsets`` (``[batch + 1]``, sentence ``b`` is ``delays[offsets[b]:offsets[b + 1]]``), or a list of
            per-sentence delay lists.
        source_lengths: ``[batch]`` source lengths (or one number for all).
        reference_lengths: ``[batch]`` reference lengths, or ``None`` for hypothesis lengths (DAL always uses the
            hypothesis length, as `differentiable_average_lagging` does).
        metrics: Which registered metrics to compute (a name or a list; default: all of `latency_metric_names`).
        lengths: Valid delays per row of a padded ``delays``.
        offsets: Sentence boundaries of a flat ``delays``.

    Returns:
        ``{metric: [batch] float64 array}`` for each requested metric, equal to `sentence_latency` row by row.

    Examples:
        >>> latency_batch([[2, 3, 4, 4], [], [1, 2]], [4, 3, 2], metrics=["AL"])["AL"].tolist()
        [2.0, 3.0, 1.0]
    """
    if metrics is None:
        metrics = list(LATENCY_REGISTRY)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [metric for metric in metrics if metric not in LATENCY_REGISTRY]
    if unknown:
        raise ValueError(f"unknown latency metric(s) {unknown}; choose from {list(LATENCY_REGISTRY)}")
    flat, bounds = _to_ragged(delays, lengths, offsets)
    num_rows = len(bounds) - 1
    source = _as_float_array(source_lengths, "source_lengths", num_rows)
    if not (source > 0).all():
        raise ValueError("source_lengths must all be positive")
    reference = None
    if reference_lengths is not None:
        reference = _as_float_array(reference_lengths, "reference_lengths", num_rows)
        if not (reference > 0).all():
            raise ValueError("reference_lengths must all be positive (or pass None to use hypothesis lengths)")
    out = {}
    for name in metrics:
        metric = LATENCY_REGISTRY[name]
        if metric.batched is None:
            out[name] = _row_by_row(metric, flat, bounds, source, reference)
        else:
            out[name] = metric.batched(flat, bounds, source, reference)
    return out


# ----------------------------------------------------------------------------------------------------------------
# The built-in metrics (registration order = column order of results)

register_latency_metric("AL", reward="average_lagging", batched=_batched_lagging(False))(average_lagging)
register_latency_metric("LAAL", reward="laal", batched=_batched_lagging(True))(length_adaptive_average_lagging)
register_latency_metric("DAL", reward="dal", batched=_batched_differentiable)(
    lambda delays, source_length, reference_length=None: differentiable_average_lagging(delays, source_length)
)
register_latency_metric("AP", reward="average_proportion", batched=_batched_proportion)(average_proportion)
register_latency_metric("YAAL", reward="yaal")(yet_another_average_lagging)
register_latency_metric("LongYAAL", reward="long_yaal")(
    lambda delays, source_length, reference_length=None: yet_another_average_lagging(
        delays, source_length, reference_length, long_form=True
    )
)

LATENCY_METRICS: tuple[str, ...] = latency_metric_names()
"""Names of the built-in latency metrics; `latency_metric_names` also lists metrics registered later."""
