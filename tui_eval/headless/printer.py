"""The headless presenter: prints the engine's events to a terminal or a log file."""

from __future__ import annotations

import re
import shutil
import sys
import time
import unicodedata
from typing import TextIO

from tui_eval.events import Event, Progress, RankProgress, format_log_line
from tui_eval.events.view import Change, RunView
from tui_eval.formatting import format_duration
from tui_eval.reports.summary import summary_rows
from tui_eval.results import RunMetrics

PLAIN_PROGRESS_INTERVAL_S = 5.0
BAR_WIDTH = 24
MIN_BAR_WIDTH = 8


def progress_text(event: Progress) -> str:
    return (f"{event.done}/{event.total} samples | {event.samples_per_s:.2f} samples/s | "
            f"{event.tokens_per_s:.0f} tok/s | ETA {format_duration(event.eta_s)} | "
            f"batch {event.batch_size} | fallbacks {event.fallbacks}")


def medium_progress_text(event: Progress) -> str:
    """The figures without their long names, for an 80-column terminal."""
    text = (f"{event.done}/{event.total} | {event.samples_per_s:.1f} samples/s | "
            f"{event.tokens_per_s:.0f} tok/s | ETA {format_duration(event.eta_s)} | "
            f"bs {event.batch_size}")
    return text + (f" | fallbacks {event.fallbacks}" if event.fallbacks else "")


def short_progress_text(event: Progress) -> str:
    """The figures that matter most, for a narrow terminal."""
    return (f"{event.done}/{event.total} | {event.samples_per_s:.1f}/s | "
            f"ETA {format_duration(event.eta_s)} | bs {event.batch_size}")


def several_ranks(event: Progress) -> bool:
    """A run of several processes: its progress holds each one's share."""
    return len(event.ranks) >= 2


def rank_rates_text(ranks: list[RankProgress]) -> str:
    """'r0 12.1/s r1 11.8/s': each process's rate, for the live line."""
    return " ".join(f"r{rank.rank} {rank.samples_per_s:.1f}/s" for rank in ranks)


def rank_share_text(rank: RankProgress) -> str:
    """'1 118/250 11.8/s bs 32', then fallbacks, errors and 'done' when there are any."""
    text = (f"{rank.rank} {rank.done}/{rank.total} {rank.samples_per_s:.1f}/s "
            f"bs {rank.batch_size}")
    if rank.fallbacks:
        text += f" fb {rank.fallbacks}"
    if rank.errors:
        text += f" err {rank.errors}"
    return text + (" done" if rank.finished else "")


def ranks_text(event: Progress) -> str:
    """Every process's share on one line, for logs."""
    return "ranks: " + " · ".join(rank_share_text(rank) for rank in event.ranks)


def plain_progress_lines(event: Progress, width: int | None = None) -> list[str]:
    """What a log gets for one progress event: the totals, then each process's share in a
    run of several. With a known ``width`` each line fits it: the short figures, and the
    shares cut with '…'."""
    lines = [f"progress: {progress_text(event)}"]
    if several_ranks(event):
        lines.append(ranks_text(event))
    if width is None:
        return lines
    room = max(width - 1, 1)
    for text in (medium_progress_text(event), short_progress_text(event)):
        if len(lines[0]) > room:
            lines[0] = f"progress: {text}"
    return [line if len(line) <= room else line[:room - 1] + "…" for line in lines]


_TABLE_PADDING = re.compile(r" {2,}\|")
# spaces; a run of narrow characters (a word, a path); one wide character (Chinese text
# has no spaces: a line may break between any two of its characters)
_PIECES = re.compile(r"\s+|[^\s\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f"
                     r"\uff00-\uff60\uffe0-\uffe6]+|\S")
INDENT = "    "


def columns(text: str) -> int:
    """The terminal columns ``text`` takes: a wide (CJK) character takes two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def fit_log_line(text: str, width: int) -> list[str]:
    """A log line as lines that fit ``width`` columns, for a terminal (run.log keeps it
    whole): a table row goes without its time stamp, its cells' padding squeezed if need
    be; other lines wrap between words (or Chinese characters), indented, and a word
    longer than the room (a path) stays whole rather than being cut."""
    room = max(width - 1, 20)
    if columns(text) <= room:
        return [text]
    row = text.partition(" - ")[2]
    if row.startswith("|"):
        return [row if columns(row) <= room else _TABLE_PADDING.sub(" |", row)]
    lines: list[str] = []
    line = ""
    for piece in _PIECES.findall(text):
        if piece.isspace():
            line += " " if line.strip() else ""
        elif columns(line + piece) <= room or not line.strip():  # line ends in its space
            line += piece
        else:
            lines.append(line.rstrip())
            line = INDENT + piece
    return [*lines, line.rstrip()]


def terminal_width(stream: TextIO) -> int | None:
    """The columns the printed lines must fit on a terminal; None for a file or a pipe (a
    log, or a reader that wants whole lines), whose lines stay whole."""
    try:
        return shutil.get_terminal_size().columns if stream.isatty() else None
    except (AttributeError, ValueError, OSError):  # a closed or unusual stream
        return None


def fitted(text: str, stream: TextIO) -> str:
    """A message (an error, a warning) for ``stream``: wrapped between words to a
    terminal's width, whole in a file or a pipe."""
    width = terminal_width(stream)
    return text if width is None else "\n".join(fit_log_line(text, width))


