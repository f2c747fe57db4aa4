"""Batch-size auto-tuning: short probes, the search, the budget, the choice, the tune cache,
tune.json, -b auto and --max-memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PROMPTS, write_jsonl
from tui_eval.batching.probe import DecodeTimer, ProbeRun, kv_cache_bytes_per_token
from tui_eval.batching.strategies import (
    TUNE_MODES,
    BinarySearch,
    FromMemory,
    PowerSearch,
    SearchStrategy,
    bucket_down,
)
from tui_eval.batching.tuner import BatchSizeTuner, choose_batch_size
from tui_eval.cancel import CancelToken
from tui_eval.cli import main
from tui_eval.config import EvalConfig, check_value, load_config_file, parse_max_memory
from tui_eval.device.meter import ResourceMeter
from tui_eval.engine.device_hooks import DEVICE_HOOKS
from tui_eval.engine.evaluation import Evaluation
from tui_eval.errors import ConfigError
from tui_eval.events import Event, LogLine, TuneFinished, TuneStep
from tui_eval.formatting import size_bytes
from tui_eval.model.backend import Generation, HFBackend
from tui_eval.results import TuneProbe, TuneResult

# new_tokens, step_seconds, first_token_seconds, probe_seconds and full_length came with
# the short probes
PROBE_KEYS = {"batch_size", "status", "seconds", "samples_per_s", "tokens_per_s",
              "peak_memory_bytes", "gpu_util_percent", "new_tokens", "step_seconds",
              "probe_seconds", "full_length", "first_token_seconds"}
GIB = 2**30


def probe(size: int, rate: float, status: str = "ok", peak: int | None = None) -> TuneProbe:
    return TuneProbe(batch_size=size, status=status, seconds=size / rate if rate else 0.0,
                 samples_per_s=rate, tokens_per_s=rate * 8, peak_memory_bytes=peak,
                 gpu_util_percent=None)


# ── the choice ──────────────────────────────────────────────────────────────────

def test_choice_is_the_fastest_success() -> None:
    probes = [probe(1, 10), probe(2, 19), probe(4, 35), probe(8, 30), probe(16, 0, "oom")]
    assert choose_batch_size(probes) == 4


def test_choice_prefers_the_smaller_size_within_three_percent() -> None:
    probes = [probe(4, 100.0), probe(8, 102.5), probe(16, 103.0)]
    assert choose_batch_size(probes) == 4  # 100 ≥ 97% of 103
    assert choose_batch_size([probe(4, 99.0), probe(8, 103.0)]) == 8  # 96.1%: not a tie


def test_choice_respects_the_memory_headroom() -> None:
    probes = [probe(8, 50, peak=800), probe(16, 90, peak=950)]
    assert choose_batch_size(probes, capacity=1000, headroom=0.9) == 8
    assert choose_batch_size(probes, capacity=1000, headroom=0.96) == 16
    over = [probe(8, 50, peak=950), probe(16, 90, peak=990)]
    assert choose_batch_size(over, capacity=1000, headroom=0.9) == 8  # smallest success


def test_choice_is_one_when_nothing_fits() -> None:
    assert choose_batch_size([probe(1, 0, "oom")]) == 1


# ── the probe sequence, with a fake backend (no model: the search logic only) ────

def growing(size: int) -> float:
    """Seconds per generate call: a fixed cost plus a per-row cost, so throughput keeps
    growing with the batch size (by more than 3% per doubling up to 256)."""
    return 0.01 + 0.001 * size


def saturating(size: int) -> float:
    """Throughput grows until 8 rows, then stays flat."""
    return 0.001 * max(size, 8)


class FakeBackend:
    """Generation on a fake clock: a call of ``max_new_tokens`` rows costs ``cost(rows)``
    seconds, spread evenly over its decode steps after ``prefill`` seconds, and fails like
    CUDA above ``fits`` rows (or when its memory, ``memory(rows, tokens)``, passes
    ``memory_limit``). The search logic, deterministic and instant."""

    device = "cpu"

    def __init__(self, fits: int, cost: Callable[[int], float] = growing,
                 burst: dict[int, float] | None = None, prefill: float = 0.0,
                 memory: Callable[[int, int], int] | None = None,
                 memory_limit: int | None = None) -> None:
        self.fits = fits
        self.cost = cost
        self.burst = dict(burst or {})  # size -> slowdown of its first call (busy machine)
        self.prefill = prefill
        self.memory = memory
        self.memory_limit = memory_limit
        self.now = 0.0
        self.calls: list[int] = []
        self.steps: list[int] = []  # tokens per row of each call
        self.peak: int | None = None

    def clock(self) -> float:
        return self.now

    def generate(self, texts: list[str], *, max_new_tokens: int, force_length: bool = False,
                 on_step: Callable[[], bool] | None = None,
                 static: bool | None = None) -> Generation:
        import torch

        assert force_length  # probes must ask for the full length
        assert static is not None  # and name their path: the backend's is the run's
        rows = len(texts)
        self.calls.append(rows)
        oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if rows > self.fits:
            raise oom
        step = self.cost(rows) * self.burst.pop(rows, 1.0) / max_new_tokens
        self.now += self.prefill
        steps = 0
        while steps < max_new_tokens:
            self.now += step
            steps += 1
            if self.memory is not None:
                self.peak = self.memory(rows, steps)
                if self.memory_limit is not None and self.peak > self.memory_limit:
                    raise oom
            if on_step is not None and on_step():
                break
        self.steps.append(steps)
        return Generation(texts=["x"] * rows, new_tokens=[steps] * rows)


class FakeMeter:
    """ResourceMeter's shape, reading the fake backend's last peak."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.peak_memory_bytes: int | None = None
        self.gpu_util_percent: float | None = None

    def __enter__(self) -> FakeMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_memory_bytes = self.backend.peak


