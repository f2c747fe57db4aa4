"""The command line: exit codes, one-line errors, fast start-up and import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tui_eval.cli import main


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui_eval", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_help_imports_no_heavy_library() -> None:
    code = ("import sys\nfrom tui_eval.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'textual', 'jinja2', 'yaml')\n"
            "         if m in sys.modules]\n"
            "print('heavy=' + ','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip().splitlines()[-1] == "heavy="


def test_the_package_loads_few_of_its_own_modules_inside_functions() -> None:
    """Each late import has a reason (start-up time, Textual, yaml); the rest sit on top."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "local_imports.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=True, cwd=script.parents[1])
    count = int(done.stdout.splitlines()[-1].split()[0])
    assert 0 < count <= 10, done.stdout


def test_bad_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "eval.toml").write_text("max_tokens = 64\nbatch_size = 0\n", encoding="utf-8")
    rc = main(["--no-ui", "-c", str(tmp_path / "eval.toml")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == (f"tui-eval: error: {tmp_path / 'eval.toml'}:2: key 'batch_size' "
                           "must be an integer ≥ 1, got 0")


@pytest.mark.parametrize(("flag", "message"), [
    ("-c", ": is a directory; name a config file"),
    ("-d", ": is a directory; name a dataset file in it")])
def test_a_directory_for_a_file_is_named_as_one(tiny_model: Path, tmp_path: Path, flag: str,
                                               message: str,
                                               capsys: pytest.CaptureFixture) -> None:
    rc = main(["--no-ui", "-m", str(tiny_model), flag, str(tmp_path), "-o",
               str(tmp_path / "out")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"tui-eval: error: {tmp_path}{message}"


@pytest.mark.parametrize("output", [None, "results/run1"])
def test_a_run_refused_after_naming_its_directory_leaves_none(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, output: str | None) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "answer": "b"}\n', encoding="utf-8")
    (tmp_path / "keep").mkdir()  # a directory that was there stays, even empty
    args = ["--no-ui", "-m", str(tiny_model), "-d", str(data), "--max-tokens", "5000"]
    rc = main(args + ([] if output is None else ["-o", output]))
    assert rc == 2 and "positions" in capsys.readouterr().err  # the prompt does not fit
    assert sorted(path.name for path in tmp_path.iterdir()) == ["d.jsonl", "keep"]
    assert main(args + ["-o", "keep"]) == 2
    assert (tmp_path / "keep").is_dir()


def test_bad_flag_value_names_the_flag(capsys: pytest.CaptureFixture) -> None:
    assert main(["--no-ui", "-b", "0"]) == 2
    assert "-b/--batch-size: must be an integer ≥ 1, got 0" in capsys.readouterr().err


def test_missing_model_exits_2_before_touching_data(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no-such-model"
    rc = main(["--no-ui", "-m", str(missing), "-d", str(tmp_path / "no-data.jsonl"),
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == f"tui-eval: error: {missing}: model path not found"
    assert not (tmp_path / "out").exists()


def test_directory_without_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--no-ui", "-m", str(tmp_path), "-d", "x.jsonl"]) == 2
    assert "not a model directory (no config.json)" in capsys.readouterr().err


def test_bad_data_line_exits_2_naming_file_and_line(tiny_model: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": \n', encoding="utf-8")
    rc = main(["--no-ui", "-m", str(tiny_model), "-d", str(data), "-o", str(tmp_path / "o")])
    assert rc == 2
    assert f"{data}:2: invalid JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_skip_bad_lines_counts_them_in_metrics(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "answer": "b"}\nbroken\n{"prompt": "c", "answer": "d"}\n',
                    encoding="utf-8")
    (tmp_path / "eval.toml").write_text('on_bad_line = "skip"\nmax_tokens = 2\n',
                                        encoding="utf-8")
    result = cli("--no-ui", "-m", str(tiny_model), "-d", str(data), "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 2 and metrics["n_skipped_lines"] == 1
    assert f"Skipping {data}:2: invalid JSON" in result.stdout


@pytest.mark.slow
def test_headless_run_prints_plain_progress_and_summary(tiny_model: Path, qa_jsonl: Path,
                                                        tmp_path: Path) -> None:
    result = cli("--no-ui", "-m", str(tiny_model), "-d", str(qa_jsonl), "-b", "8",
                 "--max-tokens", "4", "--simulate-oom-above", "2", "--lang", "zh",
                 "--oom-policy", "single",
                 "-o", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "⚠️ 批量生成失败: CUDA out of memory" in out
    assert "自动回退到单样本生成" in out
    assert "progress: 12/12 samples" in out
    assert "\r" not in out  # no TTY: plain lines only
    assert "exact_match" in out.split("metric", 1)[1]


def test_data_without_model_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["--no-ui", "-d", "x.jsonl"]) == 2
    assert "no model: pass -m MODEL" in capsys.readouterr().err


def test_help_lists_the_sub_commands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("tune", "bench", "watch"):
        assert f"\n  {command} " in out


@pytest.mark.parametrize(("args", "error"), [
    (["-b", "abc"], "-b/--batch-size: must be an integer ≥ 1 or 'auto', got 'abc'"),
    (["--torch-dtype", "float8"], "--torch-dtype: must be one of auto, float16, bfloat16, "
                                  "float32, got 'float8'"),
    (["--lang", "xx"], "--lang: must be one of en, zh, got 'xx'"),
    (["--simulate-oom-above", "0"], "--simulate-oom-above: must be an integer ≥ 1, got 0"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["-b"], "argument -b/--batch-size: expected one argument"),
])
def test_every_bad_flag_is_one_line_without_the_usage_block(
        args: list[str], error: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--no-ui", *args]) == 2
    assert capsys.readouterr().err == f"tui-eval: error: {error}\n"
