"""Rank 0's view of a run of several processes: every rank's share, summed into the run's
progress, and whether every rank is done."""

from __future__ import annotations

import dataclasses
import threading

from tui_eval.events import Event, EventSink, Progress, RankFinished, RankProgress, RankStarted


class RankBoard:
    """An event sink in front of the run's own. Each rank's progress (its own events, and
    the others' as collected from the store) updates its share and goes on as the run's
    total progress, ``ranks`` holding every share; other events pass through. Called from
    the main thread and from the collector's, so one lock keeps the files whole."""

    def __init__(self, sink: EventSink, size: int, total: int) -> None:
        self.sink = sink
        self.size = size
        self.total = total  # samples of this try, over every rank
        self.shares: dict[int, RankProgress] = {}
        self.finished: dict[int, RankFinished] = {}
        self.all_finished = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, RankStarted) and event.rank is not None:
                self.shares[event.rank] = RankProgress(
                    rank=event.rank, done=0, total=event.total, batch_size=event.batch_size,
                    device=event.device)
                self.sink(event)
            elif isinstance(event, Progress) and event.rank is not None:
                share = self._share(event.rank, event.total)
                share.done, share.total = event.done, event.total
                share.samples_per_s, share.tokens_per_s = event.samples_per_s, event.tokens_per_s
                share.batch_size, share.fallbacks = event.batch_size, event.fallbacks
                share.errors = event.errors
                self.sink(self.progress())
            elif isinstance(event, RankFinished) and event.rank is not None:
                share = self._share(event.rank, event.done)
                share.finished = True
                share.done = event.done
                self.finished[event.rank] = event
                self.sink(event)
                progress = self.progress()
                if progress.done < progress.total:  # the last rank's own line said it all
                    self.sink(progress)
                if len(self.finished) >= self.size:
                    self.all_finished.set()
            else:
                self.sink(event)

    def _share(self, rank: int, total: int) -> RankProgress:
        if rank not in self.shares:
            self.shares[rank] = RankProgress(rank=rank, done=0, total=total)
        return self.shares[rank]

    def progress(self) -> Progress:
        """The run's progress: counts summed over the ranks; the rates of those still
        working (a rank that is done no longer adds to the pace), or of all once all are,
        so the line that completes the run shows the pace the summary reports."""
        shares = [self.shares[rank] for rank in sorted(self.shares)]
        working = [share for share in shares
                   if not share.finished and share.done < share.total] or shares
        done = sum(share.done for share in shares)
        rate = sum(share.samples_per_s for share in working)
        return Progress(
            done=done, total=self.total, samples_per_s=rate,
            tokens_per_s=sum(share.tokens_per_s for share in working),
            eta_s=(self.total - done) / rate if rate > 0 else None,
            batch_size=min((share.batch_size for share in working if share.batch_size),
                           default=0),
            fallbacks=sum(share.fallbacks for share in shares),
            errors=sum(share.errors for share in shares),
            ranks=[dataclasses.replace(share) for share in shares])
