"""The evaluation engine: data ─► length-sorted batches ─► generate or score ─► metrics ─►
results dir.

One run loop for both tasks: what a batch holds and runs, and when a sample's row is done,
is the task's (engine.tasks). It knows nothing about any UI: it reports through events
sent to a sink.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from tui_eval.batching.oom_policies import make_oom_policy
from tui_eval.cancel import CancelToken
from tui_eval.config import ConfigSource, EvalConfig
from tui_eval.data import ChoiceDataset, Dataset
from tui_eval.engine.device_hooks import DEVICE_HOOKS
from tui_eval.engine.preparation import Prepared, log_config_source, prepare
from tui_eval.engine.resume import (
    ProgressOffset,
    ResumePlan,
    RunFiles,
    plan_resume,
)
from tui_eval.engine.tasks import RunTask
from tui_eval.engine.tuning import run_batch_size
from tui_eval.errors import UsageError
from tui_eval.events import (
    EventSink,
    Progress,
    RankFinished,
    RankStarted,
    ResumeDecided,
    ResumeWords,
    RunFailed,
    RunFinished,
    RunLog,
    RunStarted,
    TryStarted,
)
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import LogFn, default_language
from tui_eval.model.backend import HFBackend
from tui_eval.ranks.coordinator import Decision, coordinator_for
from tui_eval.ranks.world import World
from tui_eval.results.metrics import RunMetrics, build_run_metrics
from tui_eval.results.predictions import PredictionRow
from tui_eval.results.run_dir import RunDir, remove_if_empty


class Evaluation:
    """One evaluation run. ``run()`` returns the metrics written to metrics.json.

    ``cancel`` is checked between batches: a cancelled run keeps every finished batch and
    writes metrics marked ``partial``.

    Compiling (a generation task's ``compile``) is a one-off cost apart from the run's
    time: the rates leave ``compile_seconds`` out.

    In a run of several processes, what differs by rank (who decides, the batch size, the
    share of samples, where events go, how the run ends) is the coordinator's
    (tui_eval.ranks).
    """

    def __init__(self, config: EvalConfig, sink: EventSink,
                 cancel: CancelToken | None = None, *, resume: bool = False,
                 overwrite: bool = False, backend: HFBackend | None = None,
                 resume_words: ResumeWords | None = None, world: World | None = None,
                 config_source: ConfigSource | None = None) -> None:
        # backend: an already loaded model to reuse (bench runs one model at many sizes)
        self.backend = backend
        # how the front end words a resume decided (its hint names what it can do: the app
        # has no --overwrite flag); the command line's words by default
        self.resume_words = resume_words or ResumeWords()
        self.config_source = config_source  # the TOML file, named in the log's first line
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
        self.cancel = cancel or CancelToken()
        # world: the processes of a run of several (torchrun), joined; rank 0 owns the
        # results directory, the others send their events to it
        self.world = world or World()
        self.ranks = coordinator_for(self.world, lambda: self.cancel.cancelled)
        self.recorder = EventRecorder()
        self.sink: EventSink = self.ranks.sink(self.recorder, sink)
        self.run_dir: RunDir | None = None
        self.created_dirs: list[Path] = []  # made for this run: removed if it fails empty
        self.started = time.perf_counter()
        self.prepared: Prepared | None = None  # set once the data is read
        self.task: RunTask | None = None
        self.finished: RunMetrics | None = None  # a run found complete
        self.batch_size = 0  # the run's, once chosen
        self.share_total = 0  # this process's samples

    @property
    def compile_seconds(self) -> float:
        """This try's compiling so far (not in the generation time)."""
        return self.task.compile_seconds if self.task is not None else 0.0

    @property
    def compile_path(self) -> str:
        """The faster path a batch ran on ("on": compiled static cache, "graph"), or "off"."""
        return self.task.compile_path if self.task is not None else "off"

    def log(self, level: str, key: str, **values: object) -> None:
        RunLog(self.sink, self.lang)(level, key, **values)

    def run(self) -> RunMetrics:
        try:
            return self._run()
        except UsageError:
            remove_if_empty(self.created_dirs)
            raise
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.sink(RunFailed(error=f"{type(exc).__name__}: {exc}"))
            remove_if_empty(self.created_dirs)
            raise
        finally:
            self.recorder.close()

    def _run(self) -> RunMetrics:
        self.ranks.decide(self)
        if self.finished is not None:
            return self.finished
        prepared = self.prepared
        assert prepared is not None and self.run_dir is not None
        task = prepared.task
        # a resumed run skips rows on disk
        samples = self.resumed.remaining(prepared.dataset.samples)
        batch_size = self.ranks.batch_size(lambda: self._batch_size(task.plan(samples)))
        try:
            return self._run_batches(task, samples, batch_size)
        finally:
            self.ranks.close()

    # ── preparing: rank 0 (or a run of one) decides, begins; the others follow ──────────

    def decide(self) -> Decision:
        """Prepare, plan what the output directory holds, and check the samples to run."""
        log_config_source(self.config_source, self.log)
        prepared = self._prepare(self.log)
        run_dir = RunDir.of(prepared.config.output_dir)
        self.created_dirs = run_dir.missing_dirs()
        self.run_dir = run_dir.prepare()
        self._plan_resume(prepared.config, prepared.dataset)
        self.finished = self._already_complete(prepared.dataset)
        if self.finished is None:
            # before anything is written: a rerun with a smaller --max-tokens starts afresh
            prepared.task.check(self.resumed.remaining(prepared.dataset.samples), self.log)
        return Decision(run_dir=self.run_dir, done=sorted(self.resumed.done_indices),
                        complete=self.finished is not None)

    def begin(self, decision: Decision) -> None:
        """Open the run: its events file, the weights, config.json."""
        prepared = self.prepared
        assert self.run_dir is not None and prepared is not None
        self.recorder.open(self.run_dir)  # writes the lines logged so far first
        # a watcher forgets the last try's ending here, and follows this process
        self.sink(TryStarted(run_dir=str(self.run_dir), pid=os.getpid(),
                             done_before=self.resumed.done,
                             total=len(prepared.dataset.samples), world_size=self.world.size))
        prepared.load_weights()
        prepared.describe(self.run_dir)
        if self.resumed.done:
            self.sink = ProgressOffset(self.sink, self.resumed.done)

    def follow(self, decision: Decision) -> None:
        """A rank other than 0: prepare the same way, quietly (rank 0 has said it all)."""

        def quiet(level: str, key: str, **values: object) -> None:
            """Rank 0 logs the preparation once for all."""

        prepared = self._prepare(quiet)
        assert decision.run_dir is not None  # rank 0 names it in every decision it goes on with
        self.run_dir = decision.run_dir
        self.resumed = ResumePlan(indices=frozenset(decision.done))
        prepared.task.check(self.resumed.remaining(prepared.dataset.samples), quiet)
        prepared.load_weights()

    def _prepare(self, log: LogFn) -> Prepared:
        prepared = self.prepared = prepare(self.requested, log, backend=self.backend,
                                           settled=self.ranks.place)
        self.config, self.backend = prepared.config, prepared.backend
        self.task = prepared.task
        self.skipped_lines = len(prepared.dataset.skipped)
        return prepared

    def _plan_resume(self, config: EvalConfig, dataset: Dataset | ChoiceDataset) -> None:
        """Continue, replace or refuse the run the output dir holds, before the model loads."""
        assert self.run_dir is not None
        had_run = self.run_dir.holds_run()
        self.resumed = plan_resume(self.run_dir, config, dataset, resume=self.resume,
                                   overwrite=self.overwrite)
        if self.overwrite and had_run:
            self.log("INFO", "overwrite", run_dir=self.run_dir)
        if self.resumed.torn_bytes:
            self.log("WARNING", "resume_torn", bytes=self.resumed.torn_bytes)
        if had_run and not self.overwrite and self.resumed.done < len(dataset.samples):
            self._decided("resume", self.resumed.done, len(dataset.samples))

    def _already_complete(self, dataset: Dataset | ChoiceDataset) -> RunMetrics | None:
        """A run whose every sample is on disk, with its final metrics, is left as it is:
        its metrics are reported again and nothing is written."""
        assert self.run_dir is not None
        if self.resumed.done < len(dataset.samples):
            return None
        metrics = self.run_dir.read_metrics()
        if metrics is None or metrics.partial:
            return None
        self._decided("complete", metrics.n, len(dataset.samples))
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _decided(self, outcome: str, done: int, total: int) -> None:
        """Tell what the output directory's run became, and its line in the front end's words
        (run.log keeps the line)."""
        decided = ResumeDecided(run_dir=str(self.run_dir), outcome=outcome, done=done,
                                total=total, automatic=self.resumed.automatic)
        self.sink(decided)
        self.sink(self.resume_words.line(decided, self.lang))

    # ── the batches, and the end of the run ─────────────────────────────────────────────

    def _run_batches(self, task: RunTask, samples: list[Any], batch_size: int) -> RunMetrics:
        """This process's share of the batches; then the run's end, as its part says."""
        config, backend, ranks = self.config, self.backend, self.ranks
        assert self.run_dir is not None and backend is not None
        mine = ranks.share(samples, task.costs)
        items = task.plan(mine)
        sinks = ranks.sinks(self.sink, len(samples))
        self.sink, loop_sink = sinks.run, sinks.share
        loop_log = RunLog(loop_sink, self.lang)
        policy = make_oom_policy(config.oom_policy, task.work(), loop_sink, self.lang,
                                 batch_size, DEVICE_HOOKS)
        writer = self.run_dir.prediction_writer(ranks.predictions_rank)
        sinks.lead(RunStarted(run_dir=str(self.run_dir), total=len(samples),
                              batch_size=batch_size, model=str(config.model),
                              device=backend.device, dtype=backend.dtype_name,
                              pid=os.getpid(), world_size=self.world.size))
        started_key, started_values = task.started_line(len(samples), batch_size)
        RunLog(sinks.lead, self.lang)("INFO", started_key, **started_values)
        ranks.report(RankStarted(total=len(mine), batch_size=batch_size, device=backend.device,
                                 pid=os.getpid(), host=socket.gethostname()))
        task.start(items, batch_size, loop_log)
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
                                           policy.batch_size, items[position:], loop_log,
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
                loop_sink(Progress(
                    done=len(rows), total=len(mine), samples_per_s=rate,
                    tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                    eta_s=(len(mine) - len(rows)) / rate if rate > 0 else None,
                    batch_size=policy.batch_size, fallbacks=policy.fallbacks, errors=errors))
        finally:
            writer.close()
            task.finish()
        generation_seconds = max(0.0, time.perf_counter() - generation_started
                                 - task.compile_seconds)
        report = RankFinished(
            done=len(rows), generated_tokens=tokens, generation_seconds=generation_seconds,
            fallbacks=policy.fallbacks, final_batch_size=policy.batch_size, errors=errors,
            compile=task.compile_path, compile_seconds=task.compile_seconds,
            stopped=len(rows) < len(mine))
        self.batch_size, self.share_total = batch_size, len(mine)
        files = RunFiles(self.run_dir, self.resumed, writer)
        return ranks.finish(rows, report, generation_started, self, files)

    def run_metrics(self, rows: list[PredictionRow], report: RankFinished) -> RunMetrics:
        """The run's metrics: rows kept from earlier tries count like rows made now; rates
        stay this try's."""
        assert self.prepared is not None
        config, backend, task, dataset = (self.config, self.prepared.backend, self.prepared.task,
                                          self.prepared.dataset)
        return build_run_metrics(
            self.resumed.rows + rows, config.metric_names, n_total=len(dataset.samples),
            n_resumed=self.resumed.done, n_skipped_lines=self.skipped_lines,
            batch_size=self.batch_size, final_batch_size=report.final_batch_size,
            tune_seconds=self.tune_seconds, fallback_count=report.fallbacks,
            wall_seconds=time.perf_counter() - self.started,
            generation_seconds=report.generation_seconds, compile=report.compile,
            requested_compile=config.compile, compile_seconds=report.compile_seconds,
            generated=len(rows),
            generated_tokens=report.generated_tokens, device=backend.device,
            dtype=backend.dtype_name, model=str(config.model), extract=config.extract,
            task=task.name)

    def share_metrics(self, rows: list[PredictionRow], report: RankFinished) -> RunMetrics:
        """A rank other than 0: its own share's figures, for its exit code; not written."""
        assert self.backend is not None
        return build_run_metrics(
            rows, self.config.metric_names, n_total=self.share_total,
            batch_size=report.final_batch_size, final_batch_size=report.final_batch_size,
            fallback_count=report.fallbacks, wall_seconds=time.perf_counter() - self.started,
            generation_seconds=report.generation_seconds, generated=len(rows),
            generated_tokens=report.generated_tokens, device=self.backend.device,
            dtype=self.backend.dtype_name, model=str(self.config.model),
            task=self.config.task or "generate")

    def announce(self, metrics: RunMetrics, generated: int) -> None:
        if metrics.partial:
            self.log("INFO", "run_cancelled", done=metrics.n, total=metrics.n_total,
                     run_dir=self.run_dir)
        elif self.resumed.done:
            self.log("INFO", "run_finished_resumed", n=generated,
                     seconds=metrics.generation_seconds, rate=metrics.samples_per_s,
                     kept=self.resumed.done, run_dir=self.run_dir)
        else:
            self.log("INFO", "run_finished", n=generated,
                     seconds=metrics.generation_seconds, rate=metrics.samples_per_s,
                     run_dir=self.run_dir)
        self.sink(RunFinished(metrics=metrics))

    def _batch_size(self, items: list[Any]) -> int:
        assert self.prepared is not None and self.run_dir is not None
        size, self.tune_seconds = run_batch_size(
            self.prepared.task, items, self.config, self.prepared.backend, self.sink,
            self.lang, self.run_dir, resumed=bool(self.resumed.done), cancel=self.cancel)
        return size

def evaluate(config: EvalConfig, sink: EventSink, cancel: CancelToken | None = None,
             **options: Any) -> RunMetrics:
    """One run of ``config`` (``options``: ``Evaluation``'s); its metrics."""
    return Evaluation(config, sink, cancel, **options).run()
