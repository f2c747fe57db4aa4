"""A choice task through the engine: the (context, choice) pair is the batch unit, with the
same OOM policies, tuner, resume, signals, commands and results directory as generation."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import (
    CHOICES,
    PROMPTS,
    Collect,
    SharedForwards,
    choice_rows,
    complete_lines,
    headless,
    make_app,
    rows_of,
    run_evaluation,
    tap,
    wait_for,
    wait_until,
    write_jsonl,
)
from tui_eval.batching.oom_policies import BatchWork, BisectPolicy
from tui_eval.cli import main
from tui_eval.config import EvalConfig
from tui_eval.engine.evaluation import Evaluation
from tui_eval.engine.preparation import DEMO_CHOICE_DATA
from tui_eval.engine.resume import ResumePlan, config_differences
from tui_eval.engine.stopping import metrics_after_stop
from tui_eval.events import Fallback, Progress, RunStarted
from tui_eval.reports.summary import score_text, summary_rows
from tui_eval.results import PredictionRow, RunDir


@pytest.fixture()
def choice_jsonl(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "choice.jsonl", choice_rows())


@pytest.fixture()
def base(tiny_model: Path, choice_jsonl: Path, tmp_path: Path) -> EvalConfig:
    return EvalConfig(model=str(tiny_model), data=str(choice_jsonl), device="cpu",
                      torch_dtype="float32", lang="en", output_dir=str(tmp_path / "bs1"),
                      batch_size=1, task="choice")


def picks(rows: list[dict]) -> list[tuple]:
    return [(r["id"], r["pred"], r["pred_norm"], r["gold"], r["error"]) for r in rows]


def assert_same_logprobs(rows: list[dict], expected: list[dict]) -> None:
    assert [r["id"] for r in rows] == [r["id"] for r in expected]
    for row, reference in zip(rows, expected, strict=True):
        assert row["logprobs"] == pytest.approx(reference["logprobs"], abs=1e-4)


def test_batched_pairs_equal_batch_size_one(base: EvalConfig, tmp_path: Path) -> None:
    one_by_one, expected, _ = run_evaluation(base)
    # 5 pairs a batch: most samples are cut across two batches
    batched, rows, sink = run_evaluation(
        replace(base, batch_size=5, output_dir=str(tmp_path / "bs5")))
    assert_same_logprobs(rows, expected)
    assert picks(rows) == picks(expected)
    assert [r["id"] for r in rows] == [pid for pid, _, _ in PROMPTS]  # dataset order, once
    assert batched.metrics == one_by_one.metrics
    assert set(batched.metrics) == {"acc", "acc_norm"}  # `metrics` does not apply
    started = next(e for e in sink.events if isinstance(e, RunStarted))
    assert started.total == 12
    pairs = sum(len(r["choices"]) for r in choice_rows())
    assert f"Scoring 12 samples ({pairs} choices) by log-likelihood, batch size 5" in "\n".join(
        sink.logs())


def test_choice_rows_and_metrics_json(base: EvalConfig) -> None:
    metrics, rows, _ = run_evaluation(replace(base, batch_size=4))
    out = Path(base.output_dir or "")
    for row, source in zip(rows, choice_rows(), strict=True):
        assert row["choices"] == source["choices"] and row["gold"] == source["answer"]
        assert len(row["logprobs"]) == len(row["is_greedy"]) == len(row["choices"])
        assert all(lp < 0 for lp in row["logprobs"])
        best = max(range(len(row["logprobs"])), key=lambda i: (row["logprobs"][i], -i))
        assert row["pred"] == best and row["prediction"] == row["choices"][best]
        assert row["reference"] == row["choices"][row["gold"]]
        assert row["scores"] == {"acc": float(row["pred"] == row["gold"]),
                                 "acc_norm": float(row["pred_norm"] == row["gold"])}
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["task"] == "choice" and saved["n"] == 12 and saved["partial"] is False
    assert saved["metrics"]["acc"] == pytest.approx(sum(r["scores"]["acc"] for r in rows) / 12)
    assert saved["metrics"]["acc_norm"] == pytest.approx(
        sum(r["scores"]["acc_norm"] for r in rows) / 12)
    if "stderr" in saved:  # only where metrics.json reports standard errors
        assert set(saved["stderr"]) == {"acc", "acc_norm"}
    # a choice run generates nothing: the tokens its pairs read are named as read
    assert saved["pairs_per_s"] > 0 and saved["generated_tokens"] == 0
    assert saved["read_tokens"] > 0
    assert saved["tokens_per_s"] == pytest.approx(
        saved["read_tokens"] / saved["generation_seconds"])
    names = [name for name, _ in summary_rows(metrics)]
    assert names[:2] == ["acc", "acc_norm"] and "pairs/s" in names
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))["config"]
    assert (config["task"], config["target_delimiter"], config["choices_field"]) == (
        "choice", "auto", "choices")


def test_generation_rows_keep_their_format() -> None:
    row = PredictionRow(index=0, id="q1", prompt="p", prediction="x", reference="y")
    assert list(json.loads(row.to_json())) == [
        "index", "id", "prompt", "prediction", "extracted", "reference", "scores",
        "new_tokens", "error", "truncated", "truncated_tokens"]


@pytest.mark.parametrize(
    ("lang", "warning", "info"),
    [("zh", "⚠️ 批量生成失败: CUDA out of memory", "- 自动回退到单样本生成"),
     ("en", "⚠️ Batch generation failed: CUDA out of memory",
      "- Falling back to single-sample generation")],
)
def test_injected_oom_loses_no_sample(base: EvalConfig, tmp_path: Path, lang: str,
                                      warning: str, info: str) -> None:
    _, expected, _ = run_evaluation(base)
    metrics, rows, sink = run_evaluation(
        replace(base, batch_size=8, simulate_oom_above=2, lang=lang,
                oom_policy="single", output_dir=str(tmp_path / "oom")))
    assert_same_logprobs(rows, expected)
    assert picks(rows) == picks(expected)
    assert metrics.n == 12 and metrics.n_errors == 0 and metrics.fallback_count > 0
    logs = sink.logs()
    assert logs.count(warning) == metrics.fallback_count
    info_lines = [line for line in logs if line.endswith(info)]
    assert len(info_lines) == metrics.fallback_count
    assert all(line.startswith("[INFO] 20") for line in info_lines)
    run_log = (tmp_path / "oom" / "run.log").read_text(encoding="utf-8")
    assert warning in run_log and info in run_log
    assert sum(isinstance(e, Fallback) for e in sink.events) == metrics.fallback_count


def test_bisect_lowers_the_pairs_per_batch(base: EvalConfig, tmp_path: Path) -> None:
    _, expected, _ = run_evaluation(base)
    metrics, rows, sink = run_evaluation(replace(base, batch_size=8, simulate_oom_above=2,
                                      oom_policy="bisect", output_dir=str(tmp_path / "oom")))
    assert_same_logprobs(rows, expected)
    assert metrics.batch_size == 8 and metrics.final_batch_size == 2
    assert metrics.fallback_count == 2  # 8 pairs fail, then 4; every later batch is 2
    assert [e.batch_size for e in sink.events if isinstance(e, Progress)][-1] == 2


def test_a_pair_failing_alone_fails_its_sample_only(base: EvalConfig, tmp_path: Path) -> None:
    # every row is over the limit: each pair fails even alone, and each sample is recorded
    metrics, rows, sink = run_evaluation(replace(base, batch_size=4, simulate_oom_above=0, limit=3,
                                      oom_policy="single", output_dir=str(tmp_path / "fail")))
    assert len(rows) == 3 and metrics.n_errors == 3 and metrics.metrics == {
        "acc": 0.0, "acc_norm": 0.0}
    assert all(r["error"] == "CUDA out of memory" and r["pred"] is None for r in rows)
    assert all(lp is None for r in rows for lp in r["logprobs"])
    assert any(line.endswith("Sample q1, choice 0, failed on its own: CUDA out of memory")
               for line in sink.logs())


def long_choice_rows() -> list[dict]:
    """Twelve samples whose contexts are long against their four choices: sharing pays."""
    return [{"id": pid, "question": f"{question} {'Please answer. ' * 24}{question}",
             "choices": CHOICES[:4], "answer": number % 4}
            for number, (pid, question, _) in enumerate(PROMPTS)]


def choice_fields(rows: list[dict]) -> list[tuple]:
    return [(r["id"], r["choices"], r["is_greedy"], r["pred"], r["pred_norm"], r["gold"],
             r["prediction"], r["scores"], r["error"]) for r in rows]


@pytest.fixture()
def long_choice(base: EvalConfig, tmp_path: Path) -> EvalConfig:
    data = write_jsonl(tmp_path / "long_choice.jsonl", long_choice_rows())
    return replace(base, data=str(data))


def test_shared_contexts_write_the_rows_of_batch_size_one(
        long_choice: EvalConfig, tmp_path: Path, shared_forwards: SharedForwards) -> None:
    one_by_one, expected, _ = run_evaluation(long_choice)
    assert shared_forwards.ran == 0  # one pair a forward: nothing to share
    shared, rows, _ = run_evaluation(
        replace(long_choice, batch_size=8, output_dir=str(tmp_path / "bs8")))
    assert shared_forwards.ran == 6  # every batch of two samples shared their contexts
    assert_same_logprobs(rows, expected)
    assert choice_fields(rows) == choice_fields(expected)
    assert shared.metrics == one_by_one.metrics


@pytest.mark.parametrize("policy", ["bisect", "single"])
def test_injected_oom_with_shared_contexts_loses_nothing(
        long_choice: EvalConfig, tmp_path: Path, policy: str,
        shared_forwards: SharedForwards) -> None:
    _, expected, _ = run_evaluation(long_choice)
    metrics, rows, _ = run_evaluation(replace(long_choice, batch_size=16, simulate_oom_above=4,
                                   oom_policy=policy, output_dir=str(tmp_path / policy)))
    assert_same_logprobs(rows, expected)
    assert choice_fields(rows) == choice_fields(expected)
    assert metrics.n == 12 and metrics.n_errors == 0 and metrics.fallback_count > 0
    if policy == "bisect":  # 16 pairs fail, then 8; each batch of 4 is one shared sample
        assert (metrics.fallback_count, metrics.final_batch_size) == (2, 4)
        assert shared_forwards.ran == 12


class CancelAfter(Collect):
    def __init__(self, samples: int) -> None:
        super().__init__()
        self.samples = samples
        self.evaluation: Evaluation | None = None

    def __call__(self, event: object) -> None:
        super().__call__(event)  # type: ignore[arg-type]
        if isinstance(event, Progress) and event.done >= self.samples and self.evaluation:
            self.evaluation.cancel.cancel()


def test_resume_after_cancel_gives_the_same_results(base: EvalConfig, tmp_path: Path) -> None:
    reference, expected, _ = run_evaluation(replace(base, batch_size=3))
    config = replace(base, batch_size=3, output_dir=str(tmp_path / "run"))
    sink = CancelAfter(4)
    evaluation = Evaluation(config, sink)
    sink.evaluation = evaluation
    partial = evaluation.run()
    assert partial.partial and 4 <= partial.n < 12
    kept = rows_of(tmp_path / "run")
    assert len(kept) == partial.n  # whole samples only: a sample cut by the stop is redone
    metrics, rows, resumed = run_evaluation(replace(config, batch_size=7))  # the size may change
    assert "holds a run of the same config: resuming it" in "\n".join(resumed.logs())
    assert metrics.n_resumed == partial.n and not metrics.partial
    assert_same_logprobs(rows, expected)
    assert picks(rows) == picks(expected)
    assert metrics.metrics == reference.metrics


def test_task_is_read_from_the_data_and_must_match_on_resume(base: EvalConfig,
                                                             tmp_path: Path) -> None:
    metrics, _, sink = run_evaluation(replace(base, task=None))
    assert metrics.task == "choice"
    assert any("hold a 'choices' list: a multiple-choice task" in line for line in sink.logs())
    saved = json.loads((Path(base.output_dir or "") / "config.json").read_text())["config"]
    assert saved["task"] == "choice"
    assert config_differences(saved, replace(base, task="choice")) == []
    assert config_differences(saved, replace(base, task="generate")) == [
        "task: 'choice' there, 'generate' now"]
    assert config_differences(saved, replace(base, target_delimiter="")) == [
        "target_delimiter: 'auto' there, '' now"]
    # a run saved before tasks existed generated
    assert config_differences({**saved, "task": None}, replace(base, task="generate")) == []


def test_batch_size_auto_probes_pairs(base: EvalConfig, tmp_path: Path) -> None:
    out = tmp_path / "auto"
    metrics, rows, _ = run_evaluation(replace(base, batch_size="auto", simulate_oom_above=5,
                                   output_dir=str(out)))
    tune = json.loads((out / "tune.json").read_text(encoding="utf-8"))
    assert tune["unit"] == "pairs" and tune["max_tokens"] == 0
    # -b auto on a choice task has the budget generation has: a tenth of the run
    assert tune["budget_seconds"] is not None and tune["budget_seconds"] > 0
    statuses = {p["batch_size"]: p["status"] for p in tune["probes"]}
    assert statuses[1] == "ok" and all(s == "oom" for b, s in statuses.items() if b > 5)
    assert metrics.batch_size == tune["chosen_batch_size"] <= 4
    assert metrics.n == 12 and metrics.fallback_count == 0
    log = (out / "run.log").read_text(encoding="utf-8")
    assert "forward passes over the longest (context, choice) pairs" in log
    assert "| batch | status | time    | pairs/s" in log


def test_an_explicit_tune_of_pairs_doubles_to_the_oom(base: EvalConfig, tmp_path: Path) -> None:
    from tui_eval.engine.tuning import run_tuning

    result, _ = run_tuning(replace(base, simulate_oom_above=5,
                                   output_dir=str(tmp_path / "tune")), lambda event: None)
    assert result.unit == "pairs" and result.budget_seconds is None
    assert [(p.batch_size, p.status) for p in result.probes] == [
        (1, "ok"), (2, "ok"), (4, "ok"), (8, "oom")]  # 8 rows > 5


def test_metrics_rebuilt_after_a_second_signal_have_acc(base: EvalConfig,
                                                        tmp_path: Path) -> None:
    _, rows, _ = run_evaluation(replace(base, batch_size=4))
    out = tmp_path / "stopped"
    out.mkdir()
    lines = (Path(base.output_dir or "") / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    (out / "config.json").write_text("{}", encoding="utf-8")

    class Stopped:  # what the handlers read from an Evaluation
        def __init__(self) -> None:
            self.config = replace(base, output_dir=str(out))
            self.run_dir = RunDir(out)
            self.started = 0.0
            self.lang = "en"
            self.resumed = ResumePlan()
            self.tune_seconds = None
            self.compile_seconds = 0.0
            self.compile_path = "off"
            self.skipped_lines = 0

        def log(self, level: str, key: str, **values: object) -> None:
            pass

    started = RunStarted(run_dir=str(out), total=12, batch_size=4, model="m", device="cpu",
                         dtype="float32")
    metrics = metrics_after_stop(Stopped(), started, None)  # type: ignore[arg-type]
    assert metrics is not None and metrics.stopped_at_once and metrics.partial
    assert metrics.task == "choice" and (metrics.n, metrics.n_total) == (5, 12)
    assert json.loads((out / "metrics.json").read_text())["metrics"] == metrics.metrics
    assert metrics.metrics["acc"] == pytest.approx(sum(r["scores"]["acc"] for r in rows[:5]) / 5)
    assert set(metrics.metrics) == {"acc", "acc_norm"}


class Doubled(BatchWork[int, int]):
    """Any items, any batch function: a batch over 3 items runs out of memory."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def run(self, items: list[int]) -> list[int]:
        import torch

        self.calls.append(items)
        if len(items) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        return [2 * item for item in items]

    def failed(self, item: int, error: str) -> int:
        return -1

    def name(self, item: int) -> str:
        return str(item)


