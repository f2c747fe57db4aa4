"""What a headless run does when it gets a signal.

SIGINT / SIGTERM, the first time: stop after the batch in flight (the engine checks its
cancel event between batches), which writes metrics.json marked ``"partial": true``.
The second time: stop at once. Generation is unwound by KeyboardInterrupt, the engine's
files are closed, and metrics.json is rebuilt from the rows already on disk, so every
file is whole. Either way the exit code is 130 and one line says how to resume.

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

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Protocol

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.engine.resume import ResumePlan
from tui_eval.errors import EXIT_INTERRUPTED
from tui_eval.events import Event, Progress, RunFinished, RunLog, RunStarted
from tui_eval.events.recorder import EventRecorder
from tui_eval.results.metrics import RunMetrics, build_run_metrics
from tui_eval.results.run_dir import RunDir

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOG_JOIN_SECONDS = 5.0  # a handler's log line waits at most this long for its stream


class StoppableRun(Protocol):
    """What the handlers need from an Evaluation."""

    cancel: CancelToken
    run_dir: RunDir | None
    config: EvalConfig
    started: float  # time.perf_counter() at creation
    lang: str
    resumed: ResumePlan  # the rows kept from earlier tries
    tune_seconds: float | None
    compile_seconds: float  # this try's compiling so far
    compiled: bool
    skipped_lines: int  # dataset lines skipped with on_bad_line = "skip"

    def log(self, level: str, key: str, **values: object) -> None: ...


class RunTracker:
    """An event sink that remembers what a wrap-up needs: the run's size and latest rates,
    and whether the engine already wrote its own metrics."""

    def __init__(self) -> None:
        self.started: RunStarted | None = None
        self.progress: Progress | None = None
        self.finished = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.started = event
        elif isinstance(event, Progress):
            self.progress = event
        elif isinstance(event, RunFinished):
            self.finished = True


class HeadlessSignals:
    """Installs the handlers for the duration of a ``with`` block (main thread only)."""

    def __init__(self, run: StoppableRun, tracker: RunTracker) -> None:
        self.run = run
        self.tracker = tracker
        self.stop_signal: str | None = None  # the first stop signal's name
        self.stopped_at_once = False
        self.hangups = 0
        self._previous: dict[int, Any] = {}
        self._was_tty = {fd: os.isatty(fd) for fd in (1, 2)}
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
        for fd, was_tty in self._was_tty.items():
            if was_tty and not os.isatty(fd):  # a hung-up terminal no longer answers
                _silence(fd)
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
            metrics = (run_dir.read_metrics() if self.tracker.finished
                       else self._metrics_from_disk(run_dir))
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

    def _metrics_from_disk(self, run_dir: RunDir) -> RunMetrics | None:
        """Partial metrics from the rows already written (the engine's own were never
        reached), built as the engine builds them, plus the final event for watchers."""
        paths = [run_dir.predictions_path, *run_dir.rank_prediction_paths()]
        if not any(path.exists() for path in paths):
            return None
        try:  # a run of several processes: each rank's file too
            rows, _ = run_dir.read_run_rows()
        except Exception:  # noqa: BLE001 - a damaged file is left for --resume to explain
            return None
        started, progress = self.tracker.started, self.tracker.progress
        config = self.run.config
        resumed = self.run.resumed.done
        generated = max(0, len(rows) - resumed)  # this try's rows
        rate = progress.samples_per_s if progress else 0.0
        generation_seconds = generated / rate if rate > 0 else 0.0
        batch_size = started.batch_size if started else config.batch_size
        metrics = build_run_metrics(
            rows, config.metric_names, n_total=started.total if started else len(rows),
            n_resumed=resumed, n_skipped_lines=self.run.skipped_lines, batch_size=batch_size,
            final_batch_size=progress.batch_size if progress else batch_size,
            tune_seconds=self.run.tune_seconds,
            fallback_count=progress.fallbacks if progress else 0,
            wall_seconds=time.perf_counter() - self.run.started,
            generation_seconds=generation_seconds, compiled=self.run.compiled,
            compile_seconds=self.run.compile_seconds, generated=generated,
            generated_tokens=round((progress.tokens_per_s if progress else 0.0)
                                   * generation_seconds),
            device=started.device if started else None,
            dtype=started.dtype if started else None, model=str(config.model),
            stopped_at_once=True, extract=config.extract,
            task=config.task or "generate")
        run_dir.write_metrics(metrics)
        recorder = EventRecorder()
        recorder.open(run_dir)
        RunLog(recorder, self.run.lang)("INFO", "stopped_at_once", done=metrics.n,
                                        total=metrics.n_total, run_dir=run_dir)
        recorder(RunFinished(metrics=metrics))
        recorder.close()
        return metrics


def _silence(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def install_app_hangup(on_hangup: Callable[[], None],
                       at_once: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """For an asyncio app (the Textual app): on SIGHUP, point a dead terminal at /dev/null so
    the app's last writes cannot fail, call ``at_once`` in the handler itself (it may only
    set flags or start a thread: the event loop may be blocked, e.g. on a writer that a
    dead terminal never drains), then ``on_hangup`` on the event loop (the app stops its
    run after the batch in flight, which writes partial metrics, and exits).
    Call it from inside the running loop, e.g. in ``on_mount``, in the main thread. Returns
    the undo (the previous handler back), or None where SIGHUP does not exist or was
    ignored at start (nohup)."""
    hup = getattr(signal, "SIGHUP", None)
    if hup is None or threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(hup)
    if previous is signal.SIG_IGN:
        return None
    was_tty = {fd: os.isatty(fd) for fd in (1, 2)}
    loop = asyncio.get_running_loop()

    # A Python-level handler, not loop.add_signal_handler: it runs in the main thread even
    # while that thread waits on a lock, where the loop's own handler would wait for the
    # loop.
    def hung_up(signum: int, frame: FrameType | None) -> None:
        for fd, tty in was_tty.items():
            if tty and not os.isatty(fd):
                _silence(fd)
        if at_once is not None:
            at_once()
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
            loop.call_soon_threadsafe(on_hangup)

    signal.signal(hup, hung_up)

    def undo() -> None:
        if signal.getsignal(hup) is hung_up:
            signal.signal(hup, previous)

    return undo
