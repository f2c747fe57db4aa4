"""`tui-eval rescore`: scores a finished run again from predictions.jsonl, without a model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import rows_of
from tui_eval.cli import main
from tui_eval.config import EvalConfig
from tui_eval.engine.evaluation import Evaluation
from tui_eval.engine.preparation import DEMO_DATA, DEMO_MODEL
from tui_eval.events import RunStarted
from tui_eval.results import EVENTS_FILE, RunMetrics, write_metrics

FIRST_DIGIT = r"^(\d)"  # an extract spec that changes the demo's answers: "13" → "1"


def demo_config(out: Path, **values: object) -> EvalConfig:
    return EvalConfig(model=str(DEMO_MODEL), data=str(DEMO_DATA), limit=24, max_tokens=8,
                      device="cpu", torch_dtype="float32", lang="en", batch_size=8,
                      output_dir=str(out), **values)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rescore") / "finished"
    Evaluation(demo_config(out), lambda event: None).run()
    return out


@pytest.fixture()
def run_dir(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run that a test may rescore."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def previous_copies(run_dir: Path) -> list[Path]:
    # oldest first ("…-195522-2.json" sorts before "…-195522.json" by name)
    return sorted(run_dir.glob("metrics.before-rescore-*.json"),
                  key=lambda path: path.stat().st_mtime_ns)


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_rescoring_an_unchanged_run_reproduces_its_files_exactly(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {name: (run_dir / name).read_bytes()
              for name in ("metrics.json", "predictions.jsonl", "config.json")}
    assert main(["rescore", str(run_dir)]) == 0
    for name, data in before.items():
        assert (run_dir / name).read_bytes() == data, name
    [copy] = previous_copies(run_dir)
    assert copy.read_bytes() == before["metrics.json"]
    out = capsys.readouterr().out
    metrics = read_json(run_dir / "metrics.json")
    mean, stderr = metrics["metrics"]["exact_match"], metrics["stderr"]["exact_match"]
    assert f"exact_match  {mean:.4f} ± {stderr:.4f}" in out  # the run's own table
    assert f"previous metrics are kept in {copy.name}" in out


def test_new_metrics_and_extract_rescore_every_row_and_keep_the_old_metrics(
        run_dir: Path) -> None:
    old = read_json(run_dir / "metrics.json")
    assert main(["rescore", str(run_dir), "--metrics", "exact_match,numeric",
                 "--extract", FIRST_DIGIT]) == 0
    rows = rows_of(run_dir)
    assert rows[0]["prediction"] == "13" and rows[0]["extracted"] == "1"  # raw text kept
    for row in rows:
        first = row["prediction"][:1]
        assert row["extracted"] == (first if first.isdigit() else "")  # "-5": nothing found
        assert set(row["scores"]) == {"exact_match", "numeric"}
        assert row["scores"]["exact_match"] == float(row["extracted"] == row["reference"])
    new = read_json(run_dir / "metrics.json")
    assert new["extract"] == FIRST_DIGIT
    assert set(new["metrics"]) == set(new["stderr"]) == {"exact_match", "numeric"}
    assert new["metrics"]["exact_match"] == sum(r["scores"]["exact_match"] for r in rows) / 24
    for figure in ("samples_per_s", "tokens_per_s", "wall_seconds", "batch_size", "n"):
        assert new[figure] == old[figure]  # no generation happened
    saved = read_json(run_dir / "config.json")["config"]
    assert saved["metrics"] == ["exact_match", "numeric"] and saved["extract"] == FIRST_DIGIT
    last = json.loads((run_dir / EVENTS_FILE).read_text().splitlines()[-1])
    assert last["event"] == "finished" and last["metrics"]["extract"] == FIRST_DIGIT

    # a second rescore keeps the first copy and adds its own; --extract '' turns it off
    assert main(["rescore", str(run_dir), "--extract", ""]) == 0
    first, second = previous_copies(run_dir)
    assert read_json(first) == old and read_json(second) == new
    assert all(row["extracted"] is None for row in rows_of(run_dir))
    assert read_json(run_dir / "config.json")["config"]["extract"] is None


def test_a_rescore_scores_like_a_run_made_with_the_same_settings(run_dir: Path,
                                                                 tmp_path: Path) -> None:
    assert main(["rescore", str(run_dir), "--extract", FIRST_DIGIT]) == 0
    direct = tmp_path / "direct"
    Evaluation(demo_config(direct, extract=FIRST_DIGIT), lambda event: None).run()
    rescored, made = read_json(run_dir / "metrics.json"), read_json(direct / "metrics.json")
    for key in ("metrics", "stderr", "extract", "n", "n_errors"):
        assert rescored[key] == made[key]
    assert rows_of(run_dir) == rows_of(direct)
    # and the run directory it left can be continued by a run of that config
    assert main(["--no-ui", "--resume", "-o", str(run_dir)]) == 0


@pytest.mark.parametrize("flags, message", [
    (["--metrics", "bleu"], "--metrics: must be a list of one of"),
    (["--extract", "lastnumber"], "--extract: unknown extraction preset 'lastnumber'"),
])
def test_bad_flags_are_one_line(run_dir: Path, flags: list[str], message: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rescore", str(run_dir), *flags]) == 2
    [line] = error_lines(capsys)
    assert message in line
    assert previous_copies(run_dir) == []


def test_a_missing_run_is_refused_in_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rescore", str(tmp_path / "nowhere")]) == 2
    assert error_lines(capsys) == [f"tui-eval: error: {tmp_path / 'nowhere'}: no such run "
                                   "directory"]
    assert main(["rescore", str(tmp_path)]) == 2
    assert error_lines(capsys) == [f"tui-eval: error: {tmp_path}: no run here "
                                   "(no config.json)"]


def test_a_partial_run_is_refused_with_the_command_that_finishes_it(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = RunMetrics.read(run_dir)
    assert metrics is not None
    write_metrics(run_dir, replace(metrics, partial=True, n_total=200))
    before = (run_dir / "predictions.jsonl").read_bytes()
    assert main(["rescore", str(run_dir)]) == 2
    [line] = error_lines(capsys)
    assert line.endswith(f"the run stopped after 24/200 samples; finish it with "
                         f"`tui-eval --no-ui --resume -o {run_dir}`, then rescore")
    assert (run_dir / "predictions.jsonl").read_bytes() == before
    (run_dir / "metrics.json").unlink()  # killed before it wrote any metrics
    assert main(["rescore", str(run_dir)]) == 2
    [line] = error_lines(capsys)
    assert "no readable metrics.json, so the run did not finish" in line


def test_a_run_still_writing_is_refused(run_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # events.jsonl of a run that started (this live process) and has not ended
    started = RunStarted(run_dir=str(run_dir), total=24, batch_size=8, model="m",
                         device="cpu", dtype="float32", pid=os.getpid())
    (run_dir / EVENTS_FILE).write_text(json.dumps(started.to_dict()) + "\n")
    assert main(["rescore", str(run_dir)]) == 2
    [line] = error_lines(capsys)
    assert f"a run (pid {os.getpid()}) is still writing here" in line
    assert previous_copies(run_dir) == []


def test_rescore_loads_no_model_and_no_torch(run_dir: Path) -> None:
    code = ("import sys; from tui_eval.cli import main; "
            f"assert main(['rescore', {str(run_dir)!r}]) == 0; "
            "print(sorted(m for m in ('torch', 'transformers', 'textual') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def finished_choice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rescore-choice") / "finished"
    config = replace(demo_config(out), data=None, model=None, task="choice", limit=12)
    Evaluation(config, lambda event: None).run()
    return out


def test_rescoring_a_choice_run_keeps_acc_and_every_file(
        finished_choice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = Path(shutil.copytree(finished_choice, tmp_path / "run"))
    before = {name: (run_dir / name).read_bytes()
              for name in ("metrics.json", "predictions.jsonl", "config.json")}
    assert set(read_json(run_dir / "metrics.json")["metrics"]) == {"acc", "acc_norm"}
    assert main(["rescore", str(run_dir)]) == 0
    for name, data in before.items():
        assert (run_dir / name).read_bytes() == data, name
    assert "acc_norm" in capsys.readouterr().out
    # and it can still be compared with the run it came from
    assert main(["compare", str(finished_choice), str(run_dir)]) == 0


def test_a_choice_rescore_scores_again_from_the_stored_log_likelihoods(
        finished_choice: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(finished_choice, tmp_path / "run"))
    rows = rows_of(run_dir)
    # make the gold choice of the first row the most likely one, per token and per character
    first = rows[0]
    first["logprobs"] = [-50.0] * len(first["choices"])
    first["logprobs"][first["gold"]] = -0.001
    first["scores"] = {"acc": 0.0, "acc_norm": 0.0}
    (run_dir / "predictions.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert main(["rescore", str(run_dir)]) == 0
    rescored = rows_of(run_dir)
    assert rescored[0]["pred"] == rescored[0]["pred_norm"] == first["gold"]
    assert rescored[0]["prediction"] == first["choices"][first["gold"]]
    assert rescored[0]["scores"] == {"acc": 1.0, "acc_norm": 1.0}
    assert rescored[1:] == rows[1:]
    metrics = read_json(run_dir / "metrics.json")
    assert set(metrics["metrics"]) == {"acc", "acc_norm"} and metrics["extract"] is None
    assert metrics["metrics"]["acc"] == sum(row["scores"]["acc"] for row in rescored) / 12


@pytest.mark.parametrize("flags", [["--metrics", "exact_match"], ["--extract", FIRST_DIGIT]])
def test_scoring_flags_on_a_choice_run_are_refused_in_one_line(
        finished_choice: Path, tmp_path: Path, flags: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = Path(shutil.copytree(finished_choice, tmp_path / "run"))
    before = (run_dir / "metrics.json").read_bytes()
    assert main(["rescore", str(run_dir), *flags]) == 2
    [line] = error_lines(capsys)
    assert "choice run is scored by log-likelihood" in line and flags[0] in line
    assert (run_dir / "metrics.json").read_bytes() == before
    assert not previous_copies(run_dir)
