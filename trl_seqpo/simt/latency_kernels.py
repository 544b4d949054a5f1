"""Vectorised kernels of `trl_seqpo.simt.latency.latency_batch` (numpy over ragged batches, no per-sentence loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

_BLOCK_ELEMENTS = 1 << 17  # delays per vectorised block of the batched metrics


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


def _batched_lagging(length_adaptive: bool) -> Callable[..., np.ndarray]:
    def batched(flat: np.ndarray, bounds: np.ndarray, source: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
        all_lengths = np.diff(bounds)
        hypothesis = all_lengths.astype(np.float64)
        target = hypothesis if reference is None else reference
        if length_adaptive:
            target = np.maximum(hypothesis, target)
        return _blockwise(flat, bounds, source, lambda *block, rows: _lagging_block(*block, target[rows]))

    return batched


def _batched_differentiable(flat: np.ndarray, bounds: np.ndarray, source: np.ndarray, reference: object) -> np.ndarray:
    return _blockwise(flat, bounds, source, lambda *block, rows: _differentiable_block(*block))


def _blockwise(flat: np.ndarray, bounds: np.ndarray, source: np.ndarray, block_metric: Callable) -> np.ndarray:
    all_lengths = np.diff(bounds)
    out = np.empty(len(bounds) - 1)
    for rows in _row_blocks(bounds):
        block_lengths = all_lengths[rows]
        if not block_lengths.any():  # only empty hypotheses
            out[rows] = source[rows]
            continue
        first, last = bounds[rows.start], bounds[rows.stop]
        block, starts = flat[first:last], bounds[rows.start : rows.stop] - first
        out[rows] = block_metric(block, starts, block_lengths, source[rows], rows=rows)
    return out


def _batched_proportion(flat: np.ndarray, bounds: np.ndarray, source: np.ndarray, reference: np.ndarray | None):
    all_lengths = np.diff(bounds)
    target = all_lengths.astype(np.float64) if reference is None else reference
    nonempty = all_lengths > 0
    sums = np.zeros(len(bounds) - 1)
    if nonempty.any():
        # between two non-empty sentences' starts lie exactly the first one's delays
        sums[nonempty] = np.add.reduceat(flat, bounds[:-1][nonempty])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nonempty, sums / (source * target), 1.0)
