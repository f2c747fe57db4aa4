"""A headless run under signals and faults: partial metrics and exit 130 on SIGINT/SIGTERM,
at once on the second, SIGHUP ignored, an unwritable or full disk handled cleanly."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import complete_lines, default_signals, headless, wait_until
from tui_eval.cli import main
from tui_eval.results import RunMetrics

pytestmark = pytest.mark.slow  # Pilot and signal tests: the full suite runs them


def run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--no-ui", "-m", str(model), "-d", str(data), "--device", "cpu",
            "--torch-dtype", "float32", "--lang", "en", "-o", str(out), *extra]


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def started(out: Path) -> bool:
    try:
        return b'"event": "started"' in (out / "events.jsonl").read_bytes()
    except FileNotFoundError:
        return False


def tried(out: Path) -> bool:
    try:
        return b'"event": "try_started"' in (out / "events.jsonl").read_bytes()
    except FileNotFoundError:
        return False


def valid_rows(out: Path) -> list[dict]:
    """Every line of predictions.jsonl must be a whole row."""
    text = (out / "predictions.jsonl").read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def last_event(out: Path) -> dict:
    return json.loads((out / "events.jsonl").read_text(encoding="utf-8").splitlines()[-1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_one_stop_signal_writes_partial_metrics_and_exits_130(
        sig: signal.Signals, tiny_model: Path, long_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = headless(*run_args(tiny_model, long_jsonl, out, "-b", "2", "--max-tokens", "6"),
                       cwd=tmp_path)
    wait_until(lambda: complete_lines(out / "predictions.jsonl") >= 2
               or process.poll() is not None, what="the first batch")
    process.send_signal(sig)
    stdout, stderr = finish(process)
    assert process.returncode == 130, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    rows = valid_rows(out)
    assert metrics["partial"] is True and metrics["n"] == len(rows) < 48
    assert metrics["stopped_at_once"] is False  # the batch in flight was finished
    assert set(metrics["stderr"]) == set(metrics["metrics"])  # every way of ending has them
    assert f"{sig.name}: stopping after the batch in flight" in stdout
    resume_line = [line for line in stderr.splitlines() if "resume with" in line]
    assert resume_line == [f"tui-eval: interrupted ({sig.name}): {len(rows)}/48 samples done; "
                           f"resume with: tui-eval --no-ui --resume -o {out}"]
    if sig == signal.SIGTERM:  # the printed command finishes the run
        assert main(["--no-ui", "--resume", "-o", str(out)]) == 0
        final = json.loads((out / "metrics.json").read_text())
        assert final["partial"] is False and final["n"] == 48
        assert sorted(r["index"] for r in valid_rows(out)) == list(range(48))


def test_a_second_ctrl_c_stops_at_once_with_whole_files(tiny_model: Path, long_jsonl: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "run"
    # big, slow batches, so that the second signal lands inside generation
    process = headless(*run_args(tiny_model, long_jsonl, out, "-b", "24",
                                 "--max-tokens", "400"), cwd=tmp_path)
    wait_until(lambda: started(out) or process.poll() is not None, what="the run to start")
    process.send_signal(signal.SIGINT)
    wait_until(lambda: b"stopping after the batch" in (out / "run.log").read_bytes()
               or process.poll() is not None, what="the first signal's log line")
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process)
    assert process.returncode == 130, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["partial"] is True and metrics.get("stopped_at_once") is True
    assert set(metrics["stderr"]) == set(metrics["metrics"])  # rebuilt from the rows on disk
    # the same keys as a finished run's metrics.json: one builder for every path
    assert set(metrics) == set(RunMetrics.from_dict({}).to_dict())
    assert metrics["n"] == len(valid_rows(out))
    assert metrics["n_total"] == 48
    assert not (out / "metrics.json.tmp").exists()
    final = last_event(out)
    assert final["event"] == "finished" and final["metrics"]["partial"] is True
    assert f"resume with: tui-eval --no-ui --resume -o {out}" in stderr


def test_sighup_is_logged_and_the_run_goes_on(tiny_model: Path, long_jsonl: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = headless(*run_args(tiny_model, long_jsonl, out, "-b", "4", "--max-tokens", "4"),
                       cwd=tmp_path)
    # try_started is written before the model loads: the run cannot have ended yet, and
    # the handlers are in place (installed before the run begins)
    wait_until(lambda: tried(out) or process.poll() is not None, what="the try to start")
    process.send_signal(signal.SIGHUP)
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr
    assert "SIGHUP: the terminal went away; the run goes on" in (out / "run.log").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["partial"] is False and metrics["n"] == 48


def test_an_unwritable_output_dir_fails_before_the_model_loads(
        tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "file" / "run"
    assert main(run_args(tiny_model, qa_jsonl, out)) == 2
    captured = capsys.readouterr()
    assert f"tui-eval: error: {out}: cannot write results:" in captured.err
    assert "Loading model" not in captured.out


def limit_file_size(size: int):
    def limit() -> None:
        default_signals()
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def test_a_full_disk_fails_cleanly_and_the_run_can_be_resumed(
        tiny_model: Path, long_jsonl: Path, tmp_path: Path) -> None:
    # Files may not grow past a few kB: like a disk that fills up.
    before_load = subprocess.run(
        [*headless_argv(), *run_args(tiny_model, long_jsonl, tmp_path / "a")], cwd=tmp_path,
        capture_output=True, text=True, preexec_fn=limit_file_size(1), timeout=300)
    assert before_load.returncode == 2
    assert "cannot write results: File too large" in before_load.stderr
    assert "Loading model" not in before_load.stdout

    out = tmp_path / "b"
    mid_run = subprocess.run(
        [*headless_argv(), *run_args(tiny_model, long_jsonl, out, "-b", "2",
                                     "--max-tokens", "4")],
        cwd=tmp_path, capture_output=True, text=True, preexec_fn=limit_file_size(6000),
        timeout=300)
    assert mid_run.returncode == 1
    assert "File too large" in mid_run.stderr
    assert f"resume with: tui-eval --no-ui --resume -o {out}" in mid_run.stderr
    assert not (out / "metrics.json").exists() and not (out / "metrics.json.tmp").exists()
    assert main(["--no-ui", "--resume", "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 48 and not metrics["partial"]
    assert sorted(r["index"] for r in valid_rows(out)) == list(range(48))


def headless_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "tui_eval"]
