"""The device's side of batching (tui_eval.batching.hooks): torch's OOM errors, its
allocator's cache and the resource meter."""

from __future__ import annotations

from tui_eval.batching.hooks import DeviceHooks
from tui_eval.device.meter import ResourceMeter
from tui_eval.device.oom import free_memory, is_oom_error, release_cached_memory, summarize_error


def device_hooks() -> DeviceHooks:
    return DeviceHooks(
        is_oom=is_oom_error, free_memory=free_memory,
        release_cached_memory=release_cached_memory, summarize_error=summarize_error,
        meter=lambda device, devices: ResourceMeter(device, devices=tuple(devices)))


DEVICE_HOOKS = device_hooks()
