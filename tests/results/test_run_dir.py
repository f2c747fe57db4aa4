"""RunDir: a results directory's default name, its preparation, its files, and metrics.json
written by one writer whoever ends the run (the run, a rescore, a stop at once)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tui_eval.config import EvalConfig
from tui_eval.engine import Evaluation, rescore
from tui_eval.engine.preparation import DEMO_DATA, DEMO_MODEL
from tui_eval.engine.resume import ResumePlan
from tui_eval.errors import UsageError
from tui_eval.events.view import RunView
from tui_eval.headless.signals import HeadlessSignals
from tui_eval.results import (
    PredictionRow,
    RunConfig,
    RunDir,
    RunMetrics,
    TuneResult,
    rank_predictions_file,
    remove_if_empty,
    write_predictions_atomic,
)
from tui_eval.results import metrics as metrics_module

STAMP = r"\d{8}-\d{6}"


def demo_config(out: Path | None, **values: object) -> EvalConfig:
    settings: dict[str, object] = {
        "model": str(DEMO_MODEL), "data": str(DEMO_DATA), "limit": 6, "max_tokens": 8,
        "device": "cpu", "torch_dtype": "float32", "lang": "en", "batch_size": 4,
        "output_dir": None if out is None else str(out), **values}
    return EvalConfig(**settings)  # type: ignore[arg-type]


def row(index: int) -> PredictionRow:
    return PredictionRow(index=index, id=f"q{index}", prompt=f"{index}+{index}?",
                         prediction=str(2 * index), reference=str(2 * index),
                         scores={"exact_match": 1.0})


@pytest.fixture()
def metric_writes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories metrics.json was written to, by whatever path wrote it."""
    written: list[Path] = []
    real = metrics_module.write_json_atomic

    def recording(path: Path, data: object) -> None:
        if path.name == "metrics.json":
            written.append(path.parent)
        real(path, data)

    monkeypatch.setattr(metrics_module, "write_json_atomic", recording)
    return written


# ── naming ──────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize(("kind", "prefix"), [("run", ""), ("tune", "tune-"),
                                              ("bench", "bench-")])
def test_an_unset_output_dir_names_a_new_directory_by_kind_and_time(kind: str,
                                                                     prefix: str) -> None:
    run_dir = RunDir.of(None, kind)  # type: ignore[arg-type]
    assert run_dir.kind == kind
    assert run_dir.path.parent == Path("eval_results")
    assert re.fullmatch(prefix + STAMP, run_dir.path.name)
    assert RunDir.of("", kind).path.parent == Path("eval_results")  # type: ignore[arg-type]


def test_a_named_output_dir_is_kept_as_given() -> None:
    assert RunDir.of("out/run-1").path == Path("out/run-1")
    assert RunDir.of(Path("x"), "bench") == RunDir(Path("x"), "bench")
    given = RunDir(Path("y"))
    assert RunDir.of(given) is given
    with pytest.raises(ValueError, match="unknown kind"):
        RunDir(Path("z"), "sweep")  # type: ignore[arg-type]


def test_a_run_with_no_output_dir_writes_under_eval_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Evaluation(demo_config(None), lambda event: None).run()
    [made] = (tmp_path / "eval_results").iterdir()
    assert re.fullmatch(STAMP, made.name)
    assert {"config.json", "predictions.jsonl", "metrics.json"} <= {
        path.name for path in made.iterdir()}


def test_it_reads_as_its_path() -> None:
    run_dir = RunDir(Path("a/b"))
    assert str(run_dir) == os.fspath(run_dir) == str(Path("a/b"))
    assert f"{run_dir}" == str(Path("a/b"))
    assert run_dir / "run.log" == run_dir.log_path == Path("a/b/run.log")
    assert run_dir.events_path == Path("a/b/events.jsonl")
    assert run_dir.rank_predictions_path(3) == Path("a/b") / rank_predictions_file(3)
    assert run_dir.resume_command() == "tui-eval --no-ui --resume -o a/b"
    assert RunDir(Path("my runs/1")).resume_command() == "tui-eval --no-ui --resume -o 'my runs/1'"


# ── preparation ─────────────────────────────────────────────────────────────────────────

def test_prepare_creates_the_missing_directories_and_a_failure_takes_them_back(
        tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "a" / "b" / "c")
    missing = run_dir.missing_dirs()
    assert missing == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a"]
    assert run_dir.prepare() is run_dir
    assert run_dir.path.is_dir() and list(run_dir.path.iterdir()) == []  # no probe left
    (tmp_path / "a" / "keep.txt").write_text("x", encoding="utf-8")
    remove_if_empty(missing)
    assert not (tmp_path / "a" / "b").exists()
    assert (tmp_path / "a" / "keep.txt").exists()  # a directory holding a file stays


def test_prepare_refuses_a_path_it_cannot_write_in_one_line_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(UsageError, match=rf"^{re.escape(str(blocker / 'run'))}: cannot write "
                                         "results"):
        RunDir(blocker / "run").prepare()


