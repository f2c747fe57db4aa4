"""The engine's promises: batched == one-by-one, OOM loses nothing, order and files hold."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import PROMPTS, Collect, run_evaluation
from tui_eval.config import EvalConfig
from tui_eval.engine.evaluation import Evaluation
from tui_eval.events import Event, Fallback, LogLine, Progress, RunFinished, RunStarted, TryStarted
from tui_eval.headless.printer import metrics_table, progress_line
from tui_eval.model.backend import HFBackend, cut_at_stop
from tui_eval.results import RunMetrics
from tui_eval.testing import build_tiny_model


@pytest.fixture()
def base(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> EvalConfig:
    return EvalConfig(model=str(tiny_model), data=str(qa_jsonl), max_tokens=8, device="cpu",
                      torch_dtype="float32", lang="en", output_dir=str(tmp_path / "bs1"),
                      batch_size=1)


def predictions(rows: list[dict]) -> list[tuple[str, str]]:
    return [(row["id"], row["prediction"]) for row in rows]


def test_batched_greedy_equals_batch_size_one(base: EvalConfig, tmp_path: Path) -> None:
    _, one_by_one, _ = run_evaluation(base)
    _, batched, _ = run_evaluation(replace(base, batch_size=5, output_dir=str(tmp_path / "bs5")))
    assert predictions(batched) == predictions(one_by_one)
    assert all(row["new_tokens"] == 8 for row in batched)  # the random model never stops early
    assert all(row["prediction"] for row in batched)


def test_rows_come_back_in_dataset_order(base: EvalConfig) -> None:
    _, rows, _ = run_evaluation(replace(base, batch_size=4))
    assert [row["id"] for row in rows] == [pid for pid, _, _ in PROMPTS]
    assert [row["index"] for row in rows] == list(range(len(PROMPTS)))


@pytest.mark.parametrize(
    ("lang", "warning", "info"),
    [("zh", "⚠️ 批量生成失败: CUDA out of memory", "- 自动回退到单样本生成"),
     ("en", "⚠️ Batch generation failed: CUDA out of memory",
      "- Falling back to single-sample generation")],
)
def test_injected_oom_falls_back_and_loses_nothing(base: EvalConfig, tmp_path: Path, lang: str,
                                                   warning: str, info: str) -> None:
    _, expected, _ = run_evaluation(replace(base, batch_size=8, output_dir=str(tmp_path / "plain")))
    metrics, rows, sink = run_evaluation(
        replace(base, batch_size=8, simulate_oom_above=2, lang=lang,
                oom_policy="single", output_dir=str(tmp_path / "oom")))
    assert predictions(rows) == predictions(expected)  # every sample, once, same text
    assert metrics.n == len(PROMPTS) and metrics.n_errors == 0
    assert metrics.fallback_count == 2  # batches of 8 and 4 both exceed 2 rows
    logs = sink.logs()
    assert logs.count(warning) == 2
    info_lines = [line for line in logs if line.endswith(info)]
    assert len(info_lines) == 2
    assert all(line.startswith("[INFO] 20") for line in info_lines)  # [INFO] YYYY-MM-DD …
    run_log = Path(tmp_path / "oom" / "run.log").read_text(encoding="utf-8")
    assert warning in run_log and info in run_log
    assert sum(isinstance(e, Fallback) for e in sink.events) == 2


def test_a_sample_failing_alone_is_recorded_and_the_run_goes_on(
        base: EvalConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    real_generate = HFBackend.generate

    def flaky(self: HFBackend, texts: list[str], **options: object):
        if "Hi" in texts:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(self, texts, **options)

    monkeypatch.setattr(HFBackend, "generate", flaky)
    metrics, rows, sink = run_evaluation(replace(base, batch_size=4, oom_policy="single"))
    assert len(rows) == len(PROMPTS)
    failed = [row for row in rows if row["error"]]
    assert [row["id"] for row in failed] == ["q7"]
    assert failed[0]["error"] == "CUDA out of memory"
    assert failed[0]["prediction"] is None
    assert all(score == 0.0 for score in failed[0]["scores"].values())
    assert metrics.n_errors == 1 and metrics.n == len(PROMPTS)
    assert any("Sample q7 failed on its own" in line for line in sink.logs())


def test_results_directory_files(base: EvalConfig) -> None:
    metrics, rows, _ = run_evaluation(replace(base, batch_size=4))
    out = Path(base.output_dir or "")
    snapshot = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert snapshot["config"]["batch_size"] == 4
    assert set(snapshot["versions"]) >= {"torch", "transformers", "tui_eval"}
    assert snapshot["device"] == "cpu" and snapshot["dtype"] == "float32"
    assert set(rows[0]) >= {"id", "prompt", "prediction", "reference", "scores", "error"}
    on_disk = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(metrics.to_dict()))
    assert set(on_disk["metrics"]) == {"exact_match", "contains", "numeric", "token_f1"}
    for key in ("n", "n_errors", "batch_size", "fallback_count", "wall_seconds",
                "samples_per_s", "tokens_per_s", "device", "dtype", "model"):
        assert key in on_disk
    assert on_disk["tokens_per_s"] > 0 and on_disk["partial"] is False
    kinds = [json.loads(line)["event"] for line in
             (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kinds[-1] == "finished" and "started" in kinds and "progress" in kinds
    assert "Loading model" in (out / "run.log").read_text(encoding="utf-8")


def test_a_crash_keeps_every_finished_batch(base: EvalConfig) -> None:
    class CrashAfterTwoBatches(Collect):
        def __call__(self, event: Event) -> None:
            super().__call__(event)
            if isinstance(event, Progress) and event.done >= 6:
                raise KeyboardInterrupt

    config = replace(base, batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        Evaluation(config, CrashAfterTwoBatches()).run()
    rows = Path(config.output_dir or "", "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 6
    assert not Path(config.output_dir or "", "metrics.json").exists()


def test_pad_token_falls_back_to_eos(tmp_path: Path, qa_jsonl: Path) -> None:
    model = build_tiny_model(tmp_path / "nopad", with_pad_token=False)
    backend = HFBackend(str(model), device="cpu", dtype="float32")
    assert backend.tokenizer.pad_token == backend.tokenizer.eos_token
    assert backend.tokenizer.padding_side == "left"
    metrics, _, _ = run_evaluation(EvalConfig(model=str(model), data=str(qa_jsonl), max_tokens=4,
                                   batch_size=4, device="cpu", lang="en",
                                   output_dir=str(tmp_path / "out")))
    assert metrics.n == len(PROMPTS) and metrics.n_errors == 0


def test_stop_strings_cut_each_prediction() -> None:
    assert cut_at_stop("42\nQ: next", ["\n", "Q:"]) == "42"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"


def test_a_row_ended_by_a_stop_string_counts_the_same_tokens_in_a_batch(
        tiny_model: Path) -> None:
    # The random model writes "{.{.{.{." for the first prompt and no "." for the second: with
    # stop "." the first row ends after 2 tokens and, batched, is padded while the other runs
    # on. The padding is no generated token.
    backend = HFBackend(str(tiny_model), device="cpu", dtype="float32")
    backend.load_model()
    texts = ["Name a colour of the sky on a clear day.", "How many legs does a spider have?"]
    alone = [backend.generate([text], max_new_tokens=8, stop=["."]).new_tokens[0]
             for text in texts]
    batched = backend.generate(texts, max_new_tokens=8, stop=["."])
    assert alone == [2, 8]
    assert batched.new_tokens == alone
    assert batched.texts == ["{", "÷cccccc"]


def test_finished_event_carries_the_metrics(base: EvalConfig) -> None:
    metrics, _, sink = run_evaluation(base)
    finished = [e for e in sink.events if isinstance(e, RunFinished)]
    assert len(finished) == 1 and finished[0].metrics == metrics


@pytest.mark.parametrize("width", [200, 80, 60, 40, 24])
def test_the_progress_line_fits_the_terminal(width: int) -> None:
    event = Progress(done=1234, total=3000, samples_per_s=442.83, tokens_per_s=14170.6,
                     eta_s=3.9, batch_size=256, fallbacks=12, errors=0)
    line = progress_line(event, width)
    assert 0 < len(line) < width
    assert line.startswith("1234/3000") or "1234/3000" in line


def test_the_summary_shows_a_lowered_batch_size() -> None:
    metrics = RunMetrics(metrics={"exact_match": 1.0}, n=12, n_total=12, batch_size=8,
                         final_batch_size=2)
    assert "batch size   8 → 2" in metrics_table(metrics).splitlines()


def test_token_counts_match_the_tokenizer_before_and_after_a_padded_call(
        tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model), device="cpu")
    texts = [question for _, question, _ in PROMPTS]
    expected = [len(backend.tokenizer(text)["input_ids"]) for text in texts]
    assert backend.token_counts(texts) == expected
    backend.tokenizer(texts, padding=True)  # generate's call leaves padding on the Rust side
    assert backend.tokenizer.backend_tokenizer.padding is not None
    assert backend.token_counts(texts) == expected


def test_a_large_dataset_says_it_is_tokenising(base: EvalConfig, monkeypatch) -> None:
    from tui_eval.engine import generation

    monkeypatch.setattr(generation, "TOKENISING_NOTICE_FROM", 5)
    _, _, sink = run_evaluation(base)
    logs = sink.logs()
    tokenising = next(i for i, line in enumerate(logs) if "Tokenising 12 prompts…" in line)
    tokenised = next(i for i, line in enumerate(logs) if "Tokenised 12 prompts in" in line)
    evaluating = next(i for i, line in enumerate(logs) if "Evaluating 12 samples" in line)
    assert tokenising < tokenised < evaluating


def test_each_try_is_announced_before_the_model_loads(base: EvalConfig) -> None:
    import os

    _, _, sink = run_evaluation(base)
    kinds = [(type(e).__name__, e.message if isinstance(e, LogLine) else "")
             for e in sink.events if isinstance(e, (LogLine, TryStarted, RunStarted))]
    position = kinds.index(("TryStarted", ""))
    assert any(m.startswith("Loaded 12 samples") for _, m in kinds[:position])
    assert kinds[position + 1][1].startswith("Loading model")
    announced = next(e for e in sink.events if isinstance(e, TryStarted))
    assert announced.pid == os.getpid() and announced.done_before == 0
    assert announced.total == 12
    # events.jsonl has it in the same place: the lines logged before it opened come first
    recorded = [json.loads(line)["event"] for line in
                Path(base.output_dir or "", "events.jsonl").read_text().splitlines()]
    assert recorded.index("try_started") < recorded.index("started")
    assert recorded[:recorded.index("try_started")] == ["log"] * recorded.index("try_started")
