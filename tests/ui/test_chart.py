"""The chart screen (g, and tui-eval watch BENCH_DIR): the auto-tune's probes and a bench
directory's rows as samples/s and peak memory against batch size."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from tui_eval.cli import main
from tui_eval.config import EvalConfig
from tui_eval.device.monitor import FixedGpuSource, FixedHostSource, HostReading, Sampler
from tui_eval.formatting import GIB
from tui_eval.results import BenchResult, TuneProbe
from tui_eval.ui.app import EvalApp
from tui_eval.ui.chart import (
    BENCH_TAB,
    TUNE_TAB,
    ChartScreen,
    bench_chart,
    read_bench_chart,
    tune_chart,
)
from tui_eval.ui.watch_app import BenchChartApp
from tui_eval.ui.widgets.batch_plot import BatchPlot, Series

PROBES = [TuneProbe(2, "ok", 0.5, 4.0, 128.0, 3 * GIB, None),
          TuneProbe(1, "ok", 0.5, 2.0, 64.0, 2 * GIB, None),
          TuneProbe(4, "oom", 0.1, 0.0, 0.0, None, None)]

# bench.json as `tui-eval bench` writes it (engine.benching), with two sizes' peaks unknown
BENCH = {"rows": [
    {"batch_size": size, "seconds": seconds, "speedup": 12.0 / seconds,
     "samples_per_s": 24.0 / seconds, "tokens_per_s": 96.0 / seconds,
     "peak_memory_bytes": peak, "gpu_util_percent": None, "fallbacks": 0,
     "final_batch_size": size, "pairs_per_s": None, "compile": "off",
     "compile_seconds": 0.0, "requested_compile": "off"}
    for size, seconds, peak in [(1, 12.0, GIB), (2, 6.5, 2 * GIB), (4, 4.0, None),
                                (8, 3.2, 6 * GIB)]],
    "model": "models/tiny", "data": "qa.jsonl", "samples": 24, "max_tokens": 4,
    "device": "cpu", "device_name": "x86_64 CPU", "dtype": "float32"}


def write_bench(directory: Path, data: dict = BENCH) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.json").write_text(json.dumps(data), encoding="utf-8")
    (directory / "bench.md").write_text("# tui-eval bench\n\n| batch_size |\n", encoding="utf-8")
    return directory


def test_the_tune_chart_draws_the_probes_that_fitted_and_marks_the_choice() -> None:
    chart = tune_chart(PROBES, chosen=2)
    assert chart.speed == (Series("samples/s", (1, 2), (2.0, 4.0)),)  # sorted by size
    assert chart.memory == (Series("peak GiB", (1, 2), (2.0, 3.0)),)
    assert (chart.marked, chart.mark_label, chart.sizes) == (2, "chosen", [1, 2])
    assert tune_chart(PROBES, chosen=None).marked is None  # still tuning
    assert tune_chart([], chosen=None).empty


def test_the_bench_chart_reads_bench_json_and_marks_the_fastest(tmp_path: Path) -> None:
    note, chart = read_bench_chart(write_bench(tmp_path / "b"))
    assert chart is not None
    assert chart.speed == (Series("samples/s", (1, 2, 4, 8),
                                  (2.0, 24.0 / 6.5, 6.0, 7.5)),)
    assert chart.memory == (Series("peak GiB", (1, 2, 8), (1.0, 2.0, 6.0)),)  # no reading: no point
    assert (chart.marked, chart.mark_label) == (8, "fastest")
    assert note == f"{tmp_path / 'b'}: 4 sizes, models/tiny, x86_64 CPU, 24 samples"


def test_compile_settings_compared_are_series_of_their_own() -> None:
    rows = [{**BENCH["rows"][0], "requested_compile": mode, "samples_per_s": rate}
            for mode, rate in (("on", 5.0), ("off", 3.0))]
    chart = bench_chart(BenchResult.from_dict({"rows": rows}))
    assert [(s.label, s.values) for s in chart.speed] == [("samples/s compile on", (5.0,)),
                                                          ("samples/s compile off", (3.0,))]


def test_no_bench_or_a_broken_one_says_so(tmp_path: Path) -> None:
    assert read_bench_chart(None)[1] is None
    note, chart = read_bench_chart(tmp_path)
    assert chart is None and note.startswith("no bench results: run tui-eval bench -o DIR")
    (tmp_path / "bench.json").write_text("{", encoding="utf-8")
    note, chart = read_bench_chart(tmp_path)
    assert chart is None and note.startswith(f"{tmp_path / 'bench.json'}:1: invalid JSON")


def test_watch_no_ui_of_a_bench_prints_its_table(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    bench = write_bench(tmp_path / "b")
    assert main(["watch", "--no-ui", str(bench)]) == 0
    assert capsys.readouterr().out == "# tui-eval bench\n\n| batch_size |\n"


# ── in the app ────────────────────────────────────────────────────────────────────────

def app_with_output(output_dir: Path) -> EvalApp:
    sampler = Sampler(FixedGpuSource(unavailable="no NVIDIA driver: CPU/RAM only"),
                      FixedHostSource(HostReading(12.0, 2 * GIB, 8 * GIB)), clock=lambda: 0.0)
    return EvalApp(EvalConfig(model="m", data="d.jsonl", output_dir=str(output_dir),
                              theme="textual-dark", gpu_poll_seconds=60.0),
                   sampler=sampler, theme_directories=[])


@pytest.mark.slow
def test_g_shows_the_output_directorys_bench(tmp_path: Path) -> None:
    asyncio.run(g_shows_the_bench(write_bench(tmp_path / "bench")))


async def g_shows_the_bench(bench: Path) -> None:
    app = app_with_output(bench)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("g")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ChartScreen)
        # no auto-tune yet: the bench first
        assert screen.query_one("#chart-tabs").active == BENCH_TAB
        plot = screen.query_one("#bench-plot", BatchPlot)
        assert plot.display and plot.chart == read_bench_chart(bench)[1]
        assert plot.chart.speed[0].values == (2.0, 24.0 / 6.5, 6.0, 7.5)
        assert plot.chart.memory[0].sizes == (1, 2, 8)
        drawn = plot.render().plain
        assert "fastest 8" in drawn and "batch size" in drawn
        assert str(screen.query_one("#bench-note").render()).endswith("24 samples")
        await pilot.press("t")  # another theme: the plot is drawn again in its colours
        while app.theme == "textual-dark":
            await pilot.pause(0.05)
        await pilot.pause()
        assert "fastest 8" in plot.render().plain
        await pilot.press("1")
        assert screen.query_one("#chart-tabs").active == TUNE_TAB
        assert not screen.query_one("#tune-plot").display  # no probes, only the note
        await pilot.press("escape")
        assert not isinstance(app.screen, ChartScreen)


@pytest.mark.slow
def test_a_bench_finishing_while_the_chart_is_open_is_drawn(tmp_path: Path) -> None:
    asyncio.run(bench_written_later(tmp_path / "later"))


async def bench_written_later(bench: Path) -> None:
    app = app_with_output(bench)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("g", "2")
        screen = app.screen
        assert not screen.query_one("#bench-plot").display
        write_bench(bench)
        screen.draw()  # what the screen's 1 s timer does
        await pilot.pause()
        assert screen.query_one("#bench-plot", BatchPlot).chart.marked == 8


@pytest.mark.slow
def test_watch_of_a_bench_directory_opens_its_chart_alone(tmp_path: Path) -> None:
    app = BenchChartApp(write_bench(tmp_path / "b"))
    asyncio.run(bench_alone(app))
    assert app.return_code == 0


async def bench_alone(app: BenchChartApp) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ChartScreen)
        assert not screen.query("#tune-plot")  # a bench only: one tab
        assert screen.query_one("#bench-plot", BatchPlot).chart.speed[0].sizes == (1, 2, 4, 8)
        await pilot.press("escape")
        await pilot.pause()


@pytest.mark.slow
def test_the_legend_sits_beside_the_plot_and_a_line_marks_the_size(tmp_path: Path) -> None:
    asyncio.run(legend_and_mark(write_bench(tmp_path / "bench")))


async def legend_and_mark(bench: Path) -> None:
    app = app_with_output(bench)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("g")
        await pilot.pause()
        screen = app.screen
        plot = screen.query_one("#bench-plot", BatchPlot)
        rows = plot.render().plain.splitlines()
        # the series are named once each, as their axes' titles: no legend over the data
        assert sum(row.count("peak GiB") for row in rows) == 1
        assert sum(row.count("samples/s") for row in rows) == 1
        legend = str(screen.query_one("#bench-legend").render())
        assert legend == "● samples/s (left)   ■ peak GiB (right)   │ fastest 8"
        # a vertical line at size 8, the fastest: one column of │ through the plot's rows
        counts = Counter(n for row in rows for n, char in enumerate(row) if char == "│")
        frame = {min(counts), max(counts)}  # the axes' own lines, left and right
        inside = [count for column, count in counts.items() if column not in frame]
        assert max(inside, default=0) >= len(rows) // 2
