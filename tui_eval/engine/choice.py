"""A choice task: every (context, choice) pair of every sample scored by log-likelihood, and
each sample's acc and acc_norm once all its pairs are scored.

The pair is the batch unit: a batch holds ``batch_size`` pairs and is one forward pass, so
the OOM policies split and retry pairs as they split and retry samples when generating.
Samples run longest first, each sample's pairs next to each other, so a batch finishes
whole samples except at its edges: a sample's row is written as soon as its last pair is
scored, and a stop loses at most the batch in flight and the pairs already scored of the
one sample it cut in two. Resuming works per sample, as for generation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tui_eval.batching.oom_policies import BatchWork
from tui_eval.batching.plan import longest_first
from tui_eval.batching.tuner import PairScoringTuner
from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.data import ChoiceDataset, ChoiceSample
from tui_eval.errors import DataError
from tui_eval.i18n import LogFn
from tui_eval.model.backend import HFBackend
from tui_eval.model.loglikelihood import (
    ChoiceScorer,
    Pair,
    PairScore,
    ScoringError,
    choice_result,
    resolve_max_length,
    resolve_target_delimiter,
)
from tui_eval.results.predictions import PredictionRow


@dataclass
class PairOutcome:
    pair: Pair
    score: PairScore | None  # None when the pair failed even alone
    error: str | None = None


class PairWork(BatchWork[Pair, PairOutcome]):
    """Scoring: a batch of pairs in one forward pass."""

    def __init__(self, scorer: ChoiceScorer, samples: list[ChoiceSample]) -> None:
        self.scorer = scorer
        self.samples = samples

    def run(self, items: list[Pair]) -> list[PairOutcome]:
        scores = self.scorer.score(items)
        return [PairOutcome(pair, score) for pair, score in zip(items, scores, strict=True)]

    def failed(self, item: Pair, error: str) -> PairOutcome:
        return PairOutcome(item, None, error)

    def name(self, item: Pair) -> str:
        return f"{self.samples[item.sample].id}, choice {item.choice},"


class ChoiceTask:
    """Every sample is encoded when the task is made, before the weights load, so that a
    choice that cannot be scored stops the run as bad input before anything is written."""

    name = "choice"
    compile_path = "off"  # scoring runs the model's forward eagerly: nothing to compile
    compile_seconds = 0.0

    def __init__(self, config: EvalConfig, backend: HFBackend, dataset: ChoiceDataset) -> None:
        self.config = config
        self.backend = backend
        self.samples = dataset.samples
        tokenizer = backend.tokenizer
        self.target_delimiter = resolve_target_delimiter(config.target_delimiter,
                                                         backend.use_chat_template)
        self.options: dict[str, Any] = {
            # "auto": none under a chat template, where the choice is the assistant's turn
            # itself (lm-eval puts no delimiter before it there); a set one is kept
            "target_delimiter": self.target_delimiter,
            "max_length": resolve_max_length(backend.model_config(), tokenizer),
            "simulate_oom_above": config.simulate_oom_above,
            # a chat template's rendering already holds the BOS token
            "add_special_tokens": False if backend.use_chat_template else None,
        }
        self.encoder = ChoiceScorer(None, tokenizer, backend.device, **self.options)
        # sample index → the context as the model sees it (rendered by the chat template)
        self.rendered = {s.index: backend.render(s.prompt, s.turns) for s in self.samples}
        contexts = [replace(s, prompt=self.rendered[s.index]) for s in self.samples]
        try:
            pairs = self.encoder.encode_samples(contexts)
        except ScoringError as exc:
            raise DataError(f"{dataset.path}: {exc} (target_delimiter is "
                            f"{self.target_delimiter!r})") from None
        # Pair.sample is the position in dataset.samples, which is the sample's index
        self.pairs_of: dict[int, list[Pair]] = {s.index: [] for s in self.samples}
        for pair in pairs:
            self.pairs_of[pair.sample].append(pair)
        self._scored: dict[int, dict[int, PairOutcome]] = {}  # sample → choice → outcome
        self._planned = 0
        self._loaded: ChoiceScorer | None = None

    def _input_length(self, pair: Pair) -> int:
        return len(self.encoder.model_input(pair))

    def check(self, samples: list[ChoiceSample], log: LogFn) -> None:
        """Nothing more to check: the pairs were encoded (and cut from the left to the
        model's length, as lm-evaluation-harness does) when the task was made."""

    def plan(self, samples: list[ChoiceSample]) -> list[Pair]:
        """The pairs to score: samples by their longest pair, longest first, and each
        sample's pairs together."""
        lengths = [max(self._input_length(p) for p in self.pairs_of[s.index]) for s in samples]
        pairs = [pair for sample in longest_first(samples, lengths)
                 for pair in self.pairs_of[sample.index]]
        self._planned = len(pairs)
        return pairs

    def costs(self, samples: list[ChoiceSample]) -> list[int]:
        """Each sample's work: the tokens its pairs' forward passes read."""
        return [sum(self._input_length(p) for p in self.pairs_of[s.index]) for s in samples]

    def started_line(self, total: int, batch_size: int) -> tuple[str, dict[str, object]]:
        return "run_started_choice", {"n": total, "pairs": self._planned,
                                      "batch_size": batch_size}

    def tuner(self, items: list[Pair], **options: Any) -> PairScoringTuner:
        """Probes forward passes over the longest pairs."""
        longest = sorted(items, key=self._input_length, reverse=True)
        return PairScoringTuner(self._scorer(), longest, **options)

    def start(self, items: list[Pair], batch_size: int, log: LogFn) -> None:
        """Nothing to set up: every batch is one forward pass."""

    def after_first_batch(self, seconds: float, batch_size: int, items_left: list[Pair],
                          log: LogFn, cancel: CancelToken) -> None:
        """Nothing to decide."""

    def finish(self) -> None:
        """Nothing to undo."""

    def _scorer(self) -> ChoiceScorer:
        """The scorer over the loaded weights (the encoder has none)."""
        if self._loaded is None:
            self._loaded = ChoiceScorer.from_backend(self.backend, **self.options)
        return self._loaded

    def work(self) -> PairWork:
        return PairWork(self._scorer(), self.samples)

    def warm_up(self, sample: ChoiceSample) -> None:
        self._scorer().score(self.pairs_of[sample.index])

    def tokens(self, outcomes: list[PairOutcome]) -> int:
        """The input tokens of the pairs scored, each pair's as if fed whole: a context
        shared through the KV cache is read once, but counting it so keeps runs comparable
        whatever the batch size."""
        return sum(self._input_length(o.pair) for o in outcomes if o.score is not None)

    def rows(self, outcomes: list[PairOutcome]) -> list[PredictionRow]:
        """The rows of the samples whose last pair is among ``outcomes``."""
        finished = []
        for outcome in outcomes:
            index = outcome.pair.sample
            scored = self._scored.setdefault(index, {})
            scored[outcome.pair.choice] = outcome
            if len(scored) == len(self.samples[index].choices):
                finished.append(self._row(self.samples[index], scored))
                del self._scored[index]
        return finished

    def _row(self, sample: ChoiceSample, scored: dict[int, PairOutcome]) -> PredictionRow:
        outcomes = [scored[choice] for choice in range(len(sample.choices))]
        row = PredictionRow(
            index=sample.index, id=sample.id, prompt=sample.prompt, turns=sample.turns,
            rendered=self.rendered[sample.index] if self.backend.use_chat_template else None,
            reference=sample.choices[sample.gold], choices=list(sample.choices),
            logprobs=[o.score.logprob if o.score else None for o in outcomes],
            is_greedy=[o.score.is_greedy if o.score else None for o in outcomes],
            gold=sample.gold)
        error = next((o.error for o in outcomes if o.error is not None), None)
        if error is not None:  # a choice failed even alone: the sample scores 0
            row.error = error
            row.scores = {"acc": 0.0, "acc_norm": 0.0}
            return row
        result = choice_result(sample, [o.score for o in outcomes if o.score is not None])
        row.prediction = sample.choices[result.pred]
        row.pred, row.pred_norm = result.pred, result.pred_norm
        row.scores = {"acc": result.acc, "acc_norm": result.acc_norm}
        return row
