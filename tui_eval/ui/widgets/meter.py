"""A one-line horizontal bar with a label and a figure: ``mem ██████░░░░ 12.3/79.6 GiB``."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

FILLED = "█"
EMPTY = "░"


class Meter(Widget):
    """``fraction`` of the bar is filled (None: unknown, the bar stays empty); past
    ``warn_above`` the fill takes the warning colour."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "meter--label", "meter--filled", "meter--empty", "meter--warn", "meter--figure",
    }
    DEFAULT_CSS = """
    Meter { height: 1; }
    Meter > .meter--label { color: $text-muted; }
    Meter > .meter--filled { color: $primary; }
    Meter > .meter--empty { color: $foreground 25%; }
    Meter > .meter--warn { color: $warning; }
    Meter > .meter--figure { color: $foreground; }
    """

    fraction: reactive[float | None] = reactive(None)
    figure: reactive[str] = reactive("")

    def __init__(self, label: str, *, label_width: int = 5, warn_above: float = 0.9,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.label = label
        self.label_width = label_width
        self.warn_above = warn_above

    def show(self, fraction: float | None, figure: str) -> None:
        self.fraction = fraction
        self.figure = figure

    def render(self) -> Text:
        label = self.label.ljust(self.label_width)
        figure = f" {self.figure}" if self.figure else ""
        width = max(self.size.width - len(label) - len(figure), 0)
        fraction = min(max(self.fraction or 0.0, 0.0), 1.0)
        filled = round(width * fraction)
        fill_class = ("meter--warn" if self.fraction is not None
                      and self.fraction > self.warn_above else "meter--filled")
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(label, self.get_component_rich_style("meter--label"))
        text.append(FILLED * filled, self.get_component_rich_style(fill_class))
        text.append(EMPTY * (width - filled), self.get_component_rich_style("meter--empty"))
        text.append(figure, self.get_component_rich_style("meter--figure"))
        return text
