"""Screenshots of the main screen compared with the accepted ones in tests/ui/__snapshots__/.

Everything on screen is fixed: fake GPU and host readings, fixed config paths, no clock,
no timestamped log lines. Accept a deliberate change with ``pytest --snapshot-update``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import H100, HOST, METRICS, PROBES, gpu, rank_shares
from tui_eval.config import EvalConfig
from tui_eval.device.monitor import (
    FixedGpuSource,
    FixedHostSource,
    GpuReading,
    Sampler,
    Snapshot,
)
from tui_eval.events import (
    Event,
    LogLine,
    Progress,
    RunFinished,
    RunStarted,
    TuneFinished,
)
from tui_eval.formatting import GIB
from tui_eval.results import (
    EVENTS_FILE,
    BenchResult,
    BenchRow,
    PredictionRow,
    RunConfig,
    RunMetrics,
    write_metrics,
)
from tui_eval.ui.app import EvalApp
from tui_eval.ui.samples import SamplesScreen
from tui_eval.ui.watch_app import WatchApp

pytestmark = pytest.mark.slow  # Pilot and signal tests: the full suite runs them


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


# ── the samples browser ───────────────────────────────────────────────────────────────

def browser_rows() -> list[PredictionRow]:
    """Forty arithmetic samples, every seventh wrong, one failed, one long answer."""
    rows = []
    for index in range(40):
        a, b = 17 * index % 97, 31 * index % 89
        reference = str(a + b)
        prediction: str | None = reference if index % 7 else str(a + b + 1)
        error = None
        if index == 12:
            prediction, error = None, "CUDA out of memory. Tried to allocate 2.00 GiB"
        if index == 5:
            prediction = f"The sum of {a} and {b} is {reference}.\nSo the answer is {reference}."
        right = float(prediction == reference)
        contains = float(prediction is not None and reference in prediction)
        rows.append(PredictionRow(
            index=index, id=f"q{index + 1:03d}", prompt=f"{a}+{b}=", prediction=prediction,
            reference=reference, new_tokens=4, error=error,
            scores={"exact_match": right, "contains": contains, "numeric": contains,
                    "token_f1": right or (0.4 if contains else 0.0)}))
    return rows


@pytest.fixture()
def browser_run(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the run's directory is named relative: nothing varies
    run_dir = Path("run")
    run_dir.mkdir()
    (run_dir / "predictions.jsonl").write_text(
        "".join(row.to_json() + "\n" for row in browser_rows()), encoding="utf-8")
    return run_dir


def open_browser(*keys: str):
    async def run_before(pilot: Any) -> None:
        await fill_gauge_history(pilot)
        await pilot.press("p")
        while not (isinstance(pilot.app.screen, SamplesScreen)
                   and pilot.app.screen.table.row_count == 40):
            await pilot.pause(0.05)
        for key in keys:
            await pilot.press(key)
        await pilot.pause()

    return run_before


def browser_app(run_dir: Path) -> EvalApp:
    app = snapshot_app()
    app.run_dir = run_dir
    return app


def test_samples_browser_80x24(snap_compare, browser_run):
    assert snap_compare(browser_app(browser_run), terminal_size=(80, 24),
                        run_before=open_browser())


def test_samples_browser_wrong_only_120x40(snap_compare, browser_run):
    assert snap_compare(browser_app(browser_run), terminal_size=(120, 40),
                        run_before=open_browser("w"))


def test_one_sample_in_full_80x24(snap_compare, browser_run):
    assert snap_compare(browser_app(browser_run), terminal_size=(80, 24),
                        run_before=open_browser("down", "down", "down", "down", "down",
                                                "enter"))


# ── the tune chart ────────────────────────────────────────────────────────────────────

async def tune_chart(pilot: Any) -> None:
    await fill_gauge_history(pilot)
    pilot.app.apply_event(TuneFinished(chosen_batch_size=8, mode="power", probes=PROBES))
    await pilot.press("g")
    await pilot.pause()


def test_tune_chart_80x24(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=tune_chart)


def test_tune_chart_120x40(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=tune_chart)


@pytest.fixture()
def bench_dir(tmp_path, monkeypatch) -> Path:
    """A bench at 1…32 on an H100, as `tui-eval bench` writes it."""
    monkeypatch.chdir(tmp_path)  # a relative directory: the note does not vary
    rows = [BenchRow(batch_size=size, seconds=seconds, speedup=96.0 / seconds,
                     samples_per_s=200 / seconds, tokens_per_s=6400 / seconds,
                     peak_memory_bytes=int((16.2 + 0.9 * size) * GIB), gpu_util_percent=util)
            for size, seconds, util in [(1, 96.0, 24.0), (2, 51.0, 41.0), (4, 28.5, 63.0),
                                        (8, 17.2, 84.0), (16, 12.9, 95.0), (32, 12.1, 98.0)]]
    Path("bench-h100").mkdir()
    BenchResult(rows, {"model": "models/llama-3-8b", "samples": 200, "max_tokens": 256,
                       "device": "cuda", "device_name": H100}).write(Path("bench-h100"))
    return Path("bench-h100")


async def bench_chart(pilot: Any) -> None:
    await fill_gauge_history(pilot)
    await pilot.press("g")
    await pilot.pause()


def test_bench_chart_80x24(snap_compare, bench_dir):
    assert snap_compare(snapshot_app(output_dir=str(bench_dir)), terminal_size=(80, 24),
                        run_before=bench_chart)


def test_bench_chart_120x40(snap_compare, bench_dir):
    assert snap_compare(snapshot_app(output_dir=str(bench_dir)), terminal_size=(120, 40),
                        run_before=bench_chart)


# ── compare with another run ──────────────────────────────────────────────────────────

@pytest.fixture()
def two_runs(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """The browser's forty samples (run A) and a run B that fixes some and breaks others."""
    monkeypatch.chdir(tmp_path)  # relative directories: nothing varies
    rows_a = browser_rows()
    rows_b = []
    for row in browser_rows():
        reference = row.references[0]
        prediction = row.prediction
        if row.index % 7 == 0 or row.index == 12:
            prediction = reference  # fixed
        elif row.index % 11 == 0:
            prediction = str(int(reference) - 1)  # broken
        right = float(prediction == reference)
        contains = float(prediction is not None and reference in prediction)
        rows_b.append(PredictionRow(
            index=row.index, id=row.id, prompt=row.prompt, prediction=prediction,
            reference=reference, new_tokens=4,
            scores={"exact_match": right, "contains": contains, "numeric": contains,
                    "token_f1": right or (0.4 if contains else 0.0)}))
    dirs = []
    for name, rows, size, speed in (("run-a", rows_a, 8, 41.27), ("run-b", rows_b, 16, 55.1)):
        run_dir = Path(name)
        run_dir.mkdir()
        (run_dir / "predictions.jsonl").write_text(
            "".join(row.to_json() + "\n" for row in rows), encoding="utf-8")
        write_metrics(run_dir, RunMetrics.from_dict({
            "metrics": {}, "n": len(rows), "n_total": len(rows),
            "n_errors": sum(row.error is not None for row in rows), "batch_size": size,
            "samples_per_s": speed, "tokens_per_s": speed * 4,
            "generation_seconds": len(rows) / speed}))
        dirs.append(run_dir)
    return dirs[0], dirs[1]


