"""Two runs compared, as tables: their metrics and figures side by side (A, B, B − A), one
line on the verdicts, and the samples whose verdict changed. ``tui-eval compare`` prints
them; the app's compare screen shows the same rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tui_eval.formatting import markdown_table
from tui_eval.reports.summary import batch_size_text
from tui_eval.results import RunMetrics

if TYPE_CHECKING:
    from tui_eval.engine import Comparison, VerdictChange

RIGHT, WRONG = "✓", "✗"
PREDICTION_CHARS = 30


def _figure(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _difference(a: float | None, b: float | None, digits: int = 4) -> str:
    return "-" if a is None or b is None else f"{b - a:+.{digits}f}"


def _run_figures(comparison: Comparison) -> list[tuple[str, str, str, str]]:
    """How each run went (from metrics.json), below the scores."""
    ma, mb = comparison.a.metrics, comparison.b.metrics
    if ma is None or mb is None:
        return []
    rows: list[tuple[str, str, str, str]] = [
        ("batch size", batch_size_text(ma), batch_size_text(mb), ""),
        ("errors", str(ma.n_errors), str(mb.n_errors), f"{mb.n_errors - ma.n_errors:+d}")]
    figures: list[tuple[str, Callable[[RunMetrics], float], int]] = [
        ("samples/s", lambda m: m.samples_per_s, 2),
        ("tokens/s", lambda m: m.tokens_per_s, 1),
        ("generation s", lambda m: m.generation_seconds, 2)]
    for name, figure, digits in figures:
        rows.append((name, _figure(figure(ma), digits), _figure(figure(mb), digits),
                     _difference(figure(ma), figure(mb), digits)))
    return rows


def _shorten(text: str | None) -> str:
    if text is None:
        return "(failed)"
    flat = text.replace("\n", " ⏎ ")
    return flat if len(flat) <= PREDICTION_CHARS else flat[:PREDICTION_CHARS - 1] + "…"


METRIC_COLUMNS = ("metric", "A", "B", "B − A")
CHANGED_COLUMNS = ("id", "A", "B", "prediction A", "prediction B", "reference")


def metric_rows(comparison: Comparison) -> list[tuple[str, str, str, str]]:
    """The metrics table: each score, then how each run went, as A, B and B − A."""
    rows = [(name, _figure(va), _figure(vb), _difference(va, vb))
            for name, va, vb in comparison.metrics]
    return rows + _run_figures(comparison)


def verdict_summary(comparison: Comparison) -> str:
    """One line: how many verdicts changed, each way."""
    changed = comparison.changed
    got_right = sum(1 for change in changed if change.after)
    summary = (f"verdicts ({comparison.verdict_metric} = 1 is right): {len(changed)} changed"
               f" ({got_right} wrong → right, {len(changed) - got_right} right → wrong)")
    if comparison.same_verdict_other_text:
        summary += (f"; {comparison.same_verdict_other_text} other predictions differ in "
                    "text with the same verdict")
    return summary


def changed_rows(changes: Sequence[VerdictChange]) -> list[tuple[str, ...]]:
    """The changed samples' table: id, both verdicts, both predictions, the reference."""
    return [(change.id, RIGHT if change.before else WRONG, RIGHT if change.after else WRONG,
             _shorten(change.prediction_before), _shorten(change.prediction_after),
             _shorten(change.reference)) for change in changes]


def comparison_report(comparison: Comparison, *, show_all: bool = False,
                      limit: int = 50) -> str:
    """The metrics table, then the samples whose verdict changed."""
    a, b = comparison.a, comparison.b
    lines = [f"A: {a.run_dir}", f"B: {b.run_dir}",
             f"{comparison.samples} samples in both", ""]
    lines.append(markdown_table(METRIC_COLUMNS, metric_rows(comparison)))
    lines.append("")
    lines.append(verdict_summary(comparison))
    changed = comparison.changed
    if changed:
        shown = changed if show_all else changed[:limit]
        lines.append(markdown_table(CHANGED_COLUMNS, changed_rows(shown)))
        if len(shown) < len(changed):
            lines.append(f"… and {len(changed) - len(shown)} more (--all lists them)")
    return "\n".join(lines)
