"""The NVML + psutil sampler: readings, N/A for what fails, never an exception."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from tui_eval.device.monitor import (
    FixedHostSource,
    History,
    HostReading,
    NvmlGpuSource,
    PsutilHostSource,
    Sampler,
    sparkline_columns,
)
from tui_eval.device.nvml import GpuUnavailable
from tui_eval.formatting import GIB


class NVMLError(Exception):
    pass


class FakeNvml:
    """The parts of pynvml the sampler uses; ``broken`` names calls that fail per GPU."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, count: int = 1, init_error: bool = False,
                 broken: dict[int, set[str]] | None = None) -> None:
        self.count = count
        self.init_error = init_error
        self.broken = broken or {}

    def _check(self, index: int, call: str) -> None:
        if call in self.broken.get(index, set()) or "all" in self.broken.get(index, set()):
            raise NVMLError("GPU is lost")

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._check(index, "handle")
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        self._check(handle, "name")
        return f"Fake GPU {handle}".encode()

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        self._check(handle, "memory")
        return SimpleNamespace(used=3 * GIB, total=16 * GIB, free=13 * GIB)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        self._check(handle, "util")
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._check(handle, "temperature")
        return 66

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._check(handle, "power")
        return 215_500  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        self._check(handle, "limit")
        return 300_000


def test_nvml_readings_are_converted():
    (reading,) = NvmlGpuSource(FakeNvml()).read()
    assert reading.name == "Fake GPU 0"
    assert reading.memory_used_bytes == 3 * GIB and reading.memory_total_bytes == 16 * GIB
    assert reading.memory_fraction == pytest.approx(3 / 16)
    assert reading.util_percent == 87.0
    assert reading.temperature_c == 66.0
    assert reading.power_w == pytest.approx(215.5)
    assert reading.power_limit_w == pytest.approx(300.0)
    assert reading.responding


def test_one_failing_query_is_unknown_not_an_error():
    (reading,) = NvmlGpuSource(FakeNvml(broken={0: {"temperature", "limit"}})).read()
    assert reading.temperature_c is None and reading.power_limit_w is None
    assert reading.util_percent == 87.0 and reading.responding


def test_a_gpu_that_stops_answering_is_marked_and_keeps_its_name():
    nvml = FakeNvml(count=2)
    source = NvmlGpuSource(nvml)
    source.read()
    nvml.broken = {1: {"all"}}
    first, second = source.read()
    assert first.responding
    assert not second.responding
    assert second.name == "Fake GPU 1"
    assert second.memory_used_bytes is None and second.util_percent is None


def test_no_driver_is_reported_once_in_one_line():
    source = NvmlGpuSource(FakeNvml(init_error=True))
    with pytest.raises(GpuUnavailable, match="^no NVIDIA driver: CPU/RAM only$"):
        source.read()
    with pytest.raises(GpuUnavailable):
        source.read()


def test_no_gpu_and_no_pynvml_are_reported(monkeypatch):
    with pytest.raises(GpuUnavailable, match="no NVIDIA GPU"):
        NvmlGpuSource(FakeNvml(count=0)).read()
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    with pytest.raises(GpuUnavailable, match="pynvml not installed"):
        NvmlGpuSource().read()


def test_sampler_never_raises_and_keeps_the_host_readings():
    class Exploding:
        def read(self):
            raise OSError("ioctl failed")

    host = FixedHostSource(HostReading(5.0, GIB, 2 * GIB))
    snapshot = Sampler(Exploding(), host, clock=lambda: 7.0).sample()
    assert snapshot.gpus == () and "ioctl failed" in (snapshot.gpu_note or "")
    assert snapshot.host.cpu_percent == 5.0 and snapshot.time == 7.0
    no_driver = Sampler(NvmlGpuSource(FakeNvml(init_error=True)), host).sample()
    assert no_driver.gpu_note == "no NVIDIA driver: CPU/RAM only"


def test_the_real_sources_work_on_this_machine():
    snapshot = Sampler().sample()  # a GPU box lists its GPUs; elsewhere there is a note
    assert snapshot.gpus or snapshot.gpu_note
    host = PsutilHostSource().read()
    assert host.ram_total_bytes and 0 < host.ram_used_bytes <= host.ram_total_bytes
    assert host.cpu_percent is not None and 0 <= host.cpu_percent <= 100


def test_history_keeps_the_last_minute():
    history = History(window_s=60)
    for second in range(100):
        history.add(float(second), float(second))
    assert history.values()[0] == 39.0 and history.values()[-1] == 99.0


def test_sparkline_columns_keep_peaks_and_pad_the_left():
    assert sparkline_columns([1.0, 2.0], 4) == [None, None, 1.0, 2.0]
    assert sparkline_columns([1.0, 9.0, 2.0, 3.0], 2) == [9.0, 3.0]
    assert sparkline_columns([None, None, 5.0, None], 2) == [None, 5.0]
    assert sparkline_columns([1.0], 0) == []
