"""Screenshots of the main screen compared with the accepted ones in tests/__snapshots__/.

Everything on screen is fixed: fake GPU and host readings, fixed config paths, no clock,
no timestamped log lines. Accept a deliberate change with ``pytest --snapshot-update``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tui_eval.config import EvalConfig
from tui_eval.device.monitor import (
    FixedGpuSource,
    FixedHostSource,
    GpuReading,
    HostReading,
    Sampler,
    Snapshot,
)
from tui_eval.events import LogLine, RunFinished, TuneFinished
from tui_eval.formatting import GIB
from tui_eval.results import RunMetrics, TuneProbe
from tui_eval.ui.app import EvalApp

pytestmark = pytest.mark.slow  # Pilot and signal tests: the full suite runs them

H100 = "NVIDIA H100 80GB HBM3"
HOST = HostReading(cpu_percent=37.0, ram_used_bytes=41 * GIB, ram_total_bytes=125 * GIB)


def gpu(index: int, step: int) -> GpuReading:
    """A GPU warming up: utilisation and memory climb with ``step``."""
    return GpuReading(index=index, name=H100, memory_used_bytes=(20 + step) * GIB,
                      memory_total_bytes=80 * GIB, util_percent=float((step * 7) % 100),
                      temperature_c=55.0 + index, power_w=300.0 + step, power_limit_w=700.0)


def fake_sampler() -> Sampler:
    source = FixedGpuSource([gpu(0, 29), GpuReading(1, H100, responding=False)])
    return Sampler(source, FixedHostSource(HOST), clock=lambda: 0.0)


def snapshot_app(**config: Any) -> EvalApp:
    values = {"model": "models/llama-3-8b", "data": "data/gsm8k-test.jsonl",
              "theme": "textual-dark", "gpu_poll_seconds": 60.0, "lang": "en", **config}
    return EvalApp(EvalConfig(**values), sampler=fake_sampler(), theme_directories=[])


async def fill_gauge_history(pilot: Any) -> None:
    """Wait for the app's own first poll, then add a fixed minute of history."""
    app = pilot.app
    while app.gauges_pane.snapshots_shown < 1:
        await pilot.pause(0.02)
    for step in range(30):
        app.gauges_pane.apply_snapshot(Snapshot(
            time=float(step + 1), host=HOST,
            gpus=(gpu(0, step), GpuReading(1, H100, responding=False))))
    await pilot.pause()


METRICS = RunMetrics.from_dict({
    "metrics": {"exact_match": 0.925, "contains": 0.95, "numeric": 0.9375,
                "token_f1": 0.9612}, "n": 80, "n_total": 80, "n_errors": 0,
           "stderr": {"exact_match": 0.0296, "contains": 0.0245, "numeric": 0.0272,
                      "token_f1": 0.0187},
           "batch_size": 16, "fallback_count": 1, "samples_per_s": 41.27,
           "tokens_per_s": 1320.6, "wall_seconds": 2.9})
PROBES = [TuneProbe(**{"batch_size": size, "status": status, "seconds": seconds,
           "samples_per_s": size / seconds if seconds else 0.0,
           "tokens_per_s": 32 * size / seconds if seconds else 0.0,
           "peak_memory_bytes": (22 + size) * GIB if status == "ok" else None,
           "gpu_util_percent": util})
          for size, status, seconds, util in [(1, "ok", 0.5, 31.0), (2, "ok", 0.55, 48.0),
                                              (4, "ok", 0.6, 70.0), (8, "ok", 0.7, 86.0),
                                              (16, "ok", 1.2, 97.0), (32, "oom", 0.0, None)]]


async def finished_run(pilot: Any) -> None:
    await fill_gauge_history(pilot)
    app = pilot.app
    app.apply_event(LogLine(level="WARNING", message="Batch generation failed: CUDA out of "
                            "memory"))
    app.apply_event(TuneFinished(chosen_batch_size=8, mode="power", probes=PROBES))
    app.apply_event(RunFinished(metrics=METRICS))
    app.clear_notifications()  # the toasts fade; the screenshot is of what stays
    await pilot.pause()


def test_main_screen_80x24(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=fill_gauge_history)


def test_main_screen_120x40(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=fill_gauge_history)


def test_results_after_a_run_120x40(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=finished_run)


def test_results_after_a_run_160x48(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(160, 48), run_before=finished_run)
