"""The built-in demo: a real trained model doing a real task, shipped in the package."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tui_eval.cli import main
from tui_eval.engine.preparation import DEMO_DATA, DEMO_MAX_TOKENS, DEMO_MODEL

REPO = Path(__file__).resolve().parents[2]


def test_demo_files_are_small_and_present() -> None:
    weights = sum(p.stat().st_size for p in DEMO_MODEL.iterdir() if p.suffix == ".safetensors")
    assert 0 < weights <= 5 * 1024 * 1024
    answers = [json.loads(line)["answer"] for line in DEMO_DATA.read_text().splitlines()]
    assert len({len(a) for a in answers}) >= 3  # answers of varied length


def test_demo_runs_with_no_model_and_no_data(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no eval.toml here: pure defaults
    assert main(["--no-ui", "-o", "demo"]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == len(DEMO_DATA.read_text().splitlines())
    assert metrics["n_errors"] == 0
    assert metrics["metrics"]["exact_match"] >= 0.9
    assert set(metrics["stderr"]) == set(metrics["metrics"])


def test_demo_runs_with_the_repo_eval_toml(tmp_path: Path, monkeypatch) -> None:
    # eval.toml sets max_tokens = 512, the default; the demo model has 64 positions
    shutil.copy(REPO / "eval.toml", tmp_path / "eval.toml")
    monkeypatch.chdir(tmp_path)
    assert main(["--no-ui", "-o", "demo"]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["metrics"]["exact_match"] >= 0.9
    saved = json.loads((tmp_path / "demo" / "config.json").read_text(encoding="utf-8"))
    assert saved["config"]["max_tokens"] == DEMO_MAX_TOKENS


def test_demo_keeps_a_max_tokens_the_user_chose(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--no-ui", "-o", "demo", "--max-tokens", "40", "--limit", "8"]) == 0
    saved = json.loads((tmp_path / "demo" / "config.json").read_text(encoding="utf-8"))
    assert saved["config"]["max_tokens"] == 40
