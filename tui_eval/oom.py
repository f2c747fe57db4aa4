"""What happens when a batch fails: the seed guide's fallback to single-sample generation.

A failed batch is freed and its samples are generated one at a time; a sample that fails
alone is recorded with its error. No sample is dropped and none is generated twice into
the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tui_eval.backend import Generation
from tui_eval.data import Sample
from tui_eval.events import EventSink, Fallback, LogLine
from tui_eval.i18n import message
from tui_eval.memory import free_memory, is_oom_error, summarize_error


@dataclass
class Outcome:
    sample: Sample
    prediction: str | None
    new_tokens: int
    error: str | None = None


GenerateFn = Callable[[list[Sample]], Generation]


class OomPolicy:
    """Runs one batch through ``generate`` and recovers from its failure."""

    def __init__(self, generate: GenerateFn, sink: EventSink, lang: str) -> None:
        self.generate = generate
        self.sink = sink
        self.lang = lang
        self.fallbacks = 0

    def _log(self, level: str, key: str, **values: object) -> None:
        self.sink(LogLine(level=level, message=message(key, self.lang, **values)))

    def run_batch(self, samples: Sequence[Sample]) -> list[Outcome]:
        try:
            return self._generate(samples)
        except Exception as exc:  # noqa: BLE001 - any batch failure falls back, as the seed says
            error = summarize_error(exc)
            oom = is_oom_error(exc)
            del exc  # the traceback holds the batch's tensors
        if oom:
            free_memory()
        if len(samples) == 1:
            return [self._failed(samples[0], error)]
        self.fallbacks += 1
        self.sink(Fallback(batch_size=len(samples), error=error))
        self._log("WARNING", "batch_failed", error=error)
        self._log("INFO", "fallback_single")
        return [outcome for sample in samples for outcome in self.run_single(sample)]

    def run_single(self, sample: Sample) -> list[Outcome]:
        try:
            return self._generate([sample])
        except Exception as exc:  # noqa: BLE001 - recorded with the sample, the run goes on
            error = summarize_error(exc)
            oom = is_oom_error(exc)
            del exc
        if oom:
            free_memory()
        return [self._failed(sample, error)]

    def _failed(self, sample: Sample, error: str) -> Outcome:
        self._log("ERROR", "sample_failed", id=sample.id, error=error)
        return Outcome(sample=sample, prediction=None, new_tokens=0, error=error)

    def _generate(self, samples: Sequence[Sample]) -> list[Outcome]:
        generation = self.generate(list(samples))
        return [Outcome(sample=s, prediction=text, new_tokens=n)
                for s, text, n in zip(samples, generation.texts, generation.new_tokens,
                                      strict=True)]
