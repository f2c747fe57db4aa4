"""The tune chart (key ``g``): samples/s and peak memory against batch size, one bar per
probe, for the latest auto-tune of this app or of the run ``tui-eval watch`` follows.

The bars are drawn here with block characters: two small horizontal bar charts need no
plotting library. tune.json and the log's table stay the figures for scripts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui_eval.formatting import GIB
from tui_eval.results import TuneProbe

BLOCKS = " ▏▎▍▌▋▊▉█"  # eighths of a cell, so that close figures still differ
LABEL_WIDTH = 6  # "bs 256"
FIGURE_WIDTH = 12  # "1234.5 /s", "OOM"


def bar(fraction: float, width: int) -> str:
    """A bar ``fraction`` of ``width`` cells long, to an eighth of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


@dataclass(frozen=True)
class ChartRow:
    label: str
    value: float | None  # None: no bar (the probe ran out of memory, or no reading)
    figure: str
    chosen: bool


def chart_lines(rows: list[ChartRow], width: int, styles: dict[str, Style]) -> Text:
    """One line per row: the label, the bar scaled to the largest value, the figure."""
    room = max(4, width - LABEL_WIDTH - FIGURE_WIDTH - 3)
    top = max((row.value for row in rows if row.value is not None), default=0.0)
    text = Text()
    for row in rows:
        style = styles["chosen"] if row.chosen else styles["bar"]
        fraction = (row.value / top) if row.value is not None and top > 0 else 0.0
        mark = "▶" if row.chosen else " "
        text.append(mark + row.label.rjust(LABEL_WIDTH) + " ", style=style if row.chosen else "")
        text.append(bar(fraction, room), style=style)
        text.append(" " + row.figure, style=style if row.chosen else styles["figure"])
        text.append("\n")
    text.rstrip()
    return text


def speed_rows(probes: list[TuneProbe], chosen: int | None) -> list[ChartRow]:
    return [ChartRow(f"bs {p.batch_size}", p.samples_per_s if p.has_rate else None,
                     f"{p.samples_per_s:.1f} /s" + ("" if p.ok else " predicted")
                     if p.has_rate else "OOM",
                     p.has_rate and p.batch_size == chosen) for p in probes]


def memory_rows(probes: list[TuneProbe], chosen: int | None) -> list[ChartRow]:
    rows = []
    for p in probes:
        peak = p.peak_memory_bytes
        figure = "N/A" if peak is None else f"{peak / GIB:.1f} GiB"
        rows.append(ChartRow(f"bs {p.batch_size}", None if peak is None else peak / GIB,
                             figure + (" OOM" if not p.has_rate else ""),
                             p.has_rate and p.batch_size == chosen))
    return rows


class TuneChartScreen(Screen[None]):
    """``probes`` is asked again when the screen is drawn: a tune still going grows."""

    AUTO_FOCUS = "#chart-body"
    COMPONENT_CLASSES: ClassVar[set[str]] = {"chart--bar", "chart--chosen", "chart--figure"}
    DEFAULT_CSS = """
    TuneChartScreen > .chart--bar { color: $primary; }
    TuneChartScreen > .chart--chosen { color: $success; text-style: bold; }
    TuneChartScreen > .chart--figure { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "back", "Back", tooltip="Back to the run")]

    def __init__(self, probes: Callable[[], tuple[list[TuneProbe], int | None]]) -> None:
        super().__init__()
        self.probes_of = probes
        self.note = Static("", markup=False, id="chart-note")
        self.speed = Static("", id="chart-speed", classes="chart")
        self.memory = Static("", id="chart-memory", classes="chart")

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="chart-body"):
            yield self.note
            yield Static("samples/s by batch size", classes="chart-title")
            yield self.speed
            yield Static("peak memory by batch size", classes="chart-title")
            yield self.memory
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "tune chart"
        self.set_interval(1.0, self.draw)  # a tune still going adds probes

    def on_resize(self) -> None:
        self.draw()

    def notify_style_update(self) -> None:
        super().notify_style_update()  # the bars' colours come from the theme
        if self.is_mounted:
            self.call_after_refresh(self.draw)

    def draw(self) -> None:
        probes, chosen = self.probes_of()
        if not probes:
            self.note.update("no auto-tune yet: press a (or run with batch size auto) and "
                             "its probes are drawn here")
        else:
            choice = f"chosen batch size {chosen}" if chosen else "tuning…"
            self.note.update(f"{len(probes)} probes, {choice}; ▶ marks the choice")
        styles = {"bar": self.get_component_rich_style("chart--bar"),
                  "chosen": self.get_component_rich_style("chart--chosen"),
                  "figure": self.get_component_rich_style("chart--figure")}
        width = self.query_one("#chart-body").scrollable_content_region.width
        for widget, rows in ((self.speed, speed_rows(probes, chosen)),
                             (self.memory, memory_rows(probes, chosen))):
            widget.update(chart_lines(rows, width, styles) if rows else "")

    def action_back(self) -> None:
        self.dismiss()
