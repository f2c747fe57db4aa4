"""A generation task: each sample's prompt, rendered, generated for in batches sorted by
length, and the prediction scored against its references with the config's metrics."""

from __future__ import annotations

from typing import Any

from tui_eval.config import EvalConfig
from tui_eval.data import Sample
from tui_eval.metrics import score
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

    def plan(self, samples: list[Sample]) -> list[Sample]:
        """The samples to generate for, longest prompt first."""
        self._rendered = {s.index: self.backend.render(s.prompt) for s in samples}
        texts = [self._rendered[s.index] for s in samples]
        return longest_first(samples, self.backend.token_counts(texts) if texts else [])

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
        if prediction is None:
            scores = {name: 0.0 for name in self.config.metrics}
        else:
            scores = score(prediction, sample.references, self.config.metrics)
        reference: str | list[str] = (sample.references[0] if len(sample.references) == 1
                                      else sample.references)
        return PredictionRow(index=sample.index, id=sample.id, prompt=sample.prompt,
                             prediction=prediction, reference=reference, scores=scores,
                             new_tokens=outcome.new_tokens, error=outcome.error)
