"""Shared fixtures: a tiny random Llama model and tokenizer built offline, and small datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "Add 12 and 30. The sum of 12 and 30 is 42.",
    "Translate to French: cat. The answer is chat.",
    "Name a colour of the sky on a clear day. Blue.",
    "How many legs does a spider have? A spider has eight legs.",
    "Write the number after 99. The number after 99 is 100.",
] * 20

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


def build_tiny_model(directory: Path, *, with_pad_token: bool = True) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>" if with_pad_token else None)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=fast.convert_tokens_to_ids("<s>"),
        eos_token_id=fast.convert_tokens_to_ids("</s>"),
        pad_token_id=fast.convert_tokens_to_ids("<pad>") if with_pad_token else None,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


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
