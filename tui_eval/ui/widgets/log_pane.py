"""The log pane: the run's log lines as run.log has them, coloured by level; a table row
(the tuner logs its table line by line) is drawn without its time stamp and never wrapped,
so that its columns line up.

Lines are kept as (level, text) so they can be drawn again in the new colours when the
theme changes and wrapped again when the pane is resized. The pane follows the newest line
until the reader scrolls up, and again once they scroll back to the end; a pane that
follows keeps following when the layout shrinks it (the Results pane appearing below).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.widgets import RichLog

from tui_eval.events import LogLine, format_log_line

MAX_LINES = 5000
LEVEL_CLASSES = {"INFO": "log--info", "WARNING": "log--warning", "ERROR": "log--error",
                 "NOTE": "log--note"}
# A row of a table logged line by line (the tuner's): "| 8 | ok | … |"
TABLE_ROW = re.compile(r"^\|.*\|$")


@dataclass(frozen=True)
class LogEntry:
    level: str
    text: str  # the line as run.log has it
    shown: str  # what the pane draws: a table row without its time stamp
    table_row: bool  # drawn unwrapped, so that its columns stay aligned


def log_entry(event: LogLine, reword: Callable[[str], str] | None = None) -> LogEntry:
    """``reword``: what the pane shows instead of the line's text (the app names its fields
    where run.log names flags)."""
    text = format_log_line(event)
    if TABLE_ROW.match(event.message):
        return LogEntry(event.level, text, event.message, table_row=True)
    return LogEntry(event.level, text, reword(text) if reword else text, table_row=False)


class LogPane(RichLog):
    """``NOTE`` lines are the app's own remarks (not in run.log), drawn muted."""

    COMPONENT_CLASSES: ClassVar[set[str]] = set(LEVEL_CLASSES.values())
    DEFAULT_CSS = """
    LogPane > .log--info { color: $foreground; }
    LogPane > .log--warning { color: $warning; text-style: bold; }
    LogPane > .log--error { color: $error; text-style: bold; }
    LogPane > .log--note { color: $text-muted; text-style: italic; }
    """

    def __init__(self, *, id: str | None = None,
                 reword: Callable[[str], str] | None = None) -> None:
        self.reword = reword
        super().__init__(id=id, wrap=True, markup=False, highlight=False,
                         max_lines=MAX_LINES, min_width=1, auto_scroll=False)
        self.entries: deque[LogEntry] = deque(maxlen=MAX_LINES)
        self._drawn_width = 0
        self._drawn_styles: dict[str, Style] = {}
        # Whether the latest scroll went to the end. Decided when a scroll starts, from
        # where it goes, not from the position now: a pane the layout just shrank is no
        # longer scrolled to its end, yet its reader did not scroll away; and a line that
        # arrives while an animated scroll is under way must not undo where it goes.
        self.following = True
        self._end_pending = False

    def watch_scroll_target_y(self, new_value: float) -> None:
        self.following = new_value >= self.max_scroll_y

    def add_event(self, event: LogLine) -> None:
        self._add(log_entry(event, self.reword))

    def add_line(self, level: str, text: str) -> None:
        self._add(LogEntry(level, text, text, table_row=False))

    def _add(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        self._draw(entry)

    def _level_styles(self) -> dict[str, Style]:
        return {name: self.get_component_rich_style(name) for name in LEVEL_CLASSES.values()}

    def _draw(self, entry: LogEntry, follow: bool = True) -> None:
        if not self._drawn_styles:
            self._drawn_styles = self._level_styles()
        style = self._drawn_styles[LEVEL_CLASSES.get(entry.level, "log--info")]
        if entry.table_row:
            # one line as wide as the row: the pane scrolls sideways rather than wrap it
            self.write(Text(entry.shown, style=style, no_wrap=True),
                       width=Text(entry.shown).cell_len, scroll_end=False)
        else:
            self.write(Text(entry.shown, style=style), scroll_end=False)
        if follow:
            self._keep_end_later()

    def _keep_end_later(self) -> None:
        """Scroll to the end once the layout is done, if the reader has not scrolled away
        in the meantime (decided then, not now)."""
        if not self._end_pending:
            self._end_pending = True
            self.call_after_refresh(self._keep_end)

    def _keep_end(self) -> None:
        self._end_pending = False
        if self.following:
            self.scroll_end(animate=False, immediate=True)

    def _redraw(self) -> None:
        # where the reader is going: a scroll still under way ends there
        following, scroll_y = self.following, self.scroll_target_y
        self._drawn_styles = self._level_styles()
        self.clear()
        self.following = following  # clearing scrolled to the top; the reader did not
        for entry in self.entries:
            self._draw(entry, follow=False)
        if following:
            self.scroll_end(animate=False, immediate=True)
        else:  # the reader is looking further up: stay about there
            self.scroll_to(y=scroll_y, animate=False, immediate=True)
        self.following = following

    def notify_style_update(self) -> None:
        # New colours (a theme chosen anywhere, even in the command palette, whose screen
        # hides this one until it closes): draw the lines again once the styles are in place.
        super().notify_style_update()
        if self._drawn_styles and self.is_mounted and self._level_styles() != self._drawn_styles:
            self.call_after_refresh(self._redraw)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._drawn_width and self.entries:
            self.call_after_refresh(self._redraw)  # wrap the lines again
        else:
            self._keep_end_later()  # shorter or taller: the end stays in view
        self._drawn_width = event.size.width

    def plain_lines(self) -> list[str]:
        return [entry.text for entry in self.entries]

    def shown_lines(self) -> list[str]:
        """The lines as drawn: a table row without its time stamp."""
        return [entry.shown for entry in self.entries]
