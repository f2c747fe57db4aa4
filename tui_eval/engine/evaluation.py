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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_eval.batching.oom_policies import make_oom_policy
from tui_eval.batching.plan import share_by_cost
from tui_eval.cancel import CancelToken
from tui_eval.config import ConfigSource, EvalConfig
from tui_eval.data import ChoiceDataset, Dataset
from tui_eval.engine.device_hooks import DEVICE_HOOKS
from tui_eval.engine.preparation import (
    for_rank,
    load_weights,
    open_backend,
    read_dataset,
    run_description,
    settle_config,
)
from tui_eval.engine.rank_board import RankBoard
from tui_eval.engine.resume import (
    ProgressOffset,
    ResumePlan,
    plan_resume,
    read_run_rows,
    replace_rank_files,
)
from tui_eval.engine.tasks import RunTask, make_task
from tui_eval.engine.tuning import tune_batch_size
from tui_eval.engine.world import RankEventCollector, RankEventSender, RankTag, World
from tui_eval.errors import EXIT_OK, QuietExit, UsageError
from tui_eval.events import (
    EventSink,
    FanOut,
    Progress,
    RankFinished,
    RankStarted,
    RunFailed,
    RunFinished,
    RunLog,
    RunStarted,
    TryStarted,
)
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.model.backend import HFBackend
from tui_eval.results import (
    PREDICTIONS_FILE,
    TUNE_FILE,
    PredictionRow,
    PredictionWriter,
    RunMetrics,
    TuneResult,
    build_run_metrics,
    default_run_dir,
    holds_run,
    missing_dirs,
    prepare_run_dir,
    rank_predictions_file,
    remove_if_empty,
)

# After a stop, how long rank 0 waits for the other ranks to report before it writes the
# run's metrics from the rows on disk (torchrun kills what is left 30 s after a stop).
STOP_GRACE_S = 10.0


@dataclass
class Decision:
    """What rank 0 decided about the run, broadcast before any other rank does anything: a
    run rank 0 stopped (bad input, a failure) or one already complete ends every rank;
    otherwise all write to ``run_dir`` and skip the samples ``done``."""

    run_dir: str = ""
    done: list[int] = field(default_factory=list)
    complete: bool = False
    stopped: bool = False  # rank 0 could not go on (bad input, a failure, a stop)


