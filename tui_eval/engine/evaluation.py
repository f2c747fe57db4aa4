"""The evaluation engine: data ─► length-sorted batches ─► generate ─► metrics ─► results dir.

It knows nothing about any UI: it reports through events sent to a sink.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.data import Dataset, Sample
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
    TryStarted,
)
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.metrics import score
from tui_eval.model.backend import HFBackend
from tui_eval.model.batching import longest_first
from tui_eval.model.oom_policies import Outcome, make_oom_policy
from tui_eval.results import (
    PredictionRow,
    PredictionWriter,
    RunMetrics,
    build_run_metrics,
    default_run_dir,
    holds_run,
    prepare_run_dir,
)

# Below this many prompts tokenising is quick enough not to mention.
TOKENISING_NOTICE_FROM = 10_000


class Evaluation:
    """One evaluation run. ``run()`` returns the metrics written to metrics.json.

    ``cancel`` is checked between batches: a cancelled run keeps every finished batch and
    writes metrics marked ``partial``.
    """

    def __init__(self, config: EvalConfig, sink: EventSink,
                 cancel: CancelToken | None = None, *, resume: bool = False,
                 overwrite: bool = False, backend: HFBackend | None = None,
                 front_end: str = "cli") -> None:
        # backend: an already loaded model to reuse (bench runs one model at many sizes)
        self.backend = backend
        # front_end: "cli" or "app"; the log's hints name what that front end can do
        # (the app has no --overwrite flag)
        self.front_end = front_end
        self.tune_seconds: float | None = None  # set when batch_size = "auto"
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
        self.recorder.open(self.run_dir)  # writes the lines logged so far first
        # a watcher forgets the last try's ending here, and follows this process
        self.sink(TryStarted(run_dir=str(self.run_dir), pid=os.getpid(),
                             done_before=self.resumed.done, total=len(dataset.samples)))
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
            key = "resume_explicit"
            if self.resumed.automatic:
                key = "resume_auto_app" if self.front_end == "app" else "resume_auto"
            self.log("INFO", key, run_dir=self.run_dir, done=self.resumed.done,
                     total=len(dataset.samples))

    def _already_complete(self, dataset: Dataset) -> RunMetrics | None:
        """A run whose every sample is on disk, with its final metrics, is left as it is:
        its metrics are reported again and nothing is written."""
        assert self.run_dir is not None
        if self.resumed.done < len(dataset.samples):
            return None
        metrics = RunMetrics.read(self.run_dir)
        if metrics is None or metrics.partial:
            return None
        key = "already_complete_app" if self.front_end == "app" else "already_complete"
        self.log("INFO", key, run_dir=self.run_dir, n=metrics.n)
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _evaluate(self, backend: HFBackend, dataset: Dataset) -> RunMetrics:
        config = self.config
        assert self.run_dir is not None
        samples = self.resumed.remaining(dataset.samples)  # a resumed run skips rows on disk
        rendered = {s.index: backend.render(s.prompt) for s in samples}
        lengths = self._token_counts(backend, [rendered[s.index] for s in samples])
        ordered = longest_first(samples, lengths)
        batch_size = self._batch_size(backend, [rendered[s.index] for s in ordered])

        def generate(batch: list[Sample]):
            return backend.generate(
                [rendered[s.index] for s in batch], max_new_tokens=config.max_tokens,
                do_sample=config.do_sample, temperature=config.temperature,
                top_p=config.top_p, stop=config.stop)

        if config.do_sample:
            import torch  # only sampling needs the seed; greedy runs never touch it

            torch.manual_seed(config.seed)
        policy = make_oom_policy(config.oom_policy, generate, self.sink, self.lang, batch_size)
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
                outcomes = policy.run_batch(batch)
                new_rows = [self._row(o) for o in outcomes]
                writer.write_batch(new_rows)
                rows.extend(new_rows)
                errors += sum(1 for o in outcomes if o.error is not None)
                tokens += sum(o.new_tokens for o in outcomes)
                elapsed = time.perf_counter() - generation_started
                rate = len(rows) / elapsed if elapsed > 0 else 0.0
                self.sink(Progress(
                    done=len(rows), total=total, samples_per_s=rate,
                    tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                    eta_s=(total - len(rows)) / rate if rate > 0 else None,
                    batch_size=policy.batch_size, fallbacks=policy.fallbacks, errors=errors))
        finally:
            writer.close()
        generation_seconds = time.perf_counter() - generation_started
        # Rows kept from earlier tries count like rows made now; rates stay this try's.
        all_rows = self.resumed.rows + rows
        metrics = build_run_metrics(
            all_rows, config.metrics, n_total=len(dataset.samples),
            n_resumed=self.resumed.done, n_skipped_lines=self.skipped_lines,
            batch_size=batch_size, final_batch_size=policy.batch_size,
            tune_seconds=self.tune_seconds, fallback_count=policy.fallbacks,
            wall_seconds=time.perf_counter() - self.started,
            generation_seconds=generation_seconds, generated=len(rows),
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

    def _token_counts(self, backend: HFBackend, texts: list[str]) -> list[int]:
        """Every prompt's length in tokens, for sorting; a large dataset says what it is
        doing, since tokenising it takes seconds."""
        if len(texts) < TOKENISING_NOTICE_FROM:
            return backend.token_counts(texts)
        started = time.perf_counter()
        self.log("INFO", "tokenising", n=len(texts))
        lengths = backend.token_counts(texts)
        self.log("INFO", "tokenised", n=len(texts), seconds=time.perf_counter() - started)
        return lengths

    def _batch_size(self, backend: HFBackend, prompts_longest_first: list[str]) -> int:
        """The configured size, or with batch_size = "auto" the tuned one (tune.json)."""
        if self.config.batch_size != "auto":
            return int(self.config.batch_size)
        if not prompts_longest_first:
            return 1
        result = tune_batch_size(backend, prompts_longest_first, self.config, self.sink,
                                 self.lang, self.run_dir, cancel=self.cancel)
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
