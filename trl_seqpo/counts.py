"""`Counts`: the base of the counter dataclasses (judge, sampler, `alpo sample` report) that add up field by field.

A job under `accelerate launch` counts on every process; the main process adds the processes' counters with ``+``
(or `sum_counts`) instead of naming each field again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TypeVar

__all__ = ["Counts", "sum_counts"]

C = TypeVar("C", bound="Counts")


@dataclasses.dataclass
class Counts:
    """A dataclass whose ``int`` and `Counts` fields add up under ``+``; any other field keeps the left value."""

    def __add__(self: C, other: C) -> C:
        if type(other) is not type(self):
            return NotImplemented
        values = {}
        for field in dataclasses.fields(self):
            left, right = getattr(self, field.name), getattr(other, field.name)
            addable = isinstance(left, Counts) or (isinstance(left, int) and not isinstance(left, bool))
            values[field.name] = left + right if addable else left
        return type(self)(**values)


def sum_counts(counts: Iterable[C]) -> C:
    """Field-by-field sum of one or more counters of the same type (the first one's other fields are kept)."""
    items = list(counts)
    if not items:
        raise ValueError("sum_counts needs at least one counter")
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total