def test_what_a_directory_holds(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    assert not run_dir.holds_run() and not run_dir.holds_bench()
    (tmp_path / rank_predictions_file(1)).write_text("", encoding="utf-8")
    assert run_dir.holds_run()  # a stopped run of several processes left only a rank's file
    assert run_dir.rank_prediction_paths() == [tmp_path / "predictions.rank-1.jsonl"]
    (tmp_path / "bench.json").write_text("{}", encoding="utf-8")
    assert RunDir(tmp_path, "bench").holds_bench()


def test_a_directory_holding_a_finished_run_is_refused_without_overwrite(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    Evaluation(demo_config(out), lambda event: None).run()
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    with pytest.raises(UsageError, match="holds a finished run with a different config"):
        Evaluation(demo_config(out, max_tokens=6), lambda event: None).run()
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    metrics = Evaluation(demo_config(out, max_tokens=6), lambda event: None,
                         overwrite=True).run()
    assert RunDir(out).read_config().config["max_tokens"] == 6
    assert RunDir(out).read_metrics() == metrics


# ── the files ───────────────────────────────────────────────────────────────────────────

def test_the_typed_readers_read_what_the_writers_wrote(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    assert run_dir.read_metrics() is None  # no metrics.json yet
    run_dir.write_config(RunConfig(config={"model": "m"}, device="cpu"))
    assert run_dir.read_config() == RunConfig(config={"model": "m"}, device="cpu")
    metrics = RunMetrics(metrics={"exact_match": 0.5}, n=2, n_total=4, partial=True)
    run_dir.write_metrics(metrics)
    assert run_dir.read_metrics() == metrics
    tune = TuneResult(chosen_batch_size=8, mode="power", probes=[], seconds=1.0,
                      max_tokens=16, max_batch_size=64, memory_capacity_bytes=None,
                      memory_headroom=0.1)
    run_dir.write_tune(tune)
    assert run_dir.read_tune() == tune
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "config.json", "metrics.json", "tune.json"]  # no temporary file left behind


def test_a_rank_appends_to_its_own_file_and_a_run_of_one_to_predictions_jsonl(
        tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    for rank, index in ((None, 0), (2, 1)):
        writer = run_dir.prediction_writer(rank)
        writer.write_batch([row(index)])
        writer.close()
    assert [r.index for r in run_dir.read_predictions()] == [0]
    assert run_dir.rank_prediction_paths() == [tmp_path / "predictions.rank-2.jsonl"]
    assert sorted(r.index for r in run_dir.read_run_rows()[0]) == [0, 1]


def test_the_ranks_files_merge_into_one_predictions_file(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    write_predictions_atomic(run_dir.predictions_path, [row(0)])
    write_predictions_atomic(run_dir.rank_predictions_path(0), [row(0), row(2)])
    run_dir.rank_predictions_path(1).write_text(row(1).to_json() + "\n" + '{"index": 3',
                                                encoding="utf-8")  # a torn last line
    assert run_dir.merge_rank_files() == len('{"index": 3')
    assert run_dir.rank_prediction_paths() == []
    assert sorted(r.index for r in run_dir.read_predictions()) == [0, 1, 2]


# ── one writer of metrics.json ──────────────────────────────────────────────────────────

def test_the_run_and_a_rescore_write_metrics_through_the_one_writer(
        tmp_path: Path, metric_writes: list[Path]) -> None:
    out = tmp_path / "run"
    Evaluation(demo_config(out), lambda event: None).run()
    assert metric_writes == [out]
    rescore(RunDir(out), {"extract": r"^(\d)"}, lambda event: None)
    assert metric_writes == [out, out]
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["extract"] == r"^(\d)"


def test_a_stop_at_once_writes_metrics_through_the_one_writer(
        tmp_path: Path, metric_writes: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    config = demo_config(out)
    Evaluation(config, lambda event: None).run()
    (out / "metrics.json").unlink()  # as if killed before the run wrote its own
    metric_writes.clear()
    stopped = SimpleNamespace(
        run_dir=RunDir(out), config=config, started=time.perf_counter(), lang="en",
        resumed=ResumePlan(), tune_seconds=None, compile_seconds=0.0, compile_path="off",
        skipped_lines=0, log=lambda *args, **values: None)
    signals = HeadlessSignals(stopped, RunView())  # type: ignore[arg-type]
    signals.stop_signal = "SIGINT"
    assert signals.exit_interrupted(None) == 130
    assert metric_writes == [out]
    metrics = RunDir(out).read_metrics()
    assert metrics is not None and metrics.stopped_at_once and metrics.n == 6
    assert "resume with: tui-eval --no-ui --resume -o" in capsys.readouterr().err


def test_metrics_json_has_one_writer_in_the_package() -> None:
    """No module but results/metrics.py names metrics.json in a write."""
    package = Path(__file__).resolve().parents[2] / "tui_eval"
    write = re.compile(r"write_json_atomic\([^)]*(METRICS_FILE|metrics\.json)")
    writers = [path.relative_to(package).as_posix() for path in package.rglob("*.py")
               if write.search(path.read_text(encoding="utf-8"))]
    assert writers == ["results/metrics.py"]
