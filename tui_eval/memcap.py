"""``max_memory``: cap this process's CUDA memory on a shared GPU, so an OOM happens inside
the cap and the auto-tuner and the OOM policy work within it.

Given as a fraction of the card (``0.5``) or a size (``20GiB``, ``512MiB``, ``24GB``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

EXPECTED = "a fraction from 0 to 1 (0.5) or a size such as 20GiB"
_UNITS = {
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)b?\s*$", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*\d*\.?\d+\s*$")


def parse_max_memory(value: Any) -> float | str:
    """Check a max_memory value; a fraction comes back as a float, a size as its text."""
    if isinstance(value, bool):
        raise ValueError(f"must be {EXPECTED}, got {value!r}")
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.match(value)):
        fraction = float(value)
        if not 0 < fraction <= 1:
            raise ValueError(f"must be {EXPECTED}, got {value!r}")
        return fraction
    if isinstance(value, str) and _SIZE.match(value) and size_bytes(value) > 0:
        return value.strip()
    raise ValueError(f"must be {EXPECTED}, got {value!r}")


def size_bytes(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def cap_fraction(value: float | str, total_bytes: int) -> float:
    """The share of the card the cap allows, at most all of it."""
    if isinstance(value, float):
        return value
    return min(1.0, size_bytes(value) / total_bytes)


LogFn = Callable[..., None]  # log(level, message_key, **values)


def apply_max_memory(value: float | str | None, device: str, log: LogFn) -> int | None:
    """Cap CUDA memory for this process; returns the cap in bytes (None when uncapped).
    Other devices have no such cap: say so once and go on."""
    if value is None:
        return None
    if not device.startswith("cuda"):
        log("INFO", "max_memory_ignored", device=device)
        return None
    import torch

    from tui_eval.tables import format_bytes

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
    from tui_eval.meter import device_memory_bytes

    total = device_memory_bytes(device)
    if total is None or value is None or not device.startswith("cuda"):
        return total
    return int(total * cap_fraction(value, total))
