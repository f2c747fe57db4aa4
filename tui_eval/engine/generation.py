"""A generation task: each sample's prompt, rendered, generated for in batches sorted by
length, and the prediction scored against its references with the config's metrics.

``compile``: "on" runs every batch on the compiled static-cache path, at one shape reserved
for the run (a smaller one after an OOM); "graph" on the CUDA-graph decode path
(model.graph_decode; greedy only), asked for per call; "auto" takes the graph path on CUDA
from the second batch when the first batch's time says its setup pays
(engine.compile_choice)."""

from __future__ import annotations

import math
import time
from typing import Any

from tui_eval.batching.oom_policies import GenerationWork, Outcome
from tui_eval.batching.plan import longest_first
from tui_eval.batching.probe import kv_cache_bytes_per_token
from tui_eval.batching.tuner import BatchSizeTuner
from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.data import Sample
from tui_eval.device.memcap import usable_memory
from tui_eval.engine.compile_choice import (
    DECIDE_AFTER_FIRST_BATCH,
    GRAPH_SETUP_SECONDS,
    GRAPH_SPEEDUP,
    decide,
    starting_mode,
)
from tui_eval.engine.context_length import fit_prompts
from tui_eval.i18n import LogFn
from tui_eval.metrics import score_prediction
from tui_eval.model.backend import Generation, HFBackend
from tui_eval.model.static_shapes import StaticShape, prompt_bucket
from tui_eval.results.predictions import PredictionRow

WARM_UP_TOKENS = 4
# Below this many prompts tokenising is quick enough not to mention.
TOKENISING_NOTICE_FROM = 10_000


