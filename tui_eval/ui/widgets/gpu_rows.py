"""The gauges of many GPUs, one line each: ``0 H100 ███░░░ 49/80G  45% 55°C 329W``.

The columns line up across the GPUs. The roomiest form that leaves the memory bar at
least ``MIN_BAR`` columns is drawn; on a narrower pane the name goes, then the units,
then power, then temperature.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from tui_eval.device.monitor import GpuReading
from tui_eval.formatting import GIB, NOT_AVAILABLE, gib_pair

FILLED = "█"
EMPTY = "░"
MIN_BAR = 3
MAX_BAR = 20
WARN_ABOVE = 0.9  # memory past this share takes the warning colour, as the cards' meter
NAME_WIDTH = 10
# vendor and family words that every GPU of a machine shares
NAME_NOISE = {"nvidia", "geforce", "tesla", "quadro", "rtx", "gtx"}


def short_gpu_name(name: str) -> str:
    """The model in a GPU's name: 'NVIDIA H100 80GB HBM3' → 'H100', 'NVIDIA A100-SXM4-80GB'
    → 'A100', 'NVIDIA GeForce RTX 4090' → '4090'."""
    words = [word for word in re.split(r"[\s\-_]+", name) if word]
    kept = [word for word in words if word.lower() not in NAME_NOISE] or words
    model = next((word for word in kept if any(ch.isdigit() for ch in word)), None)
    return (model or (kept[0] if kept else ""))[:NAME_WIDTH]


def _memory(reading: GpuReading, roomy: bool) -> str:
    used, total = reading.memory_used_bytes, reading.memory_total_bytes
    if used is None or total is None:
        return NOT_AVAILABLE
    return gib_pair(used, total) if roomy else f"{used / GIB:.0f}/{total / GIB:.0f}G"


def _util(reading: GpuReading, roomy: bool) -> str:
    if reading.util_percent is None:
        return NOT_AVAILABLE
    return f"{'util ' if roomy else ''}{reading.util_percent:.0f}%"


def _temperature(reading: GpuReading, roomy: bool) -> str:
    if reading.temperature_c is None:
        return NOT_AVAILABLE
    return f"{reading.temperature_c:.0f}°{'C' if roomy else ''}"


def _power(reading: GpuReading, roomy: bool) -> str:
    if reading.power_w is None:
        return NOT_AVAILABLE
    if roomy and reading.power_limit_w is not None:
        return f"{reading.power_w:.0f}/{reading.power_limit_w:.0f} W"
    return f"{reading.power_w:.0f}W"


Figure = Callable[[GpuReading, bool], str]


@dataclass(frozen=True)
class Form:
    name: bool
    roomy: bool
    figures: tuple[Figure, ...]


FORMS = (
    Form(name=True, roomy=True, figures=(_util, _temperature, _power)),
    Form(name=True, roomy=False, figures=(_util, _temperature, _power)),
    Form(name=False, roomy=False, figures=(_util, _temperature, _power)),
    Form(name=False, roomy=False, figures=(_util, _temperature)),
    Form(name=False, roomy=False, figures=(_util,)),
)


@dataclass(frozen=True)
class GpuRowCells:
    head: str  # index and (where it fits) the short name
    fraction: float | None  # of memory in use; None: unknown
    bar: int  # columns of the memory bar; 0 for a GPU that does not respond
    figures: str  # memory used/total and the other figures, or why there are none
    responding: bool

    @property
    def filled(self) -> int:
        return round(self.bar * min(max(self.fraction or 0.0, 0.0), 1.0))

    def plain(self) -> str:
        bar = FILLED * self.filled + EMPTY * (self.bar - self.filled)
        return " ".join(part for part in (self.head, bar, self.figures) if part)


def _pad(texts: list[str], right: bool) -> list[str]:
    size = max((len(text) for text in texts), default=0)
    return [text.rjust(size) if right else text.ljust(size) for text in texts]


def _cells(readings: list[GpuReading], form: Form) -> tuple[list[str], list[str]]:
    """Each GPU's head and figures in ``form``, padded to line up."""
    heads = _pad([str(r.index) for r in readings], right=True)
    if form.name:
        names = _pad([short_gpu_name(r.name) for r in readings], right=False)
        heads = [f"{head} {name}" for head, name in zip(heads, names, strict=True)]
    answering = [r for r in readings if r.responding]
    columns = [_pad([_memory(r, form.roomy) for r in answering], right=True)]
    columns += [_pad([figure(r, form.roomy) for r in answering], right=True)
                for figure in form.figures]
    joined = iter([" ".join(parts) for parts in zip(*columns, strict=True)])
    figures = [next(joined) if r.responding else "N/A: not responding" for r in readings]
    return heads, figures


def gpu_row_cells(readings: list[GpuReading], width: int) -> list[GpuRowCells]:
    """One row per GPU in ``width`` columns, in the roomiest form that fits."""
    if not readings:
        return []
    heads: list[str] = []
    figures: list[str] = []
    bar = MIN_BAR
    for form in FORMS:
        heads, figures = _cells(readings, form)
        widest = max((len(text) for text, r in zip(figures, readings, strict=True)
                      if r.responding), default=0)
        room = width - len(heads[0]) - widest - 2  # a space either side of the bar
        bar = max(MIN_BAR, min(MAX_BAR, room))
        if room >= MIN_BAR:
            break  # else the most compact form, its end cut off by the widget
    return [GpuRowCells(head=head, fraction=r.memory_fraction,
                        bar=bar if r.responding else 0, figures=text, responding=r.responding)
            for head, text, r in zip(heads, figures, readings, strict=True)]


class GpuRows(Widget):
    """Every GPU of a snapshot, a line each."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "gpu-rows--head", "gpu-rows--filled", "gpu-rows--warn", "gpu-rows--empty",
        "gpu-rows--figures", "gpu-rows--not-responding",
    }
    DEFAULT_CSS = """
    GpuRows { height: auto; }
    GpuRows > .gpu-rows--head { color: $primary; text-style: bold; }
    GpuRows > .gpu-rows--filled { color: $primary; }
    GpuRows > .gpu-rows--warn { color: $warning; }
    GpuRows > .gpu-rows--empty { color: $foreground 25%; }
    GpuRows > .gpu-rows--figures { color: $foreground; }
    GpuRows > .gpu-rows--not-responding { color: $warning; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.readings: list[GpuReading] = []

    def show(self, readings: list[GpuReading]) -> None:
        if readings == self.readings:
            return
        grown = len(readings) != len(self.readings)
        self.readings = list(readings)
        self.refresh(layout=grown)  # a layout pass only when the number of rows changes

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return len(self.readings)

    def plain_rows(self) -> list[str]:
        return [cells.plain() for cells in gpu_row_cells(self.readings, self.size.width)]

    def render(self) -> Text:
        style = self.get_component_rich_style
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for number, cells in enumerate(gpu_row_cells(self.readings, self.size.width)):
            if number:
                text.append("\n")
            text.append(cells.head, style("gpu-rows--head"))
            if not cells.responding:
                text.append(" " + cells.figures, style("gpu-rows--not-responding"))
                continue
            warn = cells.fraction is not None and cells.fraction > WARN_ABOVE
            text.append(" ")
            text.append(FILLED * cells.filled,
                        style("gpu-rows--warn" if warn else "gpu-rows--filled"))
            text.append(EMPTY * (cells.bar - cells.filled), style("gpu-rows--empty"))
            text.append(" " + cells.figures, style("gpu-rows--figures"))
        return text