def open_compare(run_b: Path):
    async def run_before(pilot: Any) -> None:
        from tui_eval.ui.compare import CompareScreen

        await fill_gauge_history(pilot)
        await pilot.press("v")
        await pilot.pause()
        pilot.app.screen.input.value = str(run_b)
        await pilot.press("enter")
        while not isinstance(pilot.app.screen, CompareScreen):
            await pilot.pause(0.05)
        await pilot.pause()

    return run_before


def test_compare_screen_80x24(snap_compare, two_runs):
    run_a, run_b = two_runs
    assert snap_compare(browser_app(run_a), terminal_size=(80, 24),
                        run_before=open_compare(run_b))


def test_compare_screen_120x40(snap_compare, two_runs):
    run_a, run_b = two_runs
    assert snap_compare(browser_app(run_a), terminal_size=(120, 40),
                        run_before=open_compare(run_b))


# ── a run of several processes on a machine of eight GPUs ─────────────────────────────

def eight_gpu_sampler() -> Sampler:
    """Eight GPUs, memory filling from the first to the last."""
    return Sampler(FixedGpuSource([gpu(index, 10 + 7 * index) for index in range(8)]),
                   FixedHostSource(HOST), clock=lambda: 0.0)


def ranked_events(world_size: int = 4) -> list[Event]:
    shares = rank_shares()
    return [
        RunStarted(run_dir="run", total=1000, batch_size=32, model="models/llama-3-8b",
                   device="cuda:0", dtype="bfloat16", pid=os.getpid(), world_size=world_size),
        LogLine(level="WARNING", message="Batch generation failed: CUDA out of memory",
                rank=2),
        Progress(done=sum(share.done for share in shares), total=1000, samples_per_s=35.5,
                 tokens_per_s=1136.0, eta_s=6.3, batch_size=16, fallbacks=1, errors=0,
                 ranks=shares),
    ]


