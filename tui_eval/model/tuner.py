"""Auto-tuning the batch size at a bounded cost: short probes on the run's longest items.

A probe (tui_eval.model.probe) asks for the full ``max_tokens`` with no early stop, times a
few decode steps and ends the call; the full-length time and peak memory are predicted from
them. The search depends on what limits the size:

* memory (CUDA): probe 1 and 8 rows; their predicted peaks give the memory per row and,
  with the memory this process can reach (within ``memory_headroom``), the largest size
  predicted to fit. The search starts there, not from 1 (``power``: the largest power of
  two at or below it; ``binsearch``: that size), steps down on an OOM or a peak over the
  headroom (halving, or bisecting between the largest size that fit and it), and probes
  half the size found, so that a smaller size nearly as fast wins. With the dynamic cache,
  whose growth was predicted, one full-length call then confirms the chosen size when the
  budget allows (an OOM there moves to the next best size; a first-batch OOM in the run
  is the OOM policy's to handle);
* throughput (CPU, MPS: memory is rarely the limit): 1, 2, 4, … until an OOM, the ceiling,
  a size over the headroom or, in ``power`` mode, two sizes in a row at least 10% slower
  than the fastest (measured again to confirm); ``binsearch`` then bisects between the last
  success and the first OOM; the sizes within 15% of the fastest are measured again back
  to back. Under a budget, while the throughput still rises, the search jumps to the
  largest size up to 8× larger that the budget affords (a search costs mostly its largest
  probe: the sizes in between would spend the budget and tell less), then probes the
  sizes it skipped next to the fastest when the budget allows. When the budget ends the
  search on a throughput still rising, the time of a call is extrapolated along the line
  through the two largest probes, and a size up to 4× the largest probed is chosen
  (status "predicted") if it should be at least 10% faster and tuning stays within its
  share of the run at that size.

The budget: no probe starts that would take the time spent past ``budget_share`` (a tenth)
of the estimated run time; the search ends there and keeps the best size so far. The run
is estimated at the fastest size so far, batch by batch over the run's prompt lengths: each
batch as long as the probe's full-length call, its prefill scaled to the batch's longest
prompt (without early stops: an upper bound). The fastest size whose peak stays within the
headroom wins; among sizes within 3% of it, the smallest.

A choice task is tuned on its longest (context, choice) pairs, each probe one forward pass
(``PairScoringTuner``): cheap next to generation, and exactly the run's work.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from tui_eval.cancel import CancelToken
from tui_eval.device.meter import ResourceMeter
from tui_eval.device.oom import free_memory, is_oom_error
from tui_eval.events import EventSink, RunLog, TuneFinished, TuneStep
from tui_eval.formatting import (
    format_bytes,
    format_percent,
    format_seconds,
    markdown_table,
    pad_cell,
)
from tui_eval.model.probe import DecodeTimer, ProbeRun, probe_steps
from tui_eval.results import TuneProbe, TuneResult

# The search strategies, by the name a config chooses them with.
TUNE_MODES = {
    "power": "powers of two: up from 1 until OOM or a confirmed decline (on CUDA, down "
             "from the largest predicted to fit)",
    "binsearch": "the exact largest size that fits: bisect between the last success and "
                 "the first OOM",
}
PREFER_SMALLER_WITHIN = 0.03  # throughput this close to the best is a tie: take less memory
DECLINE = 0.10  # a size this much slower than the fastest so far is past the peak
DECLINES_TO_STOP = 2  # in a row, before ``power`` stops doubling: one can be bad luck
CONFIRM_WITHIN = 0.15  # sizes this close to the fastest are measured again before choosing
CONFIRM_AT_MOST = 3
WARM_UP_TOKENS = 2  # the prefill and one decode step pay the one-time costs
SLOPE_PROBE_ROWS = 8  # with 1 row, gives the memory per row
BUDGET_SHARE = 0.1  # of the estimated run time
JUMP_AT_MOST = 8  # under a budget, a rising throughput is probed this much larger at most
EXTRAPOLATE_AT_MOST = 4  # a size never probed is chosen at most this much larger than probed
EXTRAPOLATED_GAIN = 0.10  # ... and only when predicted this much faster: a guess has a cost
FULL_LENGTH_TRIES = 3

HEADERS = {
    "en": ("batch_size", "status", "time", "samples/s", "tokens/s", "peak memory", "GPU util",
           "probe"),
    "zh": ("batch_size", "状态", "时间", "样本/秒", "tokens/秒", "峰值内存", "GPU利用率", "探测"),
}
# What a probe's rate counts, as the rate column names it: samples generated, or
# (context, choice) pairs scored.
RATE_HEADERS = {"samples": {"en": "samples/s", "zh": "样本/秒"},
                "pairs": {"en": "pairs/s", "zh": "选项/秒"}}
# Rows are logged one by one as the probes finish, so the columns have fixed widths.
COLUMN_WIDTHS = (10, 6, 8, 9, 9, 11, 8, 8)


def fits_in_memory(probe: TuneProbe, capacity: int | None, headroom: float) -> bool:
    if capacity is None or probe.peak_memory_bytes is None:
        return True
    return probe.peak_memory_bytes <= headroom * capacity


def choose_batch_size(probes: list[TuneProbe], capacity: int | None = None,
                      headroom: float = 0.9) -> int:
    """The fastest successful size within the memory headroom; among sizes within 3% of
    the fastest, the smallest. 1 when nothing succeeded; the smallest success when every
    success is over the headroom."""
    ok = [p for p in probes if p.status == "ok"]
    if not ok:
        return 1
    safe = [p for p in ok if fits_in_memory(p, capacity, headroom)]
    if not safe:
        return min(p.batch_size for p in ok)
    best = max(p.samples_per_s for p in safe)
    return min(p.batch_size for p in safe
               if p.samples_per_s >= best * (1 - PREFER_SMALLER_WITHIN))


def probe_cell(probe: TuneProbe) -> str:
    """How much the probe generated: 'full', or the tokens per row it stopped after."""
    if probe.status == "predicted":
        return "none"
    if probe.status != "ok":
        return "-"
    return "full" if probe.full_length else f"{probe.new_tokens} tok"


def table_row(probe: TuneProbe) -> list[str]:
    ok = probe.has_rate
    return [str(probe.batch_size), probe.status, format_seconds(probe.seconds),
            f"{probe.samples_per_s:.1f}" if ok else "-",
            f"{probe.tokens_per_s:.0f}" if ok else "-",
            format_bytes(probe.peak_memory_bytes), format_percent(probe.gpu_util_percent),
            probe_cell(probe)]


def fixed_width_row(cells: list[str] | tuple[str, ...]) -> str:
    padded = (pad_cell(c, w) for c, w in zip(cells, COLUMN_WIDTHS, strict=True))
    return "| " + " | ".join(padded) + " |"


def headers(lang: str = "en", unit: str = "samples") -> tuple[str, ...]:
    """The table's column names; ``unit`` says what the rate column counts."""
    names = list(HEADERS.get(lang, HEADERS["en"]))
    rate = RATE_HEADERS.get(unit, RATE_HEADERS["samples"])
    names[3] = rate.get(lang, rate["en"])  # the rate column
    return tuple(names)