def tuner_for(backend: FakeBackend, n_prompts: int, *, max_tokens: int = 4,
              budget_share: float | None = None, **options: Any) -> BatchSizeTuner:
    """No budget unless asked: most tests here pin the search itself."""
    if backend.memory is not None:
        options.setdefault("meter", lambda device: FakeMeter(backend))
    options.setdefault("hooks", DEVICE_HOOKS)
    return BatchSizeTuner(backend, [f"p{i}" for i in range(n_prompts)], max_tokens=max_tokens,
                          clock=backend.clock, budget_share=budget_share, **options)


def probed(fits: int, n_prompts: int, cost: Callable[[int], float] = growing,
           **options: Any) -> list[tuple[int, str]]:
    tuner = tuner_for(FakeBackend(fits, cost), n_prompts, **options)
    tuner.run()
    return [(p.batch_size, p.status) for p in tuner.probes]


def test_power_doubles_until_the_first_oom() -> None:
    assert probed(24, 100) == [(1, "ok"), (2, "ok"), (4, "ok"), (8, "ok"), (16, "ok"),
                               (32, "oom")]


def test_binsearch_bisects_between_last_success_and_first_oom() -> None:
    sizes = probed(24, 100, mode="binsearch")
    assert sizes[-4:] == [(24, "ok"), (28, "oom"), (26, "oom"), (25, "oom")]


def test_doubling_stops_at_the_dataset_size_and_the_ceiling() -> None:
    assert [s for s, _ in probed(1000, 12)] == [1, 2, 4, 8, 12]
    assert [s for s, _ in probed(1000, 100, max_batch_size=20)] == [1, 2, 4, 8, 16, 20]


def test_the_fastest_sizes_are_measured_again_before_choosing() -> None:
    # a little load from another process during 256's first window makes 128 look fastest;
    # measured again back to back, 256 is faster by more than the 3% tie margin
    events: list[Event] = []
    tuner = tuner_for(FakeBackend(1000, burst={256: 1.1}), 256, sink=events.append)
    assert tuner.run().chosen_batch_size == 256
    assert [p.batch_size for p in tuner.probes] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    again = [e.message for e in events
             if isinstance(e, LogLine) and e.message.startswith("Measured the fastest")]
    assert len(again) == 1 and "128" in again[0] and "256" in again[0]


def test_power_doubles_to_the_memory_limit_even_on_a_flat_curve() -> None:
    assert probed(40, 100, saturating)[-1] == (64, "oom")
    assert probed(40, 100, saturating, mode="binsearch")[-1] == (41, "oom")


def declining(size: int) -> float:
    """Throughput peaks at 8 rows and then falls: a CPU generating a long max_tokens."""
    return 0.001 * size + 0.0001 * size * size + 0.01


def test_a_tune_the_user_asked_for_doubles_past_a_decline_to_the_ceiling() -> None:
    # no budget (tui-eval tune, the app's a): every power of two is shown, then the fastest
    tuner = tuner_for(FakeBackend(1000, declining), 200)
    result = tuner.run()
    assert [p.batch_size for p in tuner.probes] == [1, 2, 4, 8, 16, 32, 64, 128, 200]
    assert result.chosen_batch_size == 8


def test_power_under_a_budget_stops_after_two_confirmed_declines() -> None:
    events: list[Event] = []
    tuner = tuner_for(FakeBackend(1000, declining), 200, budget_share=100.0,
                      sink=events.append)
    result = tuner.run()
    # rising: jumps 1 → 8 → 64; 64 and 128 are 10% or more slower than 8: stop, then the
    # sizes the jumps skipped next to the fastest
    assert [p.batch_size for p in tuner.probes] == [1, 8, 64, 128, 16, 4]
    assert result.chosen_batch_size == 8
    assert any("fell by 10% or more at two sizes in a row, up to batch size 128" in e.message
               for e in events if isinstance(e, LogLine))
    assert probed(1000, 200, declining, mode="binsearch")[-1] == (200, "ok")  # no stop


def test_a_load_burst_does_not_stop_the_doubling() -> None:
    # another process slows the first windows of 32 and 64 threefold: measured again
    # back to back before stopping, 64 is the fastest after all, and doubling goes on
    tuner = tuner_for(FakeBackend(1000, burst={32: 3.0, 64: 3.0}), 256)
    result = tuner.run()
    assert [p.batch_size for p in tuner.probes] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert result.chosen_batch_size in (128, 256)


