"""Measuring a stretch of work: its peak memory and the GPU's mean utilisation meanwhile.

On CUDA the peak is the caching allocator's reserved bytes (what counts against the card
and against ``--max-memory``); on CPU it is the process's resident set, sampled. A model
spread over several CUDA devices (``--device-map``) is measured on each of them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType

from tui_eval.device import nvml

SAMPLE_INTERVAL_S = 0.05


def process_rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - psutil missing: read /proc instead
        pass
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def total_ram_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def device_memory_bytes(device: str) -> int | None:
    """The memory a device has: the GPU's total, or the machine's RAM for the CPU."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    if device == "cpu":
        return total_ram_bytes()
    return None


def cuda_devices(devices: Iterable[str]) -> list[str]:
    """The CUDA devices among ``devices``, each once, in their order."""
    return list(dict.fromkeys(device for device in devices if device.startswith("cuda")))


class ResourceMeter:
    """``with ResourceMeter(device) as meter: work()`` then read ``peak_memory_bytes`` and
    ``gpu_util_percent`` (None where the device cannot tell).

    ``devices``: every device the model spans, when that is more than ``device`` (where its
    inputs go). The peak is then the largest of the CUDA devices' peaks, not their sum: each
    card runs out on its own, and the tuner holds a peak against one card's capacity (the
    smallest, see memcap), so the fullest card decides whether a batch fits. The
    utilisation is the mean over the cards, each busy only for its share of the layers."""

    def __init__(self, device: str, interval_s: float = SAMPLE_INTERVAL_S,
                 devices: Sequence[str] = ()) -> None:
        self.device = device
        self.interval_s = interval_s
        self.cuda = device.startswith("cuda")
        self.peak_memory_bytes: int | None = None
        self.gpu_util_percent: float | None = None
        self.cuda_devices = cuda_devices([device, *devices]) if self.cuda else []
        handles = [nvml.device_handle(one) for one in self.cuda_devices]
        self._handles = [handle for handle in handles if handle is not None]
        self._util: list[tuple[float, float]] = []  # (perf_counter time, percent)
        self._rss_peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ResourceMeter:
        if self.cuda:
            import torch

            for device in self.cuda_devices:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
        else:
            self._rss_peak = process_rss_bytes()
        if self._handles or not self.cuda:
            self._thread = threading.Thread(target=self._sample, name="resource-meter",
                                            daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read_once()

    def _read_once(self) -> None:
        if self.cuda:
            readings = [nvml.utilization_percent(handle) for handle in self._handles]
            known = [util for util in readings if util is not None]
            if known:
                self._util.append((time.perf_counter(), sum(known) / len(known)))
        else:
            rss = process_rss_bytes()
            if rss is not None:
                self._rss_peak = max(rss, self._rss_peak or 0)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._read_once()  # a stretch shorter than one interval still gets a reading
        if self.cuda:
            import torch

            # a failed kernel must not hide the error that is already propagating
            for device in self.cuda_devices:
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize(device)
            self.peak_memory_bytes = max(int(torch.cuda.max_memory_reserved(device))
                                         for device in self.cuda_devices)
            self.gpu_util_percent = self.gpu_util_percent_outside(())
        else:
            self.peak_memory_bytes = self._rss_peak

    def gpu_util_percent_outside(self, spans: Sequence[tuple[float, float]]) -> float | None:
        """The mean utilisation over the readings taken outside ``spans`` (perf_counter
        start and end times, such as the backend's compilations); None without any."""
        kept = [util for at, util in self._util
                if not any(start <= at <= end for start, end in spans)]
        return sum(kept) / len(kept) if kept else None
