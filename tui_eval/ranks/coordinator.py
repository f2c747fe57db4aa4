"""A process's part in a run: ``Solo`` (a run of one), ``Leader`` (rank 0 of several) or
``Peer`` (any other rank). The evaluation asks its coordinator the same questions whatever
the part (who decides the run, which batch size, which samples, where the events go, how
the run ends), so its run loop holds no rank branch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from tui_eval.batching.plan import share_by_cost
from tui_eval.config import EvalConfig
from tui_eval.errors import EXIT_OK, QuietExit
from tui_eval.events import Event, EventSink, FanOut, RankFinished
from tui_eval.ranks.rank_board import RankBoard
from tui_eval.ranks.world import (
    RankEventCollector,
    RankEventSender,
    RankTag,
    World,
    for_rank,
)
from tui_eval.results.metrics import RunMetrics
from tui_eval.results.predictions import PredictionRow
from tui_eval.results.run_dir import RunDir

# After a stop, how long rank 0 waits for the other ranks to report before it writes the
# run's metrics from the rows on disk (torchrun kills what is left 30 s after a stop).
STOP_GRACE_S = 10.0

T = TypeVar("T")


@dataclass
class Decision:
    """What rank 0 decided about the run, broadcast before any other rank does anything: a
    run rank 0 stopped (bad input, a failure) or one already complete ends every rank;
    otherwise all write to ``run_dir`` and skip the samples ``done``."""

    run_dir: RunDir | None = None
    done: list[int] = field(default_factory=list)
    complete: bool = False
    stopped: bool = False  # rank 0 could not go on (bad input, a failure, a stop)


@dataclass
class Sinks:
    """Where a process's events go once its batches run: ``run``, the run's own events
    (a failure, its metrics); ``share``, this process's batches; ``lead``, the lines that
    speak for the whole run (silent on a rank other than 0)."""

    run: EventSink
    share: EventSink
    lead: EventSink


class Preparing(Protocol):
    """The evaluation's preparation, as a coordinator calls it."""

    def decide(self) -> Decision:
        """Prepare, plan the output directory and the resume, check: rank 0's part."""

    def begin(self, decision: Decision) -> None:
        """Open the run (events file, weights, config.json): rank 0's part."""

    def follow(self, decision: Decision) -> None:
        """Prepare quietly as rank 0 decided: another rank's part."""


class Ending(Protocol):
    """The evaluation's end of a run, as a coordinator calls it."""

    def run_metrics(self, rows: list[PredictionRow], report: RankFinished) -> RunMetrics:
        """The run's metrics (rows kept from earlier tries count), not yet written."""

    def share_metrics(self, rows: list[PredictionRow], report: RankFinished) -> RunMetrics:
        """One rank's own share's figures (for its exit code; never written)."""

    def announce(self, metrics: RunMetrics, generated: int) -> None:
        """The run's last line and its ``RunFinished``."""


class TryFiles(Protocol):
    """This try's prediction files."""

    run_dir: RunDir

    def rows_of_try(self) -> list[PredictionRow]:
        """This try's rows in every rank's file (a rank that died left its batches)."""

    def keep_in_order(self, rows: list[PredictionRow] | None) -> None:
        """predictions.jsonl in dataset order: the file as written (``None``), or every
        rank's ``rows`` merged into it."""


def silent(event: Event) -> None:
    """A rank other than 0 leaves speaking for the run to rank 0."""


class Solo:
    """A run of one process: it decides, runs every sample and writes the metrics."""

    def __init__(self, world: World | None = None) -> None:
        self.world = world or World()

    @property
    def predictions_rank(self) -> int | None:
        """Whose prediction file this process appends to: None, the run's own."""
        return None

    def sink(self, recorder: EventSink, front: EventSink) -> EventSink:
        """Where this process's events go from the start: its files and its front end."""
        return FanOut(recorder, front)

    def place(self, config: EvalConfig) -> EvalConfig:
        """The settled config on this process's device."""
        return config

    def decide(self, prepare: Preparing) -> Decision:
        decision = prepare.decide()
        if not decision.complete:
            prepare.begin(decision)
        return decision

    def batch_size(self, choose: Callable[[], int]) -> int:
        return choose()

    def share(self, samples: list[T], costs: Callable[[list[T]], Sequence[int]]) -> list[T]:
        return samples

    def sinks(self, sink: EventSink, total: int) -> Sinks:
        return Sinks(run=sink, share=sink, lead=sink)

    def report(self, event: Event) -> None:
        """A rank's start and end, for rank 0's board: none in a run of one."""

    def close(self) -> None:
        """Stop whatever the batches needed (rank 0's collector)."""

    def finish(self, rows: list[PredictionRow], report: RankFinished, started: float,
               end: Ending, files: TryFiles) -> RunMetrics:
        metrics = end.run_metrics(rows, report)
        if not metrics.partial:
            files.keep_in_order(None)
        files.run_dir.write_metrics(metrics)
        end.announce(metrics, len(rows))
        return metrics


