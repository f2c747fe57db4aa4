"""One line of plain text that redraws without a layout pass.

Progress and gauge figures change several times a second; a plain ``Static.update``
re-lays out the whole screen each time, which is most of the app's own CPU cost.
"""

from __future__ import annotations

from textual.widgets import Static


class Line(Static):
    DEFAULT_CSS = """
    Line {
        height: 1;
        width: 1fr;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, text: str = "", *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(text, markup=False, id=id, classes=classes)
        self.text = text

    def set(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.update(text, layout=False)
