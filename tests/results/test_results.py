"""Readers of the results directory: a sample's verdict and search, and following
predictions.jsonl as a run appends to it."""

from __future__ import annotations

import os
from pathlib import Path

from tui_eval.results import PredictionRow, PredictionTail


def row(index: int, prediction: str | None = "4", exact: float = 1.0, **fields) -> PredictionRow:
    return PredictionRow(index=index, id=f"q{index}", prompt=f"What is {index}+{index}?",
                         prediction=prediction, reference="4",
                         scores={"exact_match": exact, "token_f1": 1.0}, **fields)


def test_the_verdict_is_the_first_metric_or_the_one_named() -> None:
    assert row(1).passed()
    assert not row(1, exact=0.0).passed()  # token_f1 is 1, but the first metric decides
    assert row(1, exact=0.0).passed("token_f1")
    assert not row(1, prediction=None, error="CUDA out of memory").passed()
    assert not PredictionRow(index=0, id="x").passed()  # nothing scored


def test_search_looks_at_the_id_the_prompt_and_the_prediction() -> None:
    sample = row(7, prediction="Fourteen")
    assert sample.matches("q7") and sample.matches("7+7") and sample.matches("fourteen")
    assert not sample.matches("reference")


def test_the_tail_gives_new_rows_and_everything_again_after_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    tail = PredictionTail(tmp_path)
    assert tail.poll() == []  # no file yet
    path.write_text(row(2).to_json() + "\n" + row(0).to_json()[:20], encoding="utf-8")
    assert [r.index for r in tail.poll()] == [2]  # the half-written row waits
    with path.open("a", encoding="utf-8") as handle:
        handle.write(row(0).to_json()[20:] + "\n")
    assert [r.index for r in tail.poll()] == [0]
    assert tail.poll() == []
    # the run ends: the file is rewritten in dataset order (a new file moved into place)
    replacement = tmp_path / "predictions.jsonl.tmp"
    replacement.write_text(row(0).to_json() + "\n" + row(2).to_json() + "\n", encoding="utf-8")
    os.replace(replacement, path)
    assert [r.index for r in tail.poll()] == [0, 2] and tail.restarted
