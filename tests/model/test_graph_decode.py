"""The CUDA-graph decode path's loop, run without capture on the CPU: its greedy output
equals ``model.generate``'s row by row (left padding, mixed prompt lengths, EOS in some
rows, stop strings), and a run with ``--compile graph`` writes eager's predictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import PROMPTS, Collect, demo_prompts, engine_config, predictions_of
from tui_eval.engine.evaluation import Evaluation
from tui_eval.model.backend import HFBackend
from tui_eval.model.graph_decode import GraphDecoder, as_generate_lays_out, supports


def generate_ids(backend: HFBackend, texts: list[str], max_new: int) -> list[list[int]]:
    """What ``model.generate`` returns after the prompts, greedy."""
    import torch

    encoded = backend.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        output = backend.model.generate(**encoded, max_new_tokens=max_new, do_sample=False,
                                        pad_token_id=backend.tokenizer.pad_token_id)
    return output[:, encoded["input_ids"].shape[1]:].tolist()


def loop_ids(backend: HFBackend, texts: list[str], max_new: int) -> list[list[int]]:
    encoded = backend.tokenizer(texts, return_tensors="pt", padding=True)
    prompt = encoded["input_ids"].shape[1]
    decoder = GraphDecoder(backend.model, capture=False)
    eos, pad = backend._eos_ids(), backend.tokenizer.pad_token_id
    run = decoder.generate(encoded["input_ids"], encoded["attention_mask"],
                           cache_tokens=prompt + max_new + 3, max_new_tokens=max_new,
                           eos_ids=eos, pad_id=pad)
    assert run.setup_seconds == 0.0 and run.new_shape  # nothing captured on a CPU
    return as_generate_lays_out(run.ids, eos, pad)


def test_the_demo_model_can_take_the_loop(demo: HFBackend) -> None:
    assert supports(demo.model) is None


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_the_loop_equals_generate_row_by_row(demo: HFBackend, rows: int) -> None:
    texts = demo_prompts(24)
    eos = set(demo._eos_ids())
    lengths = {len(demo.tokenizer(t)["input_ids"]) for t in texts}
    assert len(lengths) > 1  # mixed lengths: rows are left-padded
    ended_early = 0
    for start in range(0, len(texts), rows):
        batch = texts[start:start + rows]
        expected = generate_ids(demo, batch, 12)
        assert loop_ids(demo, batch, 12) == expected
        ended_early += sum(1 for row in expected if eos & set(row))
    assert ended_early > 0  # EOS fired in some rows before max_new_tokens


def test_graph_calls_equal_eager_calls_and_reuse_their_shape(demo: HFBackend) -> None:
    texts = demo_prompts(20)
    demo.reserve_shape(8, max(demo.token_counts(texts)), 10)
    shapes = set()
    for start in range(0, len(texts), 8):
        batch = texts[start:start + 8]
        eager = demo.generate(batch, max_new_tokens=10)
        graph = demo.generate(batch, max_new_tokens=10, graph=True)
        assert (graph.texts, graph.new_tokens) == (eager.texts, eager.new_tokens)
        assert graph.shape is not None and graph.compile_seconds == 0.0
        shapes.add(graph.shape.key)
    assert len(shapes) == 1  # the short last batch is padded to the run's shape
    assert len(demo._graphs.runners) == 1


def test_stop_strings_and_sampling(tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model), device="cpu", dtype="float32")
    backend.load_model()
    texts = [question for _, question, _ in PROMPTS]
    plain = backend.generate(texts, max_new_tokens=24)
    # a stop string that the random model's outputs contain somewhere
    stop = next(ch for text in plain.texts for ch in text[1:] if ch.strip())
    eager = backend.generate(texts, max_new_tokens=24, stop=[stop])
    graph = backend.generate(texts, max_new_tokens=24, stop=[stop], graph=True)
    assert graph.texts == eager.texts and graph.new_tokens == eager.new_tokens
    assert any(stop in text for text in plain.texts)
    assert backend.graph_unsupported(do_sample=True) == "sampling"
    sampled = backend.generate(texts[:2], max_new_tokens=4, do_sample=True, graph=True)
    assert sampled.shape is None  # fell back to generate


@pytest.mark.slow
def test_a_run_with_compile_graph_writes_eager_s_predictions(
        tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    eager_dir, graph_dir = tmp_path / "off", tmp_path / "graph"
    Evaluation(engine_config(qa_jsonl, tiny_model, eager_dir, compile="off"), Collect()).run()
    sink = Collect()
    metrics = Evaluation(engine_config(qa_jsonl, tiny_model, graph_dir, compile="graph"),
                         sink).run()
    assert predictions_of(graph_dir) == predictions_of(eager_dir)
    assert metrics.compiled and metrics.compile_seconds == 0.0  # no capture on a CPU
    assert sum("Static KV cache for shape" in line for line in sink.logs()) == 1
    sampled_dir = tmp_path / "sampled"
    sink = Collect()
    Evaluation(engine_config(qa_jsonl, tiny_model, sampled_dir, compile="graph",
                             do_sample=True), sink).run()
    assert sum("compile graph: sampling is not on the graph path" in line
               for line in sink.logs()) == 1


def test_an_oom_on_the_graph_path_frees_the_kept_shapes(tiny_model: Path) -> None:
    import torch

    backend = HFBackend(str(tiny_model), device="cpu", dtype="float32", simulate_oom_above=3)
    backend.load_model()
    texts = [question for _, question, _ in PROMPTS]
    backend.generate(texts[:2], max_new_tokens=4, graph=True)
    assert len(backend._graphs.runners) == 1
    with pytest.raises(torch.OutOfMemoryError):
        backend.generate(texts[:6], max_new_tokens=4, graph=True)
    assert not backend._graphs.runners  # their caches' memory is free for the retry
    assert backend.shapes.is_new(backend.shape_for(texts[:6], 4))
