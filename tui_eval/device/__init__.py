"""What the run's device can do and how it is doing: OOM detection and freeing (oom), the
CUDA memory cap (memcap), a stretch's peak memory and GPU utilisation (meter), NVML opened
once per process (nvml), and the all-GPU and host gauges the app shows (monitor)."""