async def ranked_run(pilot: Any) -> None:
    app = pilot.app
    while app.gauges_pane.snapshots_shown < 1:
        await pilot.pause(0.02)
    for event in ranked_events():
        app.apply_event(event)
    await pilot.pause()


def test_four_ranks_on_eight_gpus_80x24(snap_compare):
    app = snapshot_app()
    app.sampler = eight_gpu_sampler()
    assert snap_compare(app, terminal_size=(80, 24), run_before=ranked_run)


def test_four_ranks_on_eight_gpus_120x40(snap_compare):
    app = snapshot_app()
    app.sampler = eight_gpu_sampler()
    assert snap_compare(app, terminal_size=(120, 40), run_before=ranked_run)


@pytest.fixture()
def ranked_run_dir(tmp_path, monkeypatch) -> Path:
    """A run of four processes still going (this process stands for it)."""
    monkeypatch.chdir(tmp_path)  # the run's directory is named relative: nothing varies
    run_dir = Path("run")
    run_dir.mkdir()
    RunConfig(config=EvalConfig(model="models/llama-3-8b", data="data/gsm8k-test.jsonl",
                                batch_size=32, device="cuda").to_dict()).write(run_dir)
    (run_dir / EVENTS_FILE).write_text(
        "".join(json.dumps(event.to_dict()) + "\n" for event in ranked_events()),
        encoding="utf-8")
    return run_dir


def ranked_watch_app(run_dir: Path) -> WatchApp:
    app = WatchApp(run_dir, interval=0.05, sampler=eight_gpu_sampler(), theme_directories=[])
    app.theme = "textual-dark"  # a watcher's theme is its own: fixed for the screenshot
    return app


async def watched(pilot: Any) -> None:
    app = pilot.app
    while app.gauges_pane.snapshots_shown < 1 or app.progress_pane.last is None:
        await pilot.pause(0.02)
    while app.config_pane.values().get("model") != "models/llama-3-8b":
        await pilot.pause(0.02)  # the config pane takes the run's config.json
    await pilot.pause()


def test_watching_four_ranks_on_eight_gpus_80x24(snap_compare, ranked_run_dir):
    assert snap_compare(ranked_watch_app(ranked_run_dir), terminal_size=(80, 24),
                        run_before=watched)


def test_watching_four_ranks_on_eight_gpus_120x40(snap_compare, ranked_run_dir):
    assert snap_compare(ranked_watch_app(ranked_run_dir), terminal_size=(120, 40),
                        run_before=watched)