@dataclass
class Share:
    """What one process runs: its samples (all of them in a run of one) as planned items,
    at the run's batch size, reporting to ``sink``; on rank 0 of several, the board and
    the collector of the other ranks' events too."""

    total: int  # this try's samples, over every rank
    batch_size: int
    samples: list[Any]
    items: list[Any]
    started_line: tuple[str, dict[str, object]]
    sink: EventSink
    board: RankBoard | None = None
    collector: RankEventCollector | None = None


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
                 front_end: str = "cli", world: World | None = None,
                 config_source: ConfigSource | None = None) -> None:
        # backend: an already loaded model to reuse (bench runs one model at many sizes)
        self.backend = backend
        # front_end: "cli" or "app"; the log's hints name what that front end can do
        # (the app has no --overwrite flag)
        self.front_end = front_end
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
        # world: the processes of a run of several (torchrun), joined; rank 0 owns the
        # results directory, the others send their events to it
        self.world = world or World()
        self.recorder = EventRecorder()
        self.sink: EventSink = FanOut(self.recorder, sink)
        if not self.world.is_main:
            self.sink = FanOut(RankEventSender(self.world.store, self.world.rank), sink)
        self.cancel = cancel or CancelToken()
        self.run_dir: Path | None = None
        self.created_dirs: list[Path] = []  # made for this run: removed if it fails empty
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
        if not self.world.is_main:
            return self._run_as_peer()
        self._log_config_source()
        try:
            config = self.config = self._settle(self.requested, self.log)
            backend = self.backend or open_backend(config, self.log)
            dataset = read_dataset(config, self.log)
            # a choice task checks its pairs here
            task = self.task = make_task(config, backend, dataset)
            self.skipped_lines = len(dataset.skipped)
            run_dir = Path(config.output_dir or default_run_dir())
            self.created_dirs = missing_dirs(run_dir)
            self.run_dir = prepare_run_dir(run_dir)
            self._plan_resume(config, dataset)
            finished = self._already_complete(dataset)
            if finished is None:
                # before anything is written: a rerun with a smaller --max-tokens starts afresh
                task.check(self.resumed.remaining(dataset.samples), self.log)
        except BaseException:  # the other ranks stop too; rank 0 says why
            self.world.broadcast(Decision(stopped=True))
            raise
        self.world.broadcast(Decision(run_dir=str(self.run_dir),
                                      done=sorted(self.resumed.done_indices),
                                      complete=finished is not None))
        if finished is not None:
            return finished
        self.recorder.open(self.run_dir)  # writes the lines logged so far first
        # a watcher forgets the last try's ending here, and follows this process
        self.sink(TryStarted(run_dir=str(self.run_dir), pid=os.getpid(),
                             done_before=self.resumed.done, total=len(dataset.samples),
                             world_size=self.world.size))
        if backend.model is None:
            load_weights(backend, config, self.log)
        run_description(config, backend).write(self.run_dir)
        if self.resumed.done:
            self.sink = ProgressOffset(self.sink, self.resumed.done)
        return self._evaluate(task, backend, dataset)

    def _log_config_source(self) -> None:
        source = self.config_source
        if source is None:
            return
        if not source.keys:
            self.log("INFO", "config_file_empty", path=source.path)
            return
        self.log("INFO", "config_file_found" if source.found else "config_file",
                 path=source.path, keys=", ".join(source.keys))

    def _settle(self, requested: EvalConfig, log: Any) -> EvalConfig:
        config = settle_config(requested, log)
        return for_rank(config, self.world.local_rank) if self.world.several else config

    def _run_as_peer(self) -> RunMetrics:
        """A rank other than 0: wait for rank 0's decision, then prepare the same way,
        quietly (rank 0 has said it all), and run this rank's share."""
        decision: Decision = self.world.broadcast()
        if decision.stopped or decision.complete:
            # Rank 0 says why and gives the run's exit code; this rank leaves quietly, and
            # with 0, which torchrun does not take for a failure that ends rank 0 at once.
            raise QuietExit(EXIT_OK)

        def quiet(level: str, key: str, **values: object) -> None:
            """Rank 0 logs the preparation once for all."""

        config = self.config = self._settle(self.requested, quiet)
        backend = self.backend or open_backend(config, quiet)
        dataset = read_dataset(config, quiet)
        task = self.task = make_task(config, backend, dataset)
        self.skipped_lines = len(dataset.skipped)
        self.run_dir = Path(decision.run_dir)
        self.resumed = ResumePlan(indices=frozenset(decision.done))
        task.check(self.resumed.remaining(dataset.samples), quiet)
        if backend.model is None:
            load_weights(backend, config, quiet)
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
        world = self.world
        assert self.run_dir is not None
        samples = self.resumed.remaining(dataset.samples)  # a resumed run skips rows on disk
        items = task.plan(samples)
        # rank 0 tunes on the run's longest items and tells the others the size
        batch_size = world.broadcast(self._batch_size(task, items, backend)
                                     if world.is_main else None)
        share = Share(total=len(samples), batch_size=batch_size, samples=samples, items=items,
                      started_line=task.started_line(len(samples), batch_size),
                      sink=self.sink)
        if not world.several:
            return self._run_batches(task, backend, dataset, share)
        # each rank runs its share, about as many tokens as the others'
        share.samples = share_by_cost(samples, task.costs(samples), world.size)[world.rank]
        share.items = task.plan(share.samples)
        if not world.is_main:
            share.sink = RankTag(self.sink, world.rank)
            return self._run_batches(task, backend, dataset, share)
        board = share.board = RankBoard(self.sink, world.size, share.total)
        self.sink = board  # the collector's thread writes through it too
        share.sink = RankTag(board, world.rank)
        collector = share.collector = RankEventCollector(world.store, world.size, board)
        collector.start()
        try:
            return self._run_batches(task, backend, dataset, share)
        finally:
            collector.stop()

    def _run_batches(self, task: RunTask, backend: HFBackend,
                     dataset: Dataset | ChoiceDataset, share: Share) -> RunMetrics:
        """This process's share of the batches; then, on rank 0, the run's metrics."""
        config, world = self.config, self.world
        assert self.run_dir is not None
        samples, items, batch_size, total = (share.samples, share.items, share.batch_size,
                                             share.total)
        loop_sink = share.sink
        started_key, started_values = share.started_line
        loop_log = RunLog(loop_sink, self.lang)
        policy = make_oom_policy(config.oom_policy, task.work(), loop_sink, self.lang,
                                 batch_size, DEVICE_HOOKS)
        writer = PredictionWriter(self.run_dir, rank_predictions_file(world.rank)
                                  if world.several else PREDICTIONS_FILE)
        if world.is_main:
            self.sink(RunStarted(run_dir=str(self.run_dir), total=total,
                                 batch_size=batch_size, model=str(config.model),
                                 device=backend.device, dtype=backend.dtype_name,
                                 pid=os.getpid(), world_size=world.size))
            self.log("INFO", started_key, **started_values)
        if world.several:
            loop_sink(RankStarted(total=len(samples), batch_size=batch_size, device=backend.device,
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
                    done=len(rows), total=len(samples), samples_per_s=rate,
                    tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                    eta_s=(len(samples) - len(rows)) / rate if rate > 0 else None,
                    batch_size=policy.batch_size, fallbacks=policy.fallbacks, errors=errors))
        finally:
            writer.close()
            task.finish()
        generation_seconds = max(0.0, time.perf_counter() - generation_started
                                 - task.compile_seconds)
        finished = RankFinished(
            done=len(rows), generated_tokens=tokens, generation_seconds=generation_seconds,
            fallbacks=policy.fallbacks, final_batch_size=policy.batch_size, errors=errors,
            compiled=task.compiled, compile_seconds=task.compile_seconds,
            stopped=len(rows) < len(samples))
        if world.several:
            loop_sink(finished)
            if not world.is_main:  # rank 0 writes the run's metrics
                return self._rank_metrics(rows, len(samples), finished, backend)
            assert share.board is not None and share.collector is not None
            self._wait_for_ranks(share.board)
            share.collector.stop()
            rows, finished = self._gather_ranks(share.board, finished, generation_started)
        # Rows kept from earlier tries count like rows made now; rates stay this try's.
        all_rows = self.resumed.rows + rows
        metrics = build_run_metrics(
            all_rows, config.metric_names, n_total=len(dataset.samples),
            n_resumed=self.resumed.done, n_skipped_lines=self.skipped_lines,
            batch_size=batch_size, final_batch_size=finished.final_batch_size,
            tune_seconds=self.tune_seconds, fallback_count=finished.fallbacks,
            wall_seconds=time.perf_counter() - self.started,
            generation_seconds=finished.generation_seconds, compiled=finished.compiled,
            compile_seconds=finished.compile_seconds, generated=len(rows),
            generated_tokens=finished.generated_tokens, device=backend.device,
            dtype=backend.dtype_name, model=str(config.model), extract=config.extract,
            task=task.name)
        board = share.board
        if board is not None and (len(board.finished) == world.size or not metrics.partial):
            # every rank has closed its file (or every sample has its row): one
            # predictions.jsonl in dataset order, as a run of one leaves
            replace_rank_files(self.run_dir, sorted(all_rows, key=lambda row: row.index))
        elif board is None and not metrics.partial:
            writer.restore_dataset_order()
        metrics.write(self.run_dir)
        if metrics.partial:
            self.log("INFO", "run_cancelled", done=metrics.n, total=metrics.n_total,
                     run_dir=self.run_dir)
        elif self.resumed.done:
            self.log("INFO", "run_finished_resumed", n=len(rows),
                     seconds=finished.generation_seconds, rate=metrics.samples_per_s,
                     kept=self.resumed.done, run_dir=self.run_dir)
        else:
            self.log("INFO", "run_finished", n=len(rows), seconds=finished.generation_seconds,
                     rate=metrics.samples_per_s, run_dir=self.run_dir)
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _wait_for_ranks(self, board: RankBoard) -> None:
        """Rank 0, its own share done: wait for every rank's report; after a stop, only
        a little (a rank that died never reports)."""
        stop_at: float | None = None
        while not board.all_finished.wait(0.2):
            if self.cancel.cancelled:
                stop_at = stop_at or time.monotonic() + STOP_GRACE_S
                if time.monotonic() >= stop_at:
                    return

    def _gather_ranks(self, board: RankBoard, own: RankFinished,
                      generation_started: float) -> tuple[list[PredictionRow], RankFinished]:
        """This try's rows of every rank, from their files (a rank that died has its
        finished batches there too), and the ranks' reports summed."""
        assert self.run_dir is not None
        kept = self.resumed.done_indices
        rows = [row for row in read_run_rows(self.run_dir)[0] if row.index not in kept]
        reports = list(board.finished.values()) or [own]
        compile_seconds = max(report.compile_seconds for report in reports)
        if len(reports) == self.world.size:
            # the ranks started together (after the batch size was broadcast): the run
            # took as long as its slowest rank, by that rank's own clock
            seconds = max(report.generation_seconds for report in reports)
        else:  # a rank never reported: rank 0's clock until it stopped waiting
            seconds = max(0.0, time.perf_counter() - generation_started - compile_seconds)
        summed = RankFinished(
            done=len(rows), generated_tokens=sum(r.generated_tokens for r in reports),
            generation_seconds=seconds,
            fallbacks=sum(r.fallbacks for r in reports),
            final_batch_size=min(r.final_batch_size for r in reports),
            errors=sum(r.errors for r in reports), compiled=any(r.compiled for r in reports),
            compile_seconds=compile_seconds, stopped=any(r.stopped for r in reports))
        return rows, summed

    def _rank_metrics(self, rows: list[PredictionRow], share: int, finished: RankFinished,
                      backend: HFBackend) -> RunMetrics:
        """A rank other than 0: its own share's figures, for its exit code; not written."""
        return build_run_metrics(
            rows, self.config.metric_names, n_total=share,
            batch_size=finished.final_batch_size, final_batch_size=finished.final_batch_size,
            fallback_count=finished.fallbacks, wall_seconds=time.perf_counter() - self.started,
            generation_seconds=finished.generation_seconds, generated=len(rows),
            generated_tokens=finished.generated_tokens, device=backend.device,
            dtype=backend.dtype_name, model=str(self.config.model), task=self.config.task
            or "generate")

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
