"""The model tests' fixtures: the demo model and the tiny random one, loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def demo() -> Any:
    """The built-in demo model (a character-level tokenizer) on the CPU, loaded."""
    from tui_eval.engine.preparation import DEMO_MODEL
    from tui_eval.model.backend import HFBackend

    backend = HFBackend(str(DEMO_MODEL), device="cpu", dtype="float32")
    backend.load_model()
    return backend


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> tuple[Any, Any]:
    """The tiny random Llama and its tokenizer, as transformers loads them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype="float32").eval()
    return model, tokenizer
