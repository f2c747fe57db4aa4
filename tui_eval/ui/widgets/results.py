"""The results pane: the metrics table when a run ends, the tune table after auto-tune.

Both tables stay hidden until they have something to show. The tune table shows the
columns that fit its room: the pane's width, less the metrics block when the two sit side
by side (a wide terminal); on a narrow one the less telling figures go first, rather than
the table being cut at its right edge. The room is measured after layout, so the table is
fitted again whenever the pane or either block changes size.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Container, Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from tui_eval.events import TuneFinished, TuneStep
from tui_eval.formatting import format_duration, format_percent, gib
from tui_eval.reports.summary import summary_rows
from tui_eval.results import RunMetrics, TuneProbe

CHOSEN_MARK = "▶"
TUNE_COLUMNS = ("", "batch", "status", "seconds", "samples/s", "tok/s", "peak GiB", "GPU util")
# The first to go when the pane is too narrow for every column; the size, samples/s and
# peak memory always stay.
TUNE_DROP_ORDER = ("tok/s", "seconds", "GPU util", "status")
CELL_PADDING = 2  # a DataTable cell's padding, one column on each side


def probe_row(probe: TuneProbe, chosen: bool) -> tuple[str, ...]:
    return (
        CHOSEN_MARK if chosen else "",
        str(probe.batch_size),
        probe.status + (" chosen" if chosen else ""),
        f"{probe.seconds:.2f}" if probe.has_rate else "-",
        f"{probe.samples_per_s:.2f}" if probe.has_rate else "-",
        f"{probe.tokens_per_s:.0f}" if probe.has_rate else "-",
        gib(probe.peak_memory_bytes),
        format_percent(probe.gpu_util_percent),
    )


def fitting_columns(rows: list[tuple[str, ...]], width: int) -> tuple[str, ...]:
    """The tune columns to show in ``width`` cells, in table order."""
    widths = {name: max([len(name)] + [len(row[i]) for row in rows]) + CELL_PADDING
              for i, name in enumerate(TUNE_COLUMNS)}
    shown = list(TUNE_COLUMNS)
    for name in TUNE_DROP_ORDER:
        if sum(widths[column] for column in shown) <= width:
            break
        shown.remove(name)
    return tuple(shown)


class Block(Vertical):
    """A table and its title; tells the pane when its size changes (a block's Resize does
    not reach the pane otherwise)."""

    def on_resize(self, event: events.Resize) -> None:
        pane = next((node for node in self.ancestors if isinstance(node, ResultsPane)), None)
        if pane is not None:
            pane.fit_tune_columns()


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
        self._drawn_chosen_style: Style | None = None
        self.tune_columns: tuple[str, ...] = TUNE_COLUMNS
        self.metrics_title = Static("", markup=False, id="metrics-title", classes="table-title")
        self.metrics_table: DataTable[str] = DataTable(
            id="metrics-table", cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.tune_title = Static("", markup=False, id="tune-title", classes="table-title")
        self.tune_table: DataTable[str | Text] = DataTable(
            id="tune-table", cursor_type="row", zebra_stripes=True, show_cursor=False)

    def compose(self) -> ComposeResult:
        # stacked when narrow, side by side when wide (see app.tcss)
        with Container(id="results-blocks"):
            with Block(id="metrics-block"):
                yield self.metrics_title
                yield self.metrics_table
            with Block(id="tune-block"):
                yield self.tune_title
                yield self.tune_table

    def on_mount(self) -> None:
        self.metrics_table.add_columns("metric", "value")
        self._update_visibility()

    def notify_style_update(self) -> None:
        # the chosen row's colour comes from the theme: draw it again when that changes
        super().notify_style_update()
        if self._drawn_chosen_style is not None and self.is_mounted and \
                self.get_component_rich_style("results--chosen") != self._drawn_chosen_style:
            self.call_after_refresh(self._redraw_tune)

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
        self._draw_tune(f"Tune ({event.mode}): chosen batch size {event.chosen_batch_size} "
                        "· g: chart")

    def _draw_tune(self, title: str) -> None:
        chosen_style = self._drawn_chosen_style = self.get_component_rich_style(
            "results--chosen")
        rows = [(probe_row(probe, self._is_chosen(probe)), self._is_chosen(probe))
                for probe in self.probes]
        self.tune_columns = fitting_columns([cells for cells, _ in rows], self.tune_room())
        positions = [TUNE_COLUMNS.index(name) for name in self.tune_columns]
        self.tune_table.clear(columns=True)
        self.tune_table.add_columns(*self.tune_columns)
        for number, (cells, chosen) in enumerate(rows):
            shown = [cells[i] for i in positions]
            self.tune_table.add_row(*(Text(cell, style=chosen_style) if chosen else cell
                                      for cell in shown), key=str(number))
        self.tune_title.update(title)
        self._tune_title_text = title
        self._update_visibility()
        # the newest table is the one to look at when the pane is too short for both
        self.call_after_refresh(self.scroll_to_widget, self.query_one("#tune-block"),
                                animate=False)

    def _is_chosen(self, probe: TuneProbe) -> bool:
        return probe.batch_size == self.chosen_batch_size and probe.has_rate

    def tune_room(self) -> int:
        """The cells the tune table may take: the pane's width, less the metrics block and
        its margin when the blocks sit side by side (as laid out last)."""
        width = self.scrollable_content_region.width
        blocks = self.query_one("#results-blocks")
        metrics_block = self.query_one("#metrics-block")
        if blocks.styles.layout is not None and blocks.styles.layout.name == "horizontal" \
                and metrics_block.display:
            width -= metrics_block.outer_size.width + metrics_block.styles.margin.right
        return max(0, width)

    def fit_tune_columns(self) -> None:
        """Redraw the tune table when the columns that fit its room have changed."""
        rows = [probe_row(probe, self._is_chosen(probe)) for probe in self.probes]
        if rows and fitting_columns(rows, self.tune_room()) != self.tune_columns:
            self._redraw_tune()

    def on_resize(self) -> None:
        self.fit_tune_columns()

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
