"""metrics.json names the compile path that ran (``compile``: off, on, graph) and the
setting that chose it (``requested_compile``); the summary's compile line says it; a
metrics.json written before those fields still reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Collect
from tui_eval.config import EvalConfig
from tui_eval.engine.compile_choice import CompileDecision
from tui_eval.engine.evaluation import Evaluation
from tui_eval.model.backend import HFBackend
from tui_eval.reports.summary import summary_rows
from tui_eval.results import METRICS_FILE, RunMetrics


def run(backend: HFBackend, tiny_model: Path, qa_jsonl: Path, out: Path,
        **values: Any) -> tuple[RunMetrics, dict[str, Any]]:
    config = EvalConfig(**{"model": str(tiny_model), "data": str(qa_jsonl), "max_tokens": 4,
                           "device": "cpu", "torch_dtype": "float32", "lang": "en",
                           "batch_size": 5, "output_dir": str(out), **values})
    metrics = Evaluation(config, Collect(), backend=backend).run()
    return metrics, json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))


def compile_line(metrics: RunMetrics) -> str | None:
    return dict(summary_rows(metrics)).get("compile time")


@pytest.mark.parametrize("requested", ["off", "auto"])
def test_an_eager_run_says_off(eager: HFBackend, tiny_model: Path, qa_jsonl: Path,
                               tmp_path: Path, requested: str) -> None:
    metrics, saved = run(eager, tiny_model, qa_jsonl, tmp_path / requested, compile=requested)
    assert (saved["compile"], saved["requested_compile"], saved["compiled"]) == (
        "off", requested, False)  # auto is off on a CPU
    assert compile_line(metrics) is None  # nothing compiled: no compile line


def test_compile_on_says_on(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    """The static path without torch.compile (the quick stand-in for compile on)."""
    static = HFBackend(str(tiny_model), device="cpu", dtype="float32", compile=True,
                       compile_decode=False)
    static.load_model()
    metrics, saved = run(static, tiny_model, qa_jsonl, tmp_path / "on", compile="on")
    assert (saved["compile"], saved["requested_compile"], saved["compiled"]) == (
        "on", "on", True)
    assert compile_line(metrics) == "0.0s (on)"


def test_compile_graph_says_graph(eager: HFBackend, tiny_model: Path, qa_jsonl: Path,
                                  tmp_path: Path) -> None:
    """On a CPU the graph path is the same loop without capture: it runs, and says so."""
    metrics, saved = run(eager, tiny_model, qa_jsonl, tmp_path / "graph", compile="graph")
    assert (saved["compile"], saved["requested_compile"], saved["compiled"]) == (
        "graph", "graph", True)
    assert compile_line(metrics) == "0.0s (graph)"


def test_auto_names_the_path_it_chose(eager: HFBackend, tiny_model: Path, qa_jsonl: Path,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tui_eval.engine.generation as generation

    # as on CUDA: eager for the first batch, then the graph path for the rest
    monkeypatch.setattr(generation, "starting_mode", lambda requested, device, spread: "auto")
    monkeypatch.setattr(generation, "decide", lambda *args: CompileDecision(
        on=True, eager_seconds_left=100.0, seconds_saved=80.0))
    metrics, saved = run(eager, tiny_model, qa_jsonl, tmp_path / "auto", compile="auto")
    assert (saved["compile"], saved["requested_compile"]) == ("graph", "auto")
    assert compile_line(metrics) == "0.0s (auto: graph)"


@pytest.mark.parametrize(("compiled", "path"), [(True, "on"), (False, "off")])
def test_a_metrics_file_without_the_fields_still_reads(tmp_path: Path, compiled: bool,
                                                       path: str) -> None:
    old = {"metrics": {"exact_match": 0.5}, "n": 4, "n_total": 4, "batch_size": 2,
           "wall_seconds": 3.0, "generation_seconds": 1.0, "compiled": compiled,
           "compile_seconds": 1.5 if compiled else 0.0, "samples_per_s": 4.0,
           "a_key_from_another_version": 1}
    (tmp_path / METRICS_FILE).write_text(json.dumps(old), encoding="utf-8")
    metrics = RunMetrics.read(tmp_path)
    assert metrics is not None and metrics.n == 4 and metrics.compiled is compiled
    assert (metrics.compile, metrics.requested_compile) == (path, None)
    assert compile_line(metrics) == ("1.5s (on)" if compiled else None)
