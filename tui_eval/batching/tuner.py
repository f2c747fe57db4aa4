"""Auto-tuning the batch size: short probes on the run's longest items, searched by one of
the strategies in tui_eval.batching.strategies (``TUNE_MODES``), under the budget of
tui_eval.batching.budget when a run asked for it (``-b auto``), measured by a prober
(tui_eval.batching.prober).

A probe (tui_eval.batching.probe) asks for the full ``max_tokens`` with no early stop, times a
few decode steps and ends the call; the full-length time and peak memory are predicted from
them. Every probe is logged as a row of the table (tui_eval.batching.table) as it finishes.

A choice task is tuned on its longest (context, choice) pairs, each probe one forward pass
(``PairScoringTuner``): exactly the run's work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from tui_eval.batching.budget import Budget
from tui_eval.batching.hooks import PLAIN_HOOKS, DeviceHooks
from tui_eval.batching.prober import PairProber, Prober
from tui_eval.batching.strategies import TUNE_MODES
from tui_eval.batching.table import fixed_width_row, headers, log_row
from tui_eval.cancel import CancelToken
from tui_eval.events import EventSink, RunLog, TuneFinished, TuneStep
from tui_eval.formatting import format_bytes
from tui_eval.i18n import message
from tui_eval.results.tune import TuneProbe, TuneResult

PREFER_SMALLER_WITHIN = 0.03  # throughput this close to the best is a tie: take less memory


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


class BatchSizeTuner:
    """Probes batch sizes on ``prompts`` (rendered, longest first) and picks one.

    ``mode``: a name in ``TUNE_MODES``; ``budget_share``: the share of the estimated run
    time tuning may spend (None: no limit, as for a tune the user asked for);
    ``prompt_tokens``: the token counts of the run's prompts, longest first, for the budget
    (default: each of ``n_samples`` as long as the longest); ``static_cache``: probe on the
    static path (compile on), else eagerly with the dynamic cache, whose growth
    ``kv_bytes_per_token`` predicts; ``row_tokens``: the tokens a row's KV cache holds at
    most (the longest prompt's bucket + ``max_tokens``; ``memory`` mode); ``hooks``: the
    device's side (OOM errors, freeing memory, the meter); ``meter`` and ``usable_memory``
    measure memory (injected by tests)."""

    unit = "samples"  # what the probes' rates count
    started_message = "tune_started"
    chosen_message = "tune_chosen"

    def __init__(self, backend: Any, prompts: list[Any], *, max_tokens: int,
                 mode: str = "power", max_batch_size: int = 256, memory_headroom: float = 0.9,
                 memory_capacity: int | None = None, sink: EventSink | None = None,
                 lang: str = "en", clock: Callable[[], float] = time.perf_counter,
                 cancel: CancelToken | None = None, prompt_tokens: list[int] | None = None,
                 n_samples: int | None = None, budget_share: float | None = None,
                 static_cache: bool = False, kv_bytes_per_token: int = 0,
                 row_tokens: int | None = None, hooks: DeviceHooks = PLAIN_HOOKS,
                 meter: Callable[[str], Any] | None = None,
                 usable_memory: Callable[[], int | None] | None = None,
                 prober: Prober | None = None) -> None:
        if mode not in TUNE_MODES:
            raise ValueError(f"tune_mode must be one of {', '.join(TUNE_MODES)}, got {mode!r}")
        self.mode = mode
        self.strategy = TUNE_MODES[mode]()
        self.prober = prober or Prober(backend, prompts, max_tokens=max_tokens, clock=clock,
                                       hooks=hooks, static_cache=static_cache,
                                       kv_bytes_per_token=kv_bytes_per_token, meter=meter)
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.max_batch_size = max_batch_size
        self.memory_headroom = memory_headroom
        self.memory_capacity = memory_capacity
        self.sink = sink or (lambda event: None)
        self.lang = lang
        self.log = RunLog(self.sink, lang)
        self.clock = clock
        self.cancel = cancel or CancelToken()  # checked before each probe: ends the search
        self.budget = Budget(budget_share, len(prompt_tokens) if prompt_tokens
                             else n_samples if n_samples is not None else len(prompts),
                             prompt_tokens)
        self.static_cache = static_cache
        self.kv_bytes_per_token = kv_bytes_per_token
        self.row_tokens = row_tokens if row_tokens is not None else (
            (prompt_tokens[0] if prompt_tokens else 0) + max_tokens)
        self.usable_memory = usable_memory or (lambda: memory_capacity)
        self.probes: list[TuneProbe] = []
        self.stopped_by = "done"
        self.started = 0.0
        self._said_over_headroom: set[int] = set()

    @property
    def n_samples(self) -> int:
        return self.budget.n_samples

    def run(self) -> TuneResult:
        self.started = self.clock()
        ceiling = max(1, min(self.max_batch_size, len(self.prompts)))
        limit = message("tune_limit_none" if self.budget.share is None
                        else "tune_limit_budget", self.lang)
        self.log("INFO", self.started_message, mode=self.mode, ceiling=ceiling,
                 max_tokens=self.max_tokens, limit=limit)
        self.prober.warm_up()
        self.log("INFO", "tune_table_row", row=fixed_width_row(headers(self.lang, self.unit)))
        chosen = self.strategy.search(self, ceiling)
        if self.cancel.cancelled:
            self.stopped_by = "cancelled"
        return self._result(chosen)

    def _result(self, chosen: int) -> TuneResult:
        seconds = self.clock() - self.started
        chosen_probe = self.rated_probe(chosen)
        estimate = self.budget.run_seconds(chosen_probe) if chosen_probe is not None else None
        result = TuneResult(chosen_batch_size=chosen, mode=self.mode, probes=self.probes,
                            seconds=seconds, max_tokens=self.max_tokens,
                            max_batch_size=self.max_batch_size,
                            memory_capacity_bytes=self.memory_capacity,
                            memory_headroom=self.memory_headroom, stopped_by=self.stopped_by,
                            budget_seconds=self.budget_seconds(), n_samples=self.n_samples,
                            estimated_run_seconds=estimate, static_cache=self.static_cache,
                            unit=self.unit)
        rate = chosen_probe.samples_per_s if chosen_probe is not None else 0.0
        measured = sum(1 for p in self.probes if p.status != "predicted")
        self.log("INFO", self.chosen_message, batch_size=chosen, rate=rate,
                 probes=measured, seconds=seconds)
        self.sink(TuneFinished(chosen_batch_size=chosen, mode=self.mode,
                               probes=list(self.probes)))
        return result

    # ── probing ─────────────────────────────────────────────────────────────────

    def probe(self, size: int) -> TuneProbe:
        """Measure one size and record it; an OOM is a result, not an error."""
        run = self.prober.measure(size)
        probe = TuneProbe(batch_size=size, status="ok", seconds=0.0, samples_per_s=0.0,
                          tokens_per_s=0.0, peak_memory_bytes=None, gpu_util_percent=None)
        self.prober.take(probe, run)
        self.record(probe)
        return probe

    def record(self, probe: TuneProbe) -> None:
        """A probe (or a predicted size) joins the table: its event and its log row."""
        self.probes.append(probe)
        self.sink(TuneStep.of(probe))
        self.log("INFO", "tune_table_row", row=log_row(probe))

    def remeasure(self, probe: TuneProbe) -> None:
        """Measure a successful size again and take the fresh figures, keeping the larger
        of the two predicted peaks."""
        before = probe.peak_memory_bytes
        self.prober.take(probe, self.prober.measure(probe.batch_size))
        if probe.status == "ok" and before is not None:
            probe.peak_memory_bytes = max(before, probe.peak_memory_bytes or 0)

    # ── choosing ────────────────────────────────────────────────────────────────

    def choose(self) -> int:
        ok = [p for p in self.probes if p.status == "ok"]
        if not ok:
            if self.probes:  # (none at all: stopped before the first probe)
                self.log("WARNING", "tune_nothing_fits")
            return 1
        for probe in ok:
            if not self.fits(probe) and probe.batch_size not in self._said_over_headroom:
                self._said_over_headroom.add(probe.batch_size)
                self.log("INFO", "tune_over_headroom", batch_size=probe.batch_size,
                         peak=format_bytes(probe.peak_memory_bytes),
                         percent=self.memory_headroom * 100,
                         capacity=format_bytes(self.memory_capacity))
        return choose_batch_size(self.probes, self.memory_capacity, self.memory_headroom)

    def fits(self, probe: TuneProbe) -> bool:
        return fits_in_memory(probe, self.memory_capacity, self.memory_headroom)

    def ok_probe(self, size: int) -> TuneProbe | None:
        return next((p for p in self.probes if p.batch_size == size and p.status == "ok"),
                    None)

    def rated_probe(self, size: int) -> TuneProbe | None:
        """The probe of ``size`` with figures: measured, or predicted."""
        return self.ok_probe(size) or next(
            (p for p in self.probes if p.batch_size == size and p.status == "predicted"), None)

    def fastest(self) -> TuneProbe | None:
        safe = [p for p in self.probes if p.status == "ok" and self.fits(p)]
        return max(safe, key=lambda p: p.samples_per_s) if safe else None

    def rising(self) -> bool:
        """Whether the largest size probed so far is the fastest (or the only one)."""
        fitting = [p for p in self.probes if p.status == "ok" and self.fits(p)]
        if not fitting:
            return False
        largest = max(fitting, key=lambda p: p.batch_size)
        return largest is self.fastest()

    # ── the budget ──────────────────────────────────────────────────────────────

    def spent(self) -> float:
        return self.clock() - self.started

    def run_seconds(self, probe: TuneProbe) -> float:
        return self.budget.run_seconds(probe)

    def budget_seconds(self, rate: float = 0.0) -> float | None:
        return self.budget.seconds(self.fastest(), rate)

    def affordable(self, cost: float, *, size: int | None = None, say: bool = True) -> bool:
        """Whether ``cost`` more seconds stay within the budget. With the ``size`` about to
        be probed, the budget is the one its predicted rate would leave: a faster size
        shortens the run, and so the budget, after the fact."""
        budget = self.budget_seconds(self.predicted_rate(size) if size else 0.0)
        if budget is None or self.spent() + cost <= budget:
            return True
        if say and self.stopped_by != "budget":
            self.log("INFO", "tune_budget", spent=self.spent(), after=self.spent() + cost,
                     budget=budget, run=budget / (self.budget.share or 1))
            self.stopped_by = "budget"
        return False

    def can_probe(self, size: int) -> bool:
        return self.affordable(self.probe_cost(size), size=size)

    def along_nearest(self, size: int, figure: Callable[[TuneProbe], float]) -> float:
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

    def probe_cost(self, size: int) -> float:
        """What probing ``size`` should take."""
        return self.along_nearest(size, lambda p: p.probe_seconds)

    def predicted_rate(self, size: int) -> float:
        """Samples per second at ``size``, from the full-length times of the probes."""
        seconds = self.along_nearest(size, lambda p: p.seconds)
        return size / seconds if seconds > 0 else 0.0

    def predicted_probe(self, size: int) -> TuneProbe:
        """The figures of ``size`` along the probes nearest in size: time, first token and
        peak memory."""
        seconds = self.along_nearest(size, lambda p: p.seconds)
        rate = size / seconds if seconds > 0 else 0.0
        peak = self.along_nearest(size, lambda p: float(p.peak_memory_bytes or 0))
        first = self.along_nearest(size, lambda p: p.first_token_seconds or 0.0)
        return TuneProbe(batch_size=size, status="predicted", seconds=seconds,
                         samples_per_s=rate, tokens_per_s=rate * self.max_tokens,
                         peak_memory_bytes=int(peak) if peak > 0 else None,
                         gpu_util_percent=None,
                         first_token_seconds=first if first > 0 else None)


class PairScoringTuner(BatchSizeTuner):
    """Probes forward passes over the longest (context, choice) pairs of a choice task:
    ``scorer`` is a ``ChoiceScorer`` and ``pairs`` its encoded pairs, longest first. A batch
    of pairs is one forward pass, so each probe is cheap and whole (nothing to predict); the
    sizes are searched as on a CPU (``memory`` mode is for generation), under the same
    budget rule as generation when a run asks for one."""

    unit = "pairs"
    started_message = "tune_started_choice"
    chosen_message = "tune_chosen_choice"

    def __init__(self, scorer: Any, pairs: list[Any], **options: Any) -> None:
        prober = PairProber(scorer, pairs, clock=options.get("clock", time.perf_counter),
                            hooks=options.get("hooks", PLAIN_HOOKS),
                            meter=options.get("meter"))
        if options.get("mode") == "memory":
            options["mode"] = "power"
        super().__init__(scorer, pairs, max_tokens=0, prober=prober, **options)
