"""What a run scores: the extracted answer beside the raw prediction, and each metric's
standard error in metrics.json and in the tables, however the run ends."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.helpers import rows_of, write_jsonl
from tui_eval.config import EvalConfig, resolve_config
from tui_eval.engine.evaluation import Evaluation
from tui_eval.engine.preparation import DEMO_DATA, DEMO_MODEL
from tui_eval.engine.resume import config_differences
from tui_eval.errors import ConfigError
from tui_eval.events import Event, Progress
from tui_eval.headless.printer import metrics_table
from tui_eval.metrics import standard_errors
from tui_eval.results import RunMetrics

FIRST_DIGIT = r"^(\d)"


def demo_records(limit: int) -> list[dict]:
    return [json.loads(line) for line in DEMO_DATA.read_text().splitlines()[:limit]]


def config_for(data: Path, out: Path, **values: object) -> EvalConfig:
    values.setdefault("batch_size", 4)
    return EvalConfig(model=str(DEMO_MODEL), data=str(data), max_tokens=8, device="cpu",
                      torch_dtype="float32", lang="en", output_dir=str(out), **values)


@pytest.fixture()
def first_digit_data(tmp_path: Path) -> Path:
    """Demo prompts whose reference is only the first digit of the right answer: the whole
    prediction misses it, the extracted first digit matches it."""
    records = [r for r in demo_records(40) if r["answer"][0].isdigit() and len(r["answer"]) > 1]
    rows = [{"id": r["id"], "prompt": r["prompt"], "answer": r["answer"][0]} for r in records]
    return write_jsonl(tmp_path / "first_digit.jsonl", rows)


def test_a_run_scores_the_extracted_answer_and_keeps_the_raw_text(
        first_digit_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "extracted"
    metrics = Evaluation(config_for(first_digit_data, out, extract=FIRST_DIGIT),
                         lambda event: None).run()
    rows = rows_of(out)
    assert all(len(row["prediction"]) > 1 for row in rows)  # the demo answers in full
    for row in rows:
        assert row["extracted"] == row["prediction"][0]
        assert row["scores"]["exact_match"] == float(row["extracted"] == row["reference"])
    assert metrics.metrics["exact_match"] >= 0.9
    assert metrics.extract == FIRST_DIGIT
    assert json.loads((out / "metrics.json").read_text())["extract"] == FIRST_DIGIT

    plain = tmp_path / "plain"
    unextracted = Evaluation(config_for(first_digit_data, plain), lambda event: None).run()
    assert all(row["extracted"] is None for row in rows_of(plain))
    assert unextracted.metrics["exact_match"] == 0.0
    assert [r["prediction"] for r in rows_of(plain)] == [r["prediction"] for r in rows]


def test_metrics_json_holds_each_metric_s_standard_error(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "demo.jsonl", demo_records(60))
    out = tmp_path / "run"
    Evaluation(config_for(data, out), lambda event: None).run()
    written = json.loads((out / "metrics.json").read_text())
    scores = [row["scores"] for row in rows_of(out)]
    assert written["stderr"] == standard_errors(scores, written["metrics"])
    for name, mean in written["metrics"].items():  # sample variance (n - 1), over sqrt(n)
        variance = sum((s[name] - mean) ** 2 for s in scores) / (len(scores) - 1)
        assert written["stderr"][name] == pytest.approx(math.sqrt(variance / len(scores)))


def test_a_cancelled_run_has_the_standard_errors_of_its_rows(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "demo.jsonl", demo_records(40))
    out = tmp_path / "run"
    evaluation: Evaluation | None = None

    def cancel_after_the_second_batch(event: Event) -> None:
        if isinstance(event, Progress) and event.done >= 4 and evaluation is not None:
            evaluation.cancel.cancel()

    evaluation = Evaluation(config_for(data, out, batch_size=2), cancel_after_the_second_batch)
    metrics = evaluation.run()
    assert metrics.partial and metrics.n == 4
    written = json.loads((out / "metrics.json").read_text())
    assert written["partial"] is True
    assert written["stderr"] == standard_errors([r["scores"] for r in rows_of(out)],
                                                written["metrics"])


def test_one_sample_has_no_standard_error(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "one.jsonl", demo_records(1))
    out = tmp_path / "run"
    metrics = Evaluation(config_for(data, out), lambda event: None).run()
    written = json.loads((out / "metrics.json").read_text())
    assert set(written["stderr"]) == set(written["metrics"])
    assert all(value is None for value in written["stderr"].values())
    assert "exact_match  1.0000\n" in metrics_table(metrics)  # the mean alone


def test_the_table_shows_the_mean_with_its_standard_error() -> None:
    metrics = RunMetrics.from_dict({"metrics": {"exact_match": 0.97, "numeric": 0.5},
                                    "stderr": {"exact_match": 0.0120926, "numeric": None},
                                    "n": 200, "n_total": 200, "extract": "last_number",
                                    "n_truncated": 3})
    lines = metrics_table(metrics).splitlines()
    assert "exact_match  0.9700 ± 0.0121" in lines
    assert "numeric      0.5000" in lines
    assert "extract      last_number" in lines
    assert "truncated    3" in lines


def test_metrics_json_of_an_earlier_version_still_reads() -> None:
    old = RunMetrics.from_dict({"metrics": {"exact_match": 0.5}, "n": 2, "n_total": 2})
    assert old.stderr == {} and old.extract is None and old.n_truncated == 0
    assert "exact_match  0.5000" in metrics_table(old)


def test_extract_is_checked_where_it_is_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--extract: extraction regex '\(a\)\(b\)' needs "
                                          r"exactly one capture group, has 2$"):
        resolve_config(None, {"extract": "(a)(b)"})
    toml = tmp_path / "eval.toml"
    toml.write_text('limit = 3\nextract = 5\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{toml}:2: key 'extract' must be a preset name "
                                          "or a regex, got 5$"):
        resolve_config(toml, {})
    assert resolve_config(None, {"extract": "boxed"}).extract == "boxed"
    assert resolve_config(None, {"extract": ""}).extract is None


def test_a_resumed_run_must_keep_its_scoring_and_truncation() -> None:
    saved = EvalConfig().to_dict()
    changed = EvalConfig(extract="last_number", truncate="left")
    assert [d.split(":")[0] for d in config_differences(saved, changed)] == ["extract",
                                                                            "truncate"]
