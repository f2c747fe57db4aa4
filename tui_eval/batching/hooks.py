"""What batching needs from the device, passed in so that nothing here imports torch: is an
error an out-of-memory error, freeing memory after one, handing the allocator's cache back
before a probe, and metering a call (peak memory, GPU utilisation).

``PLAIN_HOOKS`` knows OOMs by their message and meters nothing; the engine passes the
torch-aware hooks (tui_eval.engine.device_hooks)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol


class Meter(Protocol):
    """A metered stretch of work: read once its ``with`` block has ended."""

    peak_memory_bytes: int | None
    gpu_util_percent: float | None

    def __enter__(self) -> Meter: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class NullMeter:
    """Measures nothing: no peak, no utilisation."""

    peak_memory_bytes: int | None = None
    gpu_util_percent: float | None = None

    def __enter__(self) -> NullMeter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


def looks_like_oom(exc: BaseException) -> bool:
    """An OOM by its message: torch's allocators all say "out of memory"."""
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text


def first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(". ")[0].rstrip(".")[:200]


MeterFactory = Callable[[str, Sequence[str]], Meter]


@dataclass(frozen=True)
class DeviceHooks:
    is_oom: Callable[[BaseException], bool] = looks_like_oom
    free_memory: Callable[[], object] = gc.collect  # after an OOM, before trying again
    # before a probe, so that its peak is its own and not a bigger probe's leftovers
    release_cached_memory: Callable[[str], None] = lambda device: None
    summarize_error: Callable[[BaseException], str] = first_sentence
    # (device, every device the model spans) -> a meter
    meter: MeterFactory = lambda device, devices: NullMeter()


PLAIN_HOOKS = DeviceHooks()