def test_doubling_stops_above_the_memory_headroom() -> None:
    events: list[Event] = []
    tuner = tuner_for(FakeBackend(1000), 100, memory_capacity=1, sink=events.append)
    assert tuner.run().chosen_batch_size == 1  # every peak is over 90% of 1 byte
    assert [p.batch_size for p in tuner.probes] == [1]
    assert any("not chosen" in e.message for e in events if isinstance(e, LogLine))


def test_a_stop_request_ends_the_search_between_probes() -> None:
    cancel = CancelToken()

    def cancel_after_three(event: Event) -> None:
        if isinstance(event, TuneStep) and event.batch_size == 4:
            cancel.cancel()

    tuner = tuner_for(FakeBackend(1000), 100, sink=cancel_after_three, cancel=cancel)
    assert tuner.run().chosen_batch_size in (1, 2, 4)
    assert [p.batch_size for p in tuner.probes] == [1, 2, 4]


def test_probes_emit_events_and_log_the_table() -> None:
    events: list[Event] = []
    result = tuner_for(FakeBackend(4), 6, sink=events.append).run()
    steps = [e for e in events if isinstance(e, TuneStep)]
    assert [(s.batch_size, s.status) for s in steps] == [(1, "ok"), (2, "ok"), (4, "ok"),
                                                         (6, "oom")]
    finished = [e for e in events if isinstance(e, TuneFinished)]
    assert len(finished) == 1 and finished[0].chosen_batch_size == result.chosen_batch_size
    assert all(set(p.to_dict()) == PROBE_KEYS for p in finished[0].probes)
    lines = [e.message for e in events if isinstance(e, LogLine)]
    assert any(line.startswith("| batch | status | time") for line in lines)
    assert sum(line.startswith("| ") for line in lines) == 1 + len(steps)
    assert "Chosen batch size" in lines[-1]


# ── short probes ────────────────────────────────────────────────────────────────

def test_a_decode_timer_stops_after_its_window_and_its_least_steps() -> None:
    now = [0.0]
    timer = DecodeTimer(lambda: now[0], min_steps=4, max_steps=10, window_s=0.05)
    answers = []
    for _ in range(10):
        now[0] += 0.01
        answers.append(timer())
        if answers[-1]:
            break
    assert answers == [False] * 5 + [True]  # 5 intervals of 10 ms = the 50 ms window
    assert timer.step_seconds == pytest.approx(0.01)
    timer.stamps[3:] = [stamp + 0.05 for stamp in timer.stamps[3:]]  # a step preempted
    assert timer.step_seconds == pytest.approx(0.01)
    quick = DecodeTimer(lambda: now[0], min_steps=4, max_steps=10, window_s=0.0)
    assert [quick() for _ in range(4)] == [False, False, False, True]


def test_a_probe_run_predicts_the_full_length_call() -> None:
    run = ProbeRun(rows=8, new_tokens=6, call_seconds=0.5, step_seconds=0.05,
                   peak_memory_bytes=1000)
    assert run.full_length_seconds(106) == pytest.approx(0.5 + 100 * 0.05)
    assert run.full_length_peak(106, kv_bytes_per_token=2) == 1000 + 8 * 2 * 100
    assert run.full_length_peak(6, kv_bytes_per_token=2) == 1000


def test_kv_cache_bytes_per_token_from_the_model_config() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2)
    assert kv_cache_bytes_per_token(config, 4) == 2 * 2 * 2 * 16 * 4
    assert kv_cache_bytes_per_token(object(), 2) == 0  # nothing known: measured only


def test_probes_run_a_few_steps_and_predict_the_full_length() -> None:
    # 512 new tokens at 1 ms per step per row-batch, after a 50 ms prefill: a probe runs
    # only until its timing window is full, and predicts the whole call
    backend = FakeBackend(1000, cost=lambda rows: 0.512 * (1 + rows / 64), prefill=0.05)
    tuner = tuner_for(backend, 16, max_tokens=512)
    tuner.run()
    assert all(steps < 64 for steps in backend.steps)
    for probe in tuner.probes:
        assert probe.new_tokens < 512 and not probe.full_length
        assert probe.seconds == pytest.approx(0.05 + 0.512 * (1 + probe.batch_size / 64))
        assert probe.probe_seconds < probe.seconds / 5
        assert probe.tokens_per_s == pytest.approx(probe.samples_per_s * 512)


def test_the_run_is_estimated_batch_by_batch_over_its_prompt_lengths() -> None:
    # a 0.1 s prefill on the longest prompts (100 tokens): a batch of 50-token prompts
    # is estimated with half of it
    backend = FakeBackend(1000, cost=lambda rows: 0.4, prefill=0.1)
    tuner = tuner_for(backend, 4, max_tokens=64, prompt_tokens=[100, 100, 50, 50])
    tuner.run()
    two = next(p for p in tuner.probes if p.batch_size == 2)
    assert two.first_token_seconds == pytest.approx(0.1 + 0.4 / 64)
    assert tuner.run_seconds(two) == pytest.approx(2 * two.seconds
                                                   - two.first_token_seconds * 0.5)
    assert tuner.n_samples == 4


