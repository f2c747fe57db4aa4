"""Measuring one batch size through a backend: a probe (tui_eval.batching.probe) of
generation, or a forward pass over (context, choice) pairs, metered, an OOM a result.

The backend is anything with ``generate(texts, max_new_tokens=, force_length=, on_step=,
static=)`` and ``device``: each probe names its path per call (``static``), so nothing the
run's calls see is switched on the backend; a pair scorer has ``score(pairs)`` and
``model_input(pair)``. What touches the device comes in as hooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from tui_eval.batching.hooks import PLAIN_HOOKS, DeviceHooks, Meter
from tui_eval.batching.probe import DecodeTimer, ProbeRun, probe_steps
from tui_eval.results.tune import TuneProbe

WARM_UP_TOKENS = 2  # the prefill and one decode step pay the one-time costs


class GenerationBackend(Protocol):
    device: str

    def generate(self, texts: list[str], *, max_new_tokens: int, force_length: bool = False,
                 on_step: Callable[[], bool] | None = None,
                 static: bool | None = None) -> Any: ...


class Prober:
    """Probes generation on ``prompts`` (longest first) with ``max_tokens`` per row.

    ``static_cache``: probe on the static path (compile on) without compiling, each size at
    its own shape, else eagerly with the dynamic cache, whose growth ``kv_bytes_per_token``
    predicts; ``meter``: a meter for the
    backend's device (default: the hooks', over every device the backend spans)."""

    def __init__(self, backend: Any, prompts: list[Any], *, max_tokens: int,
                 clock: Callable[[], float] = time.perf_counter,
                 hooks: DeviceHooks = PLAIN_HOOKS, static_cache: bool = False,
                 kv_bytes_per_token: int = 0,
                 meter: Callable[[str], AbstractContextManager[Meter]] | None = None) -> None:
        self.backend = backend
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.clock = clock
        self.hooks = hooks
        self.static_cache = static_cache
        # the static cache is whole from the prefill on: nothing left to grow
        self.kv_bytes_per_token = 0 if static_cache else kv_bytes_per_token
        self.meter = meter or (lambda device: hooks.meter(
            device, tuple(getattr(self.backend, "devices", ()))))

    @property
    def device(self) -> str:
        return str(self.backend.device)

    def warm_up_call(self, size: int) -> None:
        """A short call of ``size`` rows that pays the one-time costs."""
        self.backend.generate(self.prompts[:size],
                              max_new_tokens=min(self.max_tokens, WARM_UP_TOKENS),
                              force_length=True, static=self.static_cache)

    def warm_up(self) -> None:
        """The first call pays one-time costs (kernels, allocator, caches) that would
        otherwise make batch size 1 look slow. Not metered: on a short run's budget the
        meter's own cost counts. An OOM here shows again in the first probe."""
        try:
            self.warm_up_call(1)
        except Exception as exc:  # noqa: BLE001 - only an OOM is expected here
            if not self.hooks.is_oom(exc):
                raise
            del exc
            self.hooks.free_memory()

    def short_call(self, size: int) -> ProbeRun:
        """``warm_up_call`` of ``size`` rows, metered; an OOM is a result."""
        self.hooks.release_cached_memory(self.device)

        def call() -> int:
            self.warm_up_call(size)
            return min(self.max_tokens, WARM_UP_TOKENS)

        return self.timed_call(size, call)

    def measure(self, size: int, *, full_length: bool = False) -> ProbeRun:
        """One forced call for the ``size`` longest prompts: cut short after a few timed
        decode steps, or ``full_length``."""
        self.hooks.release_cached_memory(self.device)
        timer = None if full_length else DecodeTimer(
            self.clock, max_steps=probe_steps(self.max_tokens))

        def generate() -> int:
            generation = self.backend.generate(self.prompts[:size],
                                               max_new_tokens=self.max_tokens,
                                               force_length=True, on_step=timer,
                                               static=self.static_cache)
            return max(generation.new_tokens, default=0)

        run = self.timed_call(size, generate)
        if timer is not None and timer.stamps:
            run.step_seconds = timer.step_seconds
            run.first_token_seconds = timer.stamps[0] - run.started
        return run

    def timed_call(self, size: int, call: Callable[[], int]) -> ProbeRun:
        """Time one call of ``size`` rows under the meter; an OOM is a result (the memory it
        held is freed), any other error is raised. ``call`` returns the tokens each row
        generated, when it generates."""
        run = ProbeRun(rows=size, new_tokens=0, call_seconds=0.0, step_seconds=None)
        with self.meter(self.device) as meter:
            run.started = self.clock()
            try:
                run.new_tokens = call()
                run.call_seconds = self.clock() - run.started
            except Exception as exc:  # noqa: BLE001 - only an OOM is a probe result
                if not self.hooks.is_oom(exc):
                    raise
                del exc
                run.oom_after_s = self.clock() - run.started
        if run.oom:
            self.hooks.free_memory()
        run.peak_memory_bytes = meter.peak_memory_bytes
        run.gpu_util_percent = meter.gpu_util_percent
        return run

    def take(self, probe: TuneProbe, run: ProbeRun) -> None:
        """A probe's figures from a measurement: predicted for the full length unless the
        call generated it all."""
        probe.gpu_util_percent = run.gpu_util_percent
        probe.probe_seconds = (run.oom_after_s or 0.0) if run.oom else run.call_seconds
        if run.oom:
            probe.status = "oom"
            probe.seconds = run.oom_after_s or 0.0  # how long it took to fail
            probe.samples_per_s = probe.tokens_per_s = 0.0
            probe.peak_memory_bytes = run.peak_memory_bytes
            return
        probe.status = "ok"
        probe.new_tokens = run.new_tokens
        probe.full_length = run.new_tokens >= self.max_tokens
        if run.step_seconds is not None:
            probe.step_seconds = run.step_seconds
        if run.first_token_seconds is not None:
            probe.first_token_seconds = run.first_token_seconds
        probe.seconds = run.full_length_seconds(self.max_tokens)
        probe.peak_memory_bytes = run.full_length_peak(self.max_tokens, self.kv_bytes_per_token)
        rate = 1 / probe.seconds if probe.seconds > 0 else 0.0
        probe.samples_per_s = probe.batch_size * rate
        probe.tokens_per_s = probe.batch_size * self.max_tokens * rate


class PairProber(Prober):
    """Forward passes over the longest (context, choice) pairs: ``backend`` is a
    ``ChoiceScorer`` and ``prompts`` its encoded pairs, longest first. A batch of pairs is
    one forward pass, so each probe is whole (nothing to predict)."""

    def __init__(self, scorer: Any, pairs: list[Any], **options: Any) -> None:
        super().__init__(scorer, pairs, max_tokens=0, **options)
        self._tokens_read = 0

    def warm_up_call(self, size: int) -> None:
        self.backend.score(self.prompts[:size])

    def measure(self, size: int, *, full_length: bool = False) -> ProbeRun:
        self.hooks.release_cached_memory(self.device)
        items = self.prompts[:size]

        def score() -> int:
            self.backend.score(items)
            return 0  # scoring generates nothing

        run = self.timed_call(size, score)
        self._tokens_read = sum(len(self.backend.model_input(pair)) for pair in items)
        return run

    def take(self, probe: TuneProbe, run: ProbeRun) -> None:
        super().take(probe, run)
        if probe.status == "ok" and probe.seconds > 0:
            probe.tokens_per_s = self._tokens_read / probe.seconds  # tokens read, not made
