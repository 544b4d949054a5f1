r"""Latency metrics for simultaneous translation: AL, LAAL, DAL and AP, per sentence and batched.

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

An empty hypothesis (SimulEval skips it) is scored as an offline translation written after the whole source:
AL = LAAL = DAL = ``source_length`` and AP = 1.0; no exception. See ``docs/latency.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from trl_seqpo.simt.chunking import Unit, _check_chunk_size, count_units

_BLOCK_ELEMENTS = 1 << 17  # delays per vectorised block of the batched metrics

LATENCY_METRICS = ("AL", "LAAL", "DAL", "AP")
"""Names of the latency metrics, as keys of `sentence_latency` and `latency_batch`."""


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
    """AL, LAAL, DAL and AP of one sentence (SeqPO-SiMT Sec. 3.1 reports AL and LAAL).

    Every number called AL or LAAL in this package (the SeqPO latency reward, the trainer's ``simt/*`` logs,
    ``trl-seqpo evaluate simt``, the demo) comes from here, with ``reference_length`` from `reference_length`.

    Args:
        delays: Source units read before each target unit was written.
        source_length: ``n``.
        reference_length: ``|Y*|`` (``None``: the hypothesis length).

    Returns:
        ``{"AL": ..., "LAAL": ..., "DAL": ..., "AP": ...}``.

    Examples:
        >>> sentence_latency([2, 3, 4, 4], 4, reference_length=4)
        {'AL': 2.0, 'LAAL': 2.0, 'DAL': 2.0, 'AP': 0.8125}
    """
    return {
        "AL": average_lagging(delays, source_length, reference_length),
        "LAAL": length_adaptive_average_lagging(delays, source_length, reference_length),
        "DAL": differentiable_average_lagging(delays, source_length),
        "AP": average_proportion(delays, source_length, reference_length),
    }


# ----------------------------------------------------------------------------------------------------------------
# Batched versions


def _as_float_array(values: object, name: str, size: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(size, float(array))
    if array.shape != (size,):
        raise ValueError(f"{name} must have one value per sentence ({size}), got shape {array.shape}")
    return array


def _to_ragged(delays: object, lengths: object, offsets: object) -> tuple[np.ndarray, np.ndarray]:
    """Bring the three input layouts to flat float64 delays + ``[batch + 1]`` offsets."""
    if isinstance(delays, (list, tuple)) and (len(delays) == 0 or np.ndim(delays[0]) == 1):
        if offsets is not None or lengths is not None:
            raise ValueError("pass a list of per-sentence delays without lengths/offsets")
        row_lengths = np.fromiter((len(row) for row in delays), dtype=np.int64, count=len(delays))
        flat = np.concatenate([np.asarray(row, dtype=np.float64) for row in delays]) if delays else np.zeros(0)
        return flat, np.concatenate([[0], np.cumsum(row_lengths)])
    array = np.asarray(delays, dtype=np.float64)
    if array.ndim == 2:
        if offsets is not None:
            raise ValueError("offsets is for flat (1-D) delays; padded (2-D) delays take lengths")
        num_rows, width = array.shape
        if lengths is None:
            return array.reshape(-1), np.arange(num_rows + 1, dtype=np.int64) * width
        row_lengths = np.asarray(lengths, dtype=np.int64)
        if row_lengths.shape != (num_rows,) or (row_lengths < 0).any() or (row_lengths > width).any():
            raise ValueError(f"lengths must hold {num_rows} values in [0, {width}]")
        return array[np.arange(width) < row_lengths[:, None]], np.concatenate([[0], np.cumsum(row_lengths)])
    if array.ndim != 1 or offsets is None or lengths is not None:
        raise ValueError(
            "delays must be a padded [batch, max_len] array (with optional lengths), a flat array with "
            "offsets [batch + 1], or a list of per-sentence delay lists"
        )
    bounds = np.asarray(offsets, dtype=np.int64)
    if (
        bounds.ndim != 1
        or len(bounds) < 1
        or bounds[0] != 0
        or bounds[-1] != len(array)
        or (np.diff(bounds) < 0).any()
    ):
        raise ValueError("offsets must be non-decreasing, start at 0 and end at len(delays)")
    return array, bounds


def _row_blocks(bounds: np.ndarray) -> Iterator[slice]:
    """Consecutive sentence ranges of about ``_BLOCK_ELEMENTS`` delays: temporaries stay small and in cache."""
    num_rows = len(bounds) - 1
    width = int(np.diff(bounds).max()) if num_rows else 0
    step = max(64, _BLOCK_ELEMENTS // max(width, 1))
    for start in range(0, num_rows, step):
        yield slice(start, min(start + step, num_rows))


def _lagging_block(
    delays: np.ndarray, starts: np.ndarray, lengths: np.ndarray, source: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """AL/LAAL of the sentences of one block, from their flat delays (``starts`` relative to ``delays``)."""
    reached = np.flatnonzero(delays >= np.repeat(source, lengths))
    # first delay >= |X| of each sentence: the first reached index at or after the sentence's start, if inside it
    first_reach = np.append(reached, len(delays))[np.searchsorted(reached, starts)]
    tau = np.where(first_reach < starts + lengths, first_reach - starts + 1, lengths)
    padded = np.append(delays, 0.0)  # reduceat needs every boundary to be a valid index
    boundaries = np.empty(2 * len(starts), dtype=np.int64)
    boundaries[0::2], boundaries[1::2] = starts, starts + tau
    delay_sum = np.add.reduceat(padded, boundaries)[0::2]  # sum_{i<tau} d_i (garbage for empty rows, fixed below)
    with np.errstate(divide="ignore", invalid="ignore"):
        # sum_{i<tau} (d_i - i / gamma) = sum_{i<tau} d_i - tau (tau - 1) / 2 * |X| / |Y|
        lagging = (delay_sum - 0.5 * tau * (tau - 1) * (source / target)) / tau
    first = padded[starts]
    lagging = np.where(first > source, first, lagging)
    return np.where(lengths == 0, source, lagging)


def _differentiable_block(
    delays: np.ndarray, starts: np.ndarray, lengths: np.ndarray, source: np.ndarray
) -> np.ndarray:
    """DAL of the sentences of one block, through a [sentences, max_len] array padded with -inf."""
    width = int(lengths.max())
    padded = np.full((len(lengths), width), -np.inf)
    padded[np.arange(width) < lengths[:, None]] = delays  # boolean assignment fills sentence after sentence
    step = source / np.maximum(lengths, 1)  # 1 / gamma
    # d'_i - (i-1)/gamma is the running maximum of d_j - (j-1)/gamma (Cherry & Foster's recursion unrolled), taken
    # one column at a time for all sentences; past a sentence's end the -inf padding leaves the running maximum at
    # its last value, which is subtracted back out at the end.
    running = padded[:, 0].copy()
    total = running.copy()
    column = np.empty_like(running)
    for index in range(1, width):
        np.multiply(step, -index, out=column)
        column += padded[:, index]
        np.maximum(running, column, out=running)
        total += running
    with np.errstate(invalid="ignore", divide="ignore"):
        total -= (width - lengths) * running
        return np.where(lengths == 0, source, total / lengths)


def _batched_metric(
    metric: str,
    flat: np.ndarray,
    bounds: np.ndarray,
    source: np.ndarray,
    reference: np.ndarray | None,
) -> np.ndarray:
    """One metric of `LATENCY_METRICS` for all sentences of a ragged batch (validated by `latency_batch`)."""
    num_rows = len(bounds) - 1
    all_lengths = np.diff(bounds)
    hypothesis = all_lengths.astype(np.float64)
    target = hypothesis if reference is None else reference
    if metric == "LAAL":
        target = np.maximum(hypothesis, target)

    if metric == "AP":
        nonempty = all_lengths > 0
        sums = np.zeros(num_rows)
        if nonempty.any():
            # between two non-empty sentences' starts lie exactly the first one's delays
            sums[nonempty] = np.add.reduceat(flat, bounds[:-1][nonempty])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(nonempty, sums / (source * target), 1.0)

    out = np.empty(num_rows)
    for rows in _row_blocks(bounds):
        block_lengths = all_lengths[rows]
        if not block_lengths.any():  # only empty hypotheses
            out[rows] = source[rows]
            continue
        first, last = bounds[rows.start], bounds[rows.stop]
        block, starts = flat[first:last], bounds[rows.start : rows.stop] - first
        if metric == "DAL":
            out[rows] = _differentiable_block(block, starts, block_lengths, source[rows])
        else:
            out[rows] = _lagging_block(block, starts, block_lengths, source[rows], target[rows])
    return out


def latency_batch(
    delays: object,
    source_lengths: object,
    reference_lengths: object = None,
    *,
    metrics: Sequence[str] = LATENCY_METRICS,
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
        metrics: Which of `LATENCY_METRICS` to compute (a name or a list; default: all four).
        lengths: Valid delays per row of a padded ``delays``.
        offsets: Sentence boundaries of a flat ``delays``.

    Returns:
        ``{metric: [batch] float64 array}`` for each requested metric, equal to `sentence_latency` row by row.

    Examples:
        >>> latency_batch([[2, 3, 4, 4], [], [1, 2]], [4, 3, 2], metrics=["AL"])["AL"].tolist()
        [2.0, 3.0, 1.0]
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [metric for metric in metrics if metric not in LATENCY_METRICS]
    if unknown:
        raise ValueError(f"unknown latency metric(s) {unknown}; choose from {list(LATENCY_METRICS)}")
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
    return {metric: _batched_metric(metric, flat, bounds, source, reference) for metric in metrics}
