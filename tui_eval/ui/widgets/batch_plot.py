"""A plot of rates and peak memory against batch size (textual-plotext): samples/s on the
left axis, peak memory in GiB on the right, batch sizes on a log2 axis so that 1, 2, 4, …
are evenly spaced, and one size marked by a vertical line and its points (the tune's choice,
the bench's fastest). The legend is not drawn inside the plot, where it would cover the
data: ``legend`` is a line to show beside it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual.color import Color
from textual_plotext import PlotextPlot


@dataclass(frozen=True)
class Series:
    label: str
    sizes: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class BatchChart:
    speed: tuple[Series, ...]  # samples/s: the left axis
    memory: tuple[Series, ...]  # peak memory in GiB: the right axis
    marked: int | None = None  # the batch size to mark
    mark_label: str = "chosen"

    @property
    def sizes(self) -> list[int]:
        return sorted({size for series in (*self.speed, *self.memory) for size in series.sizes})

    @property
    def empty(self) -> bool:
        return not self.sizes


LINE_MARKER = "braille"


def log2_sizes(series: Series) -> list[float]:
    return [math.log2(size) for size in series.sizes]


def rgb(color: Color) -> tuple[int, int, int]:
    return (color.r, color.g, color.b)


def css(color: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*color)


class BatchPlot(PlotextPlot):
    """Draws a ``BatchChart``; ``show`` replaces it. Colours follow the app's theme."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.chart: BatchChart | None = None
        self.legend = Text()  # the series' markers in their colours, and the mark

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.replot())

    def show(self, chart: BatchChart) -> None:
        if chart != self.chart:
            self.chart = chart
            self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_figure()
        chart = self.chart
        self.legend = Text()
        if chart is None or chart.empty:
            self.refresh()
            return
        theme = self.app.current_theme
        speed_colors = [rgb(Color.parse(c)) for c in (theme.primary, theme.accent or "cyan")]
        memory_colors = [rgb(Color.parse(c)) for c in (theme.warning or "orange",
                                                       theme.error or "red")]
        drawn = [(series, speed_colors[n % 2], "left", "●")
                 for n, series in enumerate(chart.speed)]
        drawn += [(series, memory_colors[n % 2], "right", "■")
                  for n, series in enumerate(chart.memory)]
        mark_color = rgb(Color.parse(theme.success or "green"))
        if chart.marked is not None:  # under everything else
            plt.vline(math.log2(chart.marked), color=mark_color)
        # the lines first, then every point over them: a line never hides a measurement;
        # no label: plotext's legend would sit on the data
        for series, color, side, _ in drawn:
            plt.plot(log2_sizes(series), list(series.values), marker=LINE_MARKER, color=color,
                     yside=side)
        for series, color, side, point in drawn:
            self.legend.append(f"{point} {series.label}", style=css(color))
            self.legend.append(f" ({side})   ")
        if chart.marked is not None:
            self.legend.append(f"│ {chart.mark_label} {chart.marked}", style=css(mark_color))
        self.legend.rstrip()
        for series, color, side, point in drawn:
            plt.scatter(log2_sizes(series), list(series.values), marker=point, color=color,
                        yside=side)
        sizes = chart.sizes
        positions = [math.log2(size) for size in sizes]
        plt.xticks(positions, [str(size) for size in sizes])
        plt.xlim(positions[0] - 0.5, positions[-1] + 0.5)  # room for the end points
        plt.xlabel("batch size")
        # both axes from zero: a flat memory line stays flat, not stretched to the height
        for side, axis, label in (("left", chart.speed, "samples/s"),
                                  ("right", chart.memory, "peak GiB")):
            if axis:
                # plotext takes yside; textual-plotext's type stubs leave it out
                plt.ylabel(label, yside=side)  # type: ignore[call-arg]
                plt.ylim(0, max(v for series in axis for v in series.values) * 1.05 or 1.0,
                         yside=side)  # type: ignore[arg-type]
        if chart.marked is not None:
            # the marked size's own points, drawn last in the theme's success colour, and
            # its name on the zero row below them, where the rising lines seldom are
            mark = math.log2(chart.marked)
            color = mark_color
            for series, _, side, _ in drawn:
                if chart.marked in series.sizes:
                    value = series.values[series.sizes.index(chart.marked)]
                    plt.scatter([mark], [value], marker="◆", color=color, yside=side)
            edge: Literal["left", "center", "right"] = (
                "left" if chart.marked == sizes[0] and len(sizes) > 1
                else "right" if chart.marked == sizes[-1] and len(sizes) > 1 else "center")
            plt.text(f"{chart.mark_label} {chart.marked}", mark, 0.0, color=color,
                     alignment=edge,
                     yside="left" if chart.speed else "right")
        self.refresh()

