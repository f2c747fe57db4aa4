"""Resuming a run: same config continues, another is refused, torn lines and kill -9."""

from __future__ import annotations

import json
import shutil
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import complete_lines, headless, long_rows, rows_of, wait_until, write_jsonl
from tui_eval.config import EvalConfig
from tui_eval.data import load_dataset
from tui_eval.engine.evaluation import Evaluation
from tui_eval.engine.resume import config_differences, plan_resume
from tui_eval.errors import UsageError
from tui_eval.events import (
    Event,
    LogLine,
    Progress,
    ResumeDecided,
    RunStarted,
    TryStarted,
)
from tui_eval.results import RunMetrics
from tui_eval.results.predictions import read_done_rows
from tui_eval.results.run_dir import RunDir
from tui_eval.ui.wording import APP_RESUME_WORDS


class Collect:
    def __init__(self, cancel_after_progress: int | None = None,
                 evaluation: Evaluation | None = None) -> None:
        self.events: list[Event] = []
        self.cancel_after = cancel_after_progress
        self.evaluation = evaluation

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Progress) and self.cancel_after is not None \
                and event.done >= self.cancel_after and self.evaluation is not None:
            self.evaluation.cancel.cancel()

    def logs(self) -> str:
        return "\n".join(e.message for e in self.events if isinstance(e, LogLine))


def run(config: EvalConfig, *, cancel_after: int | None = None, **options: Any
        ) -> tuple[RunMetrics, Collect]:
    sink = Collect(cancel_after)
    evaluation = Evaluation(config, sink, **options)
    sink.evaluation = evaluation
    return evaluation.run(), sink


def timeless(metrics: RunMetrics | dict) -> dict:
    """The parts of metrics.json that do not depend on timing, batch sizes or tries."""
    data = metrics.to_dict() if isinstance(metrics, RunMetrics) else metrics
    results = ("metrics", "n", "n_total", "n_errors", "n_skipped_lines", "partial", "model",
               "device", "dtype")
    return {k: data[k] for k in results}


