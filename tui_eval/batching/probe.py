"""One batch-size probe: a full-length generate call cut short after a few timed decode
steps, and the figures of the whole call predicted from them.

A probe asks for the run's ``max_tokens`` (forced: no early stop) and stops once
``DecodeTimer`` has timed enough decode steps: at least ``MIN_STEPS``, and a window of
``DECODE_WINDOW_S`` of decoding, at most ``MAX_STEPS`` or a quarter of ``max_tokens``
(``probe_steps``). Its time at full length is the call's time plus the steps it did not run
at the measured time per step.

Memory at full length: on the static path the prefill allocates the whole KV cache, so the
probe's peak is the full-length peak. The dynamic cache grows by ``kv_cache_bytes_per_token``
per row and token (2 × layers × KV heads × head dim × dtype bytes), and what it would still
grow is added to the measured peak.

Pure Python: nothing here imports torch.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIN_STEPS = 4  # three intervals between stamps: the least that gives a time per step
MAX_STEPS = 64
DECODE_WINDOW_S = 0.01  # shorter windows are mostly noise on a busy CPU


def probe_steps(max_tokens: int) -> int:
    """The most decode steps a probe runs: a quarter of the full length (so that with a
    short ``max_tokens`` a probe still costs well under a batch), at least ``MIN_STEPS``."""
    return max(MIN_STEPS, min(MAX_STEPS, max_tokens // 4))


class DecodeTimer:
    """``backend.generate(..., on_step=timer)``: stamps each new token and ends the call
    once enough decode steps are timed."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter, *,
                 min_steps: int = MIN_STEPS, max_steps: int = MAX_STEPS,
                 window_s: float = DECODE_WINDOW_S) -> None:
        self.clock = clock
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.window_s = window_s
        self.stamps: list[float] = []

    def __call__(self) -> bool:
        self.stamps.append(self.clock())
        steps = len(self.stamps)
        if steps >= self.max_steps:
            return True
        return steps >= self.min_steps and self.stamps[-1] - self.stamps[0] >= self.window_s

    @property
    def step_seconds(self) -> float | None:
        """The time of one decode step: the median interval between stamps (the first
        stamp comes after the prefill), so that one step another process preempted does
        not count for all."""
        if len(self.stamps) < 2:
            return None
        steps = sorted(b - a for a, b in itertools.pairwise(self.stamps))
        middle = len(steps) // 2
        return steps[middle] if len(steps) % 2 else (steps[middle - 1] + steps[middle]) / 2


@dataclass
class ProbeRun:
    """What one probe call measured."""

    rows: int
    new_tokens: int  # generated per row before the timer ended the call
    call_seconds: float
    step_seconds: float | None
    first_token_seconds: float | None = None  # from the call's start to its first token
    peak_memory_bytes: int | None = None
    gpu_util_percent: float | None = None
    oom_after_s: float | None = None  # set when it ran out of memory
    started: float = 0.0  # the clock when the call began

    @property
    def oom(self) -> bool:
        return self.oom_after_s is not None

    def full_length_seconds(self, max_tokens: int) -> float:
        """The call's time had it generated ``max_tokens`` per row."""
        left = max(0, max_tokens - self.new_tokens)
        return self.call_seconds + left * (self.step_seconds or 0.0)

    def full_length_peak(self, max_tokens: int, kv_bytes_per_token: int) -> int | None:
        """The peak memory at ``max_tokens``: the measured peak plus the KV cache still to
        grow (``kv_bytes_per_token`` is 0 on the static path, whose cache is whole)."""
        if self.peak_memory_bytes is None:
            return None
        left = max(0, max_tokens - self.new_tokens)
        return self.peak_memory_bytes + self.rows * kv_bytes_per_token * left


def kv_cache_bytes_per_token(model_config: Any, dtype_bytes: int) -> int:
    """Bytes the KV cache of one row grows by per token: keys and values of every layer.
    0 when the config does not say (the memory prediction then rests on what was
    measured)."""
    config = model_config.get_text_config() if hasattr(model_config, "get_text_config") \
        else model_config
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not layers or not heads:
        return 0
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or (hidden // heads if hidden else 0)
    return 2 * int(layers) * int(kv_heads) * int(head_dim) * dtype_bytes
