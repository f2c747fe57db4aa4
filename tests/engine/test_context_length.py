"""Prompts against the model's context: one line naming the numbers, or truncate = "left"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_eval.cli import main
from tui_eval.engine.preparation import DEMO_DATA, DEMO_MODEL
from tui_eval.model.backend import ContextLimit, HFBackend

DEMO_POSITIONS = 64


def demo_args(out: Path, *extra: str) -> list[str]:
    # the demo's model and data named explicitly: its max_tokens default does not apply
    return ["--no-ui", "-m", str(DEMO_MODEL), "-d", str(DEMO_DATA), "--device", "cpu",
            "--lang", "en", "-o", str(out), *extra]


@pytest.fixture(scope="module")
def backend() -> HFBackend:
    return HFBackend(str(DEMO_MODEL), device="cpu")


@pytest.fixture(scope="module")
def prompt_tokens(backend: HFBackend) -> dict[str, int]:
    """Sample id → its prompt's length in tokens."""
    records = [json.loads(line) for line in DEMO_DATA.read_text().splitlines()]
    counts = backend.token_counts([r["prompt"] for r in records])
    return {r["id"]: count for r, count in zip(records, counts, strict=True)}


def test_the_limit_comes_from_the_model_config_without_loading_weights(
        backend: HFBackend) -> None:
    assert backend.model is None
    assert backend.context_limit() == ContextLimit(DEMO_POSITIONS, "max_position_embeddings")


def test_a_prompt_that_does_not_fit_stops_the_run_in_one_line(
        tmp_path: Path, prompt_tokens: dict[str, int],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(demo_args(out, "--max-tokens", "100")) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    longest = max(prompt_tokens.values())
    first_longest = next(pid for pid, n in prompt_tokens.items() if n == longest)
    fits = DEMO_POSITIONS - longest
    assert line == (
        f"tui-eval: error: sample '{first_longest}': {longest} prompt tokens + --max-tokens "
        f"100 > the model's {DEMO_POSITIONS} positions (max_position_embeddings), as for "
        f"{len(prompt_tokens) - 1} others; use --max-tokens {fits} or --truncate left")
    assert not out.exists()  # nothing written, nor the directory left: the fix starts afresh
    # the figure it names does fit
    assert main(demo_args(out, "--max-tokens", str(fits), "--limit", "8")) == 0


def test_truncate_left_cuts_the_long_prompts_and_counts_them(
        tmp_path: Path, prompt_tokens: dict[str, int],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    max_tokens = 58
    room = DEMO_POSITIONS - max_tokens
    assert main(demo_args(out, "--max-tokens", str(max_tokens), "--truncate", "left",
                          "--limit", "40")) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    expected = {row["id"] for row in rows if prompt_tokens[row["id"]] > room}
    assert expected and len(expected) < len(rows)  # some fit, some are cut
    assert {row["id"] for row in rows if row["truncated"]} == expected
    # each row says how much of its (whole) prompt the model did not see
    assert {row["id"]: row["truncated_tokens"] for row in rows if row["truncated_tokens"]} == {
        row_id: prompt_tokens[row_id] - room for row_id in expected}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_truncated"] == len(expected)
    assert metrics["n_errors"] == 0
    printed = capsys.readouterr().out
    assert (f"{len(expected)} prompt(s) longer than {room} tokens are cut from the left to "
            f"fit the model's {DEMO_POSITIONS} positions with max_tokens {max_tokens}"
            in printed)
    assert f"truncated    {len(expected)}" in printed


def test_a_cut_prompt_keeps_its_end(backend: HFBackend) -> None:
    text = "123+456="
    whole = backend.tokenizer(text)["input_ids"]
    backend.prompt_token_limit = 3
    try:
        encoded = backend._encode([text, "1+2="], padding=True)
        assert encoded["input_ids"][0].tolist() == whole[-3:]
        assert backend.token_counts([text, "1="]) == [3, 2]
    finally:
        backend.prompt_token_limit = None


def test_max_tokens_filling_the_context_is_refused_even_with_truncation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(demo_args(tmp_path / "run", "--max-tokens", "64", "--truncate", "left")) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == ("tui-eval: error: --max-tokens 64 leaves no room for a prompt in the "
                    "model's 64 positions (max_position_embeddings); use --max-tokens 63 or "
                    "less")


@pytest.mark.parametrize("command", ["tune", "bench"])
def test_tune_and_bench_check_the_context_before_loading_the_model(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / command
    assert main([command, "-m", str(DEMO_MODEL), "-d", str(DEMO_DATA), "--device", "cpu",
                 "--max-tokens", "100", "-o", str(out)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "prompt tokens + --max-tokens 100 > the model's 64 positions" in line
    assert not out.exists()
