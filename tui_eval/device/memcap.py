"""``max_memory``: cap this process's CUDA memory on a shared GPU, so an OOM happens inside
the cap and the auto-tuner and the OOM policy work within it.

Given as a fraction of the card (``0.5``) or a size (``20GiB``, ``512MiB``, ``24GB``).
With ``device_map`` it is a size per device instead (``0=70GiB,1=70GiB,cpu=200GiB``):
where accelerate may place the weights, not a cap on the process.

A model spread over several CUDA devices runs out of memory on whichever fills first, so
its capacity and what it can still reach are the smallest over those devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tui_eval.device.budgets import (  # noqa: F401 - this module's names, kept
    BUDGET_PLACES,
    DEVICE_BUDGETS_EXAMPLE,
    device_budgets_text,
    is_per_device,
    parse_device_budgets,
)
from tui_eval.device.meter import cuda_devices, device_memory_bytes
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
    if value is None or is_per_device(value):  # a size per device goes to the loader
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


def memory_devices(device: str, devices: Iterable[str] = ()) -> list[str]:
    """The devices whose memory a run is bounded by: the CUDA ones among ``device`` (where
    the inputs go) and ``devices`` (all the model spans) when it runs on CUDA, else
    ``device`` alone (weights offloaded to the CPU do not grow with the batch)."""
    if not device.startswith("cuda"):
        return [device]
    return cuda_devices([device, *devices])


def _smallest(values: Sequence[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return min(known) if known else None


def memory_capacity(value: float | str | None, device: str,
                    devices: Iterable[str] = ()) -> int | None:
    """What a run may use on the device: the cap when one applies, else all the device has;
    over several CUDA devices, the smallest of them."""
    if is_per_device(value):  # where the weights go: each card is still whole
        value = None
    return _smallest([_one_capacity(value, one) for one in memory_devices(device, devices)])


def _one_capacity(value: float | str | None, device: str) -> int | None:
    total = device_memory_bytes(device)
    if total is None or value is None or not device.startswith("cuda"):
        return total
    return int(total * cap_fraction(value, total))


def usable_memory(device: str, capacity: int | None,
                  devices: Iterable[str] = ()) -> int | None:
    """What this process could still reach on the device: on CUDA the memory free now plus
    what this process holds (other processes' memory is not ours to count on), at most the
    capacity, and over several CUDA devices the smallest such headroom; elsewhere the
    capacity."""
    if not device.startswith("cuda"):
        return capacity
    reachable = _smallest([_reachable(one) for one in memory_devices(device, devices)])
    if reachable is None or capacity is None:
        return capacity if reachable is None else reachable
    return min(capacity, reachable)


def _reachable(device: str) -> int:
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free) + int(torch.cuda.memory_reserved(torch.device(device)))
