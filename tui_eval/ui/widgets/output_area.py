"""The log above the results: the results take what they need, but never the log's last rows.

CSS cannot say "as tall as its content, but leave the log ``LOG_MIN_ROWS``": an auto
height with a max-height in percent overflows a short terminal, and the log, the pane
that says what is going on, is what gets squeezed. So the results' max height is set
from this area's height whenever it changes.
"""

from __future__ import annotations

from textual import events
from textual.containers import Vertical

LOG_MIN_ROWS = 10  # 8 lines and the border
RESULTS_MAX_SHARE = 0.6  # of a tall area: the log keeps the rest
RESULTS_MIN_ROWS = 5  # a title, a header and a row or two, even when the area is tiny
LOG_ROWS_BESIDE_FOCUSED_RESULTS = 4  # the results focused (key r): the log gives way


def results_max_height(area_height: int, focused: bool = False) -> int:
    """The rows the results may take in an area this tall; more while they have the
    focus, so that a short terminal shows the whole tune table."""
    if focused:
        return max(RESULTS_MIN_ROWS, area_height - LOG_ROWS_BESIDE_FOCUSED_RESULTS)
    share = int(area_height * RESULTS_MAX_SHARE)
    return max(RESULTS_MIN_ROWS, min(share, area_height - LOG_MIN_ROWS))


class OutputArea(Vertical):
    """Holds the log and the results (``#results``), one above the other."""

    def _fit(self) -> None:
        results = self.query_one("#results")
        results.styles.max_height = results_max_height(self.size.height,
                                                       results.has_focus_within)

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self._fit()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        self.call_after_refresh(self._fit)  # the focus has moved on by then