def tune_table(result: TuneResult, lang: str = "en") -> str:
    """The probes as a Markdown table, the chosen size marked."""
    rows = []
    for probe in result.probes:
        row = table_row(probe)
        if probe.batch_size == result.chosen_batch_size and probe.has_rate:
            row[0] += " ◀"
        rows.append(row)
    return markdown_table(headers(lang, result.unit), rows)


class BatchSizeTuner:
    """Probes batch sizes on ``prompts`` (rendered, longest first) and picks one.

    ``prompt_tokens``: the token counts of the run's prompts, longest first, for the
    budget (default: each of ``n_samples`` as long as the longest);
    ``budget_share``: the share of the estimated run time tuning may spend (None: no
    limit); ``static_cache``: probe on the static path (compile on), else eagerly with the
    dynamic cache, whose growth ``kv_bytes_per_token`` predicts; ``memory_limited``: search
    down from the size predicted to fit (default: on CUDA); ``meter`` and ``usable_memory``
    measure memory (injected by tests). Subclasses probe other work by overriding
    ``_measure``, ``warm_up_once`` and ``_probing`` (see ``PairScoringTuner``)."""

    unit = "samples"  # what the probes' rates count
    started_message = "tune_started"
    chosen_message = "tune_chosen"

    def __init__(self, backend: Any, prompts: list[str], *, max_tokens: int,
                 mode: str = "power", max_batch_size: int = 256, memory_headroom: float = 0.9,
                 memory_capacity: int | None = None, sink: EventSink | None = None,
                 lang: str = "en", clock: Callable[[], float] = time.perf_counter,
                 cancel: CancelToken | None = None, prompt_tokens: list[int] | None = None,
                 n_samples: int | None = None,
                 budget_share: float | None = BUDGET_SHARE, static_cache: bool = False,
                 kv_bytes_per_token: int = 0, memory_limited: bool | None = None,
                 meter: Callable[[str], Any] | None = None,
                 usable_memory: Callable[[], int | None] | None = None) -> None:
        if mode not in TUNE_MODES:
            raise ValueError(f"tune_mode must be one of {', '.join(TUNE_MODES)}, got {mode!r}")
        self.backend = backend
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.mode = mode
        self.max_batch_size = max_batch_size
        self.memory_headroom = memory_headroom
        self.memory_capacity = memory_capacity
        self.sink = sink or (lambda event: None)
        self.lang = lang
        self._log = RunLog(self.sink, lang)
        self.clock = clock
        self.cancel = cancel or CancelToken()  # checked before each probe: ends the search
        self.prompt_tokens = prompt_tokens
        self.n_samples = (len(prompt_tokens) if prompt_tokens
                          else n_samples if n_samples is not None else len(prompts))
        self.budget_share = budget_share
        self.static_cache = static_cache
        # the static cache is whole from the prefill on: nothing left to grow
        self.kv_bytes_per_token = 0 if static_cache else kv_bytes_per_token
        self.memory_limited = (backend.device.startswith("cuda") if memory_limited is None
                               else memory_limited)
        # a model spread over several devices is measured on all of them
        self.meter = meter or (lambda device: ResourceMeter(
            device, devices=tuple(getattr(self.backend, "devices", ()))))
        self.usable_memory = usable_memory or (lambda: memory_capacity)
        self.probes: list[TuneProbe] = []
        self.stopped_by = "done"
        self.started = 0.0
        self._said_over_headroom: set[int] = set()

    # ── the search ──────────────────────────────────────────────────────────────

    def run(self) -> TuneResult:
        self.started = self.clock()
        ceiling = max(1, min(self.max_batch_size, len(self.prompts)))
        self._log("INFO", self.started_message, mode=self.mode, ceiling=ceiling,
                  max_tokens=self.max_tokens)
        with self._probing():
            self._warm_up()
            self._log("INFO", "tune_table_row",
                      row=fixed_width_row(headers(self.lang, self.unit)))
            if self.memory_limited:
                self._search_down_from_memory(ceiling)
            else:
                last_ok, first_oom = self._double(ceiling)
                if self.mode == "binsearch" and first_oom is not None and last_ok > 0:
                    self._bisect(last_ok, first_oom)
                self._fill_skipped()
                self._confirm_fastest()
            chosen = self._choose()
            if not self.memory_limited:
                chosen = self._extrapolate(chosen, ceiling)
            if self.memory_limited and not self.static_cache:
                chosen = self._confirm_full_length(chosen)
        if self.cancel.cancelled:
            self.stopped_by = "cancelled"
        return self._result(chosen)

    def _result(self, chosen: int) -> TuneResult:
        seconds = self.clock() - self.started
        chosen_probe = self._rated_probe(chosen)
        estimate = self.run_seconds(chosen_probe) if chosen_probe is not None else None
        result = TuneResult(chosen_batch_size=chosen, mode=self.mode, probes=self.probes,
                            seconds=seconds, max_tokens=self.max_tokens,
                            max_batch_size=self.max_batch_size,
                            memory_capacity_bytes=self.memory_capacity,
                            memory_headroom=self.memory_headroom, stopped_by=self.stopped_by,
                            budget_seconds=self.budget_seconds(), n_samples=self.n_samples,
                            estimated_run_seconds=estimate, static_cache=self.static_cache,
                            unit=self.unit)
        rate = chosen_probe.samples_per_s if chosen_probe is not None else 0.0
        self._log("INFO", self.chosen_message, batch_size=chosen, rate=rate,
                  probes=len(self.probes), seconds=seconds)
        self.sink(TuneFinished(chosen_batch_size=chosen, mode=self.mode,
                               probes=list(self.probes)))
        return result

    def _double(self, ceiling: int) -> tuple[int, int | None]:
        """1, 2, 4, … up to the first OOM or the ceiling (probed itself when not a power of
        two), a size over the memory headroom (a larger one could never be chosen), the
        budget or, in ``power`` mode, a confirmed decline; returns (last success, first
        OOM)."""
        size, last_ok, declines = 1, 0, 0
        while not self.cancel.cancelled and self._can_probe(size):
            probe = self.probe(size)
            if probe.status == "oom":
                return last_ok, size
            last_ok = size
            if size >= ceiling or not self._fits(probe):
                return last_ok, None
            declines = declines + 1 if self._is_past_peak(probe) else 0
            if self.mode == "power" and declines >= DECLINES_TO_STOP:
                if self._still_past_peak(probe):
                    self._log("INFO", "tune_declined", batch_size=size)
                    return last_ok, None
                declines = 0
            size = self._next_size(size, ceiling)
        return last_ok, None

    def _next_size(self, size: int, ceiling: int) -> int:
        """Twice ``size``; under a budget, while the throughput still rises, the largest
        size up to ``JUMP_AT_MOST`` times larger that the budget affords."""
        double = min(size * 2, ceiling)
        if self.budget_share is None or not self._rising():
            return double
        factor = JUMP_AT_MOST
        while factor > 2:
            jump = min(size * factor, ceiling)
            if jump > double and self._affordable(self._probe_cost(jump), size=jump,
                                                  say=False):
                return jump
            factor //= 2
        return double

    def _rising(self) -> bool:
        """Whether the largest size probed so far is the fastest (or the only one)."""
        fitting = [p for p in self.probes if p.status == "ok" and self._fits(p)]
        if not fitting:
            return False
        largest = max(fitting, key=lambda p: p.batch_size)
        return largest is self._fastest()

    def _fill_skipped(self) -> None:
        """Once a larger size was slower, probe the sizes a jump skipped next to the
        fastest: twice and half its size, when no probe is that close and the budget
        allows. (While the fastest is the largest, the sizes below it are slower.)"""
        for _ in range(2):
            fastest = self._fastest()
            if fastest is None or self.cancel.cancelled:
                return
            sizes = sorted(p.batch_size for p in self.probes)
            above = [s for s in sizes if s > fastest.batch_size]
            below = [s for s in sizes if s < fastest.batch_size]
            if not above:
                return
            gaps = []
            if above and above[0] >= 4 * fastest.batch_size:
                gaps.append(2 * fastest.batch_size)
            if below and below[-1] * 4 <= fastest.batch_size:
                gaps.append(fastest.batch_size // 2)
            gaps = [g for g in gaps if self._can_probe(g)]
            if not gaps:
                return
            self.probe(gaps[0])

    def _bisect(self, low: int, high: int) -> None:
        while high - low > 1 and not self.cancel.cancelled:
            middle = (low + high) // 2
            if not self._can_probe(middle):
                return
            if self.probe(middle).status == "ok":
                low = middle
            else:
                high = middle

    def _search_down_from_memory(self, ceiling: int) -> None:
        """1 row, then 8: the memory per row; then down from the largest size predicted to
        fit, and half the size found."""
        first = self.probe(1)
        if first.status == "oom" or ceiling == 1 or self.cancel.cancelled:
            return
        second_size = min(ceiling, SLOPE_PROBE_ROWS)
        if not self._can_probe(second_size):
            return
        second = self.probe(second_size)
        if second.status == "oom" or not self._fits(second):
            self._descend(1, second_size // 2 if self.mode == "power" else
                          (1 + second_size) // 2, failed=second_size)
            return
        start = self._predicted_fit(first, second, ceiling)
        if start <= second_size:
            return
        found = self._descend(second_size, start)
        half = found // 2
        if half > second_size and self._ok_probe(half) is None and not self.cancel.cancelled \
                and self._can_probe(half):
            self.probe(half)

    def _descend(self, fitted: int, size: int, failed: int | None = None) -> int:
        """Probe ``size`` and, while it does not fit, smaller sizes: halves (``power``) or
        the bisection between ``fitted``, the largest size known to fit, and the smallest
        that failed (``binsearch``). Returns the largest size found to fit."""
        while size > fitted and not self.cancel.cancelled:
            if not self._can_probe(size):
                break
            probe = self.probe(size)
            if probe.status == "ok" and self._fits(probe):
                fitted = size
                if failed is None or self.mode == "power":
                    break
            else:
                failed = size
            if self.mode == "binsearch" and failed is not None:
                size = (fitted + failed) // 2
            else:
                size //= 2
        return fitted

    def _predicted_fit(self, first: TuneProbe, second: TuneProbe, ceiling: int) -> int:
        """The largest size whose predicted peak stays within the headroom of the memory
        this process can reach, from the peaks of two sizes (a power of two in ``power``
        mode); the ceiling when memory cannot be read."""
        usable = self.usable_memory()
        if usable is None or first.peak_memory_bytes is None \
                or second.peak_memory_bytes is None:
            return ceiling
        per_row = max(1.0, (second.peak_memory_bytes - first.peak_memory_bytes)
                      / (second.batch_size - first.batch_size))
        base = first.peak_memory_bytes - per_row
        fit = max(1, math.floor((usable * self.memory_headroom - base) / per_row))
        self._log("INFO", "tune_predicted", per_row=format_bytes(int(per_row)),
                  usable=format_bytes(usable), percent=self.memory_headroom * 100, fit=fit)
        size = min(ceiling, fit)
        if self.mode == "power" and size < ceiling:
            size = 1 << (size.bit_length() - 1)
        return size

    def _confirm_full_length(self, chosen: int) -> int:
        """Generate the full ``max_tokens`` at the chosen size, when the budget allows: the
        dynamic cache's growth was only predicted."""
        for _ in range(FULL_LENGTH_TRIES):
            probe = self._ok_probe(chosen)
            if probe is None or probe.full_length or self.cancel.cancelled:
                return chosen
            if not self._affordable(probe.seconds, say=False):
                self._log("INFO", "tune_full_length_skipped", batch_size=chosen,
                          seconds=probe.seconds)
                return chosen
            self._remeasure(probe, full_length=True)
            self._log("INFO", "tune_table_row", row=fixed_width_row(table_row(probe)))
            if probe.status == "ok" and self._fits(probe):
                return chosen
            chosen = self._choose()
        return chosen

    # ── the budget ──────────────────────────────────────────────────────────────

    def spent(self) -> float:
        return self.clock() - self.started

    def run_seconds(self, probe: TuneProbe) -> float:
        """The run at ``probe``'s size: batch by batch, each the probe's full-length call
        with its prefill scaled to the batch's longest prompt."""
        size = probe.batch_size
        if not self.prompt_tokens or probe.first_token_seconds is None:
            return self.n_samples * probe.seconds / size
        longest = max(1, self.prompt_tokens[0])
        return sum(probe.seconds - probe.first_token_seconds * (1 - tokens / longest)
                   for tokens in self.prompt_tokens[::size])

    def budget_seconds(self, rate: float = 0.0) -> float | None:
        """``budget_share`` of the run at the fastest size so far (shortened in proportion
        when ``rate`` is faster); None before any rate or without a budget."""
        fastest = self._fastest()
        if self.budget_share is None or fastest is None or fastest.samples_per_s <= 0:
            return None
        run = self.run_seconds(fastest)
        if rate > fastest.samples_per_s:
            run *= fastest.samples_per_s / rate
        return self.budget_share * run

    def _affordable(self, cost: float, *, size: int | None = None, say: bool = True) -> bool:
        """Whether ``cost`` more seconds stay within the budget. With the ``size`` about to
        be probed, the budget is the one its predicted rate would leave: a faster size
        shortens the run, and so the budget, after the fact."""
        budget = self.budget_seconds(self._predicted_rate(size) if size else 0.0)
        if budget is None or self.spent() + cost <= budget:
            return True
        if say and self.stopped_by != "budget":
            self._log("INFO", "tune_budget", spent=self.spent(), after=self.spent() + cost,
                      budget=budget, run=budget / (self.budget_share or 1))
            self.stopped_by = "budget"
        return False

    def _can_probe(self, size: int) -> bool:
        return self._affordable(self._probe_cost(size), size=size)

    def _along_nearest(self, size: int, figure: Callable[[TuneProbe], float]) -> float:
        """``figure`` at ``size``: a straight line in the rows through the two successful
        probes nearest in size (never falling with more rows), or in proportion to the one
        probe; 0 before any."""
        measured = sorted((p for p in self.probes if p.status == "ok" and figure(p) > 0),
                          key=lambda p: abs(math.log(size / p.batch_size)))
        if not measured:
            return 0.0
        nearest = measured[0]
        other = next((p for p in measured[1:] if p.batch_size != nearest.batch_size), None)
        if other is None:
            return figure(nearest) * max(1.0, size / nearest.batch_size)
        slope = max(0.0, (figure(other) - figure(nearest))
                    / (other.batch_size - nearest.batch_size))
        return max(0.0, figure(nearest) + slope * (size - nearest.batch_size))

    def _probe_cost(self, size: int) -> float:
        """What probing ``size`` should take."""
        return self._along_nearest(size, lambda p: p.probe_seconds)

    def _predicted_rate(self, size: int) -> float:
        """Samples per second at ``size``, from the full-length times of the probes."""
        seconds = self._along_nearest(size, lambda p: p.seconds)
        return size / seconds if seconds > 0 else 0.0

    # ── measuring ───────────────────────────────────────────────────────────────

    def _probing(self) -> AbstractContextManager[Any]:
        """The backend's state while probing: the static path without compiling, or eager."""
        return self.backend.probing() if self.static_cache else self.backend.eager()

    def warm_up_once(self, items: list[Any]) -> None:
        """A short call that pays the one-time costs before the first probe."""
        self.backend.generate(items, max_new_tokens=min(self.max_tokens, WARM_UP_TOKENS),
                              force_length=True)

    def _warm_up(self) -> None:
        """The first call pays one-time costs (kernels, allocator, caches) that would
        otherwise make batch size 1 look slow."""
        try:
            self.warm_up_once(self.prompts[:1])
        except Exception as exc:  # noqa: BLE001 - an OOM here shows again in the first probe
            if not is_oom_error(exc):
                raise
            del exc
            free_memory()

    def _measure(self, size: int, *, full_length: bool = False) -> ProbeRun:
        """One forced call for the ``size`` longest prompts: cut short after a few timed
        decode steps, or ``full_length``."""
        release_cached_memory(self.backend.device)
        timer = None if full_length else DecodeTimer(
            self.clock, max_steps=probe_steps(self.max_tokens))

        def generate() -> int:
            generation = self.backend.generate(self.prompts[:size],
                                               max_new_tokens=self.max_tokens,
                                               force_length=True, on_step=timer)
            return max(generation.new_tokens, default=0)

        run = self._timed_call(size, generate)
        if timer is not None and timer.stamps:
            run.step_seconds = timer.step_seconds
            run.first_token_seconds = timer.stamps[0] - run.started
        return run

    def _timed_call(self, size: int, call: Callable[[], int]) -> ProbeRun:
        """Time one probe call of ``size`` rows under the meter; an OOM is a result (the
        memory it held is freed), any other error is raised. ``call`` returns the tokens
        each row generated, when it generates."""
        run = ProbeRun(rows=size, new_tokens=0, call_seconds=0.0, step_seconds=None)
        with self.meter(self.backend.device) as meter:
            run.started = self.clock()
            try:
                run.new_tokens = call()
                run.call_seconds = self.clock() - run.started
            except Exception as exc:  # noqa: BLE001 - only an OOM is a probe result
                if not is_oom_error(exc):
                    raise
                del exc
                run.oom_after_s = self.clock() - run.started
        if run.oom:
            free_memory()
        run.peak_memory_bytes = meter.peak_memory_bytes
        run.gpu_util_percent = meter.gpu_util_percent
        return run

    def probe(self, size: int) -> TuneProbe:
        """Measure one size and record it; an OOM is a result, not an error."""
        run = self._measure(size)
        probe = TuneProbe(batch_size=size, status="ok", seconds=0.0, samples_per_s=0.0,
                          tokens_per_s=0.0, peak_memory_bytes=None, gpu_util_percent=None)
        self._take(probe, run)
        self.probes.append(probe)
        self.sink(TuneStep.of(probe))
        self._log("INFO", "tune_table_row", row=fixed_width_row(table_row(probe)))
        return probe

    def _take(self, probe: TuneProbe, run: ProbeRun) -> None:
        """A probe's figures from a measurement: predicted for the full length unless the
        call generated it all."""
        probe.gpu_util_percent = run.gpu_util_percent
        probe.probe_seconds = run.oom_after_s if run.oom else run.call_seconds
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

    def _remeasure(self, probe: TuneProbe, *, full_length: bool = False) -> None:
        """Measure a successful size again and take the fresh figures; a short probe keeps
        the larger of the two predicted peaks."""
        before = probe.peak_memory_bytes
        self._take(probe, self._measure(probe.batch_size, full_length=full_length))
        if probe.status == "ok" and not full_length and before is not None:
            probe.peak_memory_bytes = max(before, probe.peak_memory_bytes or 0)
        if full_length:
            self.sink(TuneStep.of(probe))

    # ── choosing ────────────────────────────────────────────────────────────────

    def _extrapolate(self, chosen: int, ceiling: int) -> int:
        """When the budget ended the search on a throughput still rising: a larger size,
        never probed, along the line through the two largest probes' call times (and peaks),
        up to ``EXTRAPOLATE_AT_MOST`` times the largest, below any OOM and the ceiling, if
        predicted ``EXTRAPOLATED_GAIN`` faster than ``chosen`` and tuning stays within its
        share of the run at that size. Recorded as a "predicted" probe."""
        best = self._rated_probe(chosen)
        if self.stopped_by != "budget" or self.cancel.cancelled or best is None \
                or not self._rising():
            return chosen
        top = max((p for p in self.probes if p.status == "ok" and self._fits(p)),
                  key=lambda p: p.batch_size)
        limit = min([ceiling, top.batch_size * EXTRAPOLATE_AT_MOST]
                    + [p.batch_size - 1 for p in self.probes if p.status == "oom"])
        size = top.batch_size * 2
        candidates = []
        while size <= limit:
            candidates.append(size)
            size *= 2
        if limit > top.batch_size and limit not in candidates and limit == ceiling:
            candidates.append(limit)
        for size in reversed(candidates):
            guess = self._predicted_probe(size)
            if guess.samples_per_s < best.samples_per_s * (1 + EXTRAPOLATED_GAIN) \
                    or not self._fits(guess):
                continue
            spent = self.spent()
            if spent > (self.budget_share or 0.0) * (spent + self.run_seconds(guess)):
                continue
            self.probes.append(guess)
            self.sink(TuneStep.of(guess))
            self._log("INFO", "tune_table_row", row=fixed_width_row(table_row(guess)))
            self._log("INFO", "tune_extrapolated", batch_size=size, rate=guess.samples_per_s,
                      probed=top.batch_size)
            return size
        return chosen

    def _predicted_probe(self, size: int) -> TuneProbe:
        """The figures of ``size`` along the probes nearest in size: time, first token and
        peak memory."""
        seconds = self._along_nearest(size, lambda p: p.seconds)
        rate = size / seconds if seconds > 0 else 0.0
        peak = self._along_nearest(size, lambda p: float(p.peak_memory_bytes or 0))
        first = self._along_nearest(size, lambda p: p.first_token_seconds or 0.0)
        return TuneProbe(batch_size=size, status="predicted", seconds=seconds,
                         samples_per_s=rate, tokens_per_s=rate * self.max_tokens,
                         peak_memory_bytes=int(peak) if peak > 0 else None,
                         gpu_util_percent=None,
                         first_token_seconds=first if first > 0 else None)

    def _rated_probe(self, size: int) -> TuneProbe | None:
        """The probe of ``size`` with figures: measured, or predicted."""
        return self._ok_probe(size) or next(
            (p for p in self.probes if p.batch_size == size and p.status == "predicted"), None)

    def _fits(self, probe: TuneProbe) -> bool:
        return fits_in_memory(probe, self.memory_capacity, self.memory_headroom)

    def _ok_probe(self, size: int) -> TuneProbe | None:
        return next((p for p in self.probes if p.batch_size == size and p.status == "ok"),
                    None)

    def _fastest(self) -> TuneProbe | None:
        safe = [p for p in self.probes if p.status == "ok" and self._fits(p)]
        return max(safe, key=lambda p: p.samples_per_s) if safe else None

    def _fastest_other(self, probe: TuneProbe) -> TuneProbe | None:
        others = [p for p in self.probes if p.status == "ok" and p is not probe]
        return max(others, key=lambda p: p.samples_per_s) if others else None

    def _is_past_peak(self, probe: TuneProbe) -> bool:
        fastest = self._fastest_other(probe)
        return fastest is not None and probe.samples_per_s < fastest.samples_per_s * (
            1 - DECLINE)

    def _still_past_peak(self, probe: TuneProbe) -> bool:
        """Measure this size and the fastest again, back to back, before giving up on the
        larger sizes: a burst of load from another process can slow two probes in a row.
        Past the budget, the decline stands."""
        fastest = self._fastest_other(probe)
        for again in (p for p in (fastest, probe) if p is not None):
            if not self._affordable(self._probe_cost(again.batch_size)):
                return True
            self._remeasure(again)
        return probe.status == "oom" or self._is_past_peak(probe)

    def _confirm_fastest(self) -> None:
        """Measure the sizes within 15% of the fastest again, back to back, before choosing
        among them."""
        ok = [p for p in self.probes if p.status == "ok" and self._fits(p)]
        if not ok or self.cancel.cancelled:
            return
        best = max(p.samples_per_s for p in ok)
        contenders = sorted((p for p in ok if p.samples_per_s >= best * (1 - CONFIRM_WITHIN)),
                            key=lambda p: -p.samples_per_s)[:CONFIRM_AT_MOST]
        if len(contenders) < 2:
            return
        cost = sum(self._probe_cost(p.batch_size) for p in contenders)
        if not self._affordable(cost):
            return
        for probe in sorted(contenders, key=lambda p: p.batch_size):
            self._remeasure(probe)
        self._log("INFO", "tune_confirmed", sizes=", ".join(
            f"{p.batch_size} ({p.samples_per_s:.1f}/s)" if p.status == "ok"
            else f"{p.batch_size} (OOM)" for p in contenders))

    def _choose(self) -> int:
        ok = [p for p in self.probes if p.status == "ok"]
        if not ok:
            if self.probes:  # (none at all: stopped before the first probe)
                self._log("WARNING", "tune_nothing_fits")
            return 1
        for probe in ok:
            if not self._fits(probe) and probe.batch_size not in self._said_over_headroom:
                self._said_over_headroom.add(probe.batch_size)
                self._log("INFO", "tune_over_headroom", batch_size=probe.batch_size,
                          peak=format_bytes(probe.peak_memory_bytes),
                          percent=self.memory_headroom * 100,
                          capacity=format_bytes(self.memory_capacity))
        return choose_batch_size(self.probes, self.memory_capacity, self.memory_headroom)


def release_cached_memory(device: str) -> None:
    """Hand the CUDA allocator's cache back, so a probe's peak is its own and not what a
    bigger probe left reserved. (No gc.collect: on CPU it costs more than a small probe.)"""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()



class PairScoringTuner(BatchSizeTuner):
    """Probes forward passes over the longest (context, choice) pairs of a choice task:
    ``scorer`` is a ``ChoiceScorer`` and ``pairs`` its encoded pairs, longest first. A batch
    of pairs is one forward pass, so each probe is cheap and whole (nothing to predict):
    the sizes are doubled from 1 as on a CPU, with no budget (a few forward passes cost
    little next to any run) unless ``budget_share`` is given."""

    unit = "pairs"
    started_message = "tune_started_choice"
    chosen_message = "tune_chosen_choice"

    def __init__(self, scorer: Any, pairs: list[Any], **options: Any) -> None:
        options.setdefault("budget_share", None)
        super().__init__(scorer, pairs, max_tokens=0, memory_limited=False, **options)
        self._tokens_read = 0

    def _probing(self) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def warm_up_once(self, items: list[Any]) -> None:
        self.backend.score(items)

    def _measure(self, size: int, *, full_length: bool = False) -> ProbeRun:
        release_cached_memory(self.backend.device)
        items = self.prompts[:size]

        def score() -> int:
            self.backend.score(items)
            return 0  # scoring generates nothing

        run = self._timed_call(size, score)
        self._tokens_read = sum(len(self.backend.model_input(pair)) for pair in items)
        return run

    def _take(self, probe: TuneProbe, run: ProbeRun) -> None:
        super()._take(probe, run)
        if probe.status == "ok" and probe.seconds > 0:
            probe.tokens_per_s = self._tokens_read / probe.seconds  # tokens read, not made
