"""The evaluation engine: data ─► length-sorted batches ─► generate ─► metrics ─► results dir.

It knows nothing about any UI: it reports through events sent to a sink.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.data import Dataset, Sample
from tui_eval.engine.compile_choice import (
    COMPILE_SECONDS,
    DECIDE_AFTER_FIRST_BATCH,
    decide,
    starting_mode,
)
from tui_eval.engine.preparation import (
    load_weights,
    open_backend,
    read_dataset,
    run_description,
    with_demo_defaults,
)
from tui_eval.engine.resume import ProgressOffset, ResumePlan, plan_resume
from tui_eval.engine.tuning import tune_batch_size
from tui_eval.errors import UsageError
from tui_eval.events import (
    EventSink,
    FanOut,
    Progress,
    RunFailed,
    RunFinished,
    RunLog,
    RunStarted,
)
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.metrics import score
from tui_eval.model.backend import HFBackend
from tui_eval.model.batching import longest_first
from tui_eval.model.oom_policies import OomPolicy, Outcome, make_oom_policy
from tui_eval.model.static_shapes import StaticShape
from tui_eval.results import (
    TUNE_FILE,
    PredictionRow,
    PredictionWriter,
    RunMetrics,
    TuneResult,
    build_run_metrics,
    default_run_dir,
    holds_run,
    prepare_run_dir,
)


class Evaluation:
    """One evaluation run. ``run()`` returns the metrics written to metrics.json.

    ``cancel`` is checked between batches: a cancelled run keeps every finished batch and
    writes metrics marked ``partial``.

    ``compile``: "on" runs every batch on the compiled static-cache path, at one shape
    reserved for the run (a smaller one after an OOM); "auto" does so on CUDA from the
    second batch when the first batch's time says compiling pays (engine.compile_choice).
    """

    def __init__(self, config: EvalConfig, sink: EventSink,
                 cancel: CancelToken | None = None, *, resume: bool = False,
                 overwrite: bool = False, backend: HFBackend | None = None) -> None:
        # backend: an already loaded model to reuse (bench runs one model at many sizes)
        self.backend = backend
        self.tune_seconds: float | None = None  # set when batch_size = "auto"
        self.compile_seconds = 0.0  # this try's compiling, apart from generation time
        self.compiled = False  # whether any batch ran on the compiled static path
        self._shapes_announced = 0
        self.skipped_lines = 0
        # resume: the output dir must hold a run to continue (one of the same config is
        # continued anyway); overwrite: replace whatever run it holds.
        self.resume = resume
        self.overwrite = overwrite
        self.resumed = ResumePlan()
        self.requested = config
        self.config = config
        self.lang = config.lang or default_language()
        self.recorder = EventRecorder()
        self.sink: EventSink = FanOut(self.recorder, sink)
        self.cancel = cancel or CancelToken()
        self.run_dir: Path | None = None
        self.started = time.perf_counter()

    def log(self, level: str, key: str, **values: object) -> None:
        RunLog(self.sink, self.lang)(level, key, **values)

    def run(self) -> RunMetrics:
        try:
            return self._run()
        except UsageError:
            raise
        except Exception as exc:
            self.sink(RunFailed(error=f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            self.recorder.close()

    def _run(self) -> RunMetrics:
        config = self.config = with_demo_defaults(self.requested, self.log)
        backend = self.backend or open_backend(config, self.log)
        dataset = read_dataset(config, self.log)
        self.skipped_lines = len(dataset.skipped)
        self.run_dir = prepare_run_dir(Path(config.output_dir or default_run_dir()))
        self._plan_resume(config, dataset)
        finished = self._already_complete(dataset)
        if finished is not None:
            return finished
        self.recorder.open(self.run_dir)
        if backend.model is None:
            load_weights(backend, config, self.log)
        run_description(config, backend).write(self.run_dir)
        if self.resumed.done:
            self.sink = ProgressOffset(self.sink, self.resumed.done)
        return self._evaluate(backend, dataset)

    def _plan_resume(self, config: EvalConfig, dataset: Dataset) -> None:
        """Continue, replace or refuse the run the output dir holds, before the model loads."""
        assert self.run_dir is not None
        had_run = holds_run(self.run_dir)
        self.resumed = plan_resume(self.run_dir, config, dataset, resume=self.resume,
                                   overwrite=self.overwrite)
        if self.overwrite and had_run:
            self.log("INFO", "overwrite", run_dir=self.run_dir)
        if self.resumed.torn_bytes:
            self.log("WARNING", "resume_torn", bytes=self.resumed.torn_bytes)
        if had_run and not self.overwrite and self.resumed.done < len(dataset.samples):
            self.log("INFO", "resume_auto" if self.resumed.automatic else "resume_explicit",
                     run_dir=self.run_dir, done=self.resumed.done, total=len(dataset.samples))

    def _already_complete(self, dataset: Dataset) -> RunMetrics | None:
        """A run whose every sample is on disk, with its final metrics, is left as it is:
        its metrics are reported again and nothing is written."""
        assert self.run_dir is not None
        if self.resumed.done < len(dataset.samples):
            return None
        metrics = RunMetrics.read(self.run_dir)
        if metrics is None or metrics.partial:
            return None
        self.log("INFO", "already_complete", run_dir=self.run_dir, n=metrics.n)
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _evaluate(self, backend: HFBackend, dataset: Dataset) -> RunMetrics:
        config = self.config
        assert self.run_dir is not None
        samples = self.resumed.remaining(dataset.samples)  # a resumed run skips rows on disk
        rendered = {s.index: backend.render(s.prompt) for s in samples}
        lengths = backend.token_counts([rendered[s.index] for s in samples]) if samples else []
        ordered = longest_first(samples, lengths)
        ordered_lengths = sorted(lengths, reverse=True)  # the same stable order's lengths
        compile_mode = starting_mode(config.compile, backend.device)
        backend.compile = self.compiled = compile_mode == "on"
        decide_after_first_batch = compile_mode == DECIDE_AFTER_FIRST_BATCH
        batch_size = self._batch_size(backend, [rendered[s.index] for s in ordered],
                                      ordered_lengths)

        def generate(batch: list[Sample]):
            generation = backend.generate(
                [rendered[s.index] for s in batch], max_new_tokens=config.max_tokens,
                do_sample=config.do_sample, temperature=config.temperature,
                top_p=config.top_p, stop=config.stop)
            self.compile_seconds += generation.compile_seconds
            return generation

        if config.do_sample:
            import torch  # only sampling needs the seed; greedy runs never touch it

            torch.manual_seed(config.seed)
        policy = make_oom_policy(config.oom_policy, generate, self.sink, self.lang, batch_size)
        backend.on_new_shape = lambda shape: self._announce_shape(backend, shape)
        if backend.compile and ordered:  # one shape for the whole run, from the first batch
            backend.reserve_shape(min(batch_size, len(ordered)), ordered_lengths[0],
                                  config.max_tokens)
        writer = PredictionWriter(self.run_dir)
        total = len(samples)
        self.sink(RunStarted(run_dir=str(self.run_dir), total=total,
                             batch_size=batch_size, model=str(config.model),
                             device=backend.device, dtype=backend.dtype_name, pid=os.getpid()))
        self.log("INFO", "run_started", n=total, batch_size=batch_size,
                 max_tokens=config.max_tokens)
        rows: list[PredictionRow] = []
        errors = tokens = 0
        generation_started = time.perf_counter()
        position = 0  # batches are cut as they go: the OOM policy may lower the size
        try:
            while position < len(ordered):
                if self.cancel.cancelled:
                    break
                batch = ordered[position:position + policy.batch_size]
                position += len(batch)
                batch_started = time.perf_counter()
                outcomes = policy.run_batch(batch)
                if decide_after_first_batch:
                    decide_after_first_batch = False
                    self._decide_compile(backend, policy, time.perf_counter() - batch_started,
                                         ordered_lengths[position:])
                new_rows = [self._row(o) for o in outcomes]
                writer.write_batch(new_rows)
                rows.extend(new_rows)
                errors += sum(1 for o in outcomes if o.error is not None)
                tokens += sum(o.new_tokens for o in outcomes)
                elapsed = time.perf_counter() - generation_started - self.compile_seconds
                rate = len(rows) / elapsed if elapsed > 0 else 0.0
                self.sink(Progress(
                    done=len(rows), total=total, samples_per_s=rate,
                    tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                    eta_s=(total - len(rows)) / rate if rate > 0 else None,
                    batch_size=policy.batch_size, fallbacks=policy.fallbacks, errors=errors))
        finally:
            writer.close()
            backend.on_new_shape = None
        generation_seconds = max(0.0, time.perf_counter() - generation_started
                                 - self.compile_seconds)
        # Rows kept from earlier tries count like rows made now; rates stay this try's.
        all_rows = self.resumed.rows + rows
        metrics = build_run_metrics(
            all_rows, config.metrics, n_total=len(dataset.samples),
            n_resumed=self.resumed.done, n_skipped_lines=self.skipped_lines,
            batch_size=batch_size, final_batch_size=policy.batch_size,
            tune_seconds=self.tune_seconds, fallback_count=policy.fallbacks,
            wall_seconds=time.perf_counter() - self.started,
            generation_seconds=generation_seconds, compiled=self.compiled,
            compile_seconds=self.compile_seconds, generated=len(rows),
            generated_tokens=tokens, device=backend.device, dtype=backend.dtype_name,
            model=str(config.model))
        if not metrics.partial:
            writer.restore_dataset_order()
        metrics.write(self.run_dir)
        if metrics.partial:
            self.log("INFO", "run_cancelled", done=metrics.n, total=metrics.n_total,
                     run_dir=self.run_dir)
        elif self.resumed.done:
            self.log("INFO", "run_finished_resumed", n=len(rows), seconds=generation_seconds,
                     rate=metrics.samples_per_s, kept=self.resumed.done, run_dir=self.run_dir)
        else:
            self.log("INFO", "run_finished", n=len(rows), seconds=generation_seconds,
                     rate=metrics.samples_per_s, run_dir=self.run_dir)
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _announce_shape(self, backend: HFBackend, shape: StaticShape) -> None:
        """Before a call on a new static shape: the first of the run, or one after an OOM
        (the reserved shape covers every other batch)."""
        first = self._shapes_announced == 0
        self._shapes_announced += 1
        if backend.compiles:
            key = "compile_shape" if first else "compile_shape_again"
        else:
            key = "static_shape" if first else "static_shape_again"
        self.log("INFO", key, shape=shape.describe())

    def _decide_compile(self, backend: HFBackend, policy: OomPolicy, first_batch_seconds: float,
                        lengths_left: list[int]) -> None:
        """compile = "auto" on CUDA, after the eager first batch: turn the compiled path on
        for the batches left when it pays (engine.compile_choice)."""
        if not lengths_left or self.cancel.cancelled:
            return
        batches_left = math.ceil(len(lengths_left) / policy.batch_size)
        decision = decide(first_batch_seconds, batches_left)
        self.log("INFO", "compile_auto_on" if decision.on else "compile_auto_off",
                 first=first_batch_seconds, batches=batches_left,
                 left=decision.eager_seconds_left, saving=decision.seconds_saved,
                 compile=COMPILE_SECONDS)
        if decision.on:
            backend.compile = self.compiled = True
            backend.reserve_shape(min(policy.batch_size, len(lengths_left)), lengths_left[0],
                                  self.config.max_tokens)

    def _batch_size(self, backend: HFBackend, prompts_longest_first: list[str],
                    prompt_tokens: list[int]) -> int:
        """The configured size, or with batch_size = "auto" the tuned one (tune.json): a
        resumed run keeps the size its tune.json chose, unless retune is set."""
        if self.config.batch_size != "auto":
            return int(self.config.batch_size)
        if not prompts_longest_first:
            return 1
        assert self.run_dir is not None
        if self.resumed.done and not self.config.retune and (self.run_dir / TUNE_FILE).exists():
            try:
                earlier = TuneResult.read(self.run_dir)
            except (UsageError, TypeError):
                earlier = None
            if earlier is not None and earlier.chosen_batch_size >= 1:
                self.log("INFO", "tune_from_run_dir", batch_size=earlier.chosen_batch_size)
                self.tune_seconds = 0.0
                return earlier.chosen_batch_size
        result = tune_batch_size(backend, prompts_longest_first, self.config, self.sink,
                                 self.lang, self.run_dir, cancel=self.cancel,
                                 prompt_tokens=prompt_tokens)
        self.tune_seconds = result.seconds
        return result.chosen_batch_size

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
