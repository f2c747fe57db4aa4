"""Deciding whether an exception is an out-of-memory error, and freeing memory after one."""

from __future__ import annotations

import gc

_OOM_MESSAGES = (
    "out of memory",  # CUDA, MPS and HIP allocators
    "can't allocate memory",  # the CPU allocator
    "cublas_status_alloc_failed",
    "cudnn_status_not_supported",  # cuDNN's way of saying it ran out of workspace
)


def is_oom_error(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom_type):
        return True
    if isinstance(exc, RuntimeError) and exc.args:
        text = str(exc.args[0]).lower()
        return any(marker in text for marker in _OOM_MESSAGES)
    return False


def free_memory() -> None:
    """Collect garbage and hand cached blocks back, so the next attempt starts clean."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def summarize_error(exc: BaseException) -> str:
    """The first sentence of an error, as the seed's log line shows it ('CUDA out of memory')."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = text.split(". ")[0].rstrip(".")
    return first[:200]


def release_cached_memory(device: str) -> None:
    """Hand the CUDA allocator's cache back, so a probe's peak is its own and not what a
    bigger probe left reserved. (No gc.collect: on CPU it costs more than a small probe.)"""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
