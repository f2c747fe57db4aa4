"""Auto-tuning the batch size: real work on the run's longest items at growing sizes.

Each probe is a real ``generate`` on the longest prompts of the dataset with the full
``max_tokens`` and no early stop, so the size chosen holds for every batch of the run
(probing with forward passes at full context instead over-estimates generation's memory
and under-estimates its speed). ``power`` doubles from 1 until an OOM, ``max_batch_size``,
the dataset size, a size over the memory headroom, or two sizes in a row at least 10%
slower than the fastest (measured again to confirm: larger sizes would not win, and on a
CPU with a long ``max_tokens`` each costs more than the last); ``binsearch`` doubles to
the memory limit, then bisects between the last success and the first OOM. The sizes
within 15% of the fastest are measured again back to back; then the fastest wins, the
smaller one when within 3%, never one that peaks above ``memory_headroom`` of the device
(or of ``max_memory``).

A choice task is tuned the same way on its longest (context, choice) pairs, each probe one
forward pass (``PairScoringTuner``): cheap next to generation, and exactly the run's work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from tui_eval.results import TuneProbe, TuneResult

# The search strategies, by the name a config chooses them with.
TUNE_MODES = {
    "power": "double the batch size until OOM, the ceiling or a confirmed decline",
    "binsearch": "double until OOM, then bisect between the last success and the first OOM",
}
PREFER_SMALLER_WITHIN = 0.03  # throughput this close to the best is a tie: take less memory
DECLINE = 0.10  # a size this much slower than the fastest so far is past the peak
DECLINES_TO_STOP = 2  # in a row, before ``power`` stops doubling: one can be bad luck
# A probe shorter than its window is repeated and its mean taken: one short timing is
# mostly noise. The mean, not the best run, so that small probes (repeated) and big ones
# (run once) are measured alike; the best of several runs would favour the small ones.
# The sizes that decide are measured again, back to back over a longer window, and
# compared on those fresh figures: taken under the same load, they are fair to each other
# whatever other processes did while the doubling went on.
PROBE_WINDOW_S = 0.02
CONFIRM_WINDOW_S = 0.05
PROBE_REPEATS = 5
CONFIRM_WITHIN = 0.15  # sizes this close to the fastest are measured again before choosing
CONFIRM_AT_MOST = 3
WARM_UP_TOKENS = 4

HEADERS = {
    "en": ("batch_size", "status", "time", "samples/s", "tokens/s", "peak memory", "GPU util"),
    "zh": ("batch_size", "状态", "时间", "样本/秒", "tokens/秒", "峰值内存", "GPU利用率"),
}
# What a probe's rate counts, as the rate column names it: samples generated, or
# (context, choice) pairs scored.
RATE_HEADERS = {"samples": {"en": "samples/s", "zh": "样本/秒"},
                "pairs": {"en": "pairs/s", "zh": "选项/秒"}}
# Rows are logged one by one as the probes finish, so the columns have fixed widths.
COLUMN_WIDTHS = (10, 6, 8, 9, 9, 11, 8)


@dataclass
class Measurement:
    """One measurement window of one size."""

    timings: list[float] = field(default_factory=list)  # seconds per generate call
    tokens: int = 0  # generated per call
    oom_after_s: float | None = None  # set when it ran out of memory
    peak_memory_bytes: int | None = None
    gpu_util_percent: float | None = None

    @property
    def mean_seconds(self) -> float:
        return sum(self.timings) / len(self.timings)


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


def table_row(probe: TuneProbe) -> list[str]:
    ok = probe.status == "ok"
    return [str(probe.batch_size), probe.status, format_seconds(probe.seconds),
            f"{probe.samples_per_s:.1f}" if ok else "-",
            f"{probe.tokens_per_s:.0f}" if ok else "-",
            format_bytes(probe.peak_memory_bytes), format_percent(probe.gpu_util_percent)]


def fixed_width_row(cells: list[str] | tuple[str, ...]) -> str:
    padded = (pad_cell(c, w) for c, w in zip(cells, COLUMN_WIDTHS, strict=True))
    return "| " + " | ".join(padded) + " |"


def headers(lang: str = "en", unit: str = "samples") -> tuple[str, ...]:
    """The table's column names; ``unit`` says what the rate column counts."""
    names = list(HEADERS.get(lang, HEADERS["en"]))
    rate = RATE_HEADERS.get(unit, RATE_HEADERS["samples"])
    names[3] = rate.get(lang, rate["en"])
    return tuple(names)


def tune_table(result: TuneResult, lang: str = "en") -> str:
    """The probes as a Markdown table, the chosen size marked."""
    rows = []
    for probe in result.probes:
        row = table_row(probe)
        if probe.batch_size == result.chosen_batch_size and probe.status == "ok":
            row[0] += " ◀"
        rows.append(row)
    return markdown_table(headers(lang, result.unit), rows)