@pytest.fixture(scope="module")
def shared(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One dataset and one uninterrupted run of it, for every test here to compare with."""
    base = tmp_path_factory.mktemp("resume")
    data = write_jsonl(base / "long.jsonl", long_rows())
    config = EvalConfig(model=str(tiny_model), data=str(data), max_tokens=6, device="cpu",
                        torch_dtype="float32", lang="en", batch_size=4,
                        output_dir=str(base / "reference"))
    metrics, _ = run(config)
    return {"config": config, "metrics": metrics, "rows": rows_of(base / "reference"),
            "dir": base / "reference"}


@pytest.fixture()
def config(shared: dict, tmp_path: Path) -> EvalConfig:
    return replace(shared["config"], output_dir=str(tmp_path / "run"))


@pytest.fixture()
def reference(shared: dict) -> tuple[dict, list[dict]]:
    return shared["metrics"], shared["rows"]


@pytest.fixture()
def finished_copy(shared: dict, tmp_path: Path) -> Path:
    """A finished run of ``config`` that a test may change."""
    out = tmp_path / "finished"
    shutil.copytree(shared["dir"], out)
    return out


# ── which keys must match ────────────────────────────────────────────────────────────

def test_config_differences_name_the_keys_that_matter(config: EvalConfig) -> None:
    saved = config.to_dict()
    assert config_differences(saved, replace(config, batch_size=1, device="auto",
                                             lang="zh", simulate_oom_above=2)) == []
    changed = config_differences(saved, replace(config, max_tokens=9, metrics=["numeric"]))
    assert changed == ["max_tokens: 6 there, 9 now",
                       "metrics: ['exact_match', 'contains', 'numeric', 'token_f1'] there, "
                       "['numeric'] now"]


# ── predictions.jsonl ────────────────────────────────────────────────────────────────

def row(index: int) -> bytes:
    return (json.dumps({"index": index, "id": str(index), "scores": {}}) + "\n").encode()


def test_a_torn_last_line_is_found_and_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(row(0) + row(1) + row(2)[:9])
    done = read_done_rows(path)
    assert [r.index for r in done.rows] == [0, 1]
    assert done.valid_bytes == len(row(0) + row(1)) and done.torn_bytes == 9
    assert path.read_bytes().endswith(row(2)[:9])  # reading changes nothing


def test_a_damaged_line_followed_by_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(row(0) + b"{oops\n" + row(2))
    with pytest.raises(UsageError, match=r"predictions.jsonl:2: not a valid prediction row"):
        read_done_rows(path)


# ── deciding what to do with the output directory ────────────────────────────────────

def test_a_different_config_is_refused_with_the_way_out(config: EvalConfig,
                                                        finished_copy: Path) -> None:
    out = finished_copy
    with pytest.raises(UsageError) as error:
        run(replace(config, output_dir=str(out), max_tokens=7))
    message = str(error.value)
    # a finished run has nothing to continue: no --resume hint
    assert "holds a finished run with a different config (max_tokens: 6 there, 7 now)" \
        in message
    assert "--resume" not in message and "rescore" not in message
    assert "--overwrite" in message


def test_a_finished_run_with_other_scoring_is_pointed_to_rescore(
        config: EvalConfig, finished_copy: Path) -> None:
    with pytest.raises(UsageError) as error:
        run(replace(config, output_dir=str(finished_copy), extract="last_number"))
    message = str(error.value)
    assert "(extract: unset there, 'last_number' now)" in message  # no Python None
    assert f"tui-eval rescore {finished_copy}" in message and "--resume" not in message


def test_a_stopped_run_with_another_config_is_offered_resume(config: EvalConfig) -> None:
    partial, _ = run(config, cancel_after=8)
    assert partial.partial
    with pytest.raises(UsageError) as error:
        run(replace(config, max_tokens=7))
    message = str(error.value)
    assert "holds a run with a different config (max_tokens: 6 there, 7 now)" in message
    assert f"tui-eval --no-ui --resume -o {config.output_dir}" in message


def test_overwrite_replaces_the_run(config: EvalConfig, finished_copy: Path) -> None:
    out = finished_copy
    metrics, sink = run(replace(config, output_dir=str(out), max_tokens=3), overwrite=True)
    assert metrics.n == 48 and metrics.n_resumed == 0
    assert all(r["new_tokens"] <= 3 for r in rows_of(out))
    assert "removed the previous run's files" in sink.logs()
    events = (out / "events.jsonl").read_text().splitlines()
    assert sum('"event": "started"' in e for e in events) == 1  # a fresh event stream


def test_resume_needs_a_run(config: EvalConfig) -> None:
    with pytest.raises(UsageError, match="no run to resume"):
        run(config, resume=True)


def test_a_changed_dataset_is_refused(config: EvalConfig, finished_copy: Path) -> None:
    dataset = load_dataset(str(config.data))
    dataset.samples[0].prompt = "Something else entirely?"
    with pytest.raises(UsageError, match=r"does not match .*\(was the dataset changed\?\)"):
        plan_resume(RunDir(finished_copy), replace(config, output_dir=str(finished_copy)), dataset,
                    resume=True, overwrite=False)


# ── continuing: metrics as if never interrupted ──────────────────────────────────────

def test_cancelled_run_resumes_automatically_to_the_same_results(
        config: EvalConfig, reference: tuple) -> None:
    ref_metrics, ref_rows = reference
    partial, _ = run(config, cancel_after=8)
    assert partial.partial and 8 <= partial.n < 48
    metrics, sink = run(replace(config, batch_size=3))  # batch size may change between tries
    assert "holds a run of the same config: resuming it" in sink.logs()
    decided = [e for e in sink.events if isinstance(e, ResumeDecided)]
    assert [(d.outcome, d.done, d.total, d.automatic) for d in decided] == [
        ("resume", partial.n, 48, True)]
    out = Path(config.output_dir or "")
    assert '"event": "resume_decided"' in (out / "events.jsonl").read_text()
    assert rows_of(out) == ref_rows  # same ids, same greedy outputs, dataset order, no dupes
    assert timeless(metrics) == timeless(ref_metrics)
    assert metrics.n_resumed == partial.n
    assert json.loads((out / "metrics.json").read_text())["partial"] is False
    # progress is reported over the whole dataset
    first = next(e for e in sink.events if isinstance(e, RunStarted))
    assert first.total == 48
    assert [e.done for e in sink.events if isinstance(e, Progress)][-1] == 48


def test_a_finished_run_repeated_is_reported_and_left_as_it_is(
        config: EvalConfig, finished_copy: Path) -> None:
    out = finished_copy
    before = {name: (out / name).read_bytes() for name in
              ("metrics.json", "predictions.jsonl", "events.jsonl", "run.log", "config.json")}
    metrics, sink = run(replace(config, output_dir=str(out)))
    assert "already holds a complete run (48 samples)" in sink.logs()
    assert [(e.outcome, e.done) for e in sink.events if isinstance(e, ResumeDecided)] == [
        ("complete", 48)]
    assert metrics.n == 48 and metrics.samples_per_s > 0  # the first run's figures, not zeros
    assert {name: (out / name).read_bytes() for name in before} == before


def test_done_line_after_a_resume_counts_this_try_only(config: EvalConfig) -> None:
    partial, _ = run(config, cancel_after=8)
    _, sink = run(config)
    done = next(line for line in sink.logs().splitlines() if line.startswith("Done:"))
    assert done.startswith(f"Done: {48 - partial.n} samples in ")
    assert f"{partial.n} kept from earlier tries" in done


def test_the_app_is_told_how_it_can_start_over(config: EvalConfig) -> None:
    partial, _ = run(config, cancel_after=8)
    metrics, sink = run(config, resume_words=APP_RESUME_WORDS)
    assert "resuming it" in sink.logs() and "choose another output directory" in sink.logs()
    assert "--overwrite" not in sink.logs()  # a flag the app does not have
    again, sink = run(config, resume_words=APP_RESUME_WORDS)
    assert "already holds a complete run" in sink.logs() and "--overwrite" not in sink.logs()
    # the new try announced itself with what it kept, before the model loaded
    _, sink = run(replace(config, output_dir=str(Path(config.output_dir or "") / "other")),
                  cancel_after=4)
    resumed, sink = run(replace(config, output_dir=str(Path(config.output_dir or "") / "other")))
    announced = next(e for e in sink.events if isinstance(e, TryStarted))
    assert announced.done_before == resumed.n_resumed >= 4 and announced.total == 48


def test_a_torn_last_line_is_redone(config: EvalConfig, reference: tuple,
                                    finished_copy: Path) -> None:
    ref_metrics, ref_rows = reference
    out = finished_copy
    (out / "metrics.json").unlink()
    lines = (out / "predictions.jsonl").read_bytes().splitlines(keepends=True)
    (out / "predictions.jsonl").write_bytes(b"".join(lines[:10]) + lines[10][:25])
    metrics, sink = run(replace(config, output_dir=str(out)), resume=True)
    assert "torn line (25 bytes, cut off)" in sink.logs()
    assert rows_of(out) == ref_rows
    assert metrics.n_resumed == 10
    assert timeless(metrics) == timeless(ref_metrics)


def test_resuming_a_finished_run_changes_no_result(config: EvalConfig, reference: tuple,
                                                   finished_copy: Path) -> None:
    ref_metrics, ref_rows = reference
    metrics, _ = run(replace(config, output_dir=str(finished_copy)), resume=True)
    assert timeless(metrics) == timeless(ref_metrics)
    assert rows_of(finished_copy) == ref_rows


# ── kill -9 at any moment ────────────────────────────────────────────────────────────

@pytest.mark.slow
def test_sigkill_mid_run_then_resume_scores_every_sample_once(
        config: EvalConfig, reference: tuple, tmp_path: Path) -> None:
    ref_metrics, ref_rows = reference
    out = tmp_path / "killed"
    process = headless("--no-ui", "-m", str(config.model), "-d", str(config.data),
                       "-b", "2", "--max-tokens", "6", "--device", "cpu",
                       "--torch-dtype", "float32", "--lang", "en", "-o", str(out),
                       cwd=tmp_path)
    try:
        wait_until(lambda: complete_lines(out / "predictions.jsonl") >= 4
                   or process.poll() is not None, what="the first batches")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert process.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    killed_at = complete_lines(out / "predictions.jsonl")
    assert killed_at < 48
    resumed = headless("--no-ui", "--resume", "-o", str(out), cwd=tmp_path)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert "Resuming" in stdout
    rows = rows_of(out)
    assert [r["id"] for r in rows] == [r["id"] for r in ref_rows]  # each id once, in order
    assert rows == ref_rows
    metrics = json.loads((out / "metrics.json").read_text())
    assert timeless(metrics) == timeless(ref_metrics)
    assert metrics["n_resumed"] == killed_at  # only a torn line is generated again
