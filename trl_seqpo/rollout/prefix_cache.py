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

Only ``DynamicCache`` objects made of full-attention ``DynamicLayer`` s are kept (sliding-window, static or
quantized caches are not, and such models run as without reuse). The states belong to the weights that made them:
callers scope reuse to one rollout (`HFGenerationBackend.cache_session`), never across an optimiser step.
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
        columns: Per row, the columns (``[tokens]``, increasing) of ``width`` holding that row's real tokens.
        tokens: Per row, those tokens' ids, ``-1``-padded to one matrix ``[rows, max_tokens]`` (numpy, for fast
            prefix matching).
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    columns: list[torch.Tensor]
    tokens: np.ndarray


def _reusable(cache: object) -> bool:
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # pragma: no cover - transformers < 4.56
        return False
    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


@dataclass
class PreparedBatch:
    """Inputs of one ``generate`` call that starts from cached states.

    Attributes:
        input_ids: ``[rows, width_cached + width_new]``: cached tokens then new tokens, each part left-padded.
        attention_mask: Same shape, 1 on real tokens.
        past_key_values: A ``DynamicCache`` over the first ``width_cached`` columns, or ``None`` (nothing cached).
        encoded_tokens: New tokens the model has to encode (rows x their suffix lengths), for reporting.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    past_key_values: object | None
    encoded_tokens: int


class PrefixKVCache:
    """The key/value states of the rows of the latest ``generate`` call(s), reusable by prompts that extend them.

    Usage within one call: `prepare` the batch, run ``generate`` with its inputs, then `remember` the result.
    `prepare` reads the rows remembered from the previous call; `remember` stacks the rows of every micro-batch of
    the current call, and `next_call` makes them the ones the following call reads (the rest are dropped).
    """

    def __init__(self) -> None:
        self._previous: list[_CachedRows] = []
        self._current: list[_CachedRows] = []

    def clear(self) -> None:
        self._previous, self._current = [], []

    def next_call(self) -> None:
        """Start a new call: rows remembered during the last one become the reusable ones, older rows are dropped."""
        self._previous, self._current = self._current, []

    # ------------------------------------------------------------------ matching
    def _longest_prefix(self, prompt: list[int]) -> tuple[int, int, int]:
        """``(group, row, length)`` of the cached row sharing the longest token prefix with ``prompt``."""
        best = (-1, -1, 0)
        query = np.asarray(prompt, dtype=np.int64)
        for group_index, group in enumerate(self._previous):
            width = min(group.tokens.shape[1], len(prompt))
            if width == 0:
                continue
            same = group.tokens[:, :width] == query[:width]
            shared = np.cumprod(same, axis=1).sum(axis=1)  # length of the common prefix with every row
            row = int(shared.argmax())
            if int(shared[row]) > best[2]:
                best = (group_index, row, int(shared[row]))
        return best

    def prepare(self, prompts: list[list[int]], pad_token_id: int) -> PreparedBatch:
        """Split each prompt into a cached prefix and a new suffix and build the batch ``generate`` continues."""
        matches = []
        for prompt in prompts:
            group, row, length = self._longest_prefix(prompt)
            length = min(length, len(prompt) - 1)  # generate needs at least one new token per row
            matches.append((group, row, length) if length > 0 else (-1, -1, 0))
        width_cached = max(length for _, _, length in matches)
        width_new = max(len(prompt) - length for prompt, (_, _, length) in zip(prompts, matches))
        rows = len(prompts)
        input_ids = torch.full((rows, width_cached + width_new), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for index, (prompt, (_, _, length)) in enumerate(zip(prompts, matches)):
            ids = torch.tensor(prompt, dtype=torch.long)
            input_ids[index, width_cached - length : width_cached] = ids[:length]
            attention_mask[index, width_cached - length : width_cached] = 1
            suffix = ids[length:]
            input_ids[index, input_ids.shape[1] - len(suffix) :] = suffix
            attention_mask[index, input_ids.shape[1] - len(suffix) :] = 1
        encoded = sum(len(prompt) - length for prompt, (_, _, length) in zip(prompts, matches))
        if width_cached == 0:
            return PreparedBatch(input_ids, attention_mask, None, encoded)
        return PreparedBatch(input_ids, attention_mask, self._gather(matches, width_cached), encoded)

    def _gather(self, matches: list[tuple[int, int, int]], width: int) -> object:
        """A ``DynamicCache`` whose row i holds the first ``length_i`` cached tokens of its match, right-aligned."""
        from transformers.cache_utils import DynamicCache

        # one gather plan per group of cached rows: which new rows, from which cached rows and columns
        plans = []
        for group_index, group in enumerate(self._previous):
            targets = [i for i, (g, _, length) in enumerate(matches) if g == group_index and length > 0]
            if not targets:
                continue
            columns = torch.zeros((len(targets), width), dtype=torch.long)  # pads read column 0 (masked anyway)
            for slot, i in enumerate(targets):
                _, row, length = matches[i]
                columns[slot, width - length :] = group.columns[row][:length]
            device = group.layers[0][0].device
            sources = torch.tensor([matches[i][1] for i in targets], dtype=torch.long, device=device)
            plans.append((group, torch.tensor(targets, device=device), sources[:, None], columns.to(device)))
        whole = len(plans) == 1 and len(plans[0][1]) == len(matches)  # every new row from one group, in order
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
                states = reference.new_zeros((len(matches), reference.shape[1], width, reference.shape[3]))
                for group, targets, sources, columns in plans:
                    states[targets] = group.layers[layer_index][part][sources, :, columns].transpose(1, 2)
                pair.append(states)
            layers.append(tuple(pair))
        return DynamicCache(ddp_cache_data=layers)

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
        sequences, attention_mask = sequences.cpu(), attention_mask.cpu()
        columns, token_rows = [], []
        for row, generated in enumerate(generated_lengths):
            prompt_columns = attention_mask[row].nonzero().squeeze(-1)
            new_columns = torch.arange(input_width, min(input_width + generated, cached_width), dtype=torch.long)
            row_columns = torch.cat([prompt_columns, new_columns])
            columns.append(row_columns)
            token_rows.append(sequences[row, row_columns])
        tokens = np.full((len(columns), max(len(c) for c in columns)), -1, dtype=np.int64)
        for row, ids in enumerate(token_rows):
            tokens[row, : len(ids)] = ids.numpy()
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        self._current.append(_CachedRows(layers=layers, columns=columns, tokens=tokens))
