"""Following a run from its results directory in plain lines (``tui-eval watch --no-ui``),
read-only: nothing is written to the run directory.

Exit codes: 0 the run finished, 1 it failed, stopped without a final event or did not
start within ``wait``, 130 the run was interrupted (partial).

A watcher started just before ``--resume`` finds the old try's "interrupted" ending: it
waits ``resume_grace`` seconds for a new try before reporting it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tui_eval.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED
from tui_eval.events import (
    Event,
    Progress,
    RunStarted,
    TryStarted,
    TuneFinished,
    format_log_line,
)
from tui_eval.events.follow import EventFollower, Liveness, liveness, stopped_line
from tui_eval.events.view import Change, RunView
from tui_eval.headless.printer import (
    PLAIN_PROGRESS_INTERVAL_S,
    fit_log_line,
    metrics_table,
    plain_progress_lines,
    terminal_width,
)
from tui_eval.results import EVENTS_FILE, resume_command

POLL_INTERVAL_S = 0.5
CATCH_UP_LOG_LINES = 20
# A resume started with the watcher announces its try once its data is read: about 3 s
# for the demo on a busy 2-core machine.
RESUME_GRACE_S = 5.0


def started_line(event: RunStarted, live: Liveness) -> str:
    where = f"pid {event.pid}" + (f" on {live.host}" if live.alive is None and live.host
                                  else "")
    processes = f", {event.world_size} processes" if event.world_size > 1 else ""
    return (f"run: {event.total} samples, batch {event.batch_size}, {event.model} on "
            f"{event.device} ({event.dtype}){processes}, {where}")


def try_line(event: TryStarted) -> str:
    if event.done_before:
        return (f"a new try began (pid {event.pid}): resuming with {event.done_before}/"
                f"{event.total} samples already done")
    return f"a new try began (pid {event.pid})"


def tune_line(event: TuneFinished) -> str:
    if event.from_cache:
        return f"auto-tune ({event.mode}): batch size {event.chosen_batch_size} from the cache"
    return (f"auto-tune ({event.mode}): chose batch size {event.chosen_batch_size} after "
            f"{len(event.probes)} probes")


class PlainWatcher:
    """Prints a run's events as plain lines: on attaching, where the run stands (its last
    log lines and progress); then each new log line and a progress line at most every few
    seconds; at the end, the metrics table and how the run ended."""

    def __init__(self, run_dir: Path, *, stream: TextIO | None = None,
                 interval: float = POLL_INTERVAL_S, wait: float | None = None,
                 progress_every: float = PLAIN_PROGRESS_INTERVAL_S,
                 resume_grace: float = RESUME_GRACE_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.run_dir = run_dir
        self.stream = stream or sys.stdout
        self.interval = interval
        self.wait = wait
        self.progress_every = progress_every
        self.resume_grace = resume_grace
        self.clock = clock
        self.sleep = sleep
        self.follower = EventFollower(run_dir / EVENTS_FILE)
        self.state = RunView()
        self._last_progress_print = float("-inf")
        self._progress_shown: Progress | None = None

    def _width(self) -> int | None:
        return terminal_width(self.stream)

    def say(self, text: str) -> None:
        width = self._width()
        for line in text.split("\n"):
            for part in [line] if width is None else fit_log_line(line, width):
                self.stream.write(part + "\n")
        self.stream.flush()

    def run(self, once: bool = False) -> int:
        began = self.clock()
        self._wait_for_file(began, once)
        self._catch_up()
        if not self.follower.exists:
            return self._gave_up(once)
        if once:
            return self._report_now()
        if self.state.partial:
            self._await_new_try()
        while True:
            outcome = self._outcome()
            if outcome is not None:
                return outcome
            if self.state.tries == 0 and self._waited_too_long(began):
                return self._gave_up(once)
            self.sleep(self.interval)
            self._show_new(self.follower.poll())

    def _await_new_try(self) -> None:
        """The run we attached to was interrupted; a resume may be starting right now."""
        if self.resume_grace <= 0:
            return
        metrics = self.state.metrics
        assert metrics is not None
        self.say(f"the run was interrupted after {metrics.n}/{metrics.n_total} "
                 f"samples; waiting {self.resume_grace:g}s for a resumed try…")
        deadline = self.clock() + self.resume_grace
        while self.state.partial and self.clock() < deadline:
            self.sleep(self.interval)
            self._show_new(self.follower.poll())

    def _wait_for_file(self, began: float, once: bool) -> None:
        announced = False
        while True:
            if (self.run_dir / EVENTS_FILE).exists():
                return
            if once or self._waited_too_long(began):
                return
            if not announced:
                self.say(f"waiting for a run in {self.run_dir} …")
                announced = True
            self.sleep(self.interval)

    def _waited_too_long(self, began: float) -> bool:
        return self.wait is not None and self.clock() - began >= self.wait

    def _gave_up(self, once: bool) -> int:
        if once:
            self.say(f"no run in {self.run_dir} yet")
        else:
            self.say(f"no run started in {self.run_dir} within {self.wait:g}s")
        return EXIT_RUN_FAILED

    def _catch_up(self) -> None:
        """Show the backlog as a summary rather than replaying every line of it."""
        for event in self.follower.poll():
            self.state.apply(event)
        logs = list(self.state.logs)
        if len(logs) > CATCH_UP_LOG_LINES:
            self.say(f"… {len(logs) - CATCH_UP_LOG_LINES} earlier log lines in run.log")
        for line in logs[-CATCH_UP_LOG_LINES:]:
            self.say(format_log_line(line))
        if self.state.tune is not None:
            self.say(tune_line(self.state.tune))
        if self.state.loading and self.state.try_started is not None:
            self.say(try_line(self.state.try_started))
        elif self.state.started is not None:
            self.say(started_line(self.state.started, self._liveness()))
        if self.state.progress is not None and not self.state.ended:
            self._show_progress(self.state.progress, force=True)

    def _show_new(self, events: list[Event]) -> None:
        if self.follower.restarted:
            self.state = RunView()
            self.say("the run's events.jsonl was replaced (started over); following the new one")
        state = self.state
        for event in events:
            change = state.apply(event)
            if change is Change.LOG:
                self.say(format_log_line(state.logs[-1]))
            elif change is Change.TRY and state.try_started is not None:
                self.say(try_line(state.try_started))
            elif change is Change.STARTED and state.started is not None:
                self.say(started_line(state.started, self._liveness()))
            elif change is Change.PROGRESS and state.progress is not None:
                self._show_progress(state.progress)
            elif change is Change.TUNE and state.tune is not None:
                self.say(tune_line(state.tune))

    def _show_progress(self, event: Progress, force: bool = False) -> None:
        now = self.clock()
        if force or now - self._last_progress_print >= self.progress_every:
            self._last_progress_print = now
            self._progress_shown = event
            for line in plain_progress_lines(event, self._width()):
                self.say(line)

    def _liveness(self) -> Liveness:
        return liveness(self.run_dir, self.state)

    def _outcome(self) -> int | None:
        """The exit code once the run is over, after printing how it ended; None while it
        goes on (or when it cannot be told from here)."""
        if self.state.ended:
            return self._finish()
        live = self._liveness()
        if live.alive is not False:
            return None
        self._show_new(self.follower.poll())  # it may have written its end just before exiting
        if self.state.ended:
            return self._finish()
        self._show_last_progress()
        self.state.mark_stopped()
        self.say(stopped_line(self.run_dir, live.pid))
        return EXIT_RUN_FAILED

    def _show_last_progress(self) -> None:
        progress = self.state.progress
        if progress is not None and progress is not self._progress_shown:
            self._show_progress(progress, force=True)

    def _finish(self) -> int:
        failure, metrics = self.state.failure, self.state.metrics
        if failure is not None:
            self._show_last_progress()
            self.say(f"run failed: {failure.error}")
            return EXIT_RUN_FAILED
        assert metrics is not None
        self.say("")
        self.say(metrics_table(metrics))
        if metrics.partial:
            self.say(f"interrupted after {metrics.n}/{metrics.n_total} samples; "
                     f"resume with: {resume_command(self.run_dir)}")
            return EXIT_INTERRUPTED
        self.say(f"finished: results in {self.run_dir}")
        return EXIT_OK

    def _report_now(self) -> int:
        """--once: how the run stands now, then exit."""
        outcome = self._outcome()
        if outcome is not None:
            return outcome
        if self.state.started is None or self.state.loading:
            self.say("the run has not started yet (loading?)")
        return EXIT_OK
