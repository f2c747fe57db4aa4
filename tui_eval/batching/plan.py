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


def share_by_cost(items: Sequence[T], costs: Sequence[int], shares: int) -> list[list[T]]:
    """Split ``items`` into ``shares`` lists of about equal total cost (tokens, not counts):
    the costliest first, each to the share with the least so far. The same inputs give the
    same split in every process, so no process needs to be told its share."""
    loads = [0] * shares
    split: list[list[T]] = [[] for _ in range(shares)]
    for i in sorted(range(len(items)), key=lambda i: (-costs[i], i)):
        lightest = min(range(shares), key=lambda share: (loads[share], share))
        loads[lightest] += costs[i]
        split[lightest].append(items[i])
    return split
