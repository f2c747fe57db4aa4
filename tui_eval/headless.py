"""The headless presenter: prints the engine's events to a terminal or a log file."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tui_eval.events import Event, LogLine, Progress, RunFailed, RunFinished, format_log_line

PLAIN_PROGRESS_INTERVAL_S = 5.0
BAR_WIDTH = 24


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_text(event: Progress) -> str:
    return (f"{event.done}/{event.total} samples | {event.samples_per_s:.2f} samples/s | "
            f"{event.tokens_per_s:.0f} tok/s | ETA {format_duration(event.eta_s)} | "
            f"batch {event.batch_size} | fallbacks {event.fallbacks}")


def metrics_table(metrics: dict[str, Any]) -> str:
    """A short plain-text table of the scores and the run's figures."""
    rows = [(name, f"{value:.4f}") for name, value in metrics["metrics"].items()]
    rows += [
        ("samples", f"{metrics['n']}" + (" (partial)" if metrics.get("partial") else "")),
        ("errors", str(metrics["n_errors"])),
        ("fallbacks", str(metrics["fallback_count"])),
        ("batch size", str(metrics["batch_size"])),
        ("samples/s", f"{metrics['samples_per_s']:.2f}"),
        ("tokens/s", f"{metrics['tokens_per_s']:.1f}"),
        ("wall time", f"{metrics['wall_seconds']:.1f}s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines)


class HeadlessPrinter:
    """On a TTY: a live one-line progress bar. Elsewhere (nohup, CI): one plain progress line
    at most every few seconds, so logs stay readable."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._last_plain = 0.0
        self._bar_shown = False

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self._bar_shown = False

    def _print(self, text: str) -> None:
        self._clear_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, LogLine):
            self._print(format_log_line(event))
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, RunFinished):
            self._print("\n" + metrics_table(event.metrics))
        elif isinstance(event, RunFailed):
            self._print(f"run failed: {event.error}")

    def _progress(self, event: Progress) -> None:
        if self.interactive:
            filled = int(BAR_WIDTH * event.done / max(event.total, 1))
            bar = "█" * filled + "░" * (BAR_WIDTH - filled)
            self.stream.write(f"\r\033[K{bar} {progress_text(event)}")
            self.stream.flush()
            self._bar_shown = True
            return
        now = time.monotonic()
        if event.done == event.total or now - self._last_plain >= PLAIN_PROGRESS_INTERVAL_S:
            self._last_plain = now
            self._print(f"progress: {progress_text(event)}")
