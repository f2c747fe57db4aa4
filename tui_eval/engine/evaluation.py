"""The evaluation engine: data ─► length-sorted batches ─► generate or score ─► metrics ─►
results dir.

One run loop for both tasks: what a batch holds and runs, and when a sample's row is done,
is the task's (engine.tasks). It knows nothing about any UI: it reports through events
sent to a sink.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.data import ChoiceDataset, Dataset
from tui_eval.engine.preparation import (
    load_weights,
    open_backend,
    read_dataset,
    run_description,
    settle_config,
)
from tui_eval.engine.resume import ProgressOffset, ResumePlan, plan_resume
from tui_eval.engine.tasks import RunTask, make_task
from tui_eval.engine.tuning import tune_batch_size
from tui_eval.errors import UsageError
from tui_eval.events import (
    EventSink,
    FanOut,
    Progress,
    RunFailed,
    RunFinished,
    RunLog,
    RunStarted,
    TryStarted,
)
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.model.backend import HFBackend
from tui_eval.model.oom_policies import make_oom_policy
from tui_eval.results import (
    TUNE_FILE,
    PredictionRow,
    PredictionWriter,
    RunMetrics,
    TuneResult,
    build_run_metrics,
    default_run_dir,
    holds_run,
    prepare_run_dir,
)


class Evaluation:
    """One evaluation run. ``run()`` returns the metrics written to metrics.json.

    ``cancel`` is checked between batches: a cancelled run keeps every finished batch and
    writes metrics marked ``partial``.

    Compiling (a generation task's ``compile``) is a one-off cost apart from the run's
    time: the rates leave ``compile_seconds`` out.
    """

    def __init__(self, config: EvalConfig, sink: EventSink,
                 cancel: CancelToken | None = None, *, resume: bool = False,
                 overwrite: bool = False, backend: HFBackend | None = None,
                 front_end: str = "cli") -> None:
        # backend: an already loaded model to reuse (bench runs one model at many sizes)
        self.backend = backend
        # front_end: "cli" or "app"; the log's hints name what that front end can do
        # (the app has no --overwrite flag)
        self.front_end = front_end
        self.tune_seconds: float | None = None  # set when batch_size = "auto"
        self.skipped_lines = 0
        # resume: the output dir must hold a run to continue (one of the same config is
        # continued anyway); overwrite: replace whatever run it holds.
        self.resume = resume
        self.overwrite = overwrite
        self.resumed = ResumePlan()
        self.requested = config
        self.config = config
        self.lang = config.lang or default_language()
        self.recorder = EventRecorder()
        self.sink: EventSink = FanOut(self.recorder, sink)
        self.cancel = cancel or CancelToken()
        self.run_dir: Path | None = None
        self.started = time.perf_counter()
        self.task: RunTask | None = None  # set once the data is read

    @property
    def compile_seconds(self) -> float:
        """This try's compiling so far (not in the generation time)."""
        return self.task.compile_seconds if self.task is not None else 0.0

    @property
    def compiled(self) -> bool:
        """Whether any batch ran on the compiled static-cache path."""
        return self.task.compiled if self.task is not None else False

    def log(self, level: str, key: str, **values: object) -> None:
        RunLog(self.sink, self.lang)(level, key, **values)

    def run(self) -> RunMetrics:
        try:
            return self._run()
        except UsageError:
            raise
        except Exception as exc:
            self.sink(RunFailed(error=f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            self.recorder.close()

    def _run(self) -> RunMetrics:
        config = self.config = settle_config(self.requested, self.log)
        backend = self.backend or open_backend(config, self.log)
        dataset = read_dataset(config, self.log)
        # a choice task checks its pairs here
        task = self.task = make_task(config, backend, dataset)
        self.skipped_lines = len(dataset.skipped)
        self.run_dir = prepare_run_dir(Path(config.output_dir or default_run_dir()))
        self._plan_resume(config, dataset)
        finished = self._already_complete(dataset)
        if finished is not None:
            return finished
        # before anything is written: a rerun with a smaller --max-tokens starts afresh
        task.check(self.resumed.remaining(dataset.samples), self.log)
        self.recorder.open(self.run_dir)  # writes the lines logged so far first
        # a watcher forgets the last try's ending here, and follows this process
        self.sink(TryStarted(run_dir=str(self.run_dir), pid=os.getpid(),
                             done_before=self.resumed.done, total=len(dataset.samples)))
        if backend.model is None:
            load_weights(backend, config, self.log)
        run_description(config, backend).write(self.run_dir)
        if self.resumed.done:
            self.sink = ProgressOffset(self.sink, self.resumed.done)
        return self._evaluate(task, backend, dataset)

    def _plan_resume(self, config: EvalConfig, dataset: Dataset | ChoiceDataset) -> None:
        """Continue, replace or refuse the run the output dir holds, before the model loads."""
        assert self.run_dir is not None
        had_run = holds_run(self.run_dir)
        self.resumed = plan_resume(self.run_dir, config, dataset, resume=self.resume,
                                   overwrite=self.overwrite)
        if self.overwrite and had_run:
            self.log("INFO", "overwrite", run_dir=self.run_dir)
        if self.resumed.torn_bytes:
            self.log("WARNING", "resume_torn", bytes=self.resumed.torn_bytes)
        if had_run and not self.overwrite and self.resumed.done < len(dataset.samples):
            key = "resume_explicit"
            if self.resumed.automatic:
                key = "resume_auto_app" if self.front_end == "app" else "resume_auto"
            self.log("INFO", key, run_dir=self.run_dir, done=self.resumed.done,
                     total=len(dataset.samples))

    def _already_complete(self, dataset: Dataset | ChoiceDataset) -> RunMetrics | None:
        """A run whose every sample is on disk, with its final metrics, is left as it is:
        its metrics are reported again and nothing is written."""
        assert self.run_dir is not None
        if self.resumed.done < len(dataset.samples):
            return None
        metrics = RunMetrics.read(self.run_dir)
        if metrics is None or metrics.partial:
            return None
        key = "already_complete_app" if self.front_end == "app" else "already_complete"
        self.log("INFO", key, run_dir=self.run_dir, n=metrics.n)
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _evaluate(self, task: RunTask, backend: HFBackend,
                  dataset: Dataset | ChoiceDataset) -> RunMetrics:
        config = self.config
        assert self.run_dir is not None
        samples = self.resumed.remaining(dataset.samples)  # a resumed run skips rows on disk
        items = task.plan(samples)
        batch_size = self._batch_size(task, items, backend)
        policy = make_oom_policy(config.oom_policy, task.work(), self.sink, self.lang,
                                 batch_size)
        writer = PredictionWriter(self.run_dir)
        total = len(samples)
        self.sink(RunStarted(run_dir=str(self.run_dir), total=total,
                             batch_size=batch_size, model=str(config.model),
                             device=backend.device, dtype=backend.dtype_name, pid=os.getpid()))
        key, values = task.started_line(total, batch_size)
        self.log("INFO", key, **values)
        task.start(items, batch_size, self.log)
        rows: list[PredictionRow] = []
        errors = tokens = 0
        generation_started = time.perf_counter()
        position = 0  # batches are cut as they go: the OOM policy may lower the size
        try:
            while position < len(items):
                if self.cancel.cancelled:
                    break
                first = position == 0
                batch = items[position:position + policy.batch_size]
                position += len(batch)
                batch_started = time.perf_counter()
                results = policy.run_batch(batch)
                if first:
                    task.after_first_batch(time.perf_counter() - batch_started,
                                           policy.batch_size, items[position:], self.log,
                                           self.cancel)
                tokens += task.tokens(results)
                new_rows = task.rows(results)
                if not new_rows:  # pairs of a sample that the next batch finishes
                    continue
                writer.write_batch(new_rows)
                rows.extend(new_rows)
                errors += sum(1 for row in new_rows if row.error is not None)
                elapsed = time.perf_counter() - generation_started - task.compile_seconds
                rate = len(rows) / elapsed if elapsed > 0 else 0.0
                self.sink(Progress(
                    done=len(rows), total=total, samples_per_s=rate,
                    tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                    eta_s=(total - len(rows)) / rate if rate > 0 else None,
                    batch_size=policy.batch_size, fallbacks=policy.fallbacks, errors=errors))
        finally:
            writer.close()
            task.finish()
        generation_seconds = max(0.0, time.perf_counter() - generation_started
                                 - task.compile_seconds)
        # Rows kept from earlier tries count like rows made now; rates stay this try's.
        all_rows = self.resumed.rows + rows
        metrics = build_run_metrics(
            all_rows, config.metric_names, n_total=len(dataset.samples),
            n_resumed=self.resumed.done, n_skipped_lines=self.skipped_lines,
            batch_size=batch_size, final_batch_size=policy.batch_size,
            tune_seconds=self.tune_seconds, fallback_count=policy.fallbacks,
            wall_seconds=time.perf_counter() - self.started,
            generation_seconds=generation_seconds, compiled=task.compiled,
            compile_seconds=task.compile_seconds, generated=len(rows),
            generated_tokens=tokens, device=backend.device, dtype=backend.dtype_name,
            model=str(config.model), extract=config.extract, task=task.name)
        if not metrics.partial:
            writer.restore_dataset_order()
        metrics.write(self.run_dir)
        if metrics.partial:
            self.log("INFO", "run_cancelled", done=metrics.n, total=metrics.n_total,
                     run_dir=self.run_dir)
        elif self.resumed.done:
            self.log("INFO", "run_finished_resumed", n=len(rows), seconds=generation_seconds,
                     rate=metrics.samples_per_s, kept=self.resumed.done, run_dir=self.run_dir)
        else:
            self.log("INFO", "run_finished", n=len(rows), seconds=generation_seconds,
                     rate=metrics.samples_per_s, run_dir=self.run_dir)
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _batch_size(self, task: RunTask, items: list[Any], backend: HFBackend) -> int:
        """The configured size, or with batch_size = "auto" the size tuned on the run's
        longest items (tune.json): a resumed run keeps the size its tune.json chose, unless
        retune is set."""
        if self.config.batch_size != "auto":
            return int(self.config.batch_size)
        if not items:
            return 1
        assert self.run_dir is not None
        if self.resumed.done and not self.config.retune and (self.run_dir / TUNE_FILE).exists():
            try:
                earlier = TuneResult.read(self.run_dir)
            except (UsageError, TypeError):
                earlier = None
            if earlier is not None and earlier.chosen_batch_size >= 1:
                self.log("INFO", "tune_from_run_dir", batch_size=earlier.chosen_batch_size)
                self.tune_seconds = 0.0
                return earlier.chosen_batch_size
        result = tune_batch_size(task, items, self.config, backend, self.sink,
                                 self.lang, self.run_dir, cancel=self.cancel)
        self.tune_seconds = result.seconds
        return result.chosen_batch_size
