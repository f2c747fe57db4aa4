"""Prompt building: Jinja2 templates, few-shot examples as lm-eval builds them, chat turns,
for generation and choice tasks, through the loader and through whole runs."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from tests.helpers import write_jsonl
from tui_eval.cli import main
from tui_eval.data import PromptSpec, load_choice_dataset, load_dataset
from tui_eval.engine import render_prompt
from tui_eval.engine.preparation import DEMO_MODEL
from tui_eval.errors import DataError
from tui_eval.prompts import PromptStyle
from tui_eval.results import read_predictions

QA = [{"id": "a", "question": "1+1", "answer": "2"},
      {"id": "b", "question": "2+2", "answer": "4"},
      {"id": "c", "question": "3+3", "answer": "6"},
      {"id": "d", "question": "4+4", "answer": "8"}]
# A chat template of the simplest kind, for a tokenizer that has none (the demo's).
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture()
def qa(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", QA)


def test_two_shot_prompt_from_a_fewshot_file(qa: Path, tmp_path: Path) -> None:
    shots = write_jsonl(tmp_path / "shots.jsonl", [{"question": "5+5", "answer": "10"},
                                                   {"question": "6+6", "answer": ["12", "xii"]},
                                                   {"question": "7+7", "answer": "14"}])
    spec = PromptSpec(prompt_template="Q: {{question}}\nA:", num_fewshot=2,
                      fewshot_file=str(shots))
    samples = load_dataset(qa, spec=spec).samples
    # every record gets the same first two examples; a list answer shows its first
    assert samples[0].prompt == "Q: 5+5\nA: 10\n\nQ: 6+6\nA: 12\n\nQ: 1+1\nA:"
    assert samples[3].prompt == "Q: 5+5\nA: 10\n\nQ: 6+6\nA: 12\n\nQ: 4+4\nA:"
    assert samples[0].references == ["2"]


def test_examples_from_the_data_itself_never_include_the_record(qa: Path) -> None:
    spec = PromptSpec(prompt_template="{{question}}=", target_template="{{answer}}",
                      num_fewshot=2, style=PromptStyle(target_delimiter="",
                                                       fewshot_delimiter=";"))
    prompts = [s.prompt for s in load_dataset(qa, spec=spec).samples]
    assert prompts == ["2+2=4;3+3=6;1+1=", "1+1=2;3+3=6;2+2=",
                       "1+1=2;2+2=4;3+3=", "1+1=2;2+2=4;4+4="]


def test_a_seed_draws_each_records_examples_as_lm_eval_does(qa: Path) -> None:
    spec = PromptSpec(prompt_template="{{question}}=", num_fewshot=2, fewshot_seed=1234,
                      style=PromptStyle(target_delimiter="", fewshot_delimiter=";"))
    prompts = [s.prompt for s in load_dataset(qa, spec=spec).samples]
    # lm-eval's ContextSampler: one Random(seed) for the run, n + 1 drawn per record from
    # the same split, the record itself dropped, the first n kept
    rnd = random.Random(1234)
    expected = []
    for record in QA:
        drawn = [r for r in rnd.sample(QA, 3) if r != record][:2]
        expected.append("".join(f"{r['question']}={r['answer']};" for r in drawn)
                        + f"{record['question']}=")
    assert prompts == expected
    assert len(set(prompts)) == 4
    assert prompts[0] == "4+4=8;3+3=6;1+1="  # pinned: the draw itself must not change


def test_the_older_field_template_still_works(qa: Path) -> None:
    samples = load_dataset(qa, prompt_template="Compute {prompt}", prompt_field="question")
    assert samples.samples[1].prompt == "Compute 2+2"
    assert samples.samples[1].turns is None


def test_missing_field_names_the_file_the_line_and_the_key(qa: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(qa, spec=PromptSpec(prompt_template="{{ questoin }}"))
    assert str(caught.value).startswith(f"{qa}:1: prompt_template uses a missing field "
                                        "('questoin' is undefined); the record has ")


def test_a_bad_template_fails_before_any_record(qa: Path) -> None:
    with pytest.raises(DataError, match=r"^target_template: invalid Jinja2 template \(line 1\)"):
        load_dataset(qa, spec=PromptSpec(target_template="{{ answer }"))


def test_choice_task_with_few_shot_and_templates(tmp_path: Path) -> None:
    rows = [{"q": "5+8", "opts": {"text": ["13", "31"], "label": ["A", "B"]}, "key": "A"},
            {"q": "2+2", "opts": {"text": ["5", "4"], "label": ["A", "B"]}, "key": "B"},
            {"q": "9+1", "opts": {"text": ["10", "91"], "label": ["A", "B"]}, "key": "A"}]
    data = write_jsonl(tmp_path / "mc.jsonl", rows)
    spec = PromptSpec(prompt_template="{{q}}=", choices_template="{{opts.text}}",
                      target_template="{{opts.label.index(key)}}", num_fewshot=1,
                      style=PromptStyle(target_delimiter="", fewshot_delimiter="-"))
    samples = load_choice_dataset(data, spec=spec).samples
    # the example's answer is its gold choice's text
    assert [s.prompt for s in samples] == ["2+2=4-5+8=", "5+8=13-2+2=", "5+8=13-9+1="]
    assert [s.gold for s in samples] == [0, 1, 0]
    assert samples[1].choices == ["5", "4"]


def test_chat_turns_hold_the_examples_and_the_system_prompt(qa: Path) -> None:
    spec = PromptSpec(prompt_template="{{question}}=", num_fewshot=1,
                      style=PromptStyle(system_prompt="Add."))
    sample = load_dataset(qa, spec=spec).samples[0]
    assert sample.turns == [{"role": "system", "content": "Add."},
                            {"role": "user", "content": "2+2="},
                            {"role": "assistant", "content": "4"},
                            {"role": "user", "content": "1+1="}]
    assert sample.prompt == "Add.2+2= 4\n\n1+1="  # lm-eval's plain text: system text first


def test_too_few_examples_is_one_line(qa: Path) -> None:
    with pytest.raises(DataError, match="num_fewshot 4 needs 4 examples besides the record "
                                        "itself, the file has 4"):
        load_dataset(qa, spec=PromptSpec(prompt_template="{{question}}", num_fewshot=4))


# ── whole runs on the demo model ───────────────────────────────────────────────────────

def demo_rows() -> list[dict]:
    return [{"id": f"q{i}", "prompt": f"{i}+{i}=", "answer": str(2 * i)} for i in range(1, 7)]


def run_rows(out: Path) -> list:
    return read_predictions(out / "predictions.jsonl")


def test_generation_run_with_few_shot_stores_the_prompt_it_generated_from(
        tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", demo_rows())
    out = tmp_path / "out"
    assert main(["--no-ui", "-m", str(DEMO_MODEL), "-d", str(data), "-o", str(out),
                 "--num-fewshot", "2", "--target-delimiter", "", "--max-tokens", "4",
                 "--prompt-template", "{{prompt}}", "--limit", "3"]) == 0
    rows = run_rows(out)
    assert [r.prompt for r in rows] == ["2+2=4\n\n3+3=6\n\n1+1=", "1+1=2\n\n3+3=6\n\n2+2=",
                                        "1+1=2\n\n2+2=4\n\n3+3="]
    assert all(r.error is None and r.prediction is not None for r in rows)
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))["config"]
    assert saved["num_fewshot"] == 2 and saved["fewshot_delimiter"] == "\n\n"
    # rescoring keeps the stored prompts as they are
    before = (out / "predictions.jsonl").read_text(encoding="utf-8")
    assert main(["rescore", str(out), "--metrics", "contains"]) == 0
    assert [r.prompt for r in run_rows(out)] == [r.prompt for r in rows]
    assert before != (out / "predictions.jsonl").read_text(encoding="utf-8")


def test_choice_run_with_few_shot(tmp_path: Path) -> None:
    rows = [{"id": f"c{i}", "prompt": f"{i}+{i}=", "choices": [str(2 * i), str(2 * i + 1)],
             "answer": 0} for i in range(1, 5)]
    data = write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out"
    assert main(["--no-ui", "-m", str(DEMO_MODEL), "-d", str(data), "-o", str(out),
                 "--num-fewshot", "1", "--target-delimiter", ""]) == 0
    stored = run_rows(out)
    assert stored[0].prompt == "2+2=4\n\n1+1="
    assert stored[2].prompt == "1+1=2\n\n3+3="
    assert all(r.gold == 0 and r.pred is not None for r in stored)


@pytest.fixture()
def chat_model(tmp_path: Path) -> Path:
    model = tmp_path / "chat-model"
    shutil.copytree(DEMO_MODEL, model)
    config_path = model / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return model


def test_chat_template_turns_few_shot_into_user_and_assistant_turns(
        tmp_path: Path, chat_model: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", demo_rows()[:3])
    out = tmp_path / "out"
    eval_toml = tmp_path / "eval.toml"
    eval_toml.write_text('chat_template = true\nsystem_prompt = "Add."\nnum_fewshot = 1\n'
                         'target_delimiter = ""\nmax_tokens = 4\n', encoding="utf-8")
    assert main(["--no-ui", "-c", str(eval_toml), "-m", str(chat_model), "-d", str(data),
                 "-o", str(out)]) == 0
    row = run_rows(out)[0]
    assert row.turns == [{"role": "system", "content": "Add."},
                         {"role": "user", "content": "2+2="},
                         {"role": "assistant", "content": "4"},
                         {"role": "user", "content": "1+1="}]
    # what the model saw, as the samples browser renders it again from the row
    seen = render_prompt(str(chat_model), row.prompt, row.turns)
    assert seen == "<system>Add.<user>2+2=<assistant>4<user>1+1=<assistant>"


def test_a_bad_template_flag_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["--no-ui", "--prompt-template", "{{ question }"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tui-eval: error: --prompt-template: invalid Jinja2 template (line 1): "
        "unexpected '}'")


def test_a_missing_field_stops_before_the_run_directory(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", demo_rows())
    out = tmp_path / "out"
    assert main(["--no-ui", "-m", str(DEMO_MODEL), "-d", str(data), "-o", str(out),
                 "--prompt-template", "{{ question }}="]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"tui-eval: error: {data}:1: prompt_template uses a missing field "
                   "('question' is undefined); the record has id, prompt, answer")
    assert not out.exists()


def test_a_chat_choice_puts_no_delimiter_before_the_choice_unless_one_is_set(
        tmp_path: Path, chat_model: Path) -> None:
    """The choice is the assistant's turn itself: lm-eval scores it with no delimiter, and
    so does target_delimiter "auto" (the default); a delimiter set explicitly is kept."""
    rows = [{"id": f"c{i}", "prompt": f"{i}+{i}=", "choices": [str(2 * i), str(2 * i + 1)],
             "answer": 0} for i in range(1, 4)]
    data = write_jsonl(tmp_path / "c.jsonl", rows)
    eval_toml = tmp_path / "eval.toml"
    eval_toml.write_text("chat_template = true\n", encoding="utf-8")
    logprobs = []
    for delimiter in (None, "", "+"):
        out = tmp_path / f"out{delimiter}"
        flags = [] if delimiter is None else ["--target-delimiter", delimiter]
        assert main(["--no-ui", "-c", str(eval_toml), "-m", str(chat_model), "-d", str(data),
                     "-o", str(out), *flags]) == 0
        logprobs.append([r.logprobs for r in run_rows(out)])
    assert logprobs[0] == logprobs[1]
    assert logprobs[2] != logprobs[0]


def test_a_target_field_a_record_lacks_is_named(qa: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(qa, spec=PromptSpec(prompt_template="{{question}}",
                                         target_template="solution"))
    assert str(caught.value) == (f"{qa}:1: target_template uses a missing field "
                                 "('solution' is undefined); the record has id, question, "
                                 "answer")
