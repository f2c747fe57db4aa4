"""What the engine owes a run stopped at once (a second stop signal): its files made whole.

The run never reached its own metrics, so metrics.json is built from the rows already on
disk, as the run builds it, marked ``stopped_at_once``, and the final event is recorded for
watchers. The front end that caught the signal calls this (tui_eval.headless.signals).
"""

from __future__ import annotations

import time
from typing import Protocol

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.engine.resume import ResumePlan
from tui_eval.events import Progress, RunFinished, RunLog, RunStarted
from tui_eval.events.recorder import EventRecorder
from tui_eval.results.metrics import RunMetrics, build_run_metrics
from tui_eval.results.run_dir import RunDir


class StoppableRun(Protocol):
    """What a stop reads from an Evaluation: the front end's handlers and the wrap-up."""

    @property
    def cancel(self) -> CancelToken: ...
    @property
    def run_dir(self) -> RunDir | None: ...
    @property
    def config(self) -> EvalConfig: ...
    @property
    def started(self) -> float: ...  # time.perf_counter() at creation
    @property
    def lang(self) -> str: ...
    @property
    def resumed(self) -> ResumePlan: ...  # the rows kept from earlier tries
    @property
    def tune_seconds(self) -> float | None: ...
    @property
    def compile_seconds(self) -> float: ...  # this try's compiling so far
    @property
    def compile_path(self) -> str: ...  # the faster path a batch ran on, or "off"
    @property
    def skipped_lines(self) -> int: ...  # dataset lines skipped with on_bad_line = "skip"

    def log(self, level: str, key: str, **values: object) -> None: ...


def metrics_after_stop(run: StoppableRun, started: RunStarted | None,
                       progress: Progress | None) -> RunMetrics | None:
    """Partial metrics from the rows already written (the run's own were never reached),
    written to metrics.json, plus the final event; ``started`` and ``progress`` are the
    run's latest events (its size and rates). None when no row is on disk, or a file is
    damaged (left for --resume to explain)."""
    run_dir = run.run_dir
    if run_dir is None:
        return None
    paths = [run_dir.predictions_path, *run_dir.rank_prediction_paths()]
    if not any(path.exists() for path in paths):
        return None
    try:  # a run of several processes: each rank's file too
        rows, _ = run_dir.read_run_rows()
    except Exception:  # noqa: BLE001 - a damaged file is left for --resume to explain
        return None
    config = run.config
    resumed = run.resumed.done
    generated = max(0, len(rows) - resumed)  # this try's rows
    rate = progress.samples_per_s if progress else 0.0
    generation_seconds = generated / rate if rate > 0 else 0.0
    batch_size = started.batch_size if started else config.batch_size
    metrics = build_run_metrics(
        rows, config.metric_names, n_total=started.total if started else len(rows),
        n_resumed=resumed, n_skipped_lines=run.skipped_lines, batch_size=batch_size,
        final_batch_size=progress.batch_size if progress else batch_size,
        tune_seconds=run.tune_seconds,
        fallback_count=progress.fallbacks if progress else 0,
        wall_seconds=time.perf_counter() - run.started,
        generation_seconds=generation_seconds, compile=run.compile_path,
        requested_compile=config.compile, compile_seconds=run.compile_seconds,
        generated=generated,
        generated_tokens=round((progress.tokens_per_s if progress else 0.0)
                               * generation_seconds),
        device=started.device if started else None,
        dtype=started.dtype if started else None, model=str(config.model),
        stopped_at_once=True, extract=config.extract,
        task=config.task or "generate")
    run_dir.write_metrics(metrics)
    recorder = EventRecorder()
    recorder.open(run_dir)
    RunLog(recorder, run.lang)("INFO", "stopped_at_once", done=metrics.n,
                               total=metrics.n_total, run_dir=run_dir)
    recorder(RunFinished(metrics=metrics))
    recorder.close()
    return metrics
