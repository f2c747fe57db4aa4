"""How the tuner searches, one class per mode (``TUNE_MODES``, the config's ``tune_mode``):

* ``power``: 1, 2, 4, … until an OOM, the ceiling (max batch size, dataset size) or a size
  over the memory headroom: the seed's auto-tune action. With no budget (``tui-eval tune``,
  the app's ``a``) that is all, every size probed. Under a run's budget (``-b auto``) it also
  stops on two sizes in a row at least 10% slower than the fastest (measured again to
  confirm), and while the throughput still rises jumps to the largest size up to 8× larger
  that the budget affords (a search costs mostly its largest probe), then probes the sizes
  it skipped next to the fastest; when the budget ends the search on a throughput still
  rising, a size up to 4× the largest probed may be chosen along the line through the two
  largest probes (status "predicted").
* ``binsearch``: as ``power``, then bisects between the last success and the first OOM.
* ``memory`` (``-b auto`` on CUDA, where the largest size that fits is the fastest): no
  timing in the decision. The memory a row needs is its KV cache from the model's config
  (``kv_bytes_per_token`` × the longest prompt's bucket + ``max_tokens``) plus its
  activations, from the peak of one short call at a candidate size against one at 1 row;
  the largest bucketed size within ``memory_headroom`` of the memory this process can
  reach, at most the ceiling, is confirmed by one short probe and stepped down on an OOM.

The sizes within 15% of the fastest are measured again back to back before a throughput
search chooses; the fastest size whose peak stays within the headroom wins, and among sizes
within 3% of it the smallest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from tui_eval.batching.budget import Budget
from tui_eval.batching.prober import Prober
from tui_eval.cancel import CancelToken
from tui_eval.formatting import format_bytes
from tui_eval.results.tune import TuneProbe

DECLINE = 0.10  # a size this much slower than the fastest so far is past the peak
DECLINES_TO_STOP = 2  # in a row, before ``power`` stops doubling: one can be bad luck
CONFIRM_WITHIN = 0.15  # sizes this close to the fastest are measured again before choosing
CONFIRM_AT_MOST = 3
JUMP_AT_MOST = 8  # under a budget, a rising throughput is probed this much larger at most
EXTRAPOLATE_AT_MOST = 4  # a size never probed is chosen at most this much larger than probed
EXTRAPOLATED_GAIN = 0.10  # ... and only when predicted this much faster: a guess has a cost
BUCKETS_PER_DOUBLING = 4  # the sizes ``memory`` chooses among: 8, 10, 12, 14, 16, 20, …


class BatchSizeTuner(Protocol):
    """What a strategy searches through (tui_eval.batching.tuner.BatchSizeTuner)."""

    probes: list[TuneProbe]
    cancel: CancelToken
    budget: Budget
    prober: Prober
    stopped_by: str
    memory_headroom: float
    kv_bytes_per_token: int
    row_tokens: int
    usable_memory: Callable[[], int | None]

    @property
    def log(self) -> Callable[..., Any]: ...  # a RunLog: (level, key, **values)

    def probe(self, size: int) -> TuneProbe: ...
    def record(self, probe: TuneProbe) -> None: ...
    def remeasure(self, probe: TuneProbe) -> None: ...
    def choose(self) -> int: ...
    def fits(self, probe: TuneProbe) -> bool: ...
    def fastest(self) -> TuneProbe | None: ...
    def rising(self) -> bool: ...
    def rated_probe(self, size: int) -> TuneProbe | None: ...
    def spent(self) -> float: ...
    def affordable(self, cost: float, *, size: int | None = None,
                   say: bool = True) -> bool: ...
    def can_probe(self, size: int) -> bool: ...
    def probe_cost(self, size: int) -> float: ...
    def predicted_probe(self, size: int) -> TuneProbe: ...


class SearchStrategy:
    """One way to search; ``search`` probes through the tuner and returns the size chosen."""

    name: ClassVar[str]
    description: ClassVar[str]

    def search(self, tuner: BatchSizeTuner, ceiling: int) -> int:
        raise NotImplementedError


class PowerSearch(SearchStrategy):
    name = "power"
    description = ("powers of two: up from 1 until OOM, the ceiling or the dataset size "
                   "(under a run's budget, also a confirmed decline)")
    stops_on_decline = True

    def search(self, tuner: BatchSizeTuner, ceiling: int) -> int:
        last_ok, first_oom = self.double(tuner, ceiling)
        self.after_doubling(tuner, last_ok, first_oom)
        self.fill_skipped(tuner)
        self.confirm_fastest(tuner)
        return self.extrapolate(tuner, tuner.choose(), ceiling)

    def after_doubling(self, tuner: BatchSizeTuner, last_ok: int, first_oom: int | None) -> None:
        """Nothing more: the last power of two that fit is the largest size probed."""

    def double(self, t: BatchSizeTuner, ceiling: int) -> tuple[int, int | None]:
        """1, 2, 4, … up to the first OOM or the ceiling (probed itself when not a power of
        two), a size over the memory headroom (a larger one could never be chosen), the
        budget or, under a budget, a confirmed decline; returns (last success, first OOM)."""
        size, last_ok, declines = 1, 0, 0
        while not t.cancel.cancelled and t.can_probe(size):
            probe = t.probe(size)
            if probe.status == "oom":
                return last_ok, size
            last_ok = size
            if size >= ceiling or not t.fits(probe):
                return last_ok, None
            if t.budget.share is not None:  # a tune the user asked for goes on to the OOM
                declines = declines + 1 if self.is_past_peak(t, probe) else 0
                if self.stops_on_decline and declines >= DECLINES_TO_STOP:
                    if self.still_past_peak(t, probe):
                        t.log("INFO", "tune_declined", batch_size=size)
                        return last_ok, None
                    declines = 0
            size = self.next_size(t, size, ceiling)
        return last_ok, None

    def next_size(self, t: BatchSizeTuner, size: int, ceiling: int) -> int:
        """Twice ``size``; under a budget, while the throughput still rises, the largest
        size up to ``JUMP_AT_MOST`` times larger that the budget affords."""
        double = min(size * 2, ceiling)
        if t.budget.share is None or not t.rising():
            return double
        factor = JUMP_AT_MOST
        while factor > 2:
            jump = min(size * factor, ceiling)
            if jump > double and t.affordable(t.probe_cost(jump), size=jump, say=False):
                return jump
            factor //= 2
        return double

    def fill_skipped(self, t: BatchSizeTuner) -> None:
        """Once a larger size was slower, probe the sizes a jump skipped next to the
        fastest: twice and half its size, when no probe is that close and the budget
        allows. (While the fastest is the largest, the sizes below it are slower.)"""
        for _ in range(2):
            fastest = t.fastest()
            if fastest is None or t.cancel.cancelled:
                return
            sizes = sorted(p.batch_size for p in t.probes)
            above = [s for s in sizes if s > fastest.batch_size]
            below = [s for s in sizes if s < fastest.batch_size]
            if not above:
                return
            gaps = []
            if above[0] >= 4 * fastest.batch_size:
                gaps.append(2 * fastest.batch_size)
            if below and below[-1] * 4 <= fastest.batch_size:
                gaps.append(fastest.batch_size // 2)
            gaps = [g for g in gaps if t.can_probe(g)]
            if not gaps:
                return
            t.probe(gaps[0])

    @staticmethod
    def fastest_other(t: BatchSizeTuner, probe: TuneProbe) -> TuneProbe | None:
        others = [p for p in t.probes if p.status == "ok" and p is not probe]
        return max(others, key=lambda p: p.samples_per_s) if others else None

    def is_past_peak(self, t: BatchSizeTuner, probe: TuneProbe) -> bool:
        fastest = self.fastest_other(t, probe)
        return fastest is not None and probe.samples_per_s < fastest.samples_per_s * (
            1 - DECLINE)

    def still_past_peak(self, t: BatchSizeTuner, probe: TuneProbe) -> bool:
        """Measure this size and the fastest again, back to back, before giving up on the
        larger sizes: a burst of load from another process can slow two probes in a row.
        Past the budget, the decline stands."""
        fastest = self.fastest_other(t, probe)
        for again in (p for p in (fastest, probe) if p is not None):
            if not t.affordable(t.probe_cost(again.batch_size)):
                return True
            t.remeasure(again)
        return probe.status == "oom" or self.is_past_peak(t, probe)

    def confirm_fastest(self, t: BatchSizeTuner) -> None:
        """Measure the sizes within 15% of the fastest again, back to back, before choosing
        among them."""
        ok = [p for p in t.probes if p.status == "ok" and t.fits(p)]
        if not ok or t.cancel.cancelled:
            return
        best = max(p.samples_per_s for p in ok)
        contenders = sorted((p for p in ok if p.samples_per_s >= best * (1 - CONFIRM_WITHIN)),
                            key=lambda p: -p.samples_per_s)[:CONFIRM_AT_MOST]
        if len(contenders) < 2:
            return
        cost = sum(t.probe_cost(p.batch_size) for p in contenders)
        if not t.affordable(cost):
            return
        for probe in sorted(contenders, key=lambda p: p.batch_size):
            t.remeasure(probe)
        t.log("INFO", "tune_confirmed", sizes=", ".join(
            f"{p.batch_size} ({p.samples_per_s:.1f}/s)" if p.status == "ok"
            else f"{p.batch_size} (OOM)" for p in contenders))

    def extrapolate(self, t: BatchSizeTuner, chosen: int, ceiling: int) -> int:
        """When the budget ended the search on a throughput still rising: a larger size,
        never probed, along the line through the two largest probes' call times (and peaks),
        up to ``EXTRAPOLATE_AT_MOST`` times the largest, below any OOM and the ceiling, if
        predicted ``EXTRAPOLATED_GAIN`` faster than ``chosen`` and tuning stays within its
        share of the run at that size. Recorded as a "predicted" probe."""
        best = t.rated_probe(chosen)
        if t.stopped_by != "budget" or t.cancel.cancelled or best is None or not t.rising():
            return chosen
        top = max((p for p in t.probes if p.status == "ok" and t.fits(p)),
                  key=lambda p: p.batch_size)
        limit = min([ceiling, top.batch_size * EXTRAPOLATE_AT_MOST]
                    + [p.batch_size - 1 for p in t.probes if p.status == "oom"])
        size = top.batch_size * 2
        candidates = []
        while size <= limit:
            candidates.append(size)
            size *= 2
        if limit > top.batch_size and limit not in candidates and limit == ceiling:
            candidates.append(limit)
        for size in reversed(candidates):
            guess = t.predicted_probe(size)
            if guess.samples_per_s < best.samples_per_s * (1 + EXTRAPOLATED_GAIN) \
                    or not t.fits(guess):
                continue
            spent = t.spent()
            if spent > (t.budget.share or 0.0) * (spent + t.budget.run_seconds(guess)):
                continue
            t.record(guess)
            t.log("INFO", "tune_extrapolated", batch_size=size, rate=guess.samples_per_s,
                  probed=top.batch_size)
            return size
        return chosen


class BinarySearch(PowerSearch):
    name = "binsearch"
    description = ("the exact largest size that fits: bisect between the last success and "
                   "the first OOM")

    def after_doubling(self, t: BatchSizeTuner, last_ok: int, first_oom: int | None) -> None:
        if first_oom is None or last_ok <= 0:
            return
        low, high = last_ok, first_oom
        while high - low > 1 and not t.cancel.cancelled:
            middle = (low + high) // 2
            if not t.can_probe(middle):
                return
            if t.probe(middle).status == "ok":
                low = middle
            else:
                high = middle


def bucket_down(size: int) -> int:
    """The largest of the sizes ``memory`` chooses among at or below ``size``: every size
    up to 7, then ``BUCKETS_PER_DOUBLING`` steps per doubling (8, 10, 12, 14, 16, 20, …)."""
    if size < 2 * BUCKETS_PER_DOUBLING:
        return max(1, size)
    step = (1 << (size.bit_length() - 1)) // BUCKETS_PER_DOUBLING
    return size - size % step


class FromMemory(SearchStrategy):
    name = "memory"
    description = ("the largest size whose KV cache and activations fit in memory (-b auto "
                   "on CUDA): no timing in the decision")

    def search(self, t: BatchSizeTuner, ceiling: int) -> int:
        size = self.predicted_fit(t, ceiling)
        while not t.cancel.cancelled:
            probe = t.probe(size)
            if probe.status == "ok" and t.fits(probe):
                return size
            if size == 1:
                t.log("WARNING", "tune_nothing_fits")
                return 1
            size = bucket_down(size - 1)
        return size

    def predicted_fit(self, t: BatchSizeTuner, ceiling: int) -> int:
        """The largest bucketed size, at most ``ceiling``, predicted to fit. The KV cache of
        a row (``kv_bytes_per_token`` × ``row_tokens``) gives a candidate size; short calls
        of 1 row and of the candidate measure the base and what a row takes (activations
        and the prompt's cache), to which the cache of the tokens still to come is added
        (a short call's cache, static or dynamic, holds only its own tokens)."""
        usable = t.usable_memory()
        kv_row = t.kv_bytes_per_token * t.row_tokens
        one = t.prober.short_call(1)
        if one.oom or ceiling == 1:
            return 1
        if usable is None or one.peak_memory_bytes is None:
            t.log("WARNING", "tune_memory_unknown", device=t.prober.device, size=ceiling)
            return ceiling
        room = usable * t.memory_headroom - one.peak_memory_bytes
        candidate = min(ceiling, max(2, math.floor(room / kv_row) if kv_row > 0 else ceiling))
        candidate = bucket_down(candidate) if candidate < ceiling else ceiling
        while True:
            run = t.prober.short_call(candidate)
            if not run.oom or candidate <= 2 or t.cancel.cancelled:
                break
            candidate = bucket_down(candidate // 2)
        if run.oom or run.peak_memory_bytes is None:
            return 1
        measured = max(0.0, (run.peak_memory_bytes - one.peak_memory_bytes) / (candidate - 1))
        # a short call's cache, static or dynamic, holds only its own tokens
        to_grow = t.kv_bytes_per_token * max(0, t.prober.max_tokens - run.new_tokens)
        per_row = max(1.0, measured + to_grow)
        base = one.peak_memory_bytes - measured
        fit = max(1, math.floor((usable * t.memory_headroom - base) / per_row))
        size = ceiling if fit >= ceiling else bucket_down(fit)
        t.log("INFO", "tune_from_memory", kv=format_bytes(int(kv_row)),
              activations=format_bytes(int(max(0.0, per_row - kv_row))),
              usable=format_bytes(usable), percent=t.memory_headroom * 100,
              candidate=candidate, fit=fit, size=size)
        return size


# The search strategies, by the name a config chooses them with.
TUNE_MODES: dict[str, type[SearchStrategy]] = {
    strategy.name: strategy for strategy in (PowerSearch, BinarySearch, FromMemory)}