# ── the budget ──────────────────────────────────────────────────────────────────

def test_the_budget_ends_the_search_and_keeps_the_best_size() -> None:
    # each call costs 0.01 s + 1 ms per row; 100 samples. After the warm-up and size 1 the
    # budget (a tenth of the run at 91 samples/s) affords a jump to 8; after 8, 16 would
    # run at 615 samples/s, leaving a budget of a tenth of 0.16 s, less than what is spent:
    # the search ends at 8
    events: list[Event] = []
    backend = FakeBackend(1000)
    tuner = tuner_for(backend, 100, budget_share=0.1, sink=events.append)
    result = tuner.run()
    assert [p.batch_size for p in tuner.probes] == [1, 8]
    assert result.stopped_by == "budget" and result.chosen_batch_size == 8
    assert result.budget_seconds == pytest.approx(0.1 * 100 / (8 / 0.018))
    assert result.estimated_run_seconds == pytest.approx(100 * 0.018 / 8)
    assert any("Tuning budget reached" in e.message for e in events
               if isinstance(e, LogLine))
    # a run ten times longer affords more probes, and finds a faster size
    longer = tuner_for(FakeBackend(1000), 100, budget_share=0.1, n_samples=1000).run()
    assert len(longer.probes) >= 3 and longer.chosen_batch_size > 8


def peaked(size: int) -> float:
    """Throughput rises until 128 rows, then falls (90% of the best at 64 and 256)."""
    return 0.05 + 0.001 * size + 0.05 * size * size / 16384


def best_rate(cost: Callable[[int], float]) -> float:
    return max(size / cost(size) for size in range(1, 257))


@pytest.mark.parametrize("n_samples", [500, 2000, 20000])
def test_jumps_reach_the_peak_of_a_curve_rising_until_128(n_samples: int) -> None:
    # doubling from 1 would spend a 500-sample run's budget by 32 (67% of the best); jumps
    # to the largest affordable size skip the cheap, uninformative sizes in between
    tuner = tuner_for(FakeBackend(10_000, peaked), 256, max_tokens=64, budget_share=0.1,
                      n_samples=n_samples)
    result = tuner.run()
    chosen = result.chosen_batch_size
    assert chosen / peaked(chosen) >= 0.9 * best_rate(peaked)
    assert result.seconds <= 0.1 * (result.seconds + result.estimated_run_seconds)
    assert 2 not in [p.batch_size for p in tuner.probes]  # jumped past it


def test_a_skipped_size_next_to_the_peak_is_probed() -> None:
    # a jump from 8 to 64 passes the peak at 8; 16 (and 4), skipped, are probed after
    tuner = tuner_for(FakeBackend(10_000, declining), 256, max_tokens=64, budget_share=0.1,
                      n_samples=2000)
    result = tuner.run()
    sizes = [p.batch_size for p in tuner.probes]
    assert sizes[:3] == [1, 8, 64] and 16 in sizes and 4 in sizes
    assert result.chosen_batch_size == 8 and result.stopped_by == "done"


def test_a_budget_cut_search_on_a_rising_curve_chooses_a_predicted_size() -> None:
    # 200 samples: the budget ends the search at 16 while throughput still rises; the
    # line through 8 and 16 predicts 64 (exact on this linear cost), within tuning's share
    events: list[Event] = []
    tuner = tuner_for(FakeBackend(10_000, growing), 256, max_tokens=64, budget_share=0.1,
                      n_samples=200, sink=events.append)
    result = tuner.run()
    assert result.stopped_by == "budget"
    predicted = [p for p in result.probes if p.status == "predicted"]
    assert [p.batch_size for p in predicted] == [result.chosen_batch_size] == [64]
    largest = max(p.batch_size for p in result.probes if p.status == "ok")
    assert result.chosen_batch_size <= 4 * largest
    assert predicted[0].samples_per_s == pytest.approx(64 / growing(64))
    assert predicted[0].probe_seconds == 0.0 and predicted[0].new_tokens == 0
    assert result.seconds <= 0.1 * (result.seconds + result.estimated_run_seconds)
    assert any("not probed" in e.message for e in events if isinstance(e, LogLine))
    assert [e for e in events if isinstance(e, TuneStep)][-1].status == "predicted"
    logged = [e.message for e in events if isinstance(e, LogLine)]
    assert any(row.startswith("| 64 ") and "| pred. " in row and "| none " in row
               for row in logged)  # its row: figures predicted, no probe run
    measured = len(result.probes) - 1
    chosen_line = next(e.message for e in events
                       if isinstance(e, LogLine) and e.message.startswith("Chosen batch size"))
    assert f"; {measured} probes took" in chosen_line  # the predicted row is no probe


