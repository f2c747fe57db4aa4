"""One reading of the events: ``RunView`` folds a run's events, in order, into its state.

Every front end (the headless printer, the plain watcher, the app and its watch mode) feeds
its events to a view and draws from it. ``apply`` answers what the event changed, a
``Change``, so a front end picks what to redraw without decoding the events itself: a new
kind of event touches this reducer only.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field, replace

from tui_eval.events import (
    Event,
    Fallback,
    LogLine,
    Progress,
    RankFinished,
    RankProgress,
    RankStarted,
    ResumeDecided,
    RunFailed,
    RunFinished,
    RunStarted,
    TryStarted,
    TuneFinished,
    TuneStep,
)
from tui_eval.results import RunMetrics

KEEP_LOG_LINES = 500


class Change(enum.Enum):
    """What an event changed in the view."""

    TRY = "try"  # a try began: its model loads
    RESUME = "resume"  # what the output directory held was decided
    STARTED = "started"  # the try generates
    PROGRESS = "progress"
    LOG = "log"  # a log line: ``logs[-1]``
    FALLBACK = "fallback"
    TUNE_STEP = "tune_step"  # a probe: ``tune_steps[-1]``
    TUNE = "tune"  # the tuner chose
    RANK = "rank"  # one process of several started or finished its share
    FINISHED = "finished"
    FAILED = "failed"


def changes_phase(event: Event) -> bool:
    """A start or an end: a front end that draws progress at its own pace draws the progress
    from before it first, and the progress from after it after (a start drawn last would
    cover the progress the run has made)."""
    return isinstance(event, (RunStarted, RunFinished, RunFailed))


@dataclass
class RunView:
    """A run as its events tell it. A new try (``try_started``, or a ``started`` event from a
    version without it) forgets how the last try ended and starts the progress over, but
    keeps the log."""

    started: RunStarted | None = None
    progress: Progress | None = None
    final: RunFinished | RunFailed | None = None
    tune: TuneFinished | None = None
    tune_steps: list[TuneStep] = field(default_factory=list)
    logs: deque[LogLine] = field(default_factory=lambda: deque(maxlen=KEEP_LOG_LINES))
    resume: ResumeDecided | None = None
    rank_shares: dict[int, RankProgress] = field(default_factory=dict)
    fallbacks: int = 0
    tries: int = 0
    pid: int = 0  # the latest try's process: what liveness looks at
    pid_since: float | None = None  # when that try began (pids are reused)
    try_started: TryStarted | None = None  # the latest try's announcement
    loading: bool = False  # that try has not started generating yet (model, tuning)
    last_event_at: float | None = None  # the newest event's time
    stopped: bool = False  # its process is gone without a final event (set by a follower)

    def apply(self, event: Event) -> Change | None:
        """Fold ``event`` in; what it changed, or None for an event the view ignores."""
        self.last_event_at = event.time
        if isinstance(event, TryStarted):
            self._begin_try(event.pid, event.time)
            self.try_started, self.loading = event, True
            return Change.TRY
        if isinstance(event, RunStarted):
            if not (self.loading and event.pid == self.pid):
                # no try_started before it: a file written by an older version
                self._begin_try(event.pid, event.time)
            self.loading = self.stopped = False
            self.started = event
            return Change.STARTED
        if isinstance(event, Progress):
            self.progress = event
            self.fallbacks = max(self.fallbacks, event.fallbacks)
            for share in event.ranks:
                self.rank_shares[share.rank] = share
            return Change.PROGRESS
        if isinstance(event, LogLine):
            self.logs.append(event)
            return Change.LOG
        if isinstance(event, Fallback):
            self.fallbacks += 1
            return Change.FALLBACK
        if isinstance(event, RunFinished):
            self.final = event
            return Change.FINISHED
        if isinstance(event, RunFailed):
            self.final = event
            return Change.FAILED
        if isinstance(event, TuneStep):
            self.tune_steps.append(event)
            return Change.TUNE_STEP
        if isinstance(event, TuneFinished):
            self.tune = event
            return Change.TUNE
        if isinstance(event, ResumeDecided):
            self.resume = event
            return Change.RESUME
        return self._apply_rank(event)

    def _apply_rank(self, event: Event) -> Change | None:
        if event.rank is None:
            return None
        if isinstance(event, RankStarted):
            self.rank_shares[event.rank] = RankProgress(
                rank=event.rank, done=0, total=event.total, batch_size=event.batch_size,
                device=event.device)
            return Change.RANK
        if isinstance(event, RankFinished):
            share = self.rank_shares.get(event.rank) or RankProgress(
                rank=event.rank, done=event.done, total=event.done)
            self.rank_shares[event.rank] = replace(share, done=event.done, finished=True)
            return Change.RANK
        return None

    def _begin_try(self, pid: int, time: float) -> None:
        self.progress, self.final = None, None
        self.fallbacks = 0
        self.rank_shares = {}
        self.stopped = False
        self.tries += 1
        self.pid, self.pid_since = pid, time

    def mark_stopped(self) -> None:
        """The try's process is gone and left no final event (a follower saw it)."""
        self.stopped = True

    # ── what front ends read ──────────────────────────────────────────────────────────

    @property
    def ended(self) -> bool:
        return self.final is not None

    @property
    def metrics(self) -> RunMetrics | None:
        """The metrics the try ended with (partial when it was stopped)."""
        return self.final.metrics if isinstance(self.final, RunFinished) else None

    @property
    def failure(self) -> RunFailed | None:
        return self.final if isinstance(self.final, RunFailed) else None

    @property
    def partial(self) -> bool:
        return self.metrics is not None and self.metrics.partial

    @property
    def done(self) -> int:
        """Samples done over the whole dataset (earlier tries' included)."""
        if self.progress is not None:
            return self.progress.done
        return self.try_started.done_before if self.try_started is not None else 0

    @property
    def total(self) -> int:
        for source in (self.progress, self.started, self.try_started):
            if source is not None:
                return source.total
        return 0

    @property
    def samples_per_s(self) -> float:
        return self.progress.samples_per_s if self.progress is not None else 0.0

    @property
    def batch_size(self) -> int | None:
        """The size batches run at now: the progress's, else the start's, else the tuner's."""
        if self.progress is not None:
            return self.progress.batch_size
        if self.started is not None:
            return self.started.batch_size
        return self.tune.chosen_batch_size if self.tune is not None else None

    @property
    def ranks(self) -> list[RankProgress]:
        """Each process's share in a run of several, by rank; empty in a run of one."""
        return [self.rank_shares[rank] for rank in sorted(self.rank_shares)]
