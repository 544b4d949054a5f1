"""Key/value states kept between ``generate`` calls of a multi-step rollout (issue 12 item 7).

A lockstep SiMT step continues prompts that are the previous step's prompt + the policy's output + the tokens of the
next chunk. Re-encoding that growing prefix at every step costs more than the decoding itself; this module keeps the
key/value states of every row of the last call and, at the next call, hands ``generate`` a cache holding the longest
cached prefix of each new prompt, so only the new tokens are encoded.

Layout of one call's batch, per row (``c`` = cached tokens of that row, ``s`` = its new suffix)::

    [ pad .. c ][ pad .. s ]      attention mask 0 on the pads, 1 on c and s
     <- width_cached -><- width_new ->

Pads in the middle of a row are masked and skipped by the position ids (``generate`` derives them from the
attention mask with a cumulative sum), so every real token keeps the position it had when it was first encoded, and
the result equals a fresh left-padded encoding of the whole prompt up to floating-point rounding. Rows are matched
by token ids, never by position in the batch: a row whose trajectory finished is simply not asked for again and its
states are dropped with the call; a prompt that matches no cached row is encoded from scratch.

Only ``DynamicCache`` objects made of full-attention ``DynamicLayer`` s (or the backend's `ReservedLayer` s) are
kept (sliding-window, static or quantized caches are not, and such models run as without reuse). The states belong
to the weights that made them: callers scope reuse to one rollout (`HFGenerationBackend.cache_session`), never
across an optimiser step.

Matching and batch building are vectorised (numpy over all prompts and cached rows at once), so a step's
bookkeeping does not grow with a Python loop per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class _CachedRows:
    """The key/value states of the rows of one ``generate`` call.

    Attributes:
        layers: Per layer ``(keys, values)``, each ``[rows, heads, width, head_dim]``.
        columns: ``[rows, max_tokens]`` (numpy): per row, the columns of ``width`` holding its real tokens, in
            increasing order, ``0``-padded where ``tokens`` is ``-1``.
        tokens: ``[rows, max_tokens]`` (numpy): those tokens' ids, ``-1``-padded (for fast prefix matching).
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    columns: np.ndarray
    tokens: np.ndarray


def _reusable(cache: object) -> bool:
    from transformers.cache_utils import DynamicCache, DynamicLayer

    from trl_seqpo.rollout.kv_buffer import ReservedLayer

    return type(cache) is DynamicCache and all(type(layer) in (DynamicLayer, ReservedLayer) for layer in cache.layers)


