"""What happens when a batch fails: the seed guide's fallback to single-sample generation
(``single``), or splitting the batch in halves until the parts fit (``bisect``).

A failed batch is freed and its samples are generated again in smaller parts; a sample
that fails alone is recorded with its error. No sample is dropped and none is generated
twice into the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tui_eval.data import Sample
from tui_eval.device.oom import free_memory, is_oom_error, summarize_error
from tui_eval.events import EventSink, Fallback, RunLog
from tui_eval.model.backend import Generation


@dataclass
class Outcome:
    sample: Sample
    prediction: str | None
    new_tokens: int
    error: str | None = None


GenerateFn = Callable[[list[Sample]], Generation]


class OomPolicy:
    """Runs one batch through ``generate`` and recovers from its failure: the ``single``
    policy, which regenerates a failed batch one sample at a time."""

    def __init__(self, generate: GenerateFn, sink: EventSink, lang: str,
                 batch_size: int = 1) -> None:
        self.generate = generate
        self.sink = sink
        self._log = RunLog(sink, lang)
        self.fallbacks = 0
        self.batch_size = batch_size  # the run's batch size; only BisectPolicy lowers it

    def run_batch(self, samples: Sequence[Sample]) -> list[Outcome]:
        outcomes, error, _ = self._try(samples)
        if outcomes is not None:
            return outcomes
        if len(samples) == 1:
            return [self._failed(samples[0], error)]
        self._batch_failed(len(samples), error)
        self._log("INFO", "fallback_single")
        return self._one_by_one(samples)

    def _batch_failed(self, size: int, error: str) -> None:
        """Count and report a failed batch: the Fallback event and the seed's warning line."""
        self.fallbacks += 1
        self.sink(Fallback(batch_size=size, error=error))
        self._log("WARNING", "batch_failed", error=error)

    def _one_by_one(self, samples: Sequence[Sample]) -> list[Outcome]:
        return [outcome for sample in samples for outcome in self.run_single(sample)]

    def run_single(self, sample: Sample) -> list[Outcome]:
        outcomes, error, _ = self._try([sample])
        return outcomes if outcomes is not None else [self._failed(sample, error)]

    def _try(self, samples: Sequence[Sample]) -> tuple[list[Outcome] | None, str, bool]:
        """Generate, or return (None, the error's summary, whether it was an OOM) with the
        failed attempt's memory already freed."""
        try:
            return self._generate(samples), "", False
        except Exception as exc:  # noqa: BLE001 - any failure is recovered from, as the seed says
            error = summarize_error(exc)
            oom = is_oom_error(exc)
            del exc  # the traceback holds the batch's tensors
        if oom:
            free_memory()
        return None, error, oom

    def _failed(self, sample: Sample, error: str) -> Outcome:
        self._log("ERROR", "sample_failed", id=sample.id, error=error)
        return Outcome(sample=sample, prediction=None, new_tokens=0, error=error)

    def _generate(self, samples: Sequence[Sample]) -> list[Outcome]:
        generation = self.generate(list(samples))
        return [Outcome(sample=s, prediction=text, new_tokens=n)
                for s, text, n in zip(samples, generation.texts, generation.new_tokens,
                                      strict=True)]


class BisectPolicy(OomPolicy):
    """On OOM, split the failed batch in halves until the parts fit, and keep the size that
    fit for the rest of the run: one OOM costs a few retries, not a batch of singles and
    not one more OOM per batch. A failure that is not an OOM falls back to single samples,
    since smaller batches would not help it."""

    def run_batch(self, samples: Sequence[Sample]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        rest = list(samples)
        while rest:  # re-read each time: a failed part may have lowered it
            part, rest = rest[:self.batch_size], rest[self.batch_size:]
            outcomes.extend(self._attempt(part))
        return outcomes

    def _attempt(self, part: list[Sample]) -> list[Outcome]:
        outcomes, error, oom = self._try(part)
        if outcomes is not None:
            return outcomes
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


def make_oom_policy(name: str, generate: GenerateFn, sink: EventSink, lang: str,
                    batch_size: int) -> OomPolicy:
    return OOM_POLICIES[name](generate, sink, lang, batch_size)
