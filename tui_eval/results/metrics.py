"""metrics.json: the scores and the run's figures, written whole. Every path that ends a
run (the run itself, rank 0 of several, a stop at once) or scores it again builds its
metrics here and writes them with ``write_metrics``, the file's one writer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_eval.errors import UsageError
from tui_eval.metrics import mean_and_stderr
from tui_eval.results.json_io import from_known_fields, read_json_object, write_json_atomic
from tui_eval.results.names import METRICS_FILE
from tui_eval.results.predictions import PredictionRow


@dataclass
class RunMetrics:
    """metrics.json. ``partial``: the run stopped before every sample was done;
    ``stopped_at_once``: it was stopped mid-batch (a second signal) and these figures were
    rebuilt from the rows on disk. A choice task (``task == "choice"``) generates nothing:
    its tokens are the tokens its forward passes read, and ``pairs_per_s`` the
    (context, choice) pairs scored per second."""

    metrics: dict[str, float]
    n: int
    n_total: int
    # each metric's standard error of the mean; None with fewer than two samples
    stderr: dict[str, float | None] = field(default_factory=dict)
    extract: str | None = None  # the extraction spec the scores were computed with
    n_errors: int = 0
    n_resumed: int = 0
    n_skipped_lines: int = 0
    n_truncated: int = 0  # prompts cut from the left to fit (truncate = "left")
    partial: bool = False
    stopped_at_once: bool = False
    batch_size: int | str = 0
    final_batch_size: int | str = 0
    tune_seconds: float | None = None
    fallback_count: int = 0
    wall_seconds: float = 0.0
    generation_seconds: float = 0.0  # generating only: compile_seconds are not in it
    compiled: bool = False  # the run used a faster path than eager (``compile``)
    compile_seconds: float = 0.0  # compiling its shapes (the first call of each)
    # the path that ran: "off" (eager), "on" (compiled static cache) or "graph" (CUDA-graph
    # decode); a file written without it reads "on" when compiled (the graph path came later)
    compile: str = "off"
    requested_compile: str | None = None  # the setting that chose it ("auto", …); None: unknown
    samples_per_s: float = 0.0
    tokens_per_s: float = 0.0
    generated_tokens: int = 0  # 0 for a choice task, which generates nothing
    read_tokens: int = 0  # a choice task's input tokens (its tokens_per_s is their rate)
    device: str | None = None
    dtype: str | None = None
    model: str = ""
    task: str = "generate"
    pairs_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunMetrics:
        batch_size = data.get("batch_size", 0)
        return from_known_fields(cls, {"metrics": {}, "n": 0, "n_total": 0,
                                       "final_batch_size": batch_size,
                                       "compile": "on" if data.get("compiled") else "off",
                                       **data})

    @classmethod
    def read(cls, run_dir: Path) -> RunMetrics | None:
        """None when the run has no (readable) metrics.json yet."""
        try:
            return cls.from_dict(read_json_object(run_dir / METRICS_FILE))
        except UsageError:
            return None


def write_metrics(run_dir: Path, metrics: RunMetrics) -> None:
    """metrics.json, replaced whole: the file's one writer."""
    write_json_atomic(run_dir / METRICS_FILE, metrics.to_dict())


def build_run_metrics(rows: Sequence[PredictionRow], names: Sequence[str], *, n_total: int,
                      n_resumed: int = 0, n_skipped_lines: int = 0,
                      batch_size: int | str = 0, final_batch_size: int | str | None = None,
                      tune_seconds: float | None = None, fallback_count: int = 0,
                      wall_seconds: float = 0.0, generation_seconds: float = 0.0,
                      compile: str = "off", requested_compile: str | None = None,
                      compile_seconds: float = 0.0,
                      generated: int = 0, generated_tokens: int = 0,
                      device: str | None = None, dtype: str | None = None, model: str = "",
                      stopped_at_once: bool = False, extract: str | None = None,
                      task: str = "generate") -> RunMetrics:
    """metrics.json from every row the run holds: those kept from earlier tries, then the
    ``generated`` rows made now. Rates are this try's: ``generated`` samples and
    ``generated_tokens`` tokens (read, for a choice task) in ``generation_seconds``, which
    excludes ``compile_seconds`` (the seconds the compiled path spent compiling its shapes:
    a one-off cost, reported apart); ``compile`` is the path that ran ("off", "on",
    "graph") and ``requested_compile`` the setting that chose it. Every path that ends a run
    builds its metrics here."""
    def rate(amount: float) -> float:
        return amount / generation_seconds if generation_seconds > 0 else 0.0

    means, stderr = mean_and_stderr([row.scores for row in rows], names)
    this_try = rows[len(rows) - generated:] if generated > 0 else []
    pairs = sum(len(row.choices or ()) for row in this_try)
    return RunMetrics(
        metrics=means, stderr=stderr, extract=extract,
        n=len(rows), n_total=n_total,
        n_errors=sum(1 for row in rows if row.error is not None),
        n_resumed=n_resumed, n_skipped_lines=n_skipped_lines,
        n_truncated=sum(1 for row in rows if row.truncated),
        partial=len(rows) < n_total, stopped_at_once=stopped_at_once,
        batch_size=batch_size,
        final_batch_size=batch_size if final_batch_size is None else final_batch_size,
        tune_seconds=tune_seconds, fallback_count=fallback_count,
        wall_seconds=wall_seconds, generation_seconds=generation_seconds,
        compiled=compile != "off", compile_seconds=compile_seconds, compile=compile,
        requested_compile=requested_compile,
        samples_per_s=rate(generated), tokens_per_s=rate(generated_tokens),
        generated_tokens=0 if task == "choice" else generated_tokens,
        read_tokens=generated_tokens if task == "choice" else 0, device=device, dtype=dtype,
        model=model, task=task, pairs_per_s=rate(pairs))


def rescored_metrics(previous: RunMetrics, rows: Sequence[PredictionRow], names: Sequence[str],
                     extract: str | None) -> RunMetrics:
    """metrics.json after the rows were scored again: the scores as ``build_run_metrics``
    computes them; the run's figures (rates, batch sizes, times) are the generation's, kept
    from ``previous``."""
    scored = build_run_metrics(rows, names, n_total=previous.n_total, extract=extract)
    return dataclasses.replace(previous, metrics=scored.metrics, stderr=scored.stderr,
                               extract=extract, n=scored.n, n_errors=scored.n_errors,
                               n_truncated=scored.n_truncated)
