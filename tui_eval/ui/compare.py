"""Comparing the run shown with another (key ``v``, or "Compare with another run…" in the
command palette): the same comparison as ``tui-eval compare RUN_A RUN_B``.

A small dialog asks for the other run's directory (run B; the app's run is A) and says in
one line why two directories cannot be compared; the compare screen then shows the metrics
side by side (A, B, B − A) and every sample whose verdict changed. Escape goes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from tui_eval.engine import Comparison
from tui_eval.engine import compare as compare_runs
from tui_eval.errors import UsageError
from tui_eval.reports.compare import (
    CHANGED_COLUMNS,
    METRIC_COLUMNS,
    changed_rows,
    metric_rows,
    verdict_summary,
)


def try_compare(run_a: Path, run_b_text: str) -> Comparison | str:
    """The comparison, or one line saying why there is none."""
    text = run_b_text.strip()
    if not text:
        return "type the other run's results directory"
    run_b = Path(text).expanduser()
    try:
        return compare_runs(run_a, run_b)
    except UsageError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:  # an unreadable file: still one line
        return f"{run_b}: {exc}"


class CompareAskScreen(ModalScreen[Comparison | None]):
    """Asks for run B; dismissed with the comparison, or None on escape."""

    AUTO_FOCUS = "#compare-path"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_a: Path) -> None:
        super().__init__()
        self.run_a = run_a
        self.input = Input(placeholder="the other run's results directory", id="compare-path")
        self.problem = Static("", markup=False, id="compare-problem")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Compare {self.run_a} (A) with (B):", markup=False,
                         id="compare-question")
            yield self.input
            yield self.problem

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.problem.update("reading both runs…")
        self._compare(event.value)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False, name="compare")
    def _compare(self, run_b_text: str) -> None:
        """Both runs' predictions are read off the UI thread: a large run takes seconds."""
        result = try_compare(self.run_a, run_b_text)
        self.app.call_from_thread(self._show, result)

    def _show(self, result: Comparison | str) -> None:
        if isinstance(result, str):
            self.problem.update(result)
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


class CompareScreen(Screen[None]):
    """The metrics of both runs with the difference, and the samples whose verdict changed."""

    AUTO_FOCUS = "#compare-changed"
    BINDINGS = [Binding("escape", "back", "Back", tooltip="Back to the run")]

    def __init__(self, comparison: Comparison) -> None:
        super().__init__()
        self.comparison = comparison
        self.metrics_table: DataTable[Any] = DataTable(
            id="compare-metrics", cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.changed_table: DataTable[Any] = DataTable(
            id="compare-changed", cursor_type="row", zebra_stripes=True)

    def compose(self) -> ComposeResult:
        comparison = self.comparison
        yield Header()
        # the runs and their metrics stay in view; the changed samples scroll below them
        with Vertical(id="compare-body"):
            yield Static(f"A: {comparison.a.run_dir} · B: {comparison.b.run_dir} · "
                         f"{comparison.samples} samples in both", markup=False,
                         id="compare-runs")
            yield self.metrics_table
            yield Static(verdict_summary(comparison), markup=False, id="compare-summary",
                         classes="compare-title")
            yield self.changed_table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "compare"
        self.metrics_table.add_columns(*METRIC_COLUMNS)
        for row in metric_rows(self.comparison):
            self.metrics_table.add_row(*row)
        self.changed_table.add_columns(*CHANGED_COLUMNS)
        for change in changed_rows(self.comparison.changed):
            self.changed_table.add_row(*change, key=change[0])
        self.changed_table.display = bool(self.comparison.changed)

    def metric_cells(self) -> list[tuple[str, ...]]:
        return [tuple(str(cell) for cell in self.metrics_table.get_row(key))
                for key in self.metrics_table.rows]

    def changed_cells(self) -> list[tuple[str, ...]]:
        return [tuple(str(cell) for cell in self.changed_table.get_row(key))
                for key in self.changed_table.rows]

    def action_back(self) -> None:
        self.app.pop_screen()