@dataclass
class PreparedBatch:
    """Inputs of one ``generate`` call that starts from cached states.

    Attributes:
        input_ids: ``[rows, width_cached + width_new]``: cached tokens then new tokens, each part left-padded.
        attention_mask: Same shape, 1 on real tokens.
        past_states: Per layer ``(keys, values)`` over the first ``width_cached`` columns, or ``None`` (nothing
            cached).
        encoded_tokens: New tokens the model has to encode (rows x their suffix lengths), for reporting.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    past_states: list[tuple[torch.Tensor, torch.Tensor]] | None
    encoded_tokens: int


class PrefixKVCache:
    """The key/value states of the rows of the latest ``generate`` call(s), reusable by prompts that extend them.

    Usage within one call: `prepare` the batch, run ``generate`` with its inputs, then `remember` the result.
    `prepare` reads the rows remembered from the previous call; `remember` stacks the rows of every micro-batch of
    the current call, `next_call` makes them the ones the following call reads, and `end_call` drops them once that
    call is done: between calls only the latest call's rows are held, however many steps the rollout takes.
    """

    def __init__(self) -> None:
        self._previous: list[_CachedRows] = []
        self._current: list[_CachedRows] = []

    def clear(self) -> None:
        self._previous, self._current = [], []

    def next_call(self) -> None:
        """Start a new call: rows remembered during the last one become the reusable ones, older rows are dropped."""
        self._previous, self._current = self._current, []

    def end_call(self) -> None:
        """End a call: the previous call's rows have been read by every micro-batch; drop them."""
        self._previous = []

    @property
    def held_rows(self) -> int:
        """Rows whose states are held now (for tests and memory accounting)."""
        return sum(len(group.tokens) for group in (*self._previous, *self._current))

    # ------------------------------------------------------------------ matching
    def _longest_prefixes(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per prompt, ``(group, row, length)`` of the cached row sharing the longest token prefix with it.

        Args:
            queries: ``[prompts, max_length]`` token ids, ``-2``-padded (never equal to a cached id or its ``-1``).

        Returns:
            Three ``[prompts]`` arrays; ``length`` 0 (and group/row ``-1``) where nothing is shared. Ties go to the
            first group, then the first row.
        """
        prompts = len(queries)
        best_group = np.full(prompts, -1, dtype=np.int64)
        best_row = np.full(prompts, -1, dtype=np.int64)
        best_length = np.zeros(prompts, dtype=np.int64)
        for group_index, group in enumerate(self._previous):
            width = min(group.tokens.shape[1], queries.shape[1])
            if width == 0:
                continue
            cached = group.tokens[None, :, :width]
            # compare in blocks of prompts so the [block, rows, width] comparison stays small
            block = max(1, (1 << 22) // max(1, cached.shape[1] * width))
            for start in range(0, prompts, block):
                same = queries[start : start + block, None, :width] == cached
                # common prefix length = index of the first mismatch (width when there is none)
                shared = np.where(same.all(axis=2), width, np.argmin(same, axis=2))
                rows = shared.argmax(axis=1)
                length = shared[np.arange(len(rows)), rows]
                better = length > best_length[start : start + block]
                best_group[start : start + block][better] = group_index
                best_row[start : start + block][better] = rows[better]
                best_length[start : start + block][better] = length[better]
        return best_group, best_row, best_length

    def prepare(self, prompts: list[list[int]], pad_token_id: int) -> PreparedBatch:
        """Split each prompt into a cached prefix and a new suffix and build the batch ``generate`` continues."""
        lengths = np.fromiter((len(prompt) for prompt in prompts), dtype=np.int64, count=len(prompts))
        real = np.arange(int(lengths.max())) < lengths[:, None]  # [prompts, max_length]
        queries = np.full(real.shape, -2, dtype=np.int64)
        queries[real] = np.fromiter((t for prompt in prompts for t in prompt), dtype=np.int64, count=int(real.sum()))
        groups, rows, cached = self._longest_prefixes(queries)
        cached = np.minimum(cached, lengths - 1)  # generate needs at least one new token per row
        unmatched = cached <= 0
        groups[unmatched], rows[unmatched], cached[unmatched] = -1, -1, 0
        suffix = lengths - cached
        width_cached, width_new = int(cached.max()), int(suffix.max())
        # column j of the cached part holds prompt token j - (width_cached - cached); of the new part, token
        # cached + j - (width_new - suffix); pads elsewhere
        old = np.arange(width_cached)[None, :] - (width_cached - cached)[:, None]
        new = np.arange(width_new)[None, :] - (width_new - suffix)[:, None]
        position = np.concatenate([old, new + cached[:, None]], axis=1)
        mask = np.concatenate([old >= 0, new >= 0], axis=1)
        ids = np.take_along_axis(queries, np.clip(position, 0, queries.shape[1] - 1), axis=1)
        input_ids = torch.from_numpy(np.where(mask, ids, pad_token_id))
        attention_mask = torch.from_numpy(mask.astype(np.int64))
        encoded = int(suffix.sum())
        if width_cached == 0:
            return PreparedBatch(input_ids, attention_mask, None, encoded)
        return PreparedBatch(input_ids, attention_mask, self._gather(groups, rows, old), encoded)

    def _gather(
        self, groups: np.ndarray, rows: np.ndarray, positions: np.ndarray
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer ``(keys, values)`` whose row i holds the states of cached row ``rows[i]`` of group ``groups[i]``.

        ``positions[i, j]`` is the index, among that cached row's real tokens, of the token in column j (negative:
        a pad, which reads column 0 and is masked anyway).
        """
        # one gather plan per group of cached rows: which new rows, from which cached rows and columns
        plans = []
        for group_index, group in enumerate(self._previous):
            targets = np.flatnonzero(groups == group_index)
            if len(targets) == 0:
                continue
            sources = rows[targets]
            index = np.clip(positions[targets], 0, group.columns.shape[1] - 1)
            columns = np.where(positions[targets] >= 0, group.columns[sources[:, None], index], 0)
            device = group.layers[0][0].device
            plans.append(
                (
                    group,
                    torch.from_numpy(targets).to(device),
                    torch.from_numpy(sources[:, None]).to(device),
                    torch.from_numpy(columns).to(device),
                )
            )
        whole = len(plans) == 1 and len(plans[0][1]) == len(groups)  # every new row from one group, in order
        width = positions.shape[1]
        layers = []
        for layer_index in range(len(plans[0][0].layers)):
            pair = []
            for part in (0, 1):  # keys, values
                if whole:
                    group, _, sources, columns = plans[0]
                    # advanced indexing on dims 0 and 2 puts them first: [rows, width, heads, head_dim]
                    pair.append(group.layers[layer_index][part][sources, :, columns].transpose(1, 2))
                    continue
                reference = plans[0][0].layers[layer_index][part]
                states = reference.new_zeros((len(groups), reference.shape[1], width, reference.shape[3]))
                for group, targets, sources, columns in plans:
                    states[targets] = group.layers[layer_index][part][sources, :, columns].transpose(1, 2)
                pair.append(states)
            layers.append((pair[0], pair[1]))
        return layers

    # ------------------------------------------------------------------ remembering
    def remember(
        self,
        sequences: torch.Tensor,
        attention_mask: torch.Tensor,
        generated_lengths: list[int],
        cache: object,
    ) -> None:
        """Keep the states ``generate`` left in ``cache`` for the real tokens of every row.

        Args:
            sequences: ``generate``'s output ids, ``[rows, input_width + new]``.
            attention_mask: The mask of the input part, ``[rows, input_width]``.
            generated_lengths: Per row, the generated tokens that count (up to and including its stop token); the
                rest of the row is padding written after it finished.
            cache: ``generate``'s ``past_key_values``; not kept unless a full-attention ``DynamicCache``.
        """
        if not _reusable(cache):
            return
        input_width = attention_mask.shape[1]
        cached_width = cache.get_seq_length()
        if cached_width != sequences.shape[1] - 1:  # the last sampled token is never fed back
            return
        sequences = sequences[:, :cached_width].cpu().numpy()
        generated = np.minimum(np.asarray(generated_lengths, dtype=np.int64), cached_width - input_width)
        real = np.concatenate(
            [
                attention_mask.cpu().numpy().astype(bool),
                np.arange(cached_width - input_width)[None, :] < generated[:, None],
            ],
            axis=1,
        )
        lengths = real.sum(axis=1)
        # the real columns of each row, in order, moved to the front (a stable sort puts True before False)
        columns = np.argsort(~real, axis=1, kind="stable")[:, : int(lengths.max())]
        filled = np.arange(columns.shape[1])[None, :] < lengths[:, None]
        columns = np.where(filled, columns, 0)
        tokens = np.where(filled, np.take_along_axis(sequences, columns, axis=1), -1)
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        self._current.append(_CachedRows(layers=layers, columns=columns, tokens=tokens))


class SessionPrefixCache(PrefixKVCache):
    """Key/value states kept per streaming session between chunks, whichever sessions the next call holds.

    The streaming engine (`trl_seqpo.rollout.streaming`) puts it in place of the HF backend's per-rollout cache for
    each call.

    `PrefixKVCache` keeps only the previous call's rows; a server steps a session only when its next chunk has
    arrived, so a session must keep its row across calls it is not part of. After each call, `keep` stores every
    row under its session key (one compact row each); `next_call` offers every live session's row for prefix
    matching; `drop` frees a session's states when it ends.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sessions: dict[object, _CachedRows] = {}

    def next_call(self) -> None:
        self._previous, self._current = list(self._sessions.values()), []

    def keep(self, keys: list[object]) -> None:
        """Store the rows of the last call (in prompt order) under ``keys``, one per prompt."""
        rows = [(group, row) for group in self._current for row in range(len(group.tokens))]
        if len(rows) != len(keys):  # the model's cache was not reusable: nothing to keep
            self._current = []
            return
        for key, (group, row) in zip(keys, rows):
            length = int((group.tokens[row] >= 0).sum())
            columns = torch.from_numpy(group.columns[row, :length]).to(group.layers[0][0].device)
            layers = [
                (keys_[row : row + 1, :, columns].contiguous(), values[row : row + 1, :, columns].contiguous())
                for keys_, values in group.layers
            ]
            self._sessions[key] = _CachedRows(
                layers=layers, columns=np.arange(length)[None, :], tokens=group.tokens[row : row + 1, :length].copy()
            )
        self._current = []

    def drop(self, key: object) -> None:
        """Free the states of one session."""
        self._sessions.pop(key, None)

    def __len__(self) -> int:
        return len(self._sessions)
