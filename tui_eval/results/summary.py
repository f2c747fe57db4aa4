"""The run's figures as text: the rows of the headless summary and the app's results table."""

from __future__ import annotations

from collections.abc import Callable

from tui_eval.results.metrics import RunMetrics


def batch_size_text(metrics: RunMetrics) -> str:
    """'8', or '8 → 2' when the OOM policy lowered it during the run."""
    if metrics.final_batch_size not in (None, metrics.batch_size):
        return f"{metrics.batch_size} → {metrics.final_batch_size}"
    return str(metrics.batch_size)


def score_text(mean: float, stderr: float | None) -> str:
    """'0.9700 ± 0.0121': a metric's mean and its standard error (the mean alone for n < 2)."""
    return f"{mean:.4f}" if stderr is None else f"{mean:.4f} ± {stderr:.4f}"


def summary_rows(metrics: RunMetrics, wall_time: Callable[[float], str] = "{:.1f}s".format
                 ) -> list[tuple[str, str]]:
    """The scores, then the run's figures: the headless summary and the app's results
    table show these rows."""
    rows = [(name, score_text(value, metrics.stderr.get(name)))
            for name, value in metrics.metrics.items()]
    if metrics.extract is not None:
        rows.append(("extract", metrics.extract))
    samples = str(metrics.n)
    if metrics.partial:
        samples += f" of {metrics.n_total} (partial)"
    rows += [
        ("samples", samples),
        ("errors", str(metrics.n_errors)),
        *([("truncated", str(metrics.n_truncated))] if metrics.n_truncated else []),
        ("fallbacks", str(metrics.fallback_count)),
        ("batch size", batch_size_text(metrics)),
        ("samples/s", f"{metrics.samples_per_s:.2f}"),
    ]
    if metrics.task == "choice":
        rows.append(("pairs/s", f"{metrics.pairs_per_s:.1f}"))
    rows += [
        ("tokens/s", f"{metrics.tokens_per_s:.1f}"),
        ("wall time", wall_time(metrics.wall_seconds)),
    ]
    if metrics.compiled:
        rows.append(("compile time", wall_time(metrics.compile_seconds)))
    return rows
