"""The log pane: the run's log lines exactly as run.log has them, coloured by level.

Lines are kept as (level, text) so they can be drawn again in the new colours when the
theme changes and wrapped again when the pane is resized.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from tui_eval.events import LogLine, format_log_line

MAX_LINES = 5000
LEVEL_CLASSES = {"INFO": "log--info", "WARNING": "log--warning", "ERROR": "log--error",
                 "NOTE": "log--note"}


class LogPane(RichLog):
    """``NOTE`` lines are the app's own remarks (not in run.log), drawn muted."""

    COMPONENT_CLASSES: ClassVar[set[str]] = set(LEVEL_CLASSES.values())
    DEFAULT_CSS = """
    LogPane > .log--info { color: $foreground; }
    LogPane > .log--warning { color: $warning; text-style: bold; }
    LogPane > .log--error { color: $error; text-style: bold; }
    LogPane > .log--note { color: $text-muted; text-style: italic; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=True, markup=False, highlight=False,
                         max_lines=MAX_LINES, min_width=1, auto_scroll=True)
        self.entries: deque[tuple[str, str]] = deque(maxlen=MAX_LINES)
        self._drawn_width = 0

    def on_mount(self) -> None:
        # redraw once the new theme's styles are in place
        self.watch(self.app, "theme", lambda _: self.call_after_refresh(self._redraw),
                   init=False)

    def add_event(self, event: LogLine) -> None:
        self.add_line(event.level, format_log_line(event))

    def add_line(self, level: str, text: str) -> None:
        self.entries.append((level, text))
        self._draw(level, text)

    def _draw(self, level: str, text: str) -> None:
        style = self.get_component_rich_style(LEVEL_CLASSES.get(level, "log--info"))
        # follow new lines only while the reader is at the bottom
        at_end = self.is_vertical_scroll_end or self.max_scroll_y == 0
        self.write(Text(text, style=style), scroll_end=at_end)

    def _redraw(self) -> None:
        self.clear()
        for level, text in self.entries:
            self._draw(level, text)
        self.scroll_end(animate=False)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._drawn_width and self.entries:
            self._drawn_width = event.size.width
            self.call_after_refresh(self._redraw)
        self._drawn_width = event.size.width

    def plain_lines(self) -> list[str]:
        return [text for _, text in self.entries]
