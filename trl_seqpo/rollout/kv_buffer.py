"""Key/value caches that reserve the width of a whole ``generate`` call up front (issue 12 item 7).

transformers' `DynamicLayer` appends every decoding step's keys and values with ``torch.cat``, which copies the
whole cache once per generated token: a call that adds n tokens to a cache of width w copies about ``n * w`` states
per layer. A multi-step rollout feels it most, because its rows carry the environment's tokens (earlier chunks,
chat-turn markers) besides the prompt and the policy's output. `ReservedLayer` allocates one buffer per layer with
room for the prompt and the call's whole token budget and writes each step's states into it; attention reads a
view of the filled part. The values are the ones ``torch.cat`` would have produced, so outputs do not change.

The HF backend passes such a cache to every ``generate`` call (`reserved_cache`), with or without reuse across
steps; models whose cache is not made of full-attention layers only (sliding windows, linear attention, ...) keep
transformers' own cache. Memory: the buffer holds the whole budget from the first token (prompt width +
``max_new_tokens``), where a concatenated cache ends at the longest row's length but briefly needs the old and the
new copy at every token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` that writes into a buffer reserved for ``capacity`` positions instead of concatenating.

    ``keys``/``values`` are views ``[batch, heads, filled, head_dim]`` of the buffers. When a call needs more than
    ``capacity`` positions, or something outside `update` replaced ``keys`` (cropping, row selection), the next
    `update` reserves a new buffer and copies the current states into it, so the layer stays correct, only slower.

    Args:
        capacity: Positions to reserve (prompt width + the call's ``max_new_tokens`` is always enough).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled = self.get_seq_length()
        end = filled + key_states.shape[-2]
        ours = self._views is not None and self.keys is self._views[0] and self.values is self._views[1]
        if not ours or end > self._buffers[0].shape[-2]:
            self._reserve(key_states, value_states, filled, max(end, self.capacity))
        keys, values = self._buffers
        keys[:, :, filled:end] = key_states
        values[:, :, filled:end] = value_states
        self.keys, self.values = keys[:, :, :end], values[:, :, :end]
        self._views = (self.keys, self.values)
        return self.keys, self.values

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, filled: int, width: int) -> None:
        buffers = []
        for current, new in ((self.keys, key_states), (self.values, value_states)):
            batch, heads, _, dim = new.shape
            buffer = new.new_empty((batch, heads, width, dim))
            if filled:
                buffer[:, :, :filled] = current
            buffers.append(buffer)
        self._buffers = (buffers[0], buffers[1])


def reserved_cache(
    config: Any, capacity: int, states: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None
) -> DynamicCache | None:
    """A `DynamicCache` of `ReservedLayer` s for a model, optionally filled with ``states``.

    Args:
        config: The model's config (the cache layout ``generate`` would build from it is checked).
        capacity: Positions to reserve per layer: the call's input width + ``max_new_tokens``.
        states: Per layer ``(keys, values)`` to start from (states cached by an earlier call), or ``None``.

    Returns:
        The cache, or ``None`` when the model's own cache has other than full-attention dynamic layers (then
        ``generate`` should build its own).
    """
    text_config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layout = DynamicCache(config=text_config)
    if not layout.layers or any(type(layer) is not DynamicLayer for layer in layout.layers):
        return None
    if states is not None and len(states) != len(layout.layers):
        return None
    layout.layers = [ReservedLayer(capacity) for _ in layout.layers]
    for layer, (keys, values) in zip(layout.layers, states or ()):
        layer.update(keys, values)
    return layout
