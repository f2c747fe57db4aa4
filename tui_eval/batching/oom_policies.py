"""What happens when a batch fails: the seed guide's fallback to single-sample generation
(``single``), or splitting the batch in halves until the parts fit (``bisect``).

A policy runs any batch work over any items: generation over samples, or log-likelihood
scoring over (context, choice) pairs. A failed batch is freed and its items are run again
in smaller parts; an item that fails alone is recorded with its error. No item is dropped
and none is run twice into the results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from tui_eval.batching.hooks import PLAIN_HOOKS, DeviceHooks
from tui_eval.events import EventSink, Fallback, RunLog

if TYPE_CHECKING:  # only for annotations: importing them would slow `tui-eval --help`
    from tui_eval.data import Sample

Item = TypeVar("Item")  # what a batch holds: a sample, a (context, choice) pair
Result = TypeVar("Result")  # what running one item gives


class BatchWork(ABC, Generic[Item, Result]):
    """What a policy runs: a batch of items at once, and what an item that failed on its
    own is recorded as."""

    @abstractmethod
    def run(self, items: list[Item]) -> list[Result]:
        """One result per item, in their order; raises when the batch fails (an OOM)."""

    @abstractmethod
    def failed(self, item: Item, error: str) -> Result:
        """The result of an item that failed even alone."""

    @abstractmethod
    def name(self, item: Item) -> str:
        """How the log names an item."""


@dataclass
class Outcome:
    sample: Sample
    prediction: str | None
    new_tokens: int
    error: str | None = None


class Generation(Protocol):
    """What a generate call gives (the backend's ``Generation``)."""

    texts: list[str]
    new_tokens: list[int]


GenerateFn = Callable[[list["Sample"]], Generation]


class GenerationWork(BatchWork["Sample", "Outcome"]):
    """Generation: a batch of samples through ``generate``, one prediction each."""

    def __init__(self, generate: GenerateFn) -> None:
        self.generate = generate

    def run(self, items: list[Sample]) -> list[Outcome]:
        generation = self.generate(items)
        return [Outcome(sample=s, prediction=text, new_tokens=n)
                for s, text, n in zip(items, generation.texts, generation.new_tokens,
                                      strict=True)]

    def failed(self, item: Sample, error: str) -> Outcome:
        return Outcome(sample=item, prediction=None, new_tokens=0, error=error)

    def name(self, item: Sample) -> str:
        return item.id


class OomPolicy(Generic[Item, Result]):
    """Runs one batch of ``work`` and recovers from its failure: the ``single`` policy,
    which runs a failed batch again one item at a time. A bare generate function is taken
    as generation work."""

    def __init__(self, work: BatchWork[Item, Result] | GenerateFn, sink: EventSink,
                 lang: str, batch_size: int = 1, hooks: DeviceHooks = PLAIN_HOOKS) -> None:
        self.work: BatchWork[Item, Result] = (
            work if isinstance(work, BatchWork) else GenerationWork(work))  # type: ignore[assignment]
        self.sink = sink
        self._log = RunLog(sink, lang)
        self.fallbacks = 0
        self.batch_size = batch_size  # the run's batch size; only BisectPolicy lowers it
        self.hooks = hooks

    def run_batch(self, items: Sequence[Item]) -> list[Result]:
        results, error, _ = self._try(items)
        if results is not None:
            return results
        if len(items) == 1:
            return [self._failed(items[0], error)]
        self._batch_failed(len(items), error)
        self._log("INFO", "fallback_single")
        return self._one_by_one(items)

    def _batch_failed(self, size: int, error: str) -> None:
        """Count and report a failed batch: the Fallback event and the seed's warning line."""
        self.fallbacks += 1
        self.sink(Fallback(batch_size=size, error=error))
        self._log("WARNING", "batch_failed", error=error)

    def _one_by_one(self, items: Sequence[Item]) -> list[Result]:
        return [result for item in items for result in self.run_single(item)]

    def run_single(self, item: Item) -> list[Result]:
        results, error, _ = self._try([item])
        return results if results is not None else [self._failed(item, error)]

    def _try(self, items: Sequence[Item]) -> tuple[list[Result] | None, str, bool]:
        """Run, or return (None, the error's summary, whether it was an OOM) with the
        failed attempt's memory already freed."""
        try:
            return self.work.run(list(items)), "", False
        except Exception as exc:  # noqa: BLE001 - any failure is recovered from, as the seed says
            error = self.hooks.summarize_error(exc)
            oom = self.hooks.is_oom(exc)
            del exc  # the traceback holds the batch's tensors
        if oom:
            self.hooks.free_memory()
        return None, error, oom

    def _failed(self, item: Item, error: str) -> Result:
        self._log("ERROR", "sample_failed", id=self.work.name(item), error=error)
        return self.work.failed(item, error)


class BisectPolicy(OomPolicy[Item, Result]):
    """On OOM, split the failed batch in halves until the parts fit, and keep the size that
    fit for the rest of the run: one OOM costs a few retries, not a batch of singles and
    not one more OOM per batch. A failure that is not an OOM falls back to single items,
    since smaller batches would not help it."""

    def run_batch(self, items: Sequence[Item]) -> list[Result]:
        results: list[Result] = []
        rest = list(items)
        while rest:  # re-read each time: a failed part may have lowered it
            part, rest = rest[:self.batch_size], rest[self.batch_size:]
            results.extend(self._attempt(part))
        return results

    def _attempt(self, part: list[Item]) -> list[Result]:
        results, error, oom = self._try(part)
        if results is not None:
            return results
        if len(part) == 1:
            return [self._failed(part[0], error)]
        self._batch_failed(len(part), error)
        half = (len(part) + 1) // 2
        if not oom or half == 1:
            self._log("INFO", "fallback_single")  # the seed's line, once parts are single
        else:
            self._log("INFO", "bisect_split", size=len(part), part=half)
        if not oom:
            return self._one_by_one(part)
        if half < self.batch_size:
            self.batch_size = half
            self._log("INFO", "batch_size_lowered", batch_size=half)
        return self.run_batch(part)


OOM_POLICIES: dict[str, type[OomPolicy]] = {"bisect": BisectPolicy, "single": OomPolicy}


def make_oom_policy(name: str, work: BatchWork[Item, Result] | GenerateFn, sink: EventSink,
                    lang: str, batch_size: int,
                    hooks: DeviceHooks = PLAIN_HOOKS) -> OomPolicy[Item, Result]:
    return OOM_POLICIES[name](work, sink, lang, batch_size, hooks)