class GenerationTask:
    """Samples are the batch unit; one outcome is one finished row."""

    name = "generate"

    def __init__(self, config: EvalConfig, backend: HFBackend) -> None:
        self.config = config
        self.backend = backend
        self._rendered: dict[int, str] = {}  # sample index → the text the model sees
        self._lengths: dict[int, int] = {}  # sample index → its prompt's tokens, as fed
        # samples whose prompts were cut to fit → the tokens cut off their left
        self.truncated: dict[int, int] = {}
        # "on", "off", or "auto": eager for the first batch, then decide
        self.compile_mode = starting_mode(config.compile, backend.device,
                                          spread=config.device_map is not None)
        # the path that ran, for metrics.json: "on" from the start, "graph" once a batch ran
        # on it, else "off"; the backend is set to the run's path by start()
        self.compile_path = "on" if self.compile_mode == "on" else "off"
        # the CUDA-graph path: passed to each generate call, never set on the backend
        self.graph = self.compile_mode == "graph"
        self._log: LogFn = lambda *args, **values: None  # the run's, from start()
        self.compile_seconds = 0.0  # this try's compiling, apart from generation time
        self._shapes_announced = 0

    @property
    def compiled(self) -> bool:
        """Whether a faster path than eager ran (or, with compile on, runs from the start)."""
        return self.compile_path != "off"

    def check(self, samples: list[Sample], log: LogFn) -> None:
        """Every prompt must fit the model's context with max_tokens, or be cut to fit
        (truncate = "left"); raises UsageError naming the longest otherwise."""
        self._rendered = {s.index: self.backend.render(s.prompt, s.turns) for s in samples}
        # a large dataset says what it is doing: tokenising it takes seconds
        notice = len(samples) >= TOKENISING_NOTICE_FROM
        started = time.perf_counter()
        if notice:
            log("INFO", "tokenising", n=len(samples))
        fit = fit_prompts(self.backend, self.config, samples,
                          [self._rendered[s.index] for s in samples], log)
        if notice:
            log("INFO", "tokenised", n=len(samples), seconds=time.perf_counter() - started)
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

    def prompt_tokens(self, items: list[Sample]) -> list[int]:
        """The prompts' token counts as fed, in the order of ``items``."""
        if any(s.index not in self._lengths for s in items):
            self.check(items, lambda *args, **values: None)
        return [self._lengths[s.index] for s in items]

    def costs(self, samples: list[Sample]) -> list[int]:
        """Each sample's work in tokens: its prompt as fed and the most it may generate."""
        return [n + self.config.max_tokens for n in self.prompt_tokens(samples)]

    def tuner(self, items: list[Sample], **options: Any) -> BatchSizeTuner:
        """Probes real generation on the longest prompts (``items`` as ``plan`` ordered them),
        on the path the run starts on: the static cache with compile on (not compiled, each
        size its own shape), else eagerly with the dynamic cache, whose growth the model's
        config predicts. Each probe names its path per call: the backend's stays the run's."""
        backend = self.backend
        capacity = options.get("memory_capacity")
        tokens = self.prompt_tokens(items)
        extra: dict[str, Any] = {
            "prompt_tokens": tokens, "static_cache": self.compile_mode == "on",
            # a row's KV cache at most: the longest prompt's bucket and every new token
            "row_tokens": prompt_bucket(max(tokens, default=1)) + self.config.max_tokens,
            "usable_memory": lambda: usable_memory(backend.device, capacity, backend.devices)}
        if backend.model is not None:
            extra["kv_bytes_per_token"] = kv_cache_bytes_per_token(backend.model.config,
                                                                   backend.dtype.itemsize)
        return BatchSizeTuner(backend, [self._rendered[s.index] for s in items],
                              max_tokens=self.config.max_tokens, **{**extra, **options})

    def start(self, items: list[Sample], batch_size: int, log: LogFn) -> None:
        """Before the first batch: with compile on, one static shape reserved for the whole
        run from the first batch; each new shape is announced as it is compiled."""
        backend = self.backend
        backend.compile = self.compile_mode == "on"
        self._log = log
        self._shapes_announced = 0
        backend.on_new_shape = lambda shape: self._announce_shape(shape, log)
        if (backend.compile or self.graph) and items:
            backend.reserve_shape(min(batch_size, len(items)), self._lengths[items[0].index],
                                  self.config.max_tokens)

    def after_first_batch(self, seconds: float, batch_size: int, items_left: list[Sample],
                          log: LogFn, cancel: CancelToken) -> None:
        """compile = "auto" on CUDA, after the eager first batch: turn the compiled path on
        for the batches left when it pays (engine.compile_choice)."""
        if self.compile_mode != DECIDE_AFTER_FIRST_BATCH or not items_left \
                or cancel.cancelled:
            return
        batches_left = math.ceil(len(items_left) / batch_size)
        decision = decide(seconds, batches_left, GRAPH_SETUP_SECONDS, GRAPH_SPEEDUP)
        log("INFO", "graph_auto_on" if decision.on else "graph_auto_off",
            first=seconds, batches=batches_left, left=decision.eager_seconds_left,
            saving=decision.seconds_saved, setup=GRAPH_SETUP_SECONDS)
        if decision.on:
            self.graph = True
            self.backend.reserve_shape(min(batch_size, len(items_left)),
                                       self._lengths[items_left[0].index],
                                       self.config.max_tokens)

    def finish(self) -> None:
        """After the last batch, or a stop."""
        self.backend.on_new_shape = None

    def _announce_shape(self, shape: StaticShape, log: LogFn) -> None:
        """Before a call on a new static shape: the first of the run, or one after an OOM
        (the reserved shape covers every other batch)."""
        first = self._shapes_announced == 0
        self._shapes_announced += 1
        if self.graph and not self.config.do_sample and self.backend.device.startswith("cuda"):
            key = "graph_shape" if first else "graph_shape_again"
        elif self.backend.compiles:
            key = "compile_shape" if first else "compile_shape_again"
        else:
            key = "static_shape" if first else "static_shape_again"
        log("INFO", key, shape=shape.describe())

    def work(self) -> GenerationWork:
        config, backend, rendered = self.config, self.backend, self._rendered

        def say(level: str, key: str, **values: Any) -> None:
            self._log(level, key, **values)  # start() sets the run's log after work()
        fallback_told = False

        def generate(batch: list[Sample]) -> Generation:
            nonlocal fallback_told
            graph = self.graph
            if graph and not fallback_told:
                reason = backend.graph_unsupported(do_sample=config.do_sample)
                if reason is not None:
                    say("INFO", "graph_fallback", reason=reason)
                    fallback_told = True
            generation = backend.generate(
                [rendered[s.index] for s in batch], max_new_tokens=config.max_tokens,
                do_sample=config.do_sample, temperature=config.temperature,
                top_p=config.top_p, stop=config.stop, graph=graph)
            self.compile_seconds += generation.compile_seconds
            if graph and generation.shape is not None:
                self.compile_path = "graph"  # metrics.json: a faster path ran
            if graph and generation.compile_seconds > 0 and generation.shape is not None:
                say("INFO", "graph_captured", shape=generation.shape.describe(),
                    seconds=generation.compile_seconds)
            return generation

        if config.do_sample:
            import torch  # only sampling needs the seed; greedy runs never touch it

            torch.manual_seed(config.seed)
        return GenerationWork(generate)

    def warm_up(self, sample: Sample) -> None:
        """One short eager call, so that one-time costs do not count against a measurement
        (compiling is the compiled path's own cost, reported apart)."""
        self.backend.generate([self.backend.render(sample.prompt, sample.turns)],
                              max_new_tokens=min(self.config.max_tokens, WARM_UP_TOKENS),
                              static=False)

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
        rendered = (self._rendered.get(sample.index) if self.backend.use_chat_template
                    else None)
        return PredictionRow(index=sample.index, id=sample.id, prompt=sample.prompt,
                             turns=sample.turns, rendered=rendered, prediction=prediction,
                             extracted=extracted, reference=reference, scores=scores,
                             new_tokens=outcome.new_tokens, error=outcome.error,
                             truncated=sample.index in self.truncated,
                             truncated_tokens=self.truncated.get(sample.index, 0))