def test_no_size_is_predicted_past_an_oom_a_decline_or_a_finished_search() -> None:
    def predicted(backend: FakeBackend, n_samples: int, **options: Any) -> list[int]:
        result = tuner_for(backend, 256, max_tokens=64, budget_share=0.1,
                           n_samples=n_samples, **options).run()
        return [p.batch_size for p in result.probes if p.status == "predicted"]

    assert predicted(FakeBackend(12, growing), 200) == []  # 16 ran out of memory
    assert predicted(FakeBackend(12, growing), 200, mode="binsearch") == []
    assert predicted(FakeBackend(10_000, declining), 200) == []  # past its peak
    assert predicted(FakeBackend(10_000, growing), 20000) == []  # measured to the ceiling


@pytest.mark.parametrize("cost", [growing, saturating, declining])
@pytest.mark.parametrize("n_samples", [30, 300, 3000, 30000])
def test_tuning_costs_at_most_a_tenth_of_the_whole_run(
        cost: Callable[[int], float], n_samples: int) -> None:
    # a probe starts only within the budget as it stands; the faster size it may find
    # lowers the budget after the fact, so the bound is on tuning + the run it tuned
    tuner = tuner_for(FakeBackend(10_000, cost), 256, budget_share=0.1, n_samples=n_samples)
    result = tuner.run()
    first_probe = 2 * cost(1)  # the warm-up and size 1: before any rate there is no budget
    whole = result.seconds + (result.estimated_run_seconds or 0.0)
    assert result.seconds <= max(0.1 * whole, first_probe) + 1e-9


# ── memory mode (-b auto on CUDA): the largest size that fits, no timing ─────────────

