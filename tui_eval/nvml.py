"""The NVML handle of the GPU a run uses, and its utilisation during a probe (the app's
all-GPU gauges live in monitor.py). Every call degrades to None: no pynvml, no driver,
a CPU device or an NVML error never stops a run."""

from __future__ import annotations

import os
from typing import Any

_initialised: bool | None = None


def _nvml() -> Any | None:
    global _initialised
    try:
        import pynvml
    except ImportError:
        return None
    if _initialised is None:
        try:
            pynvml.nvmlInit()
            _initialised = True
        except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, …
            _initialised = False
    return pynvml if _initialised else None


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
    nvml = _nvml()
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
    nvml = _nvml()
    if nvml is None or handle is None:
        return None
    try:
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # noqa: BLE001
        return None
