"""Ordering samples for generation: longest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def longest_first(items: Sequence[T], lengths: Sequence[int]) -> list[T]:
    """Longest first, so an OOM shows up in the first batch and rows in a batch pad little.
    The sort is stable: equal lengths keep their dataset order."""
    order = sorted(range(len(items)), key=lambda i: -lengths[i])
    return [items[i] for i in order]