def gpu_memory(rows: int, tokens: int) -> int:
    """10 GiB of weights, 0.5 GiB per row of activations, and 4 MiB per row per token of
    KV cache on 100-token prompts."""
    return 10 * GIB + rows * (GIB // 2 + 4 * 2**20 * (100 + tokens))


def memory_tuner(*, limit: int = 80 * GIB, usable: int = 80 * GIB,
                 cost: Callable[[int], float] = growing,
                 **options: Any) -> tuple[BatchSizeTuner, FakeBackend]:
    """A fake CUDA device: the backend OOMs past ``limit``, the meter reads its peaks,
    ``usable`` is what the device says this process can reach."""
    backend = FakeBackend(10_000, cost, memory=gpu_memory, memory_limit=limit)
    tuner = tuner_for(backend, 256, max_tokens=256, mode="memory", budget_share=0.1,
                      memory_capacity=80 * GIB, kv_bytes_per_token=4 * 2**20,
                      row_tokens=100 + 256, usable_memory=lambda: usable, **options)
    return tuner, backend


def test_memory_mode_takes_the_largest_size_that_fits() -> None:
    # full length: 10 GiB + 1.89 GiB per row; 90% of 80 GiB holds 32 rows (33 would not)
    events: list[Event] = []
    tuner, backend = memory_tuner(sink=events.append)
    result = tuner.run()
    assert result.mode == "memory" and result.chosen_batch_size == 32
    assert [(p.batch_size, p.status) for p in tuner.probes] == [(32, "ok")]  # one probe
    assert gpu_memory(32, 256) <= 0.9 * 80 * GIB < gpu_memory(33, 256)
    # warm-up, 1 row and a candidate (the KV cache alone's fit, bucketed) for the memory
    # per row, then the probe
    assert backend.calls == [1, 1, 40, 32]
    assert any("confirming 32" in e.message for e in events if isinstance(e, LogLine))


def test_memory_mode_steps_down_on_an_oom() -> None:
    # the device can reach less than it says (another process holds memory): the candidate
    # and the predicted size run out; the next buckets down are tried
    tuner, backend = memory_tuner(limit=42 * GIB)
    result = tuner.run()
    assert [(p.batch_size, p.status) for p in tuner.probes] == [(32, "oom"), (28, "ok")]
    assert result.chosen_batch_size == 28
    assert backend.calls[:4] == [1, 1, 40, 20]  # the candidate 40 ran out: 20


def test_memory_mode_is_deterministic_and_ignores_timing() -> None:
    chosen = set()
    for cost in (growing, saturating, declining, growing):
        tuner, _ = memory_tuner(cost=cost)
        chosen.add((tuner.run().chosen_batch_size,
                    tuple(p.batch_size for p in tuner.probes)))
    assert chosen == {(32, (32,))}


def test_memory_mode_is_capped_by_the_dataset_and_the_max_batch_size() -> None:
    tuner, _ = memory_tuner(max_batch_size=12)
    assert tuner.run().chosen_batch_size == 12
    backend = FakeBackend(10_000, memory=gpu_memory, memory_limit=80 * GIB)
    small = tuner_for(backend, 20, max_tokens=256, mode="memory", memory_capacity=80 * GIB,
                      kv_bytes_per_token=4 * 2**20, row_tokens=356,
                      usable_memory=lambda: 80 * GIB)
    assert small.run().chosen_batch_size == 20


def test_memory_mode_says_when_it_cannot_read_the_memory() -> None:
    events: list[Event] = []
    tuner = tuner_for(FakeBackend(1000), 20, mode="memory", usable_memory=lambda: None,
                      sink=events.append)
    assert tuner.run().chosen_batch_size == 20
    assert [(p.batch_size, p.status) for p in tuner.probes] == [(20, "ok")]
    assert any(e.level == "WARNING" and "cannot be read" in e.message
               for e in events if isinstance(e, LogLine))


def test_memory_mode_bucket_sizes() -> None:
    assert [bucket_down(n) for n in (1, 5, 7, 8, 9, 15, 33, 47, 1000)] == [
        1, 5, 7, 8, 8, 14, 32, 40, 896]


def test_the_modes_are_a_registry_of_strategies() -> None:
    assert set(TUNE_MODES) == {"power", "binsearch", "memory"}
    assert all(issubclass(strategy, SearchStrategy) and strategy.name == name
               for name, strategy in TUNE_MODES.items())
    assert TUNE_MODES["memory"] is FromMemory and TUNE_MODES["binsearch"] is BinarySearch
    assert TUNE_MODES["power"] is PowerSearch
    assert check_value("tune_mode", "memory") == "memory"


# ── the tune cache ──────────────────────────────────────────────────────────────

def cache_key(**changes: Any) -> Any:
    from tui_eval.engine.tune_cache import TuneKey

    values = dict(model="/m", device_name="cpu", dtype="float32", compile="off",
                  max_tokens=16, prompt_bucket=96, max_batch_size=256, tune_mode="power",
                  memory_headroom=0.9, memory_capacity_bytes=None, simulate_oom_above=None,
                  threads=1)
    return TuneKey(**{**values, **changes})


def tune_result(stopped_by: str = "done", n_samples: int | None = None) -> TuneResult:
    return TuneResult(chosen_batch_size=8, mode="power", probes=[probe(8, 100.0)],
                      seconds=0.5, max_tokens=16, max_batch_size=256,
                      memory_capacity_bytes=None, memory_headroom=0.9, stopped_by=stopped_by,
                      n_samples=n_samples)


def test_the_tune_cache_answers_the_same_key_only(tune_cache_dir: Path) -> None:
    from tui_eval.engine.tune_cache import cache_path, lookup, store

    assert cache_path() == tune_cache_dir / "tui-eval" / "tune.json"
    assert lookup(cache_key(), 100) is None
    store(cache_key(), tune_result())
    cached = lookup(cache_key(), 100)
    assert cached is not None and cached.result.chosen_batch_size == 8
    assert cached.result.from_cache is False  # the caller marks what it hands out
    assert lookup(cache_key(max_tokens=32), 100) is None
    assert lookup(cache_key(compile="on"), 100) is None
    store(cache_key(compile="on"), replace(tune_result(), chosen_batch_size=16,
                                           probes=[probe(16, 120.0)]))
    assert lookup(cache_key(), 100).result.chosen_batch_size == 8  # both kept


def test_a_budget_cut_search_answers_only_runs_it_could_pay_for(tune_cache_dir: Path) -> None:
    from tui_eval.engine.tune_cache import lookup, store

    store(cache_key(), tune_result("budget", n_samples=1000))
    assert lookup(cache_key(), 1000) is not None
    assert lookup(cache_key(), 1001) is None  # a longer run may tune for longer
    store(cache_key(), tune_result("done", n_samples=10))
    assert lookup(cache_key(), 10**6) is not None  # a search that finished holds for any
    store(cache_key(model="/other"), tune_result("cancelled"))
    assert lookup(cache_key(model="/other"), 1) is None


def test_an_unreadable_tune_cache_counts_as_empty(tune_cache_dir: Path) -> None:
    from tui_eval.engine.tune_cache import cache_path, lookup, store

    cache_path().parent.mkdir(parents=True)
    cache_path().write_text("{not json", encoding="utf-8")
    assert lookup(cache_key(), 10) is None
    store(cache_key(), tune_result())
    assert lookup(cache_key(), 10) is not None


# ── the real tiny model on CPU, OOM simulated above 24 rows ──────────────────────

@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> HFBackend:
    loaded = HFBackend(str(tiny_model), device="cpu", dtype="float32", simulate_oom_above=24)
    loaded.load_model()
    return loaded


def prompts(n: int) -> list[str]:
    questions = [question for _, question, _ in PROMPTS]
    ordered = sorted(questions, key=len, reverse=True)
    return [ordered[i % len(ordered)] for i in range(n)]


@pytest.mark.parametrize("mode", ["power", "binsearch"])
def test_tuning_the_tiny_model_with_oom_above_24(backend: HFBackend, mode: str) -> None:
    result = BatchSizeTuner(backend, prompts(40), max_tokens=4, mode=mode, hooks=DEVICE_HOOKS,
                            budget_share=None).run()
    statuses = {p.batch_size: p.status for p in result.probes}
    largest_ok = max(size for size, status in statuses.items() if status == "ok")
    if mode == "power":
        assert statuses == {1: "ok", 2: "ok", 4: "ok", 8: "ok", 16: "ok", 32: "oom"}
        assert largest_ok == 16 and result.chosen_batch_size <= 16
    else:
        assert statuses[24] == "ok" and statuses[25] == "oom"
        assert largest_ok == 24
    assert statuses[result.chosen_batch_size] == "ok"
    assert result.chosen_batch_size == choose_batch_size(result.probes)  # the fastest, by rule
    for p in result.probes:
        if p.status == "ok":
            assert p.seconds > 0 and p.tokens_per_s == pytest.approx(p.samples_per_s * 4)
            assert p.peak_memory_bytes and p.peak_memory_bytes > 0  # process RSS on CPU
            assert p.new_tokens == 4 and p.full_length  # 4 tokens: each probe is whole
        assert p.gpu_util_percent is None  # no GPU: N/A, no crash
    assert result.stopped_by == "done" and result.budget_seconds is None


# ── the commands ────────────────────────────────────────────────────────────────

@pytest.fixture()
def data40(tmp_path: Path) -> Path:
    rows = [{"id": f"r{i}", "question": q, "answer": "x"} for i, q in enumerate(prompts(40))]
    return write_jsonl(tmp_path / "forty.jsonl", rows)


def test_tune_command_doubles_to_the_oom_every_time_and_a_run_reuses_it(
        tiny_model: Path, data40: Path, tmp_path: Path, tune_cache_dir: Path,
        capsys: pytest.CaptureFixture) -> None:
    # the seed's auto-tune action: 1, 2, 4, … until OOM, no budget, every probe shown once
    flags = ["-m", str(tiny_model), "-d", str(data40), "--max-tokens", "4", "--device",
             "cpu", "--simulate-oom-above", "24", "--lang", "en"]

    def tune(out: str, *extra: str) -> dict:
        rc = main(["tune", *flags, "-o", str(tmp_path / out), *extra])
        assert rc == 0
        return json.loads((tmp_path / out / "tune.json").read_text(encoding="utf-8"))

    first = tune("tune")
    assert {"chosen_batch_size", "mode", "probes", "from_cache", "stopped_by",
            "budget_seconds", "estimated_run_seconds"} <= set(first)
    assert first["mode"] == "power" and first["from_cache"] is False
    assert [(p["batch_size"], p["status"]) for p in first["probes"]] == [
        (1, "ok"), (2, "ok"), (4, "ok"), (8, "ok"), (16, "ok"), (32, "oom")]
    assert first["budget_seconds"] is None and first["stopped_by"] == "done"
    assert all(set(p) == PROBE_KEYS for p in first["probes"])
    assert first["chosen_batch_size"] in (1, 2, 4, 8, 16)
    printed = capsys.readouterr().out
    assert printed.count("| batch | status") == 1  # the table once, row by row
    assert "tune.json" in printed and "6 probes" in printed
    out = tmp_path / "tune"
    assert "tune_finished" in (out / "events.jsonl").read_text(encoding="utf-8")
    assert not (out / "predictions.jsonl").exists()  # tuning only
    assert (tune_cache_dir / "tui-eval" / "tune.json").is_file()

    again = tune("again", "-b", "0")  # -b is ignored, whatever it says
    assert again["from_cache"] is False and len(again["probes"]) == 6

    rc = main(["--no-ui", *flags, "-b", "auto", "-o", str(tmp_path / "run")])
    assert rc == 0  # -b auto inside a run keeps the cache
    ran = json.loads((tmp_path / "run" / "tune.json").read_text(encoding="utf-8"))
    assert ran["from_cache"] is True
    assert ran["chosen_batch_size"] == again["chosen_batch_size"]


def test_batch_size_auto_tunes_then_runs(tiny_model: Path, qa_jsonl: Path,
                                         tmp_path: Path) -> None:
    # (This test pinned the probes 1, 2, 4 and 8 (OOM); the budget for 12 samples of 4
    # tokens now ends the search after the first probes.)
    config = EvalConfig(model=str(tiny_model), data=str(qa_jsonl), max_tokens=4, device="cpu",
                        torch_dtype="float32", lang="en", batch_size="auto",
                        simulate_oom_above=5, output_dir=str(tmp_path / "auto"))
    events: list[Event] = []
    metrics = Evaluation(config, events.append).run()
    tune = json.loads((tmp_path / "auto" / "tune.json").read_text(encoding="utf-8"))
    statuses = {p["batch_size"]: p["status"] for p in tune["probes"]}
    assert statuses[1] == "ok" and all(s == "oom" for b, s in statuses.items() if b > 5)
    assert metrics.batch_size == tune["chosen_batch_size"] <= 4
    assert statuses[metrics.batch_size] == "ok"
    assert metrics.n == len(PROMPTS) and metrics.fallback_count == 0
    assert metrics.tune_seconds > 0 and metrics.wall_seconds > metrics.tune_seconds
    kinds = [json.loads(line)["event"] for line in
             (tmp_path / "auto" / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kinds.count("tune_step") == len(tune["probes"]) and "tune_finished" in kinds
    assert kinds.index("tune_finished") < kinds.index("started")
    assert "| batch | status" in (tmp_path / "auto" / "run.log").read_text(encoding="utf-8")


def test_a_resumed_auto_run_keeps_its_tune_json(tiny_model: Path, qa_jsonl: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "auto"
    config = EvalConfig(model=str(tiny_model), data=str(qa_jsonl), max_tokens=2, device="cpu",
                        torch_dtype="float32", lang="en", batch_size="auto",
                        output_dir=str(out))
    cancel = CancelToken()

    def stop_after_first_batch(event: Event) -> None:
        if type(event).__name__ == "Progress":
            cancel.cancel()

    Evaluation(config, stop_after_first_batch, cancel).run()
    tuned = (out / "tune.json").read_text(encoding="utf-8")
    events: list[Event] = []
    metrics = Evaluation(config, events.append, resume=True).run()
    assert (out / "tune.json").read_text(encoding="utf-8") == tuned  # not probed again
    chosen = json.loads(tuned)["chosen_batch_size"]
    assert metrics.batch_size == chosen and metrics.tune_seconds == 0.0
    assert any(f"Batch size {chosen} from this run's tune.json" in e.message
               for e in events if isinstance(e, LogLine))
    assert not [e for e in events if isinstance(e, TuneStep)]


# ── flags and config keys ───────────────────────────────────────────────────────

def test_batch_size_accepts_auto_in_flags_and_files(tmp_path: Path) -> None:
    assert check_value("batch_size", "auto") == "auto"
    path = tmp_path / "eval.toml"
    path.write_text('batch_size = "auto"\nmax_memory = "20GiB"\ntune_mode = "binsearch"\n',
                    encoding="utf-8")
    assert load_config_file(path) == {"batch_size": "auto", "max_memory": "20GiB",
                                      "tune_mode": "binsearch"}
    path.write_text('batch_size = "eight"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"key 'batch_size' must be an integer ≥ 1 or 'auto'"):
        load_config_file(path)


@pytest.mark.parametrize(
    ("args", "error"),
    [(["-b", "many"], "-b/--batch-size: must be an integer ≥ 1 or 'auto', got 'many'"),
     (["--max-memory", "2"],
      "--max-memory: must be a fraction above 0 and up to 1 (0.5), a size (20GiB)"),
     (["--memory-headroom", "1.5"], "--memory-headroom: must be a number from 0.1 to 1"),
     (["--max-batch-size", "0"], "--max-batch-size: must be an integer ≥ 1, got 0"),
     (["--tune-mode", "fast"], "--tune-mode: must be one of power, binsearch, memory, got 'fast'")],
)
def test_bad_tuning_flags_exit_2_naming_the_flag(args: list[str], error: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    try:
        rc = main(["--no-ui", *args])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err


def test_max_memory_values() -> None:
    assert parse_max_memory(0.5) == 0.5 and parse_max_memory("0.25") == 0.25
    assert parse_max_memory("20GiB") == "20GiB" and size_bytes("20GiB") == 20 * 2**30
    assert size_bytes("512MiB") == 512 * 2**20 and size_bytes("24GB") == 24 * 10**9
    for bad in ("0", "1.5", "twenty", "20XB", True, -1):
        with pytest.raises(ValueError, match="a fraction above 0 and up to 1"):
            parse_max_memory(bad)


def test_max_memory_is_ignored_on_cpu_with_one_line(tiny_model: Path, qa_jsonl: Path,
                                                     tmp_path: Path) -> None:
    config = EvalConfig(model=str(tiny_model), data=str(qa_jsonl), max_tokens=2, device="cpu",
                        lang="en", limit=2, max_memory=0.5, output_dir=str(tmp_path / "cap"))
    events: list[Event] = []
    metrics = Evaluation(config, events.append).run()
    ignored = [e for e in events if isinstance(e, LogLine) and "--max-memory" in e.message]
    assert len(ignored) == 1 and "ignored on cpu" in ignored[0].message
    assert metrics.n == 2


def test_resource_meter_on_cpu_reads_rss_and_no_gpu() -> None:
    with ResourceMeter("cpu") as meter:
        sum(range(10000))
    assert meter.peak_memory_bytes and meter.peak_memory_bytes > 0
    assert meter.gpu_util_percent is None


def test_config_defaults_for_tuning() -> None:
    config = EvalConfig()
    assert (config.tune_mode, config.max_batch_size, config.memory_headroom,
            config.max_memory) == ("power", 256, 0.9, None)
    assert replace(config, batch_size="auto").batch_size == "auto"


def test_the_mode_a_tune_uses() -> None:
    from tui_eval.engine.choice import ChoiceTask
    from tui_eval.engine.generation import GenerationTask
    from tui_eval.engine.tuning import search_mode

    generation = object.__new__(GenerationTask)
    choice = object.__new__(ChoiceTask)
    config = EvalConfig(tune_mode="binsearch")
    # -b auto of a generation on CUDA: from memory; otherwise (CPU, choice, tune) the config's
    assert search_mode(config, generation, "cuda:0", explicit=False) == "memory"
    assert search_mode(config, generation, "cuda:0", explicit=True) == "binsearch"
    assert search_mode(config, generation, "cpu", explicit=False) == "binsearch"
    assert search_mode(config, choice, "cuda", explicit=False) == "binsearch"
