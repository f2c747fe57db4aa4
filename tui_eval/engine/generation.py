"""A generation task: each sample's prompt, rendered, generated for in batches sorted by
length, and the prediction scored against its references with the config's metrics."""

from __future__ import annotations

from typing import Any

from tui_eval.config import EvalConfig
from tui_eval.data import Sample
from tui_eval.engine.context_length import fit_prompts
from tui_eval.i18n import LogFn
from tui_eval.metrics import score_prediction
from tui_eval.model.backend import Generation, HFBackend
from tui_eval.model.batching import longest_first
from tui_eval.model.oom_policies import GenerationWork, Outcome
from tui_eval.model.tuner import BatchSizeTuner
from tui_eval.results import PredictionRow

WARM_UP_TOKENS = 4


class GenerationTask:
    """Samples are the batch unit; one outcome is one finished row."""

    name = "generate"

    def __init__(self, config: EvalConfig, backend: HFBackend) -> None:
        self.config = config
        self.backend = backend
        self._rendered: dict[int, str] = {}  # sample index → the text the model sees
        self._lengths: dict[int, int] = {}  # sample index → its prompt's tokens, as fed
        self.truncated: set[int] = set()  # samples whose prompts were cut to fit

    def check(self, samples: list[Sample], log: LogFn) -> None:
        """Every prompt must fit the model's context with max_tokens, or be cut to fit
        (truncate = "left"); raises UsageError naming the longest otherwise."""
        self._rendered = {s.index: self.backend.render(s.prompt) for s in samples}
        fit = fit_prompts(self.backend, self.config, samples,
                          [self._rendered[s.index] for s in samples], log)
        self._lengths = {s.index: n for s, n in zip(samples, fit.lengths, strict=True)}
        self.truncated = fit.truncated

    def plan(self, samples: list[Sample]) -> list[Sample]:
        """The samples to generate for, longest prompt first (checked first if need be)."""
        if any(s.index not in self._lengths for s in samples):
            self.check(samples, lambda *args, **values: None)
        return longest_first(samples, [self._lengths[s.index] for s in samples])

    def started_line(self, total: int, batch_size: int) -> tuple[str, dict[str, object]]:
        return "run_started", {"n": total, "batch_size": batch_size,
                               "max_tokens": self.config.max_tokens}

    def tuner(self, items: list[Sample], **options: Any) -> BatchSizeTuner:
        """Probes real generation on the longest prompts (``items`` as ``plan`` ordered them)."""
        return BatchSizeTuner(self.backend, [self._rendered[s.index] for s in items],
                              max_tokens=self.config.max_tokens, **options)

    def work(self) -> GenerationWork:
        config, backend, rendered = self.config, self.backend, self._rendered

        def generate(batch: list[Sample]) -> Generation:
            return backend.generate(
                [rendered[s.index] for s in batch], max_new_tokens=config.max_tokens,
                do_sample=config.do_sample, temperature=config.temperature,
                top_p=config.top_p, stop=config.stop)

        if config.do_sample:
            import torch  # only sampling needs the seed; greedy runs never touch it

            torch.manual_seed(config.seed)
        return GenerationWork(generate)

    def warm_up(self, sample: Sample) -> None:
        """One short call, so that one-time costs do not count against a measurement."""
        self.backend.generate([self.backend.render(sample.prompt)],
                              max_new_tokens=min(self.config.max_tokens, WARM_UP_TOKENS))

    def rows(self, outcomes: list[Outcome]) -> list[PredictionRow]:
        return [self._row(outcome) for outcome in outcomes]

    def tokens(self, outcomes: list[Outcome]) -> int:
        return sum(outcome.new_tokens for outcome in outcomes)

    def _row(self, outcome: Outcome) -> PredictionRow:
        sample = outcome.sample
        prediction = outcome.prediction
        extracted, scores = score_prediction(prediction, sample.references,
                                             self.config.metrics, self.config.extract)
        reference: str | list[str] = (sample.references[0] if len(sample.references) == 1
                                      else sample.references)
        return PredictionRow(index=sample.index, id=sample.id, prompt=sample.prompt,
                             prediction=prediction, extracted=extracted, reference=reference,
                             scores=scores, new_tokens=outcome.new_tokens, error=outcome.error,
                             truncated=sample.index in self.truncated)
