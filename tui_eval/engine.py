"""The evaluation engine: data ─► length-sorted batches ─► generate ─► metrics ─► results dir.

It knows nothing about any UI: it reports through events sent to a sink.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from tui_eval.backend import HFBackend
from tui_eval.batching import longest_first
from tui_eval.config import EvalConfig
from tui_eval.data import Dataset, Sample
from tui_eval.errors import UsageError
from tui_eval.events import EventSink, FanOut, LogLine, Progress, RunFailed, RunFinished, RunStarted
from tui_eval.i18n import default_language, message
from tui_eval.metrics import mean_scores, score
from tui_eval.oom import Outcome, make_oom_policy
from tui_eval.preparation import (
    load_weights,
    open_backend,
    read_dataset,
    run_description,
    with_demo_defaults,
)
from tui_eval.results import (
    CONFIG_FILE,
    METRICS_FILE,
    EventRecorder,
    PredictionWriter,
    default_run_dir,
    prepare_run_dir,
    write_json_atomic,
)
from tui_eval.resume import ProgressOffset, ResumePlan, holds_run, plan_resume


class Evaluation:
    """One evaluation run. ``run()`` returns the metrics dictionary written to metrics.json.

    ``cancel`` is checked between batches: a cancelled run keeps every finished batch and
    writes metrics marked ``"partial": true``.
    """

    def __init__(self, config: EvalConfig, sink: EventSink,
                 cancel: threading.Event | None = None, *, resume: bool = False,
                 overwrite: bool = False, backend: HFBackend | None = None) -> None:
        # backend: an already loaded model to reuse (bench runs one model at many sizes)
        self.backend = backend
        self.tune_seconds: float | None = None  # set when batch_size = "auto"
        # resume: the output dir must hold a run to continue (one of the same config is
        # continued anyway); overwrite: replace whatever run it holds.
        self.resume = resume
        self.overwrite = overwrite
        self.resumed = ResumePlan()
        self.requested = config
        self.config = config
        self.lang = config.lang or default_language()
        self.recorder = EventRecorder()
        self.sink = FanOut(self.recorder, sink)
        self.cancel = cancel or threading.Event()
        self.run_dir: Path | None = None
        self.started = time.perf_counter()

    def log(self, level: str, key: str, **values: object) -> None:
        self.sink(LogLine(level=level, message=message(key, self.lang, **values)))

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        except UsageError:
            raise
        except Exception as exc:
            self.sink(RunFailed(error=f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            self.recorder.close()

    def _run(self) -> dict[str, Any]:
        config = self.config = with_demo_defaults(self.requested, self.log)
        backend = self.backend or open_backend(config, self.log)
        dataset = read_dataset(config, self.log)
        self.run_dir = prepare_run_dir(Path(config.output_dir or default_run_dir()))
        self._plan_resume(config, dataset)
        self.recorder.open(self.run_dir)
        if backend.model is None:
            load_weights(backend, config, self.log)
        write_json_atomic(self.run_dir / CONFIG_FILE, run_description(config, backend))
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
        if had_run and not self.overwrite:
            self.log("INFO", "resume_auto" if self.resumed.automatic else "resume_explicit",
                     run_dir=self.run_dir, done=self.resumed.done, total=len(dataset.samples))

    def _evaluate(self, backend: HFBackend, dataset: Dataset) -> dict[str, Any]:
        config = self.config
        assert self.run_dir is not None
        samples = self.resumed.remaining(dataset.samples)  # a resumed run skips rows on disk
        rendered = {s.index: backend.render(s.prompt) for s in samples}
        lengths = backend.token_counts([rendered[s.index] for s in samples]) if samples else []
        ordered = longest_first(samples, lengths)
        batch_size = self._batch_size(backend, [rendered[s.index] for s in ordered])

        def generate(batch: list[Sample]):
            return backend.generate(
                [rendered[s.index] for s in batch], max_new_tokens=config.max_tokens,
                do_sample=config.do_sample, temperature=config.temperature,
                top_p=config.top_p, stop=config.stop)

        if config.do_sample:
            import torch

            torch.manual_seed(config.seed)
        policy = make_oom_policy(config.oom_policy, generate, self.sink, self.lang, batch_size)
        writer = PredictionWriter(self.run_dir)
        total = len(samples)
        self.sink(RunStarted(run_dir=str(self.run_dir), total=total,
                             batch_size=batch_size, model=str(config.model),
                             device=backend.device, dtype=backend.dtype_name, pid=os.getpid()))
        self.log("INFO", "run_started", n=total, batch_size=batch_size,
                 max_tokens=config.max_tokens)
        scores: list[dict[str, float]] = []
        done = errors = tokens = 0
        generation_started = time.perf_counter()
        position = 0  # batches are cut as they go: the OOM policy may lower the size
        try:
            while position < len(ordered):
                if self.cancel.is_set():
                    break
                batch = ordered[position:position + policy.batch_size]
                position += len(batch)
                outcomes = policy.run_batch(batch)
                rows = [self._row(o) for o in outcomes]
                writer.write_batch(rows)
                scores.extend(row["scores"] for row in rows)
                done += len(outcomes)
                errors += sum(1 for o in outcomes if o.error is not None)
                tokens += sum(o.new_tokens for o in outcomes)
                elapsed = time.perf_counter() - generation_started
                rate = done / elapsed if elapsed > 0 else 0.0
                self.sink(Progress(
                    done=done, total=total, samples_per_s=rate,
                    tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                    eta_s=(total - done) / rate if rate > 0 else None,
                    batch_size=policy.batch_size, fallbacks=policy.fallbacks, errors=errors))
        finally:
            writer.close()
        generation_seconds = time.perf_counter() - generation_started
        # Rows kept from earlier tries count like rows made now; rates stay this try's.
        generated, resumed = done, self.resumed
        done, total, errors = done + resumed.done, total + resumed.done, errors + resumed.errors
        scores = resumed.scores + scores
        partial = done < total
        if not partial:
            writer.restore_dataset_order()
        metrics = {
            "metrics": mean_scores(scores, config.metrics),
            "n": done,
            "n_total": total,
            "n_errors": errors,
            "n_resumed": resumed.done,
            "n_skipped_lines": len(dataset.skipped),
            "partial": partial,
            "batch_size": batch_size,
            "final_batch_size": policy.batch_size,
            "tune_seconds": self.tune_seconds,
            "fallback_count": policy.fallbacks,
            "wall_seconds": time.perf_counter() - self.started,
            "generation_seconds": generation_seconds,
            "samples_per_s": generated / generation_seconds if generation_seconds > 0 else 0.0,
            "tokens_per_s": tokens / generation_seconds if generation_seconds > 0 else 0.0,
            "generated_tokens": tokens,
            "device": backend.device,
            "dtype": backend.dtype_name,
            "model": str(config.model),
        }
        write_json_atomic(self.run_dir / METRICS_FILE, metrics)
        if partial:
            self.log("INFO", "run_cancelled", done=done, total=total, run_dir=self.run_dir)
        else:
            self.log("INFO", "run_finished", n=done, seconds=generation_seconds,
                     rate=metrics["samples_per_s"], run_dir=self.run_dir)
        self.sink(RunFinished(metrics=metrics))
        return metrics

    def _batch_size(self, backend: HFBackend, prompts_longest_first: list[str]) -> int:
        """The configured size, or with batch_size = "auto" the tuned one (tune.json)."""
        if self.config.batch_size != "auto":
            return int(self.config.batch_size)
        if not prompts_longest_first:
            return 1
        from tui_eval.tune import tune_batch_size

        result = tune_batch_size(backend, prompts_longest_first, self.config, self.sink,
                                 self.lang, self.run_dir, cancelled=self.cancel.is_set)
        self.tune_seconds = result.seconds
        return result.chosen_batch_size

    def _row(self, outcome: Outcome) -> dict[str, Any]:
        sample = outcome.sample
        prediction = outcome.prediction
        if prediction is None:
            scores = {name: 0.0 for name in self.config.metrics}
        else:
            scores = score(prediction, sample.references, self.config.metrics)
        reference: str | list[str] = (sample.references[0] if len(sample.references) == 1
                                      else sample.references)
        return {"index": sample.index, "id": sample.id, "prompt": sample.prompt,
                "prediction": prediction, "reference": reference, "scores": scores,
                "new_tokens": outcome.new_tokens, "error": outcome.error}