def test_a_policy_runs_any_batch_work() -> None:
    work, sink = Doubled(), Collect()
    policy = BisectPolicy(work, sink, "en", batch_size=8)
    assert policy.run_batch(list(range(8))) == [2 * i for i in range(8)]
    assert [len(c) for c in work.calls] == [8, 4, 2, 2, 2, 2]
    assert policy.batch_size == 2 and "⚠️ Batch generation failed: CUDA out of memory" in (
        sink.logs())


# ── the command line ──────────────────────────────────────────────────────────────────

def test_choice_demo_runs_with_task_choice_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no eval.toml here: pure defaults
    assert main(["--no-ui", "--task", "choice", "-o", "demo"]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == len(DEMO_CHOICE_DATA.read_text().splitlines()) >= 100
    assert metrics["n_errors"] == 0 and metrics["task"] == "choice"
    assert metrics["metrics"]["acc"] >= 0.9 and metrics["metrics"]["acc_norm"] >= 0.9
    config = json.loads((tmp_path / "demo" / "config.json").read_text())["config"]
    assert config["target_delimiter"] == "" and config["data"] == str(DEMO_CHOICE_DATA)


@pytest.mark.parametrize(
    ("row", "error"),
    [({"id": "b", "question": "Hi", "choices": ["a", "b"], "answer": 5},
      "choice.jsonl:3: answer index 5 is out of range for 2 choices"),
     ({"id": "b", "question": "Hi", "choices": "ab", "answer": 0},
      "choice.jsonl:3: 'choices' must be a list of choices, got str"),
     ({"id": "b", "question": "capital of Fr", "choices": ["ance", "x"], "answer": 0},
      "choice.jsonl: sample b: the continuation adds no tokens after the context "
      "(target_delimiter is '')")],
)
def test_a_bad_choice_row_is_one_line_and_exit_2(tiny_model: Path, tmp_path: Path, row: dict,
                                                 error: str, capsys) -> None:
    good = {"id": "a", "question": "Hi", "choices": ["hello", "bye"], "answer": 0}
    data = write_jsonl(tmp_path / "choice.jsonl", [good, good | {"id": "a2"}, row])
    out = tmp_path / "out"
    code = main(["--no-ui", "-m", str(tiny_model), "-d", str(data), "--device", "cpu",
                 "--target-delimiter", "", "-o", str(out)])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("tui-eval: error: ")
    assert error in stderr
    assert not (out / "config.json").exists()  # stopped before anything was written


def test_bench_task_choice_prints_pairs_per_second(tmp_path: Path, monkeypatch,
                                                    capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--task", "choice", "-b", "1,8", "--limit", "40", "-o", "b",
                 "--lang", "en"]) == 0
    printed = capsys.readouterr().out
    assert "| batch_size | time | speedup | samples/s | pairs/s |" in printed.replace(
        "  ", " ").replace("  ", " ")
    bench = json.loads((tmp_path / "b" / "bench.json").read_text(encoding="utf-8"))
    assert bench["task"] == "choice" and "max_tokens" not in bench
    assert [r["batch_size"] for r in bench["rows"]] == [1, 8]
    assert all(r["pairs_per_s"] > 0 for r in bench["rows"])
    for size in (1, 8):
        metrics = json.loads((tmp_path / "b" / f"bs_{size}" / "metrics.json").read_text())
        assert metrics["n"] == 40 and metrics["metrics"]["acc"] >= 0.9


