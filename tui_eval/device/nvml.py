"""NVML, opened once per process for everything that reads NVIDIA GPUs: the run's own GPU
during a probe (``device_handle``, ``utilization_percent``) and the app's gauges of every
GPU (monitor.py). No pynvml, no driver or an NVML error never stops a run: callers get
None, or ``GpuUnavailable`` with the reason to show."""

from __future__ import annotations

import os
import weakref
from typing import Any


class GpuUnavailable(Exception):
    """No GPU readings can be had at all (no library, no driver, no device)."""


# module -> the failure's text, or None once nvmlInit succeeded
_opened: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def open_nvml(module: Any | None = None) -> Any:
    """pynvml (or a stand-in with its API, for tests), initialised on the first call;
    raises GpuUnavailable saying why there are no readings."""
    if module is None:
        try:
            import pynvml
        except ImportError:
            raise GpuUnavailable("pynvml not installed: CPU/RAM only") from None
        module = pynvml
    if module not in _opened:
        try:
            module.nvmlInit()
            _opened[module] = None
        except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, …
            _opened[module] = "no NVIDIA driver: CPU/RAM only"
    failure = _opened[module]
    if failure is not None:
        raise GpuUnavailable(failure)
    return module


def _nvml_or_none() -> Any | None:
    try:
        return open_nvml()
    except GpuUnavailable:
        return None


def _torch_index(device: str) -> int:
    import torch

    if ":" in device:
        return int(device.split(":", 1)[1])
    return torch.cuda.current_device()


def _handle_by_pci(nvml: Any, index: int) -> Any | None:
    """torch and NVML number GPUs differently under CUDA_VISIBLE_DEVICES; the PCI address
    is the same in both."""
    import torch

    props = torch.cuda.get_device_properties(index)
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return None
    address = (f"{getattr(props, 'pci_domain_id', 0):08X}:{bus:02X}:"
               f"{getattr(props, 'pci_device_id', 0):02X}.0")
    return nvml.nvmlDeviceGetHandleByPciBusId(address)


def device_handle(device: str) -> Any | None:
    """The NVML handle of a torch CUDA device ("cuda", "cuda:1"); None elsewhere."""
    if not device.startswith("cuda"):
        return None
    nvml = _nvml_or_none()
    if nvml is None:
        return None
    try:
        index = _torch_index(device)
    except Exception:  # noqa: BLE001
        return None
    try:
        handle = _handle_by_pci(nvml, index)
        if handle is not None:
            return handle
    except Exception:  # noqa: BLE001 - fall back to the index below
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    try:
        if index < len(visible) and visible[index].strip().isdigit():
            index = int(visible[index])
        return nvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # noqa: BLE001
        return None


def utilization_percent(handle: Any) -> float | None:
    nvml = _nvml_or_none()
    if nvml is None or handle is None:
        return None
    try:
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # noqa: BLE001
        return None
