"""``tui-eval watch RUN_DIR`` in a terminal: the app in read-only mode, fed by events.jsonl;
``tui-eval watch BENCH_DIR``: the chart of a bench's results.

A thread worker follows the file (only the bytes appended since its last look) and hands
each event to the app's bridge, the same way into the panes as a run started in the app.
The gauges show this machine. Nothing is written to the run directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import get_current_worker

from tui_eval.config import EvalConfig
from tui_eval.device.monitor import Sampler
from tui_eval.engine import saved_config_values
from tui_eval.errors import UsageError
from tui_eval.events import Event
from tui_eval.events.follow import EventFollower, liveness, stopped_line
from tui_eval.events.view import Change, RunView
from tui_eval.results import CONFIG_FILE, EVENTS_FILE, RunDir
from tui_eval.ui.app import EvalApp
from tui_eval.ui.chart import ChartScreen
from tui_eval.ui.themes import DEFAULT_THEME, terminal_has_few_colours

# The watcher's own display settings, not the run's.
WATCHER_KEYS = ("theme", "gpu_poll_seconds")


def run_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's saved config for the config pane, or None before config.json exists."""
    if not (run_dir / CONFIG_FILE).exists():
        return None
    try:
        values = saved_config_values(RunDir(run_dir))
    except UsageError:
        return None
    return {k: v for k, v in values.items() if k not in WATCHER_KEYS}


class WatchApp(EvalApp):
    def __init__(self, run_dir: Path, *, interval: float = 0.5, sampler: Sampler | None = None,
                 theme_directories: list[Path] | None = None) -> None:
        super().__init__(EvalConfig(**(run_config(run_dir) or {})), read_only=True,
                         sampler=sampler, theme_directories=theme_directories,
                         subtitle=f"watching {run_dir}")
        self.watched = run_dir  # the directory followed (run_dir, the samples browser's, too)
        self.run_dir = run_dir
        self.interval = interval
        self.follower = EventFollower(run_dir / EVENTS_FILE)
        # the follower's own reading, for liveness: the panes draw from the app's view,
        # which the UI thread folds at its own pace
        self.state = RunView()
        self.follower_polls = 0  # looks at events.jsonl so far (tests wait on it)

    def on_mount(self) -> None:
        self._follow()

    @work(thread=True, group="watch", exit_on_error=False, name="follow events.jsonl")
    def _follow(self) -> None:
        worker = get_current_worker()
        config_shown = run_config(self.watched) is not None
        while not worker.is_cancelled:
            self._forward(self.follower.poll())
            self.follower_polls += 1
            if not config_shown:
                values = run_config(self.watched)
                if values is not None:
                    config_shown = True
                    self.call_from_thread(self._show_config, values)
            if not self.state.stopped and self._process_gone():
                self._forward(self.follower.poll())  # its last words, written as it exited
                if not self.state.ended:
                    self.state.mark_stopped()
                    pid = self.state.pid or None
                    self.call_from_thread(self._show_stopped, stopped_line(self.watched, pid))
            time.sleep(self.interval)

    def _forward(self, events: list[Event]) -> None:
        if self.follower.restarted:
            # a "stopped" notice shown stays until the new file's try begins
            self.state = RunView(stopped=self.state.stopped)
            self.call_from_thread(self.progress_pane.reset, "the run started over…")
        new_config = False
        for event in events:
            was_stopped = self.state.stopped
            change = self.state.apply(event)
            if was_stopped and not self.state.stopped:
                # a resumed try: the old news goes
                self.call_from_thread(self.clear_notifications)
            # a try writes config.json before it starts generating; a resume may have
            # changed the batch size, the device…
            new_config = new_config or change is Change.STARTED
            self.bridge(event)
        values = run_config(self.watched) if new_config else None
        if values is not None:
            self.call_from_thread(self._show_config, values)

    def _process_gone(self) -> bool:
        return not self.state.ended and liveness(self.watched, self.state).alive is False

    def _show_config(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.config_pane.set_value(key, value)

    def _show_stopped(self, text: str) -> None:
        self.progress_pane.rates.update("stopped — no final event; resume: see the log")
        self.log_pane.add_line("ERROR", text)
        self.sub_title = f"{self.watched} — stopped"
        self.notify(text, title="Run stopped", severity="error", timeout=30)


class BenchChartApp(App[None]):
    """``tui-eval watch BENCH_DIR``: a bench has no events to follow, only its chart."""

    CSS_PATH = Path(__file__).parent / "app.tcss"
    TITLE = "tui-eval"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, bench_dir: Path) -> None:
        super().__init__()
        self.bench_dir = bench_dir
        self.theme = "ansi-dark" if terminal_has_few_colours() else DEFAULT_THEME

    def on_mount(self) -> None:
        self.sub_title = f"bench {self.bench_dir}"
        self.push_screen(ChartScreen(None, lambda: self.bench_dir), lambda _: self.exit())


def run_bench_chart(bench_dir: Path) -> int:
    BenchChartApp(bench_dir).run()
    return 0


def run_watch_app(run_dir: Path, *, interval: float = 0.5) -> int:
    app = WatchApp(run_dir, interval=interval)
    app.run()
    return app.return_code or 0
