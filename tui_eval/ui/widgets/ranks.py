"""Each process's share of a run of several, one row per rank under the progress totals:
``r1 cuda:1 ████░░░░ 118/250 11.8/s bs 32 fb 1 ✓``.

The columns line up across the rows. What does not fit the pane's width goes in this
order: the device, then the bar; the figures stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from tui_eval.events import RankProgress

FILLED = "█"
EMPTY = "░"
MIN_BAR = 4
MAX_BAR = 16
FINISHED_MARK = "✓"


@dataclass(frozen=True)
class RankCells:
    """One row's pieces, padded to their column's width; '' for a column left out."""

    label: str
    device: str
    bar_filled: int
    bar_empty: int
    figures: str  # done/total, rate, batch size, fallbacks (and errors when any rank has some)
    mark: str
    finished: bool

    def plain(self) -> str:
        bar = FILLED * self.bar_filled + EMPTY * self.bar_empty
        return " ".join(part for part in (self.label, self.device, bar, self.figures, self.mark)
                        if part)


def rank_cells(ranks: list[RankProgress], width: int) -> list[RankCells]:
    """The rows for ``ranks`` in ``width`` columns."""
    if not ranks:
        return []

    def column(texts: list[str], right: bool = False) -> list[str]:
        size = max(len(text) for text in texts)
        return [text.rjust(size) if right else text.ljust(size) for text in texts]

    labels = column([f"r{rank.rank}" for rank in ranks])
    counts = column([f"{rank.done}/{rank.total}" for rank in ranks], right=True)
    rates = column([f"{rank.samples_per_s:.1f}/s" for rank in ranks], right=True)
    sizes = column([f"bs {rank.batch_size}" for rank in ranks])
    fallbacks = column([f"fb {rank.fallbacks}" for rank in ranks])
    any_errors = any(rank.errors for rank in ranks)
    errors = column([f"err {rank.errors}" for rank in ranks]) if any_errors else None
    figures = [" ".join(parts) for parts in zip(counts, rates, sizes, fallbacks, strict=True)]
    if errors is not None:
        figures = [f"{text} {error}" for text, error in zip(figures, errors, strict=True)]
    devices = column([rank.device for rank in ranks])
    device_width = len(devices[0]) + 1 if devices[0].strip() else 0
    # the fixed part: label, figures and the finished mark, with a space before each
    fixed = len(labels[0]) + 1 + len(figures[0]) + 1 + len(FINISHED_MARK)
    room = width - fixed
    show_device = device_width > 0 and room - device_width >= MIN_BAR + 1
    if show_device:
        room -= device_width
    bar = min(MAX_BAR, room - 1) if room - 1 >= MIN_BAR else 0
    rows = []
    for index, rank in enumerate(ranks):
        filled = round(bar * min(max(rank.done / max(rank.total, 1), 0.0), 1.0))
        rows.append(RankCells(
            label=labels[index], device=devices[index] if show_device else "",
            bar_filled=filled, bar_empty=bar - filled, figures=figures[index],
            mark=FINISHED_MARK if rank.finished else " ", finished=rank.finished))
    return rows


class RankRows(Widget):
    """As many rows as ranks; a finished rank's row is muted and marked."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "ranks--label", "ranks--device", "ranks--filled", "ranks--empty", "ranks--figures",
        "ranks--finished",
    }
    DEFAULT_CSS = """
    RankRows { height: auto; }
    RankRows > .ranks--label { color: $primary; text-style: bold; }
    RankRows > .ranks--device { color: $text-muted; }
    RankRows > .ranks--filled { color: $primary; }
    RankRows > .ranks--empty { color: $foreground 25%; }
    RankRows > .ranks--figures { color: $foreground; }
    RankRows > .ranks--finished { color: $success; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.ranks: list[RankProgress] = []

    def show(self, ranks: list[RankProgress]) -> None:
        if ranks == self.ranks:
            return
        grown = len(ranks) != len(self.ranks)
        self.ranks = list(ranks)
        self.refresh(layout=grown)  # a layout pass only when the number of rows changes

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return len(self.ranks)

    def plain_rows(self) -> list[str]:
        return [cells.plain() for cells in rank_cells(self.ranks, self.size.width)]

    def render(self) -> Text:
        style = self.get_component_rich_style
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for number, cells in enumerate(rank_cells(self.ranks, self.size.width)):
            if number:
                text.append("\n")
            muted = style("ranks--device")
            text.append(cells.label, style("ranks--label"))
            if cells.device:
                text.append(" " + cells.device, muted)
            if cells.bar_filled + cells.bar_empty:
                text.append(" ")
                text.append(FILLED * cells.bar_filled, style("ranks--filled"))
                text.append(EMPTY * cells.bar_empty, style("ranks--empty"))
            text.append(" " + cells.figures, muted if cells.finished else style("ranks--figures"))
            text.append(" " + cells.mark, style("ranks--finished"))
        return text
