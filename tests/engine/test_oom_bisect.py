"""The bisect OOM policy: halves until the parts fit, loses nothing, lowers the run's size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import PROMPTS, Collect, run_evaluation
from tui_eval.batching.oom_policies import BisectPolicy, OomPolicy, make_oom_policy
from tui_eval.config import EvalConfig
from tui_eval.data import Sample
from tui_eval.events import Fallback, Progress
from tui_eval.model.backend import Generation


def samples(n: int) -> list[Sample]:
    return [Sample(index=i, id=f"s{i}", prompt=f"prompt {i}", references=["x"])
            for i in range(n)]


class FakeGenerate:
    """Fails like CUDA when a call has more than ``fits`` rows; records every call's size."""

    def __init__(self, fits: int, error: Exception | None = None) -> None:
        self.fits = fits
        self.error = error
        self.calls: list[int] = []

    def __call__(self, batch: list[Sample]) -> Generation:
        import torch

        self.calls.append(len(batch))
        if len(batch) > self.fits:
            raise self.error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        return Generation(texts=[f"out {s.id}" for s in batch], new_tokens=[1] * len(batch))


def test_bisect_halves_until_parts_fit_and_keeps_the_smaller_size() -> None:
    generate, sink = FakeGenerate(fits=3), Collect()
    policy = BisectPolicy(generate, sink, "en", batch_size=8)
    outcomes = policy.run_batch(samples(8))
    assert [o.sample.id for o in outcomes] == [f"s{i}" for i in range(8)]  # order kept, once
    assert all(o.error is None and o.prediction == f"out {o.sample.id}" for o in outcomes)
    assert generate.calls == [8, 4, 2, 2, 2, 2]  # 8 and 4 fail; then parts of 2 only
    assert policy.batch_size == 2 and policy.fallbacks == 2
    assert sum(isinstance(e, Fallback) for e in sink.events) == 2
    logs = sink.logs()
    assert "⚠️ Batch generation failed: CUDA out of memory" in logs
    assert any(line.endswith("Splitting the batch of 8 into parts of 4") for line in logs)
    assert any(line.endswith("Lowering the batch size to 4 for the rest of the run")
               for line in logs)
    assert any(line.endswith("Lowering the batch size to 2 for the rest of the run")
               for line in logs)


def test_bisect_logs_the_seed_lines_when_parts_reach_one() -> None:
    generate, sink = FakeGenerate(fits=1), Collect()
    policy = BisectPolicy(generate, sink, "zh", batch_size=2)
    outcomes = policy.run_batch(samples(2))
    assert [o.prediction for o in outcomes] == ["out s0", "out s1"]
    logs = sink.logs()
    assert "⚠️ 批量生成失败: CUDA out of memory" in logs
    assert any(line.startswith("[INFO] 20") and line.endswith("- 自动回退到单样本生成")
               for line in logs)
    assert policy.batch_size == 1


def test_bisect_records_a_sample_that_fails_alone() -> None:
    generate, sink = FakeGenerate(fits=0), Collect()
    outcomes = BisectPolicy(generate, sink, "en", batch_size=4).run_batch(samples(4))
    assert [o.sample.id for o in outcomes] == ["s0", "s1", "s2", "s3"]
    assert all(o.prediction is None and o.error == "CUDA out of memory" for o in outcomes)


def test_bisect_does_not_split_for_errors_other_than_oom() -> None:
    generate = FakeGenerate(fits=1, error=ValueError("bad token"))
    policy = BisectPolicy(generate, Collect(), "en", batch_size=4)
    outcomes = policy.run_batch(samples(4))
    assert generate.calls == [4, 1, 1, 1, 1]  # straight to single samples
    assert policy.batch_size == 4  # a smaller batch would not have helped: size kept
    assert all(o.error is None for o in outcomes)


def test_policy_names_and_default() -> None:
    assert EvalConfig().oom_policy == "bisect"
    assert type(make_oom_policy("bisect", FakeGenerate(1), Collect(), "en", 4)) is BisectPolicy
    single = make_oom_policy("single", FakeGenerate(1), Collect(), "en", 4)
    assert type(single) is OomPolicy and single.batch_size == 4


@pytest.fixture()
def base(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> EvalConfig:
    return EvalConfig(model=str(tiny_model), data=str(qa_jsonl), max_tokens=6, device="cpu",
                      torch_dtype="float32", lang="en", output_dir=str(tmp_path / "bs1"),
                      batch_size=1)


def test_engine_bisect_run_equals_batch_size_one(base: EvalConfig, tmp_path: Path) -> None:
    _, expected, _ = run_evaluation(base)
    metrics, rows, sink = run_evaluation(replace(base, batch_size=8, simulate_oom_above=2,
                                      oom_policy="bisect", output_dir=str(tmp_path / "oom")))
    assert [(r["id"], r["prediction"]) for r in rows] == [
        (r["id"], r["prediction"]) for r in expected]
    assert [r["id"] for r in rows] == [pid for pid, _, _ in PROMPTS]  # each sample once
    assert metrics.n == len(PROMPTS) and metrics.n_errors == 0
    assert metrics.batch_size == 8 and metrics.final_batch_size == 2
    assert metrics.fallback_count == 2  # 8 fails, then 4; every later part is 2
    logs = sink.logs()
    assert any(line.endswith("Lowering the batch size to 2 for the rest of the run")
               for line in logs)
    progress = [e for e in sink.events if isinstance(e, Progress)]
    assert progress[-1].batch_size == 2 and progress[-1].done == len(PROMPTS)
    run_log = Path(tmp_path / "oom" / "run.log").read_text(encoding="utf-8")
    assert "Lowering the batch size to 2" in run_log
