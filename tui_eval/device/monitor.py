"""GPU and host readings: NVML for each NVIDIA GPU, psutil for CPU and RAM.

No UI code here: the app polls a ``Sampler`` from a worker thread, and the engine side may
take the same readings. Every figure is optional: a reading that fails becomes ``None``
(shown as N/A), and a GPU that stops answering is marked as not responding — a broken
driver never raises out of ``Sampler.sample``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tui_eval.device.nvml import GpuUnavailable, open_nvml

HISTORY_WINDOW_S = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    util_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    responding: bool = True

    @property
    def memory_fraction(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes


@dataclass(frozen=True)
class HostReading:
    cpu_percent: float | None = None
    ram_used_bytes: int | None = None
    ram_total_bytes: int | None = None

    @property
    def ram_fraction(self) -> float | None:
        if self.ram_used_bytes is None or not self.ram_total_bytes:
            return None
        return self.ram_used_bytes / self.ram_total_bytes


@dataclass(frozen=True)
class Snapshot:
    """One poll: every GPU, the host, and why there are no GPU readings when there are none."""

    time: float
    gpus: tuple[GpuReading, ...]
    host: HostReading
    gpu_note: str | None = None


class GpuSource(Protocol):
    def read(self) -> list[GpuReading]:
        """Readings for every GPU; raises GpuUnavailable when there is nothing to read."""
        ...


class HostSource(Protocol):
    def read(self) -> HostReading: ...


def _attempt(read: Callable[[], T]) -> T | None:
    """One query; any failure (an NVMLError, a lost GPU, a timeout) reads as unknown."""
    try:
        return read()
    except Exception:
        return None


class NvmlGpuSource:
    """Reads NVIDIA GPUs through NVML (the ``pynvml`` module from nvidia-ml-py).

    ``nvml`` may be injected (a fake module in tests); by default pynvml is opened (once
    per process, see nvml.py) on the first read, so importing this file never needs it.
    """

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self._count: int | None = None
        self._failure: str | None = None
        self._names: dict[int, str] = {}

    def _start(self) -> Any:
        if self._failure is not None:
            raise GpuUnavailable(self._failure)
        try:
            nvml = self._nvml = open_nvml(self._nvml)
        except GpuUnavailable as exc:
            self._failure = str(exc)
            raise
        if self._count is None:
            try:
                self._count = int(nvml.nvmlDeviceGetCount())
            except Exception:  # NVMLError and its many subclasses, or a broken library
                self._failure = "no NVIDIA driver: CPU/RAM only"
                raise GpuUnavailable(self._failure) from None
            if self._count == 0:
                self._failure = "no NVIDIA GPU: CPU/RAM only"
                raise GpuUnavailable(self._failure)
        return nvml

    def read(self) -> list[GpuReading]:
        nvml = self._start()
        assert self._count is not None
        return [self._read_one(nvml, index) for index in range(self._count)]

    def _read_one(self, nvml: Any, index: int) -> GpuReading:
        name = self._names.get(index, f"GPU {index}")
        handle = _attempt(lambda: nvml.nvmlDeviceGetHandleByIndex(index))
        if handle is None:
            return GpuReading(index=index, name=name, responding=False)
        if index not in self._names:
            raw = _attempt(lambda: nvml.nvmlDeviceGetName(handle))
            if raw is not None:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                self._names[index] = name
        memory = _attempt(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        util = _attempt(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        temperature = _attempt(
            lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        power_mw = _attempt(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        limit_mw = _attempt(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        figures = (memory, util, temperature, power_mw)
        return GpuReading(
            index=index,
            name=name,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            util_percent=float(util.gpu) if util is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
            responding=any(figure is not None for figure in figures),
        )


class PsutilHostSource:
    """System-wide CPU % (since the previous read) and RAM, from psutil."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point

    def read(self) -> HostReading:
        cpu = _attempt(lambda: float(self._psutil.cpu_percent(interval=None)))
        memory = _attempt(self._psutil.virtual_memory)
        return HostReading(
            cpu_percent=cpu,
            ram_used_bytes=int(memory.total - memory.available) if memory is not None else None,
            ram_total_bytes=int(memory.total) if memory is not None else None,
        )


class FixedGpuSource:
    """Deterministic GPU readings (tests, screenshots): ``readings`` on every read, or
    nothing at all with ``unavailable`` set to the reason."""

    def __init__(self, readings: Iterable[GpuReading] = (), unavailable: str | None = None):
        self.readings = list(readings)
        self.unavailable = unavailable

    def read(self) -> list[GpuReading]:
        if self.unavailable is not None:
            raise GpuUnavailable(self.unavailable)
        return list(self.readings)


class FixedHostSource:
    """Deterministic host readings for tests and screenshots."""

    def __init__(self, reading: HostReading) -> None:
        self.reading = reading

    def read(self) -> HostReading:
        return self.reading


class Sampler:
    """Takes one ``Snapshot`` of every source; never raises because a source failed."""

    def __init__(self, gpu_source: GpuSource | None = None,
                 host_source: HostSource | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.gpu_source: GpuSource = gpu_source or NvmlGpuSource()
        self.host_source: HostSource = host_source or PsutilHostSource()
        self.clock = clock

    def sample(self) -> Snapshot:
        note: str | None = None
        try:
            gpus = tuple(self.gpu_source.read())
        except GpuUnavailable as exc:
            gpus, note = (), str(exc)
        except Exception as exc:  # a misbehaving driver must not take the app down
            gpus, note = (), f"GPU readings failed: {type(exc).__name__}: {exc}"
        try:
            host = self.host_source.read()
        except Exception:
            host = HostReading()
        return Snapshot(time=self.clock(), gpus=gpus, host=host, gpu_note=note)


@dataclass
class History:
    """The values of one gauge over the last ``window_s`` seconds, oldest first."""

    window_s: float = HISTORY_WINDOW_S
    points: deque[tuple[float, float | None]] = field(default_factory=deque)

    def add(self, when: float, value: float | None) -> None:
        self.points.append((when, value))
        while self.points and self.points[0][0] < when - self.window_s:
            self.points.popleft()

    def values(self) -> list[float | None]:
        return [value for _, value in self.points]


def sparkline_columns(values: list[float | None], width: int) -> list[float | None]:
    """Fit values into ``width`` columns, newest on the right: several values per column
    keep their maximum (a spike stays visible); fewer values than columns leave the left
    blank."""
    if width <= 0:
        return []
    if len(values) <= width:
        return [None] * (width - len(values)) + list(values)
    per_column = len(values) / width
    columns: list[float | None] = []
    for column in range(width):
        chunk = values[math.floor(column * per_column):math.floor((column + 1) * per_column)]
        known = [v for v in chunk if v is not None]
        columns.append(max(known) if known else None)
    return columns

