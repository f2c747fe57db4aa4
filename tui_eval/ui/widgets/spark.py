"""A sparkline on a fixed scale (0–100 %), newest reading on the right.

Textual's own Sparkline scales to the data's min and max, which makes a steady 40 %
look like a full bar; utilisation and memory need an absolute scale.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui_eval.device.monitor import sparkline_columns

BARS = "▁▂▃▄▅▆▇█"


def spark_text(values: list[float | None], width: int) -> str:
    """Bars for values in 0–100; unknown values and empty history are blank."""
    chars = []
    for value in sparkline_columns(values, width):
        if value is None:
            chars.append(" ")
        else:
            level = min(max(value, 0.0), 100.0) / 100.0
            chars.append(BARS[min(int(level * len(BARS)), len(BARS) - 1)])
    return "".join(chars)


class Spark(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"spark--label", "spark--bars"}
    DEFAULT_CSS = """
    Spark { height: 1; }
    Spark > .spark--label { color: $text-muted; }
    Spark > .spark--bars { color: $secondary; }
    """

    values: reactive[tuple[float | None, ...]] = reactive(tuple)

    def __init__(self, label: str, *, label_width: int = 5, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.label = label
        self.label_width = label_width

    def render(self) -> Text:
        label = self.label.ljust(self.label_width)
        width = max(self.size.width - len(label), 0)
        text = Text(no_wrap=True)
        text.append(label, self.get_component_rich_style("spark--label"))
        text.append(spark_text(list(self.values), width),
                    self.get_component_rich_style("spark--bars"))
        return text
