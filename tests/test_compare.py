"""``tui-eval compare``: metrics side by side, changed verdicts, and runs that differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_eval.cli import main
from tui_eval.engine.comparison import compare_runs, comparison_report
from tui_eval.errors import UsageError
from tui_eval.results import PredictionRow, RunMetrics, write_metrics

SAMPLES = [("q1", "1+1=", "2"), ("q2", "2+2=", "4"), ("q3", "3+3=", "6"), ("q4", "4+4=", "8")]


def write_run(run_dir: Path, predictions: dict[str, str | None], *, samples=SAMPLES,
              batch_size: int = 1, samples_per_s: float = 10.0) -> Path:
    """A results directory as a run leaves it: rows scored by exact match, and metrics."""
    run_dir.mkdir(parents=True)
    rows = []
    for index, (sample_id, prompt, answer) in enumerate(samples):
        if sample_id not in predictions:
            continue
        prediction = predictions[sample_id]
        right = float(prediction == answer)
        rows.append(PredictionRow(
            index=index, id=sample_id, prompt=prompt, prediction=prediction, reference=answer,
            scores={"exact_match": right, "contains": right},
            error=None if prediction is not None else "CUDA out of memory"))
    (run_dir / "predictions.jsonl").write_text("".join(row.to_json() + "\n" for row in rows),
                                               encoding="utf-8")
    write_metrics(run_dir, RunMetrics.from_dict({
        "metrics": {}, "n": len(rows), "n_total": len(samples), "batch_size": batch_size,
        "samples_per_s": samples_per_s, "generation_seconds": len(rows) / samples_per_s}))
    return run_dir


def test_metrics_side_by_side_and_the_changed_verdicts(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"q1": "2", "q2": "5", "q3": "6", "q4": "8"})
    b = write_run(tmp_path / "b", {"q1": "2", "q2": "4", "q3": None, "q4": "8 "},
                  batch_size=8, samples_per_s=40.0)
    comparison = compare_runs(a, b)
    assert comparison.verdict_metric == "exact_match"
    # this test's scorer is strict: "8 " is wrong
    assert [(c.id, c.before, c.after) for c in comparison.changed] == [
        ("q2", False, True), ("q3", True, False), ("q4", True, False)]
    assert comparison.same_verdict_other_text == 0
    report = comparison_report(comparison)
    assert "| exact_match  | 0.7500 | 0.5000 | -0.2500 |" in report
    assert "| samples/s    | 10.00  | 40.00  | +30.00  |" in report
    assert "| batch size   | 1      | 8      |         |" in report
    assert "3 changed (1 wrong → right, 2 right → wrong)" in report
    assert "| q3 | ✓ | ✗ | 6            | (failed)     | 6         |" in report


def test_the_same_verdicts_report_none_changed(tmp_path: Path) -> None:
    answers = {"q1": "2", "q2": "5", "q3": "6", "q4": "8"}
    a = write_run(tmp_path / "a", answers)
    b = write_run(tmp_path / "b", {**answers, "q2": "7"})  # wrong in another way
    comparison = compare_runs(a, b)
    assert comparison.changed == []
    assert comparison.same_verdict_other_text == 1
    assert "0 changed" in comparison_report(comparison)


def test_runs_of_different_samples_cannot_be_compared(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"q1": "2", "q2": "4", "q3": "6", "q4": "8"})
    b = write_run(tmp_path / "b", {"q1": "2", "q2": "4"})  # a partial run
    with pytest.raises(UsageError) as info:
        compare_runs(a, b)
    assert str(info.value) == (f"the runs cover different samples (4 and 2): 2 only in {a} "
                               "(q3, q4)")
    other = [(sample_id, prompt + " ", answer) for sample_id, prompt, answer in SAMPLES]
    c = write_run(tmp_path / "c", {"q1": "2", "q2": "4", "q3": "6", "q4": "8"}, samples=other)
    with pytest.raises(UsageError, match=r"different prompts for 4 of their 4 samples "
                                         r"\(q1, q2, q3, …\)"):
        compare_runs(a, c)


def test_the_command_prints_the_report_and_refuses_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = write_run(tmp_path / "a", {"q1": "2", "q2": "4", "q3": "6", "q4": "8"})
    b = write_run(tmp_path / "b", {"q1": "2", "q2": "4", "q3": "6", "q4": "9"})
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "1 changed (0 wrong → right, 1 right → wrong)" in out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # read-only
    assert main(["compare", str(a), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"tui-eval: error: {tmp_path}: no predictions.jsonl; is this a run's "
                   "results directory (its -o)?\n")
    short = write_run(tmp_path / "short", {"q1": "2"})
    assert main(["compare", str(a), str(short)]) == 2
    assert "cover different samples" in capsys.readouterr().err


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"q1": "2", "q2": "4"}, samples=SAMPLES[:2])
    b = write_run(tmp_path / "b", {"q1": "2", "q2": "4"}, samples=SAMPLES[:2])
    with (b / "predictions.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"index": 2, "id": "q3"})[:12])  # killed mid-line
    assert compare_runs(a, b).changed == []
