"""The front ends' tables (tui_eval.reports), whole and in both languages: the bench table
and bench.md, the tune table, a run's summary rows and the compare report. Each expected
text is what the tables printed before they moved here; a changed cell fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tui_eval.engine.comparison import Comparison, RunRows, VerdictChange
from tui_eval.reports.bench import bench_markdown, bench_table
from tui_eval.reports.compare import comparison_report
from tui_eval.reports.summary import batch_size_text, score_text, summary_rows
from tui_eval.results import BenchRow, PredictionRow, RunMetrics

REPO = Path(__file__).resolve().parents[2]
GIB = 2**30

BENCH_ROWS = [
    BenchRow(batch_size=1, seconds=2.0, speedup=1.0, samples_per_s=8.0, tokens_per_s=64.0,
             peak_memory_bytes=GIB, gpu_util_percent=50.0),
    BenchRow(batch_size=4, seconds=1.0, speedup=2.0, samples_per_s=16.0, tokens_per_s=128.0,
             peak_memory_bytes=2 * GIB, gpu_util_percent=None, fallbacks=1, final_batch_size=2)]

BENCH_MD = {
    "en": "# tui-eval bench\n\nmodel: m, samples: 16\n\n"
          "| batch_size | time  | speedup | samples/s | peak memory | GPU util |\n"
          "|------------|-------|---------|-----------|-------------|----------|\n"
          "| 1          | 2.00s | 1.00x   | 8.00      | 1.0 GiB     | 50%      |\n"
          "| 4*         | 1.00s | 2.00x   | 16.00     | 2.0 GiB     | N/A      |\n\n"
          "* batch_size=4 ran out of memory: 1 fallback(s), finished at batch size 2\n",
    "zh": "# tui-eval bench\n\nmodel: m, samples: 16\n\n"
          "| batch_size | 时间  | 提升  | 样本/秒 | 峰值内存 | GPU利用率 |\n"
          "|------------|-------|-------|---------|----------|-----------|\n"
          "| 1          | 2.00s | 1.00x | 8.00    | 1.0 GiB  | 50%       |\n"
          "| 4*         | 1.00s | 2.00x | 16.00   | 2.0 GiB  | N/A       |\n\n"
          "* batch_size=4 内存不足：回退 1 次，最终 batch_size=2\n",
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_bench_md_is_the_bench_table_under_its_context(lang: str) -> None:
    text = bench_markdown(BENCH_ROWS, {"model": "m", "samples": 16}, lang)
    assert text == BENCH_MD[lang]
    assert bench_table(BENCH_ROWS, lang) + "\n" in text


def test_a_compiled_choice_bench_has_pairs_and_compile_columns_in_both_languages() -> None:
    rows = [BenchRow(batch_size=2, seconds=1.0, speedup=1.0, samples_per_s=8.0,
                     tokens_per_s=0.0, peak_memory_bytes=None, gpu_util_percent=None,
                     pairs_per_s=24.0, compile="on", requested_compile="on",
                     compile_seconds=3.0)]
    assert bench_table(rows, "en").splitlines() == [
        "| batch_size | compile | time  | speedup | samples/s | pairs/s | peak memory | GPU util "
        "| compile time |",
        "|------------|---------|-------|---------|-----------|---------|-------------|----------"
        "|--------------|",
        "| 2          | on      | 1.00s | 1.00x   | 8.00      | 24.0    | N/A         | N/A      "
        "| 3.00s        |"]
    assert bench_table(rows, "zh").splitlines()[0] == (
        "| batch_size | 编译 | 时间  | 提升  | 样本/秒 | 选项/秒 | 峰值内存 | GPU利用率 "
        "| 编译用时 |")
    # a language without its own headers falls back to English
    assert bench_table(rows, "fr") == bench_table(rows, "en")


def test_summary_rows_of_a_stopped_compiled_choice_run() -> None:
    metrics = RunMetrics(
        metrics={"exact_match": 0.5, "acc": 0.25}, n=4, n_total=8,
        stderr={"exact_match": 0.2887, "acc": None}, extract="last_number", n_truncated=1,
        partial=True, batch_size=8, final_batch_size=2, samples_per_s=3.25,
        tokens_per_s=40.5, wall_seconds=12.34, compiled=True, compile="on", compile_seconds=5.0,
        task="choice", pairs_per_s=9.75, fallback_count=2)
    assert summary_rows(metrics) == [
        ("exact_match", "0.5000 ± 0.2887"), ("acc", "0.2500"), ("extract", "last_number"),
        ("samples", "4 of 8 (partial)"), ("errors", "0"), ("truncated", "1"),
        ("fallbacks", "2"), ("batch size", "8 → 2"), ("samples/s", "3.25"),
        ("pairs/s", "9.8"), ("tokens/s", "40.5"), ("wall time", "12.3s"),
        ("compile time", "5.0s (on)")]
    # the app passes its own wording of a duration
    assert summary_rows(metrics, lambda seconds: "t")[-2:] == [("wall time", "t"),
                                                              ("compile time", "t (on)")]


def test_batch_size_and_score_texts() -> None:
    assert batch_size_text(RunMetrics(metrics={}, n=0, n_total=0, batch_size=8,
                                      final_batch_size=8)) == "8"
    assert batch_size_text(RunMetrics.from_dict({"batch_size": "auto"})) == "auto"
    assert score_text(0.97, 0.0121) == "0.9700 ± 0.0121"
    assert score_text(1.0, None) == "1.0000"


def comparison() -> Comparison:
    rows = [PredictionRow(index=i, id=f"q{i}") for i in range(3)]
    a = RunMetrics(metrics={}, n=3, n_total=3, batch_size=4, final_batch_size=4,
                   samples_per_s=10.0, tokens_per_s=80.0, generation_seconds=0.3)
    b = RunMetrics(metrics={}, n=3, n_total=3, batch_size=8, final_batch_size=4, n_errors=1,
                   samples_per_s=20.0, tokens_per_s=150.0, generation_seconds=0.15)
    return Comparison(
        a=RunRows(Path("runs/a"), rows, a), b=RunRows(Path("runs/b"), rows, b),
        metrics=[("exact_match", 0.5, 0.75), ("token_f1", 0.6, None)],
        verdict_metric="exact_match",
        changed=[VerdictChange(id="q1", index=1, before=False, after=True,
                               prediction_before="a long answer\nthat runs past thirty "
                                                 "characters",
                               prediction_after="4", reference="4"),
                 VerdictChange(id="q2", index=2, before=True, after=False,
                               prediction_before="6", prediction_after=None, reference="6")],
        same_verdict_other_text=1)


COMPARE_HEAD = [
    "A: runs/a", "B: runs/b", "3 samples in both", "",
    "| metric       | A      | B      | B − A   |",
    "|--------------|--------|--------|---------|",
    "| exact_match  | 0.5000 | 0.7500 | +0.2500 |",
    "| token_f1     | 0.6000 | -      | -       |",
    "| batch size   | 4      | 8 → 4  |         |",
    "| errors       | 0      | 1      | +1      |",
    "| samples/s    | 10.00  | 20.00  | +10.00  |",
    "| tokens/s     | 80.0   | 150.0  | +70.0   |",
    "| generation s | 0.30   | 0.15   | -0.15   |",
    "",
    "verdicts (exact_match = 1 is right): 2 changed (1 wrong → right, 1 right → wrong); 1 "
    "other predictions differ in text with the same verdict",
    "| id | A | B | prediction A                   | prediction B | reference |",
    "|----|---|---|--------------------------------|--------------|-----------|",
    "| q1 | ✗ | ✓ | a long answer ⏎ that runs pas… | 4            | 4         |"]


def test_the_compare_report_whole() -> None:
    assert comparison_report(comparison()).splitlines() == [
        *COMPARE_HEAD,
        "| q2 | ✓ | ✗ | 6                              | (failed)     | 6         |"]


def test_the_compare_report_lists_the_first_changes_and_says_how_many_more() -> None:
    assert comparison_report(comparison(), limit=1).splitlines() == [
        *COMPARE_HEAD, "… and 1 more (--all lists them)"]
    assert comparison_report(comparison(), limit=1, show_all=True) == comparison_report(
        comparison())


@pytest.mark.slow
def test_the_reports_load_no_textual_rich_or_torch() -> None:
    code = ("import sys; import tui_eval.reports.bench, tui_eval.reports.compare, "
            "tui_eval.reports.summary; print(sorted(m for m in "
            "('textual', 'rich', 'torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
