"""The results pane: the metrics table when a run ends, the tune table after auto-tune.

Both tables stay hidden until they have something to show.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from tui_eval.events import TuneFinished, TuneStep
from tui_eval.formatting import format_duration, format_percent, gib
from tui_eval.results import RunMetrics, TuneProbe, summary_rows

CHOSEN_MARK = "▶"
TUNE_COLUMNS = ("", "batch", "status", "seconds", "samples/s", "tok/s", "peak GiB", "GPU util")


def probe_row(probe: TuneProbe, chosen: bool) -> tuple[str, ...]:
    return (
        CHOSEN_MARK if chosen else "",
        str(probe.batch_size),
        probe.status + (" chosen" if chosen else ""),
        f"{probe.seconds:.2f}" if probe.ok else "-",
        f"{probe.samples_per_s:.2f}" if probe.ok else "-",
        f"{probe.tokens_per_s:.0f}" if probe.ok else "-",
        gib(probe.peak_memory_bytes),
        format_percent(probe.gpu_util_percent),
    )


class ResultsPane(VerticalScroll):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"results--chosen"}
    DEFAULT_CSS = """
    ResultsPane > .results--chosen { color: $success; text-style: bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.metrics: RunMetrics | None = None
        self.probes: list[TuneProbe] = []
        self.chosen_batch_size: int | None = None
        self._tune_title_text = ""
        self.metrics_title = Static("", markup=False, id="metrics-title", classes="table-title")
        self.metrics_table: DataTable[str] = DataTable(
            id="metrics-table", cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.tune_title = Static("", markup=False, id="tune-title", classes="table-title")
        self.tune_table: DataTable[str] = DataTable(
            id="tune-table", cursor_type="row", zebra_stripes=True, show_cursor=False)

    def compose(self) -> ComposeResult:
        # stacked when narrow, side by side when wide (see app.tcss)
        with Container(id="results-blocks"):
            with Vertical(id="metrics-block"):
                yield self.metrics_title
                yield self.metrics_table
            with Vertical(id="tune-block"):
                yield self.tune_title
                yield self.tune_table

    def on_mount(self) -> None:
        self.metrics_table.add_columns("metric", "value")
        self.tune_table.add_columns(*TUNE_COLUMNS)
        self._update_visibility()
        # the chosen row's colour comes from the theme: draw it again when that changes
        self.watch(self.app, "theme", lambda _: self.call_after_refresh(self._redraw_tune),
                   init=False)

    def _update_visibility(self) -> None:
        has_metrics = self.metrics is not None
        has_probes = bool(self.probes)
        self.query_one("#metrics-block").display = has_metrics
        self.query_one("#tune-block").display = has_probes
        self.set_class(not (has_metrics or has_probes), "-empty")

    def clear_metrics(self) -> None:
        self.metrics = None
        self.metrics_table.clear()
        self._update_visibility()

    def show_metrics(self, metrics: RunMetrics) -> None:
        self.metrics = metrics
        self.metrics_table.clear()
        for name, value in summary_rows(metrics, format_duration):
            self.metrics_table.add_row(name, value, key=name)
        title = "Metrics (partial)" if metrics.partial else "Metrics"
        self.metrics_title.update(title)
        self._update_visibility()
        self.call_after_refresh(self.scroll_home, animate=False)

    def start_tune(self) -> None:
        self.probes = []
        self.chosen_batch_size = None
        self._draw_tune("Tuning batch size…")

    def add_probe(self, step: TuneStep) -> None:
        self.probes.append(step.probe())
        self._draw_tune("Tuning batch size…")

    def show_tune(self, event: TuneFinished) -> None:
        self.probes = list(event.probes) or self.probes
        self.chosen_batch_size = event.chosen_batch_size
        self._draw_tune(f"Tune ({event.mode}): chosen batch size {event.chosen_batch_size}")

    def _draw_tune(self, title: str) -> None:
        self.tune_table.clear()
        chosen_style = self.get_component_rich_style("results--chosen")
        for number, probe in enumerate(self.probes):
            chosen = probe.batch_size == self.chosen_batch_size and probe.ok
            cells = probe_row(probe, chosen)
            self.tune_table.add_row(*(Text(cell, style=chosen_style) if chosen else cell
                                      for cell in cells), key=str(number))
        self.tune_title.update(title)
        self._tune_title_text = title
        self._update_visibility()
        # the newest table is the one to look at when the pane is too short for both
        self.call_after_refresh(self.scroll_to_widget, self.query_one("#tune-block"),
                                animate=False)

    def _redraw_tune(self) -> None:
        if self.probes:
            self._draw_tune(self._tune_title_text)

    def metric_cells(self) -> dict[str, str]:
        """What the metrics table shows, name → value (tests compare it with metrics.json)."""
        return {str(self.metrics_table.get_row(key)[0]): str(self.metrics_table.get_row(key)[1])
                for key in self.metrics_table.rows}

    def tune_cells(self) -> list[tuple[str, ...]]:
        return [tuple(str(cell) for cell in self.tune_table.get_row(key))
                for key in self.tune_table.rows]
