"""Shared fixtures: a tiny random Llama model and tokenizer built offline, and small datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tui_eval.testing import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture()
def qa_jsonl(tmp_path: Path) -> Path:
    rows = [{"id": i, "question": q, "answer": a} for i, q, a in PROMPTS]
    return write_jsonl(tmp_path / "qa.jsonl", rows)
