"""What a headless run does when it gets a signal.

SIGINT / SIGTERM, the first time: stop after the batch in flight (the engine checks its
cancel event between batches), which writes metrics.json marked ``"partial": true``.
The second time: stop at once. Generation is unwound by KeyboardInterrupt, the engine's
files are closed, and the engine rebuilds metrics.json from the rows already on disk
(``metrics_after_stop``), so every file is whole. Either way the exit code is 130 and one
line says how to resume.

SIGHUP (the SSH session or the tmux pane went away): keep running and log it. If the
terminal is gone, output goes to /dev/null from then on; run.log and events.jsonl keep
the record. A signal ignored at start (SIGHUP under nohup) stays ignored.

Handlers are Python-level, so they only run in the main thread between bytecodes: they
set flags, log one line from a thread, and (second stop) raise; nothing else. The line goes
through a thread because the handler may have interrupted this thread inside a write to
the same stream or file, where a second write raises and the line would be lost; the
thread waits for that write to end.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from tui_eval import engine
from tui_eval.errors import EXIT_INTERRUPTED
from tui_eval.events import RunFinished
from tui_eval.events.view import RunView
from tui_eval.results import RunMetrics
from tui_eval.terminal import silence_hung_up, tty_streams

if TYPE_CHECKING:
    from tui_eval.engine import StoppableRun

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOG_JOIN_SECONDS = 5.0  # a handler's log line waits at most this long for its stream


class HeadlessSignals:
    """Installs the handlers for the duration of a ``with`` block (main thread only)."""

    def __init__(self, run: StoppableRun, view: RunView) -> None:
        self.run = run
        self.view = view  # the run's events so far: its size and latest rates
        self.stop_signal: str | None = None  # the first stop signal's name
        self.stopped_at_once = False
        self.hangups = 0
        self._previous: dict[int, Any] = {}
        self._was_tty = tty_streams()
        self._loggers: list[threading.Thread] = []

    def __enter__(self) -> HeadlessSignals:
        # A signal ignored at start stays ignored, as Python itself does for SIGINT: nohup
        # ignores SIGHUP, and a shell script's background jobs ignore SIGINT.
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers; the caller stops the run
        wanted = {sig: self._on_stop for sig in STOP_SIGNALS}
        if hasattr(signal, "SIGHUP"):
            wanted[signal.SIGHUP] = self._on_hangup
        for sig, handler in wanted.items():
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.flush_log()

    def flush_log(self) -> None:
        """Wait (briefly) for the lines the handlers logged, so that none is cut off."""
        for thread in self._loggers:
            thread.join(LOG_JOIN_SECONDS)

    def _log(self, level: str, key: str, **values: object) -> None:
        # A stream busy or closed under the handler: the flag matters, not the line.
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self.run.log(level, key, **values)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop_signal is None:
            self.stop_signal = name
            self.run.cancel.cancel()
            self._log_from_thread("WARNING", "stop_requested", signal=name)
            return
        # The wrap-up takes milliseconds; a third signal must not tear it.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        self.stopped_at_once = True
        raise KeyboardInterrupt

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self.hangups += 1
        silence_hung_up(self._was_tty)
        if self.hangups == 1:
            self._log_from_thread("WARNING", "hangup",
                                  run_dir=self.run.run_dir or "its -o directory")

    def _log_from_thread(self, level: str, key: str, **values: object) -> None:
        thread = threading.Thread(target=self._log, args=(level, key), kwargs=values,
                                  name="signal log", daemon=True)
        self._loggers.append(thread)
        thread.start()

    def exit_interrupted(self, metrics: RunMetrics | None) -> int:
        """After the run stopped on a signal: make metrics.json whole, say how to resume."""
        self.flush_log()  # the stop's own line comes before the resume line
        run_dir = self.run.run_dir
        if metrics is None and run_dir is not None:
            # the run never reached its own: the engine builds them from the rows on disk
            metrics = (run_dir.read_metrics() if isinstance(self.view.final, RunFinished)
                       else engine.metrics_after_stop(self.run, self.view.started,
                                                      self.view.progress))
        if run_dir is None or not run_dir.config_path.exists():
            _say("tui-eval: stopped before the first sample; run the same command again")
        else:
            done = f"{metrics.n}/{metrics.n_total} samples done; " if metrics else ""
            _say(f"tui-eval: interrupted ({self.stop_signal}): {done}resume with: "
                 f"{run_dir.resume_command()}")
        return EXIT_INTERRUPTED

    def hint_resume(self) -> None:
        """After a failure: the finished batches are on disk; say how to go on from them."""
        run_dir = self.run.run_dir
        if run_dir is not None and run_dir.config_path.exists():
            _say(f"tui-eval: finished batches are kept in {run_dir}; once the cause is fixed, "
                 f"resume with: {run_dir.resume_command()}")


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)
