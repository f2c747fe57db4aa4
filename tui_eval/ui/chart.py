"""The chart screen (key ``g``; ``tui-eval watch BENCH_DIR``): samples/s and peak memory
against batch size, for the latest auto-tune (its probes, the chosen size marked) and for
a bench directory's results (bench.json, the fastest size marked).

tune.json, the log's tune table and bench.md stay the figures for scripts; this reads the
same types (``TuneProbe``, ``BenchResult``) and draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from tui_eval.errors import UsageError
from tui_eval.formatting import GIB
from tui_eval.results import BenchResult, BenchRow, TuneProbe, holds_bench
from tui_eval.ui.widgets.batch_plot import BatchChart, BatchPlot, Series

TUNE_TAB = "tune-tab"
BENCH_TAB = "bench-tab"

ProbesSource = Callable[[], tuple[list[TuneProbe], int | None]]
BenchDirSource = Callable[[], Path | None]


def tune_chart(probes: list[TuneProbe], chosen: int | None) -> BatchChart:
    """The probes that fitted, and a size the tuner predicted without probing it; one that
    ran out of memory has no rate to draw."""
    fitted = sorted((p for p in probes if p.has_rate), key=lambda p: p.batch_size)
    measured = [p for p in fitted if p.peak_memory_bytes is not None]
    speed = Series("samples/s", tuple(p.batch_size for p in fitted),
                   tuple(p.samples_per_s for p in fitted))
    memory = Series("peak GiB", tuple(p.batch_size for p in measured),
                    tuple((p.peak_memory_bytes or 0) / GIB for p in measured))
    marked = chosen if any(p.batch_size == chosen for p in fitted) else None
    return BatchChart(tuple(s for s in (speed,) if s.sizes),
                      tuple(s for s in (memory,) if s.sizes), marked, "chosen")


def tune_note(probes: list[TuneProbe], chosen: int | None, *, can_tune: bool = True) -> str:
    """``can_tune``: the app, where a tunes; a watcher only waits for the run's own."""
    if not probes:
        if not can_tune:
            return ("no auto-tune in this run: a run with batch size auto draws its probes "
                    "here as they come")
        return ("no auto-tune yet: press a (or run with batch size auto) and its probes "
                "are drawn here")
    oom = [str(p.batch_size) for p in probes if not p.has_rate]
    predicted = [str(p.batch_size) for p in probes if p.has_rate and not p.ok]
    choice = f"chosen batch size {chosen}" if chosen else "tuning…"
    return (f"{len(probes) - len(predicted)} probes, {choice}"
            + (f" (predicted: {', '.join(predicted)})" if predicted else "")
            + (f"; out of memory at {', '.join(oom)}" if oom else ""))


def bench_chart(result: BenchResult) -> BatchChart:
    """One series per compile setting compared (``--compile on,off``); the fastest row is
    marked."""
    groups: dict[str, list[BenchRow]] = {}
    for row in result.rows:
        groups.setdefault(row.requested_compile, []).append(row)
    speed, memory = [], []
    for mode, rows in groups.items():
        rows = sorted(rows, key=lambda r: r.batch_size)
        tail = f" compile {mode}" if len(groups) > 1 else ""
        speed.append(Series("samples/s" + tail, tuple(r.batch_size for r in rows),
                            tuple(r.samples_per_s for r in rows)))
        measured = [r for r in rows if r.peak_memory_bytes is not None]
        memory.append(Series("peak GiB" + tail, tuple(r.batch_size for r in measured),
                             tuple((r.peak_memory_bytes or 0) / GIB for r in measured)))
    fastest = max(result.rows, key=lambda r: r.samples_per_s, default=None)
    return BatchChart(tuple(s for s in speed if s.sizes), tuple(s for s in memory if s.sizes),
                      fastest.batch_size if fastest else None, "fastest")


def bench_note(bench_dir: Path, result: BenchResult) -> str:
    about = [str(result.context[key]) for key in ("model", "device_name", "samples")
             if result.context.get(key) not in (None, "")]
    if "samples" in result.context:
        about[-1] += " samples"
    return f"{bench_dir}: " + ", ".join([f"{len(result.rows)} sizes", *about])


def read_bench_chart(bench_dir: Path | None) -> tuple[str, BatchChart | None]:
    """The note above the bench plot and the chart, read from bench.json."""
    if bench_dir is None or not holds_bench(bench_dir):
        return ("no bench results: run tui-eval bench -o DIR, then set the output "
                "directory to DIR (or tui-eval watch DIR)", None)
    try:
        result = BenchResult.read(bench_dir)
    except UsageError as exc:
        return str(exc), None
    return bench_note(bench_dir, result), bench_chart(result)


class ChartScreen(Screen[None]):
    """``probes`` and ``bench_dir`` are asked again every second: a tune still going grows,
    and a bench finishing writes its bench.json. ``probes=None``: a bench only."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the run"),
        Binding("1", "show_tab('tune-tab')", "Tune", tooltip="The latest auto-tune's probes"),
        Binding("2", "show_tab('bench-tab')", "Bench",
                tooltip="The bench results of the output directory"),
    ]

    def __init__(self, probes: ProbesSource | None, bench_dir: BenchDirSource,
                 *, initial: str | None = None, can_tune: bool = True) -> None:
        super().__init__()
        self.can_tune = can_tune
        self.probes_of = probes
        self.bench_dir_of = bench_dir
        self.initial = initial or (TUNE_TAB if probes is not None else BENCH_TAB)
        self.tune_note = Static("", markup=False, id="tune-note", classes="chart-note")
        self.bench_note = Static("", markup=False, id="bench-note", classes="chart-note")
        self.tune_plot = BatchPlot(id="tune-plot")
        self.bench_plot = BatchPlot(id="bench-plot")
        self.tune_legend = Static("", id="tune-legend", classes="chart-legend")
        self.bench_legend = Static("", id="bench-legend", classes="chart-legend")

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial=self.initial, id="chart-tabs"):
            if self.probes_of is not None:
                with TabPane("Auto-tune", id=TUNE_TAB):
                    yield self.tune_note
                    yield self.tune_legend
                    yield self.tune_plot
            with TabPane("Bench", id=BENCH_TAB):
                yield self.bench_note
                yield self.bench_legend
                yield self.bench_plot
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "chart"
        self.draw()
        self.set_interval(1.0, self.draw)

    def draw(self) -> None:
        if self.probes_of is not None:
            probes, chosen = self.probes_of()
            self.tune_note.update(tune_note(probes, chosen, can_tune=self.can_tune))
            self.tune_plot.show(tune_chart(probes, chosen))
            self.tune_plot.display = bool(probes)
            self.tune_legend.update(self.tune_plot.legend)
        note, chart = read_bench_chart(self.bench_dir_of())
        self.bench_note.update(note)
        self.bench_plot.display = chart is not None
        if chart is not None:
            self.bench_plot.show(chart)
        self.bench_legend.update(self.bench_plot.legend if chart is not None else "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # a bench alone has one tab: nothing to switch to
        return not (action == "show_tab" and self.probes_of is None)

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_back(self) -> None:
        self.dismiss()