class BatchSizeTuner:
    """Probes batch sizes on ``prompts`` (rendered, longest first) and picks one: each probe
    is real generation of ``max_tokens`` tokens. Subclasses probe other work by overriding
    ``run_probe`` and ``warm_up_once`` (see ``PairScoringTuner``)."""

    unit = "samples"  # what the probes' rates count
    started_message = "tune_started"
    chosen_message = "tune_chosen"

    def __init__(self, backend: Any, prompts: list[str], *, max_tokens: int,
                 mode: str = "power", max_batch_size: int = 256, memory_headroom: float = 0.9,
                 memory_capacity: int | None = None, sink: EventSink | None = None,
                 lang: str = "en", clock: Callable[[], float] = time.perf_counter,
                 cancel: CancelToken | None = None) -> None:
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
        self.probes: list[TuneProbe] = []

    def run(self) -> TuneResult:
        started = self.clock()
        ceiling = max(1, min(self.max_batch_size, len(self.prompts)))
        self._log("INFO", self.started_message, mode=self.mode, ceiling=ceiling,
                  max_tokens=self.max_tokens)
        self._warm_up()
        self._log("INFO", "tune_table_row", row=fixed_width_row(headers(self.lang, self.unit)))
        last_ok, first_oom = self._double(ceiling)
        if self.mode == "binsearch" and first_oom is not None and last_ok > 0:
            self._bisect(last_ok, first_oom)
        self._confirm_fastest()
        chosen = self._choose()
        seconds = self.clock() - started
        result = TuneResult(chosen_batch_size=chosen, mode=self.mode, probes=self.probes,
                            seconds=seconds, max_tokens=self.max_tokens,
                            max_batch_size=self.max_batch_size,
                            memory_capacity_bytes=self.memory_capacity,
                            memory_headroom=self.memory_headroom, unit=self.unit)
        rate = next((p.samples_per_s for p in self.probes if p.batch_size == chosen
                     and p.status == "ok"), 0.0)
        self._log("INFO", self.chosen_message, batch_size=chosen, rate=rate,
                  probes=len(self.probes), seconds=seconds)
        self.sink(TuneFinished(chosen_batch_size=chosen, mode=self.mode,
                               probes=list(self.probes)))
        return result

    def _double(self, ceiling: int) -> tuple[int, int | None]:
        """1, 2, 4, … up to the first OOM or the ceiling (probed itself when not a power of
        two), a size over the memory headroom (a larger one could never be chosen) or, in
        ``power`` mode, a confirmed decline; returns (last success, first OOM)."""
        size, last_ok, declines = 1, 0, 0
        while not self.cancel.cancelled:
            probe = self.probe(size)
            if probe.status == "oom":
                return last_ok, size
            last_ok = size
            if size >= ceiling:
                return last_ok, None
            if not fits_in_memory(probe, self.memory_capacity, self.memory_headroom):
                return last_ok, None
            declines = declines + 1 if self._is_past_peak(probe) else 0
            if self.mode == "power" and declines >= DECLINES_TO_STOP:
                if self._still_past_peak(probe):
                    self._log("INFO", "tune_declined", batch_size=size)
                    return last_ok, None
                declines = 0
            size = min(size * 2, ceiling)
        return last_ok, None

    def _fastest_other(self, probe: TuneProbe) -> TuneProbe | None:
        others = [p for p in self.probes if p.status == "ok" and p is not probe]
        return max(others, key=lambda p: p.samples_per_s) if others else None

    def _is_past_peak(self, probe: TuneProbe) -> bool:
        fastest = self._fastest_other(probe)
        return fastest is not None and probe.samples_per_s < fastest.samples_per_s * (
            1 - DECLINE)

    def _still_past_peak(self, probe: TuneProbe) -> bool:
        """Measure this size and the fastest again, back to back, before giving up on the
        larger sizes: a burst of load from another process can slow two probes in a row."""
        fastest = self._fastest_other(probe)
        if fastest is not None:
            self._remeasure(fastest)
        self._remeasure(probe)
        return probe.status == "oom" or self._is_past_peak(probe)

    def _bisect(self, low: int, high: int) -> None:
        while high - low > 1 and not self.cancel.cancelled:
            middle = (low + high) // 2
            if self.probe(middle).status == "ok":
                low = middle
            else:
                high = middle

    def _choose(self) -> int:
        ok = [p for p in self.probes if p.status == "ok"]
        if not ok:
            if self.probes:  # (none at all: stopped before the first probe)
                self._log("WARNING", "tune_nothing_fits")
            return 1
        for probe in ok:
            if not fits_in_memory(probe, self.memory_capacity, self.memory_headroom):
                self._log("INFO", "tune_over_headroom", batch_size=probe.batch_size,
                          peak=format_bytes(probe.peak_memory_bytes),
                          percent=self.memory_headroom * 100,
                          capacity=format_bytes(self.memory_capacity))
        return choose_batch_size(self.probes, self.memory_capacity, self.memory_headroom)

    def run_probe(self, items: list[Any]) -> int:
        """One probe call over ``items``; returns the tokens it processed. Generation runs
        the full ``max_tokens`` with no early stop: the worst case of the run."""
        generation = self.backend.generate(items, max_new_tokens=self.max_tokens,
                                           force_length=True)
        return sum(generation.new_tokens)

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

    def _measure(self, size: int, window_s: float = PROBE_WINDOW_S) -> Measurement:
        """Run the ``size`` longest items, repeated within a short window."""
        texts = self.prompts[:size]
        release_cached_memory(self.backend.device)
        measured = Measurement()
        attempt_started = self.clock()
        with ResourceMeter(self.backend.device) as meter:
            try:
                while len(measured.timings) < PROBE_REPEATS:
                    attempt_started = self.clock()
                    measured.tokens = self.run_probe(texts)
                    measured.timings.append(self.clock() - attempt_started)
                    if sum(measured.timings) >= window_s:
                        break
            except Exception as exc:  # noqa: BLE001 - only an OOM is a probe result
                if not is_oom_error(exc):
                    raise
                del exc
                measured.oom_after_s = self.clock() - attempt_started
        if measured.oom_after_s is not None:
            free_memory()
        measured.peak_memory_bytes = meter.peak_memory_bytes
        measured.gpu_util_percent = meter.gpu_util_percent
        return measured

    def probe(self, size: int) -> TuneProbe:
        """Measure one size and record it; an OOM is a result, not an error."""
        measured = self._measure(size)
        oom = measured.oom_after_s is not None
        probe = TuneProbe(batch_size=size, status="oom" if oom else "ok", seconds=0.0,
                      samples_per_s=0.0, tokens_per_s=0.0,
                      peak_memory_bytes=measured.peak_memory_bytes,
                      gpu_util_percent=measured.gpu_util_percent)
        if oom:
            probe.seconds = measured.oom_after_s or 0.0  # how long it took to fail
        else:
            self._set_rates(probe, measured)
        self.probes.append(probe)
        self.sink(TuneStep.of(probe))
        self._log("INFO", "tune_table_row", row=fixed_width_row(table_row(probe)))
        return probe

    def _remeasure(self, probe: TuneProbe) -> None:
        """Measure a successful size again and take the fresh figures (its peak memory
        stays the larger of the two)."""
        measured = self._measure(probe.batch_size, CONFIRM_WINDOW_S)
        if measured.oom_after_s is not None:  # it fit once: memory is too tight to choose it
            probe.status = "oom"
            return
        self._set_rates(probe, measured)
        peaks = [p for p in (probe.peak_memory_bytes, measured.peak_memory_bytes) if p]
        probe.peak_memory_bytes = max(peaks) if peaks else None

    def _set_rates(self, probe: TuneProbe, measured: Measurement) -> None:
        probe.seconds = measured.mean_seconds  # per generate call
        tokens_per_call = measured.tokens
        probe.samples_per_s = probe.batch_size / probe.seconds if probe.seconds > 0 else 0.0
        probe.tokens_per_s = tokens_per_call / probe.seconds if probe.seconds > 0 else 0.0

    def _confirm_fastest(self) -> None:
        """Measure the sizes within 15% of the fastest again, back to back, before choosing
        among them."""
        ok = [p for p in self.probes if p.status == "ok"
              and fits_in_memory(p, self.memory_capacity, self.memory_headroom)]
        if not ok or self.cancel.cancelled:
            return
        best = max(p.samples_per_s for p in ok)
        contenders = sorted((p for p in ok if p.samples_per_s >= best * (1 - CONFIRM_WITHIN)),
                            key=lambda p: -p.samples_per_s)[:CONFIRM_AT_MOST]
        if len(contenders) < 2:
            return
        for probe in sorted(contenders, key=lambda p: p.batch_size):
            self._remeasure(probe)
        self._log("INFO", "tune_confirmed", sizes=", ".join(
            f"{p.batch_size} ({p.samples_per_s:.1f}/s)" if p.status == "ok"
            else f"{p.batch_size} (OOM)" for p in contenders))


def release_cached_memory(device: str) -> None:
    """Hand the CUDA allocator's cache back, so a probe's peak is its own and not what a
    bigger probe left reserved. (No gc.collect: on CPU it costs more than a small probe.)"""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


class PairScoringTuner(BatchSizeTuner):
    """Probes forward passes over the longest (context, choice) pairs of a choice task:
    ``scorer`` is a ``ChoiceScorer`` and ``pairs`` its encoded pairs, longest first. A batch
    of pairs is one forward pass, so each probe is cheap."""

    unit = "pairs"
    started_message = "tune_started_choice"
    chosen_message = "tune_chosen_choice"

    def __init__(self, scorer: Any, pairs: list[Any], **options: Any) -> None:
        super().__init__(scorer, pairs, max_tokens=0, **options)

    def run_probe(self, items: list[Any]) -> int:
        self.backend.score(items)
        return sum(len(self.backend.model_input(pair)) for pair in items)

    def warm_up_once(self, items: list[Any]) -> None:
        self.backend.score(items)