class Leader(Solo):
    """Rank 0 of several: it decides for all and broadcasts, runs its share, collects the
    others' events on its board, and writes the run's metrics from every rank's file."""

    def __init__(self, world: World, cancel: Callable[[], bool]) -> None:
        super().__init__(world)
        self.cancelled = cancel
        self.board: RankBoard | None = None
        self.collector: RankEventCollector | None = None
        self.share_sink: EventSink = silent

    @property
    def predictions_rank(self) -> int | None:
        return self.world.rank

    def place(self, config: EvalConfig) -> EvalConfig:
        return for_rank(config, self.world.local_rank)

    def decide(self, prepare: Preparing) -> Decision:
        try:
            decision = prepare.decide()
        except BaseException:  # the other ranks stop too; rank 0 says why
            self.world.broadcast(Decision(stopped=True))
            raise
        self.world.broadcast(decision)
        if not decision.complete:
            prepare.begin(decision)
        return decision

    def batch_size(self, choose: Callable[[], int]) -> int:
        # rank 0 tunes on the run's longest items and tells the others the size
        return int(self.world.broadcast(choose()))

    def share(self, samples: list[T], costs: Callable[[list[T]], Sequence[int]]) -> list[T]:
        # each rank runs its share, about as many tokens as the others'
        return share_by_cost(samples, costs(samples), self.world.size)[self.world.rank]

    def sinks(self, sink: EventSink, total: int) -> Sinks:
        board = self.board = RankBoard(sink, self.world.size, total)
        self.share_sink = RankTag(board, self.world.rank)
        # the collector's thread writes through the board too
        self.collector = RankEventCollector(self.world.store, self.world.size, board)
        self.collector.start()
        return Sinks(run=board, share=self.share_sink, lead=board)

    def report(self, event: Event) -> None:
        self.share_sink(event)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()

    def finish(self, rows: list[PredictionRow], report: RankFinished, started: float,
               end: Ending, files: TryFiles) -> RunMetrics:
        assert self.board is not None
        self.report(report)
        self._wait_for_ranks(self.board)
        self.close()
        rows, summed = self._gather(files, report, started)
        metrics = end.run_metrics(rows, summed)
        if len(self.board.finished) == self.world.size or not metrics.partial:
            # every rank has closed its file (or every sample has its row): one
            # predictions.jsonl in dataset order, as a run of one leaves
            files.keep_in_order(rows)
        files.run_dir.write_metrics(metrics)
        end.announce(metrics, len(rows))
        return metrics

    def _wait_for_ranks(self, board: RankBoard) -> None:
        """Rank 0, its own share done: wait for every rank's report; after a stop, only
        a little (a rank that died never reports)."""
        stop_at: float | None = None
        while not board.all_finished.wait(0.2):
            if self.cancelled():
                stop_at = stop_at or time.monotonic() + STOP_GRACE_S
                if time.monotonic() >= stop_at:
                    return

    def _gather(self, files: TryFiles, own: RankFinished,
                started: float) -> tuple[list[PredictionRow], RankFinished]:
        """This try's rows of every rank, from their files, and the ranks' reports summed."""
        assert self.board is not None
        rows = files.rows_of_try()
        reports = list(self.board.finished.values()) or [own]
        compile_seconds = max(report.compile_seconds for report in reports)
        if len(reports) == self.world.size:
            # the ranks started together (after the batch size was broadcast): the run
            # took as long as its slowest rank, by that rank's own clock
            seconds = max(report.generation_seconds for report in reports)
        else:  # a rank never reported: rank 0's clock until it stopped waiting
            seconds = max(0.0, time.perf_counter() - started - compile_seconds)
        summed = RankFinished(
            done=len(rows), generated_tokens=sum(r.generated_tokens for r in reports),
            generation_seconds=seconds,
            fallbacks=sum(r.fallbacks for r in reports),
            final_batch_size=min(r.final_batch_size for r in reports),
            errors=sum(r.errors for r in reports),
            compile=next((r.compile for r in reports if r.compile != "off"), "off"),
            compile_seconds=compile_seconds, stopped=any(r.stopped for r in reports))
        return rows, summed


class Peer(Solo):
    """A rank other than 0: it waits for rank 0's decision and batch size, runs its share,
    sends its events to rank 0 through the store, and leaves the metrics to rank 0."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.share_sink: EventSink = silent

    @property
    def predictions_rank(self) -> int | None:
        return self.world.rank

    def sink(self, recorder: EventSink, front: EventSink) -> EventSink:
        return FanOut(RankEventSender(self.world.store, self.world.rank), front)

    def place(self, config: EvalConfig) -> EvalConfig:
        return for_rank(config, self.world.local_rank)

    def decide(self, prepare: Preparing) -> Decision:
        decision: Decision = self.world.broadcast()
        if decision.stopped or decision.complete:
            # Rank 0 says why and gives the run's exit code; this rank leaves quietly, and
            # with 0, which torchrun does not take for a failure that ends rank 0 at once.
            raise QuietExit(EXIT_OK)
        prepare.follow(decision)
        return decision

    def batch_size(self, choose: Callable[[], int]) -> int:
        return int(self.world.broadcast())

    def share(self, samples: list[T], costs: Callable[[list[T]], Sequence[int]]) -> list[T]:
        return share_by_cost(samples, costs(samples), self.world.size)[self.world.rank]

    def sinks(self, sink: EventSink, total: int) -> Sinks:
        self.share_sink = RankTag(sink, self.world.rank)
        return Sinks(run=sink, share=self.share_sink, lead=silent)

    def report(self, event: Event) -> None:
        self.share_sink(event)

    def finish(self, rows: list[PredictionRow], report: RankFinished, started: float,
               end: Ending, files: TryFiles) -> RunMetrics:
        self.report(report)
        return end.share_metrics(rows, report)


def coordinator_for(world: World, cancelled: Callable[[], bool]) -> Solo:
    """This process's part in the run ``world`` describes."""
    if not world.several:
        return Solo(world)
    return Leader(world, cancelled) if world.is_main else Peer(world)
