"""``max_memory``: cap this process's CUDA memory on a shared GPU, so an OOM happens inside
the cap and the auto-tuner and the OOM policy work within it.

Given as a fraction of the card (``0.5``) or a size (``20GiB``, ``512MiB``, ``24GB``).
"""

from __future__ import annotations

from tui_eval.device.meter import device_memory_bytes
from tui_eval.formatting import format_bytes, size_bytes
from tui_eval.i18n import LogFn


def cap_fraction(value: float | str, total_bytes: int) -> float:
    """The share of the card the cap allows, at most all of it."""
    if isinstance(value, float):
        return value
    return min(1.0, size_bytes(value) / total_bytes)


def apply_max_memory(value: float | str | None, device: str, log: LogFn) -> int | None:
    """Cap CUDA memory for this process; returns the cap in bytes (None when uncapped).
    Other devices have no such cap: say so once and go on."""
    if value is None:
        return None
    if not device.startswith("cuda"):
        log("INFO", "max_memory_ignored", device=device)
        return None
    import torch

    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    total = int(torch.cuda.get_device_properties(index).total_memory)
    fraction = cap_fraction(value, total)
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    cap = int(total * fraction)
    log("INFO", "max_memory_set", cap=format_bytes(cap), percent=fraction * 100,
        total=format_bytes(total))
    return cap


def memory_capacity(value: float | str | None, device: str) -> int | None:
    """What a run may use on the device: the cap when one applies, else all the device has."""
    total = device_memory_bytes(device)
    if total is None or value is None or not device.startswith("cuda"):
        return total
    return int(total * cap_fraction(value, total))


def usable_memory(device: str, capacity: int | None) -> int | None:
    """What this process could still reach on the device: on CUDA the memory free now plus
    what this process holds (other processes' memory is not ours to count on), at most the
    capacity; elsewhere the capacity."""
    if not device.startswith("cuda"):
        return capacity
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    reachable = int(free) + int(torch.cuda.memory_reserved(torch.device(device)))
    return reachable if capacity is None else min(capacity, reachable)