def test_watch_prints_a_finished_choice_run(base: EvalConfig, capsys) -> None:
    run_evaluation(replace(base, batch_size=4))
    capsys.readouterr()
    assert main(["watch", "--no-ui", str(base.output_dir)]) == 0
    printed = capsys.readouterr().out
    assert "acc_norm" in printed and "pairs/s" in printed


# ── signals and the app (slow: a subprocess, Pilot) ──────────────────────────────────

@pytest.mark.slow
def test_sigterm_writes_partial_acc_and_the_run_resumes(tiny_model: Path,
                                                         tmp_path: Path) -> None:
    import signal

    many = [{**row, "id": f"{row['id']}-{copy}"} for copy in range(100) for row in choice_rows()]
    data = write_jsonl(tmp_path / "many.jsonl", many)
    out = tmp_path / "run"
    process = headless("--no-ui", "-m", str(tiny_model), "-d", str(data), "--device", "cpu",
                       "--lang", "en", "-b", "1", "-o", str(out), cwd=tmp_path)
    try:
        wait_until(lambda: complete_lines(out / "predictions.jsonl") >= 3
                   or process.poll() is not None, what="the first samples")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["partial"] is True and metrics["task"] == "choice"
    assert set(metrics["metrics"]) == {"acc", "acc_norm"}
    assert metrics["n"] == len(rows_of(out)) < len(many)
    assert main(["--no-ui", "--resume", "-o", str(out)]) == 0
    final = json.loads((out / "metrics.json").read_text())
    assert final["partial"] is False and final["n"] == len(many)
    assert sorted(r["index"] for r in rows_of(out)) == list(range(len(many)))


@pytest.mark.slow
def test_the_app_shows_acc_and_acc_norm(base: EvalConfig, tmp_path: Path) -> None:
    out = tmp_path / "app"
    app = make_app(replace(base, batch_size=4, output_dir=str(out)))

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.activity is None
                           and app.results_pane.metrics is not None)
            await pilot.pause()
            metrics = json.loads((out / "metrics.json").read_text())
            cells = app.results_pane.metric_cells()
            for name in ("acc", "acc_norm"):
                assert cells[name] == score_text(metrics["metrics"][name],
                                                 metrics["stderr"][name])
            assert cells["pairs/s"] == f"{metrics['pairs_per_s']:.1f}"
            assert app.progress_pane.bar.figure == "12/12"

    asyncio.run(scenario())