def _bar_line(text: str, done_fraction: float, room: int) -> str | None:
    """The bar (as wide as fits, up to BAR_WIDTH) and the text, or None when the bar would
    be narrower than MIN_BAR_WIDTH."""
    bar_width = min(BAR_WIDTH, room - len(text) - 1)
    if bar_width < MIN_BAR_WIDTH:
        return None
    filled = int(bar_width * done_fraction)
    return "█" * filled + "░" * (bar_width - filled) + " " + text


def progress_line(event: Progress, width: int) -> str:
    """One line that fits ``width`` columns: the bar shrinks first, then the text, so the
    terminal never wraps it (a wrapped line cannot be redrawn in place). In a run of
    several processes their rates follow the totals where the whole line fits; they are
    the first thing left out on a narrower terminal."""
    room = max(width - 1, 1)  # the last column would make some terminals wrap
    fraction = event.done / max(event.total, 1)
    if several_ranks(event):
        line = _bar_line(f"{progress_text(event)} | {rank_rates_text(event.ranks)}",
                         fraction, room)
        if line is not None:
            return line
    for text in (progress_text(event), medium_progress_text(event),
                 short_progress_text(event)):
        line = _bar_line(text, fraction, room)
        if line is not None:
            return line
        if len(text) <= room:
            return text
    return short_progress_text(event)[:room]


def metrics_table(metrics: RunMetrics) -> str:
    """A short plain-text table of the scores and the run's figures."""
    rows = summary_rows(metrics)
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines)


class HeadlessPrinter:
    """On a TTY: a live one-line progress bar that fits the terminal's width. Elsewhere
    (nohup, CI): one plain progress line at most every few seconds, so logs stay readable.
    Each event goes into ``view``; what it changed is printed from there."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None,
                 width: int | None = None) -> None:
        self.stream: TextIO | None = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.width = width  # None: ask the terminal at each update (it may be resized)
        self.view = RunView()
        self._last_plain = 0.0
        self._bar_shown = False

    def _clear_bar(self) -> None:
        assert self.stream is not None
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self._bar_shown = False

    def _print(self, text: str) -> None:
        assert self.stream is not None
        self._clear_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: Event) -> None:
        if self.stream is None:
            return
        try:
            self._show(event)
        except OSError:
            # the terminal went away (an SSH session closed under a process that does not
            # get the hang-up, such as a rank started by --gpus): run.log keeps the record
            self.stream = None

    def _width(self) -> int | None:
        assert self.stream is not None
        return self.width or terminal_width(self.stream)

    def _print_fitted(self, text: str) -> None:
        width = self._width()
        for line in [text] if width is None else fit_log_line(text, width):
            self._print(line)

    def _show(self, event: Event) -> None:
        view = self.view
        change = view.apply(event)
        if change is Change.LOG:
            self._print_fitted(format_log_line(view.logs[-1]))
        elif change is Change.PROGRESS and view.progress is not None:
            self._progress(view.progress)
        elif change is Change.FINISHED and view.metrics is not None:
            self._print("\n" + metrics_table(view.metrics))
        elif change is Change.FAILED and view.failure is not None:
            failure = view.failure
            rank = "" if failure.rank is None else f"rank {failure.rank}: "
            self._print_fitted(f"run failed: {rank}{failure.error}")

    def _progress(self, event: Progress) -> None:
        assert self.stream is not None
        if self.interactive:
            width = self._width() or shutil.get_terminal_size().columns
            self.stream.write(f"\r\033[K{progress_line(event, width)}")
            self.stream.flush()
            self._bar_shown = True
            return
        now = time.monotonic()
        if event.done == event.total or now - self._last_plain >= PLAIN_PROGRESS_INTERVAL_S:
            self._last_plain = now
            for line in plain_progress_lines(event, self._width()):
                self._print(line)
