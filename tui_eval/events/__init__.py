"""Typed events the engine emits; the headless printer, the app and events.jsonl consume them.

Each event serialises to one JSON object with an ``event`` field naming its kind, so a
watcher can rebuild the same objects from events.jsonl (``recorder`` writes the file,
``follow`` reads it back as it grows). ``view.RunView`` folds them into a run's state,
which every front end draws from.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tui_eval.i18n import message
from tui_eval.results import RunMetrics, TuneProbe, from_known_fields


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)
    # the process that emitted it, in a run of several (torchrun); None in a run of one
    rank: int | None = field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass
class TryStarted(Event):
    """A try of a run has begun: the engine decided to start or continue the directory and is
    about to load the model. Everything before it in events.jsonl belongs to earlier tries,
    so a follower forgets their ending here and watches this pid from now on."""

    kind: ClassVar[str] = "try_started"
    run_dir: str
    pid: int
    done_before: int = 0  # samples kept from earlier tries
    total: int = 0  # samples in the dataset
    world_size: int = 1  # processes sharing the run (torchrun); pid is rank 0's


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "started"
    run_dir: str
    total: int
    batch_size: int
    model: str
    device: str
    dtype: str
    pid: int = 0
    world_size: int = 1  # processes sharing the run; device is rank 0's


@dataclass
class LogLine(Event):
    kind: ClassVar[str] = "log"
    level: str  # "INFO" | "WARNING" | "ERROR"
    message: str


@dataclass
class ResumeDecided(Event):
    """The results directory already held a run of the same config: the engine continues it
    (``outcome`` "resume") or finds it complete ("complete"), before the model loads."""

    kind: ClassVar[str] = "resume_decided"
    run_dir: str
    outcome: str  # "resume" | "complete"
    done: int  # samples on disk
    total: int  # samples in the dataset
    automatic: bool = False  # -o named it without --resume


@dataclass(frozen=True)
class ResumeWords:
    """A front end's words for a ``ResumeDecided`` (keys of i18n's messages): its hint names
    what that front end can do instead (the app has no --overwrite). The defaults are the
    command line's."""

    resume: str = "resume_explicit"
    resume_auto: str = "resume_auto"
    complete: str = "already_complete"

    def line(self, decided: ResumeDecided, lang: str) -> LogLine:
        if decided.outcome == "complete":
            key = self.complete
        else:
            key = self.resume_auto if decided.automatic else self.resume
        return LogLine(level="INFO", message=message(
            key, lang, run_dir=decided.run_dir, done=decided.done, total=decided.total,
            n=decided.done))


@dataclass
class RankProgress:
    """One process's share of a run of several: its own counts and rates."""

    rank: int
    done: int
    total: int
    samples_per_s: float = 0.0
    tokens_per_s: float = 0.0
    batch_size: int = 0
    fallbacks: int = 0
    errors: int = 0
    device: str = ""
    finished: bool = False  # its share is done (or it stopped)


@dataclass
class Progress(Event):
    """The run's progress. In a run of several processes the counts and rates are the sum
    over all of them (batch_size: the smallest), and ``ranks`` holds each one's share."""

    kind: ClassVar[str] = "progress"
    done: int
    total: int
    samples_per_s: float
    tokens_per_s: float
    eta_s: float | None
    batch_size: int
    fallbacks: int
    errors: int
    ranks: list[RankProgress] = field(default_factory=list)


@dataclass
class RankStarted(Event):
    """One process of a run of several has its share and starts on it."""

    kind: ClassVar[str] = "rank_started"
    total: int  # its share of the samples
    batch_size: int
    device: str
    pid: int
    host: str = ""


@dataclass
class RankFinished(Event):
    """One process of a run of several is done with its share, or stopped; rank 0 waits for
    every rank's before it writes the run's metrics."""

    kind: ClassVar[str] = "rank_finished"
    done: int
    generated_tokens: int = 0
    generation_seconds: float = 0.0
    fallbacks: int = 0
    final_batch_size: int = 0
    errors: int = 0
    compile: str = "off"  # the faster path a batch ran on ("on", "graph"), or "off"
    compile_seconds: float = 0.0
    stopped: bool = False  # cancelled before its share was done


@dataclass
class Fallback(Event):
    """A batch failed and its samples are being generated one at a time."""

    kind: ClassVar[str] = "fallback"
    batch_size: int
    error: str


@dataclass
class TuneStep(Event, TuneProbe):
    """A probe of the batch-size tuner has finished (the same record as tune.json's)."""

    kind: ClassVar[str] = "tune_step"

    @classmethod
    def of(cls, probe: TuneProbe) -> TuneStep:
        return cls(**probe.to_dict())

    def probe(self) -> TuneProbe:
        return from_known_fields(TuneProbe, dataclasses.asdict(self))


@dataclass
class TuneFinished(Event):
    kind: ClassVar[str] = "tune_finished"
    chosen_batch_size: int
    mode: str
    probes: list[TuneProbe]
    from_cache: bool = False  # the user's tune cache answered: nothing was probed now


@dataclass
class RunFinished(Event):
    kind: ClassVar[str] = "finished"
    metrics: RunMetrics


@dataclass
class RunFailed(Event):
    kind: ClassVar[str] = "failed"
    error: str


EventSink = Callable[[Event], object]  # what a sink returns is ignored (RunView.apply's Change)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (TryStarted, RunStarted, LogLine, Progress, Fallback, TuneStep, TuneFinished,
                RunFinished, RunFailed, RankStarted, RankFinished, ResumeDecided)
}


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """Rebuild an event read back from events.jsonl; unknown kinds, and records of a known
    kind that lack its fields, give None."""
    cls = EVENT_TYPES.get(str(data.get("event")))
    if cls is None:
        return None
    try:
        if cls is RunFinished:
            data = {**data, "metrics": RunMetrics.from_dict(data.get("metrics") or {})}
        elif cls is Progress:
            data = {**data, "ranks": [from_known_fields(RankProgress, r)
                                      for r in data.get("ranks") or []]}
        elif cls is TuneFinished:
            data = {**data, "probes": [from_known_fields(TuneProbe, p)
                                       for p in data.get("probes") or []]}
        return from_known_fields(cls, data)
    except (TypeError, AttributeError):
        return None


def format_log_line(event: LogLine) -> str:
    """One line as in run.log; warnings use the seed guide's '⚠️ message' form. A line from
    one process of several names it: '⚠️ rank 1: message'."""
    text = event.message if event.rank is None else f"rank {event.rank}: {event.message}"
    if event.level == "WARNING":
        return f"⚠️ {text}"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
    return f"[{event.level}] {stamp} - {text}"


class FanOut:
    """Sends every event to several sinks in order."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = list(sinks)

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            sink(event)


class RunLog:
    """``log("INFO", "message_key", **values)``: one line in the run's language, sent to the
    sink as a LogLine (the engine, the tuner and the OOM policies all log this way)."""

    def __init__(self, sink: EventSink, lang: str) -> None:
        self.sink = sink
        self.lang = lang

    def __call__(self, level: str, key: str, **values: object) -> None:
        self.sink(LogLine(level=level, message=message(key, self.lang, **values)))
