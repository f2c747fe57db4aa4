"""The compiled static-shape path: its shapes stay few, and its greedy results equal the
eager path's, with dummy rows, bucket padding, stop strings, forced lengths and OOM splits;
and through the engine: compile on, off and auto, -b auto, OOM, resume and metrics.json.

The quick tests run the static path without torch.compile (``compile_decode=False``): the
same static cache, padding and shapes, minus the compilation, which on a CPU takes tens of
seconds. One slow test compiles for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import MAX_NEW, PROMPTS, Collect, engine_config, open_backend, predictions_of
from tui_eval.batching.oom_policies import make_oom_policy
from tui_eval.cancel import CancelToken
from tui_eval.cli import main
from tui_eval.data import Sample
from tui_eval.engine.compile_choice import CompileDecision, decide, starting_mode
from tui_eval.engine.evaluation import Evaluation
from tui_eval.events import Progress
from tui_eval.model.backend import HFBackend, resolve_compile
from tui_eval.model.static_shapes import ShapePlanner, StaticShape, prompt_bucket

TEXTS = [question for _, question, _ in PROMPTS]


def longest_first(backend: HFBackend, texts: list[str]) -> list[str]:
    counts = backend.token_counts(texts)
    return [t for _, t in sorted(zip(counts, texts, strict=True), key=lambda p: -p[0])]


def run(backend: HFBackend, texts: list[str], batch_size: int,
        **options: object) -> tuple[list[str], list[int], list[StaticShape | None]]:
    out: list[str] = []
    tokens: list[int] = []
    shapes: list[StaticShape | None] = []
    for start in range(0, len(texts), batch_size):
        generation = backend.generate(texts[start:start + batch_size],
                                      max_new_tokens=MAX_NEW, **options)  # type: ignore[arg-type]
        out += generation.texts
        tokens += generation.new_tokens
        shapes.append(generation.shape)
    return out, tokens, shapes


# ── shapes ──────────────────────────────────────────────────────────────────────

def test_prompt_buckets_are_few_and_waste_under_a_third() -> None:
    assert [prompt_bucket(n) for n in (1, 16, 17, 24, 25, 33, 100, 129, 200, 1000)] == \
        [16, 16, 24, 24, 32, 48, 128, 192, 256, 1024]
    buckets = {prompt_bucket(n) for n in range(1, 2049)}
    assert len(buckets) == 15
    assert all(prompt_bucket(n) >= n and (prompt_bucket(n) - n) < prompt_bucket(n) / 3
               for n in range(17, 4096))


def test_a_short_batch_is_padded_to_a_row_count_that_ran() -> None:
    planner = ShapePlanner()
    first = planner.plan(64, 120, 32)
    assert first == StaticShape(64, 128, 159) and planner.is_new(first)
    planner.succeeded(first)
    last = planner.plan(10, 20, 32)  # shorter prompts keep the longer cache: same key
    assert last.rows == 64 and last.prompt_tokens == 24 and last.key == first.key
    assert not planner.is_new(last)


def test_a_failed_shape_is_not_padded_up_to_again() -> None:
    planner = ShapePlanner()
    planner.reserve(64, 100, 16)
    big = planner.plan(64, 100, 16)
    planner.failed(big)  # an OOM: the policy retries with halves
    half = planner.plan(32, 100, 16)
    assert half.rows == 32 and planner.is_new(half)
    planner.succeeded(half)
    assert planner.plan(5, 30, 16).rows == 32
    assert planner.plan(33, 30, 16).rows == 33  # larger than anything that ran


def test_reserve_fixes_the_run_shape_before_the_first_batch() -> None:
    planner = ShapePlanner()
    planner.reserve(16, 300, 64)
    shape = planner.plan(3, 40, 64)
    assert shape.rows == 16 and shape.cache_tokens == prompt_bucket(300) + 63


def test_resolve_compile() -> None:
    assert resolve_compile("auto", "cuda") and resolve_compile("auto", "cuda:1")
    assert not resolve_compile("auto", "cpu") and not resolve_compile("auto", "mps")
    assert resolve_compile("on", "cpu") and not resolve_compile("off", "cuda")


# ── same results as the eager path ──────────────────────────────────────────────

@pytest.mark.parametrize("batch_size", [1, 3, 5, 12])
def test_static_greedy_equals_eager(eager: HFBackend, static: HFBackend,
                                    batch_size: int) -> None:
    texts = longest_first(eager, TEXTS)
    expected = run(eager, texts, batch_size)
    texts_out, tokens, shapes = run(static, texts, batch_size)
    assert (texts_out, tokens) == expected[:2]
    assert all(texts_out)
    # one compiled shape for the whole run: the short last batch is padded to it
    assert {shape.key for shape in shapes if shape} == {shapes[0].key}  # type: ignore[union-attr]
    assert static.compiled_shapes == [shapes[0].key]  # type: ignore[union-attr]


def test_unsorted_prompts_still_match(eager: HFBackend, static: HFBackend) -> None:
    assert run(static, TEXTS, 5)[:2] == run(eager, TEXTS, 5)[:2]


def test_forced_length_and_stop_strings(eager: HFBackend, static: HFBackend) -> None:
    forced = run(static, TEXTS, 5, force_length=True)
    assert forced[1] == [MAX_NEW] * len(TEXTS)
    assert forced[:2] == run(eager, TEXTS, 5, force_length=True)[:2]
    # a stop string that the random model's outputs contain somewhere
    stop = next(ch for text in run(eager, TEXTS, 12)[0] for ch in text[1:] if ch.strip())
    stopped = run(static, TEXTS, 5, stop=[stop])
    assert stopped[:2] == run(eager, TEXTS, 5, stop=[stop])[:2]
    assert all(stop not in text for text in stopped[0])


def test_sampling_runs_and_a_seed_repeats_it(static: HFBackend) -> None:
    import torch

    def sample() -> list[str]:
        torch.manual_seed(3)
        return run(static, TEXTS, 5, do_sample=True, temperature=0.8, top_p=0.9)[0]

    first = sample()
    assert len(first) == len(TEXTS) and first == sample()


def test_a_call_may_run_eagerly_without_changing_the_backend_s_path(static: HFBackend) -> None:
    assert static.generate(TEXTS[:2], max_new_tokens=2, static=False).shape is None
    assert static.generate(TEXTS[:2], max_new_tokens=2).shape is not None


def test_an_oom_split_is_a_new_smaller_shape(eager: HFBackend, tiny_model: Path) -> None:
    backend = open_backend(tiny_model, compile=True, compile_decode=False,
                           simulate_oom_above=4)
    announced: list[StaticShape] = []
    backend.on_new_shape = announced.append
    texts = longest_first(eager, TEXTS)
    samples = [Sample(index=i, id=str(i), prompt=t, references=[""])
               for i, t in enumerate(texts)]

    def generate(batch: list[Sample]):
        return backend.generate([s.prompt for s in batch], max_new_tokens=MAX_NEW)

    policy = make_oom_policy("bisect", generate, Collect(), "en", batch_size=8)
    outcomes = [o for start in range(0, len(samples), policy.batch_size)
                for o in policy.run_batch(samples[start:start + policy.batch_size])]
    # 8 rows fail, the halves of 4 run, and the last 4 reuse their shape
    assert [shape.rows for shape in announced] == [8, 4]
    assert policy.fallbacks == 1 and policy.batch_size == 4
    assert [o.prediction for o in outcomes] == run(eager, texts, 4)[0]
    assert backend.compiled_shapes == [announced[1].key]
    assert backend.compile_seconds == 0.0  # nothing compiled without compile_decode


# ── real compilation ────────────────────────────────────────────────────────────

@pytest.mark.slow
def test_compiled_decode_on_cpu_equals_eager(eager: HFBackend, tiny_model: Path) -> None:
    """torch.compile (inductor, C++ kernels) on the CPU: about 20-30 s for the one shape."""
    compiled = open_backend(tiny_model, compile=True)
    texts = longest_first(eager, TEXTS)
    texts_out, tokens, shapes = run(compiled, texts, 5)
    assert (texts_out, tokens) == run(eager, texts, 5)[:2]
    assert compiled.compile_seconds > 0.5
    assert len(compiled.compiled_shapes) == 1 and len({s.key for s in shapes if s}) == 1
    again = compiled.generate(texts[:2], max_new_tokens=MAX_NEW)  # padded: no new compile
    assert again.compile_seconds == 0.0 and again.texts == texts_out[:2]


# ── through the engine: compile = on / off / auto ───────────────────────────────


@pytest.fixture()
def reference(tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
              eager: HFBackend) -> list[tuple[str, str | None, int]]:
    out = tmp_path / "off"
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, out, compile="off"),
                         Collect(), backend=eager).run()
    assert not metrics.compiled and metrics.compile_seconds == 0.0
    return predictions_of(out)


def test_compile_on_in_the_engine_equals_compile_off(static: HFBackend, tiny_model: Path,
                                                     qa_jsonl: Path, tmp_path: Path,
                                                     reference: list) -> None:
    out = tmp_path / "on"
    sink = Collect()
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, out, compile="on"), sink,
                         backend=static).run()
    assert predictions_of(out) == reference
    assert metrics.compiled and metrics.n == len(PROMPTS)
    # one shape for the run, reserved before the first batch: the last 2 rows pad to 5
    assert [shape[0] for shape in static.compiled_shapes] == [5]
    shape_lines = [line for line in sink.logs() if "for shape" in line]
    assert len(shape_lines) == 1 and "Static KV cache for shape 5 rows" in shape_lines[0]
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["compiled"] is True and saved["compile_seconds"] == 0.0


def test_an_oom_with_compile_on_is_a_new_shape_and_loses_nothing(
        tiny_model: Path, qa_jsonl: Path, tmp_path: Path, reference: list) -> None:
    backend = open_backend(tiny_model, compile=True, compile_decode=False,
                           simulate_oom_above=4)
    out = tmp_path / "oom"
    sink = Collect()
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, out, compile="on", batch_size=8),
                         sink, backend=backend).run()
    assert predictions_of(out) == reference
    assert metrics.fallback_count == 1 and metrics.final_batch_size == 4
    shape_lines = [line for line in sink.logs() if "for shape" in line]
    assert "for shape 8 rows" in shape_lines[0]
    assert "for shape 4 rows" in shape_lines[1] and "after an OOM" in shape_lines[1]
    assert any("Batch generation failed: CUDA out of memory" in line for line in sink.logs())


@pytest.mark.parametrize("pays", [True, False])
def test_compile_auto_decides_after_the_eager_first_batch(
        static: HFBackend, tiny_model: Path, qa_jsonl: Path, tmp_path: Path, reference: list,
        monkeypatch: pytest.MonkeyPatch, pays: bool) -> None:
    import tui_eval.engine.generation as generation

    seen: list[tuple[float, int]] = []

    def decide(first_batch_seconds: float, batches_left: int, *costs: float,
               ) -> CompileDecision:
        seen.append((first_batch_seconds, batches_left))
        return CompileDecision(on=pays, eager_seconds_left=100.0, seconds_saved=80.0)

    monkeypatch.setattr(generation, "starting_mode", lambda requested, device, spread: "auto")
    monkeypatch.setattr(generation, "decide", decide)
    out = tmp_path / "auto"
    sink = Collect()
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, out, compile="auto"), sink,
                         backend=static).run()
    assert predictions_of(out) == reference
    assert len(seen) == 1 and seen[0][0] > 0 and seen[0][1] == 2  # 12 samples, 5 done
    assert metrics.compiled is pays
    logs = sink.logs()
    # auto picks the CUDA-graph path (on the CPU: the same loop over a static cache)
    assert any(f"compile auto: {'graph' if pays else 'off'}" in line for line in logs)
    assert sum("Static KV cache for shape" in line for line in logs) == (1 if pays else 0)
    if pays:  # reserved for the rest: 5 rows, the last 2 padded
        assert [shape[0] for shape in static.compiled_shapes] == [5]


def test_compile_auto_is_off_on_cpu(tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
                                    reference: list) -> None:
    out = tmp_path / "auto-cpu"
    sink = Collect()
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, out), sink).run()  # auto
    assert predictions_of(out) == reference and not metrics.compiled
    assert not any("for shape" in line or "compile auto" in line for line in sink.logs())


def test_auto_batch_size_with_compile_on_probes_off_the_run_s_shapes(
        static: HFBackend, tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
        reference: list) -> None:
    out = tmp_path / "auto-bs"
    sink = Collect()
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, out, compile="on",
                                       batch_size="auto"), sink, backend=static).run()
    assert predictions_of(out) == reference
    tune = json.loads((out / "tune.json").read_text(encoding="utf-8"))
    assert tune["static_cache"] is True
    # the probes ran at many sizes on a planner of their own: the run has one shape
    rows = min(metrics.batch_size, len(PROMPTS))
    assert [shape[0] for shape in static.compiled_shapes] == [rows]
    assert sum("for shape" in line for line in sink.logs()) == 1


def test_compile_may_change_on_resume(static: HFBackend, tiny_model: Path, qa_jsonl: Path,
                                      tmp_path: Path, reference: list) -> None:
    out = tmp_path / "resumed"
    cancel = CancelToken()

    def stop_after_first_batch(event: object) -> None:
        if isinstance(event, Progress):
            cancel.cancel()

    Evaluation(engine_config(qa_jsonl, tiny_model, out, compile="off"),
               stop_after_first_batch, cancel, backend=static).run()
    assert len(predictions_of(out)) == 5
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, out, compile="on"), Collect(),
                         backend=static, resume=True).run()
    assert metrics.n_resumed == 5 and metrics.compiled and not metrics.partial
    assert predictions_of(out) == reference


def test_the_compile_rule() -> None:
    assert starting_mode("auto", "cuda") == "auto" and starting_mode("auto", "cuda:1") == "auto"
    assert starting_mode("auto", "cpu") == "off" and starting_mode("auto", "mps") == "off"
    assert starting_mode("on", "cpu") == "on" and starting_mode("off", "cuda") == "off"
    # a model spread over several GPUs stays eager unless compile is asked for
    assert starting_mode("auto", "cuda:0", spread=True) == "off"
    assert starting_mode("on", "cuda:0", spread=True) == "on"
    # 16 batches left at 4.2 s each eager: 67 s, 56 s saved at 6x: more than 40 s of compile
    long_run = decide(4.2, 16)
    assert long_run.on and long_run.eager_seconds_left == pytest.approx(67.2)
    assert long_run.seconds_saved == pytest.approx(67.2 * 5 / 6)
    assert not decide(4.2, 3).on  # 12.6 s left eager: compiling would cost more
    assert not decide(100.0, 0).on  # a one-batch run


def test_compile_and_retune_flags(capsys: pytest.CaptureFixture) -> None:
    from tui_eval.commands.options import ArgumentParser, add_config_flags, config_from_args

    parser = ArgumentParser()
    add_config_flags(parser)
    config = config_from_args(parser.parse_args(["--compile", "on", "--retune"]))
    assert config.compile == "on" and config.retune is True
    assert config_from_args(parser.parse_args([])).retune is False
    assert main(["--no-ui", "--compile", "yes"]) == 2
    assert "--compile: must be one of auto, graph, on, off, got 'yes'" in capsys.readouterr().err


@pytest.mark.slow
def test_compile_on_through_the_cli_compiles_once_and_matches_off(
        tiny_model: Path, qa_jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """torch.compile for real on the CPU, through ``tui-eval --no-ui``."""
    import torch

    torch._dynamo.reset()  # an earlier test's compiled shapes would answer at once

    def run(mode: str) -> dict:
        out = tmp_path / mode
        assert main(["--no-ui", "-m", str(tiny_model), "-d", str(qa_jsonl), "--device", "cpu",
                     "--torch-dtype", "float32", "--max-tokens", str(MAX_NEW), "-b", "5",
                     "--compile", mode, "--lang", "en", "-o", str(out)]) == 0
        return json.loads((out / "metrics.json").read_text(encoding="utf-8"))

    on, off = run("on"), run("off")
    assert predictions_of(tmp_path / "on") == predictions_of(tmp_path / "off")
    assert on["compiled"] and on["compile_seconds"] > 0.5 and not off["compiled"]
    # metrics.json names the path that ran and the setting asked for
    assert (on["compile"], on["requested_compile"]) == ("on", "on")
    assert (off["compile"], off["requested_compile"]) == ("off", "off")
    assert on["generation_seconds"] + on["compile_seconds"] <= on["wall_seconds"]
    assert on["samples_per_s"] == pytest.approx(on["n"] / on["generation_seconds"])
    log = (tmp_path / "on" / "run.log").read_text(encoding="utf-8")
    assert log.count("Compiling for shape 5 rows") == 1 and "(first batch only)" in log
    assert "compile time" in capsys.readouterr().out


def test_inductor_cache_goes_to_the_user_cache_dir(monkeypatch: pytest.MonkeyPatch,
                                                   tune_cache_dir: Path) -> None:
    import os

    from tui_eval.model.backend import use_inductor_cache

    for name in ("TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                 "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")  # the user's choice stays
    use_inductor_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tune_cache_dir / "tui-eval" / "inductor")
    assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    assert os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "0"
    from torch._inductor import config

    assert config.fx_graph_cache is True
