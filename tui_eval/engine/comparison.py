"""Comparing two finished runs of the same samples: their metrics side by side with the
difference, and the samples whose verdict changed (``tui-eval compare RUN_A RUN_B``; the
tables are tui_eval.reports.compare's).

A verdict is ``PredictionRow.passed`` on one metric: the first metric of run A that run B
also scored. Runs are compared sample by sample, matched by id; two runs that do not hold
the same samples (ids and prompts) cannot be compared, and ``compare_runs`` says how they
differ in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tui_eval.errors import UsageError
from tui_eval.metrics import mean_scores
from tui_eval.results.metrics import RunMetrics
from tui_eval.results.names import PREDICTIONS_FILE
from tui_eval.results.predictions import PredictionRow, read_done_rows

SHOWN_IDS = 3  # ids named in the one line that says how two runs differ


@dataclass
class RunRows:
    """What a run directory holds for a comparison."""

    run_dir: Path
    rows: list[PredictionRow]  # in dataset order
    metrics: RunMetrics | None  # metrics.json, for the run's figures (speed, batch size)

    @property
    def by_id(self) -> dict[str, PredictionRow]:
        return {row.id: row for row in self.rows}

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(row.scores))
        return list(names)


@dataclass
class VerdictChange:
    id: str
    index: int  # in run A's dataset
    before: bool  # run A's verdict
    after: bool  # run B's
    prediction_before: str | None
    prediction_after: str | None
    reference: str


@dataclass
class Comparison:
    a: RunRows
    b: RunRows
    metrics: list[tuple[str, float | None, float | None]]  # name, A's mean, B's mean
    verdict_metric: str
    changed: list[VerdictChange]
    same_verdict_other_text: int  # predictions that differ but score alike

    @property
    def samples(self) -> int:
        return len(self.a.rows)


def read_run(run_dir: Path) -> RunRows:
    """The rows of a run directory; a torn last line (a killed run) is left out."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a directory")
    path = run_dir / PREDICTIONS_FILE
    if not path.exists():
        raise UsageError(f"{run_dir}: no {PREDICTIONS_FILE}; is this a run's results "
                         "directory (its -o)?")
    rows = sorted(read_done_rows(path).rows, key=lambda row: row.index)
    return RunRows(run_dir=run_dir, rows=rows, metrics=RunMetrics.read(run_dir))


def _some(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (", …" if len(ids) > SHOWN_IDS else "")


def coverage_difference(a: RunRows, b: RunRows) -> str | None:
    """One line saying how the two runs' samples differ, or None when they hold the same."""
    a_ids, b_ids = a.by_id, b.by_id
    only_a = [row.id for row in a.rows if row.id not in b_ids]
    only_b = [row.id for row in b.rows if row.id not in a_ids]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in {a.run_dir} ({_some(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} only in {b.run_dir} ({_some(only_b)})")
        return (f"the runs cover different samples ({len(a.rows)} and {len(b.rows)}): "
                + "; ".join(parts))
    other_prompt = [row.id for row in a.rows if b_ids[row.id].prompt != row.prompt]
    if other_prompt:
        return (f"the runs have different prompts for {len(other_prompt)} of their "
                f"{len(a.rows)} samples ({_some(other_prompt)}): different data or template")
    return None


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    """UsageError (one line) when either is not a run or they hold different samples."""
    a, b = read_run(run_a), read_run(run_b)
    difference = coverage_difference(a, b)
    if difference is not None:
        raise UsageError(difference)
    names_a, names_b = a.metric_names(), b.metric_names()
    common = [name for name in names_a if name in names_b]
    if not common:
        raise UsageError(f"the runs share no metric ({', '.join(names_a) or 'none'} in "
                         f"{run_a}; {', '.join(names_b) or 'none'} in {run_b})")
    names = names_a + [name for name in names_b if name not in names_a]
    means_a = mean_scores([row.scores for row in a.rows], common)
    means_b = mean_scores([row.scores for row in b.rows], common)
    metrics = [(name, means_a.get(name), means_b.get(name)) for name in names]
    verdict_metric = common[0]
    b_rows = b.by_id
    changed: list[VerdictChange] = []
    other_text = 0
    for row in a.rows:
        other = b_rows[row.id]
        before, after = row.passed(verdict_metric), other.passed(verdict_metric)
        if before != after:
            changed.append(VerdictChange(
                id=row.id, index=row.index, before=before, after=after,
                prediction_before=row.prediction, prediction_after=other.prediction,
                reference=" | ".join(row.references)))
        elif row.prediction != other.prediction:
            other_text += 1
    return Comparison(a=a, b=b, metrics=metrics, verdict_metric=verdict_metric,
                      changed=changed, same_verdict_other_text=other_text)
