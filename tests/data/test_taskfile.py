"""lm-eval task files read offline: their keys as config keys, their splits as local
files, what cannot be honoured refused by name, and whole runs through the headless CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import write_jsonl
from tui_eval.cli import main
from tui_eval.config import EvalConfig
from tui_eval.engine.preparation import DEMO_MODEL, read_dataset
from tui_eval.errors import ConfigError
from tui_eval.extraction import extract_answer
from tui_eval.metrics import exact_match_strict as strict
from tui_eval.results import read_predictions
from tui_eval.taskfile import STRIP_PATTERN, task_file_values

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "tasks"

GENERATION_TASK = """\
task: sums
dataset_path: sums
output_type: generate_until
test_split: test
fewshot_split: train
doc_to_text: "{{prompt}}"
doc_to_target: answer
target_delimiter: ""
num_fewshot: 2
fewshot_config:
  sampler: first_n
generation_kwargs:
  until: []  # the demo tokenizer cannot build transformers' stop-string tables
  max_gen_toks: 4
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

CHOICE_TASK = """\
task: sums_mc
dataset_path: sums_mc
output_type: multiple_choice
test_split: test
doc_to_text: "{{prompt}}"
doc_to_target: answer
doc_to_choice: choices
target_delimiter: ""
num_fewshot: 1
"""


def sums(tmp_path: Path) -> Path:
    """A task file and its split files, as a data directory lays them out."""
    write_jsonl(tmp_path / "sums" / "test.jsonl",
                [{"id": f"t{i}", "prompt": f"{i}+{i}=", "answer": str(2 * i)}
                 for i in range(1, 5)])
    write_jsonl(tmp_path / "sums" / "train.jsonl",
                [{"prompt": "5+5=", "answer": "10"}, {"prompt": "6+6=", "answer": "12"}])
    task = tmp_path / "sums.yaml"
    task.write_text(GENERATION_TASK, encoding="utf-8")
    return task


def test_a_task_files_keys_become_config_keys(tmp_path: Path) -> None:
    values = task_file_values(sums(tmp_path))
    assert values == {
        "task": "generate", "data": str(tmp_path / "sums" / "test.jsonl"),
        "prompt_template": "{{prompt}}", "target_template": "answer",
        "target_delimiter": "", "num_fewshot": 2, "fewshot_seed": None,
        "fewshot_file": str(tmp_path / "sums" / "train.jsonl"), "max_tokens": 4,
        "stop": [], "metrics": ["exact_match_strict"]}


def test_generation_task_file_end_to_end(tmp_path: Path) -> None:
    task, out = sums(tmp_path), tmp_path / "out"
    assert main(["--no-ui", "-m", str(DEMO_MODEL), "--task-file", str(task),
                 "-o", str(out)]) == 0
    rows = read_predictions(out / "predictions.jsonl")
    assert [r.prompt for r in rows] == [f"5+5=10\n\n6+6=12\n\n{i}+{i}=" for i in range(1, 5)]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 4 and metrics["n_errors"] == 0
    assert "exact_match_strict" in metrics["metrics"]


def test_flags_override_the_task_file(tmp_path: Path) -> None:
    task, out = sums(tmp_path), tmp_path / "out"
    assert main(["--no-ui", "-m", str(DEMO_MODEL), "--task-file", str(task),
                 "--num-fewshot", "0", "--limit", "2", "-o", str(out)]) == 0
    assert [r.prompt for r in read_predictions(out / "predictions.jsonl")] == ["1+1=", "2+2="]


def test_choice_task_file_end_to_end_with_a_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_jsonl(data_dir / "sums_mc" / "test.jsonl",
                [{"id": f"c{i}", "prompt": f"{i}+{i}=", "choices": [str(i + 1), str(2 * i)],
                  "answer": 1} for i in range(2, 6)])
    task = tmp_path / "tasks" / "sums_mc.yaml"
    task.parent.mkdir()
    task.write_text(CHOICE_TASK, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--no-ui", "-m", str(DEMO_MODEL), "--task-file", str(task),
                 "--data-dir", str(data_dir), "-o", str(out)]) == 0
    rows = read_predictions(out / "predictions.jsonl")
    # lm-eval's default sampler (seed 1234) from the evaluated split, never the record
    assert all(r.prompt.endswith(f"\n\n{i}+{i}=") for i, r in zip(range(2, 6), rows, strict=True))
    assert rows[0].prompt.count("\n\n") == 1
    assert rows[0].prompt.split("\n\n")[0] in {f"{i}+{i}={2 * i}" for i in range(3, 6)}
    assert all(r.gold == 1 and r.pred is not None for r in rows)


def test_the_example_task_files_read_offline() -> None:
    capitals = EvalConfig(**task_file_values(EXAMPLES / "capitals.yaml"))
    first = read_dataset(capitals, lambda *args, **kwargs: None).samples[0]
    assert first.prompt == ("Question: What is the capital of China?\nAnswer: Beijing\n\n"
                            "Question: What is the capital of India?\nAnswer: New Delhi\n\n"
                            "Question: What is the capital of Finland?\nAnswer: Helsinki\n\n"
                            "Question: What is the capital of France?\nAnswer:")
    assert capitals.stop == ["\n"] and capitals.metrics == ["exact_match_strict"]
    assert capitals.extract == STRIP_PATTERN
    science = EvalConfig(**task_file_values(EXAMPLES / "science_mc.yaml"))
    dataset = read_dataset(science, lambda *args, **kwargs: None)
    sample = dataset.samples[0]
    assert sample.choices == ["oxygen", "carbon dioxide", "nitrogen", "helium"]
    assert sample.gold == 1
    assert sample.prompt.endswith("\n\nQuestion: Which gas do plants take in from the air "
                                  "to make food?\nAnswer:")
    assert len(dataset.samples) == 20


def refused(tmp_path: Path, capsys: pytest.CaptureFixture, text: str) -> str:
    """Run a task file that must be refused: exit 2, one line, nothing written."""
    sums(tmp_path).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["--no-ui", "-m", str(DEMO_MODEL), "--task-file", str(tmp_path / "sums.yaml"),
               "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1
    return err.removeprefix("tui-eval: error: ")


def test_unsupported_keys_are_named_in_one_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    err = refused(tmp_path, capsys, GENERATION_TASK + "dataset_kwargs:\n  trust: true\n"
                  "process_results: x\n")
    assert err.startswith(f"{tmp_path / 'sums.yaml'}: keys tui-eval does not support: "
                          "dataset_kwargs (line 21), process_results (line 23)")


def test_a_function_reference_is_refused_by_name(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    err = refused(tmp_path, capsys, GENERATION_TASK.replace(
        'doc_to_text: "{{prompt}}"', "doc_to_text: !function utils.doc_to_text"))
    assert err.startswith(f"{tmp_path / 'sums.yaml'}:6: doc_to_text: !function "
                          "utils.doc_to_text is Python code")


def test_a_missing_split_names_the_key_and_where_it_looked(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = refused(tmp_path, capsys, GENERATION_TASK.replace("test_split: test",
                                                            "test_split: validation"))
    assert err.startswith(f"{tmp_path / 'sums.yaml'}:4: test_split: no file for split "
                          f"'validation' under {tmp_path}")


def test_a_missing_field_names_the_record(tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    err = refused(tmp_path, capsys, GENERATION_TASK.replace("{{prompt}}", "{{question}}"))
    assert err == (f"{tmp_path / 'sums' / 'train.jsonl'}:1: prompt_template uses a missing "
                   "field ('question' is undefined) (a few-shot example)")


def test_a_bad_template_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = refused(tmp_path, capsys, GENERATION_TASK.replace("{{prompt}}", "{{prompt}"))
    assert err == (f"{tmp_path / 'sums.yaml'}:6: doc_to_text: invalid Jinja2 template "
                   "(line 1): unexpected '}'")


def test_metric_options_and_output_types_it_cannot_honour(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = refused(tmp_path, capsys, GENERATION_TASK.replace(
        "    higher_is_better: true", "    higher_is_better: true\n    ignore_case: true"))
    assert "metric_list: exact_match: ignore_case: True is not supported" in err
    err = refused(tmp_path, capsys, GENERATION_TASK.replace("generate_until", "loglikelihood"))
    assert "output_type: 'loglikelihood' is not supported" in err


FILTER = """\
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "#### (\\\\d+)"
{select}      - function: take_first
"""


def test_a_regex_filter_becomes_the_extract_spec(tmp_path: Path) -> None:
    task = sums(tmp_path)
    task.write_text(GENERATION_TASK + FILTER.format(select=""), encoding="utf-8")
    assert task_file_values(task)["extract"] == r"(?s)^.*?(?:#### (\d+))"  # the first match
    task.write_text(GENERATION_TASK + FILTER.format(select="        group_select: -1\n"),
                    encoding="utf-8")
    assert task_file_values(task)["extract"] == r"#### (\d+)"  # the last, as extract takes
    task.write_text(GENERATION_TASK + FILTER.format(select="") + FILTER.format(select="")
                    .replace("filter_list:\n", "").replace("strict", "loose"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="2 pipelines \\(strict, loose\\)"):
        task_file_values(task)


def test_exact_match_is_lm_evals_and_remove_whitespace_strips(tmp_path: Path) -> None:
    """lm-eval's exact_match compares the text as it is (' Paris' is not 'Paris'); its
    remove_whitespace filter strips the output before it is scored."""
    task = sums(tmp_path)
    assert task_file_values(task)["metrics"] == ["exact_match_strict"]
    assert strict(" Paris", "Paris") == 0.0 and strict("paris", "Paris") == 0.0
    task.write_text(GENERATION_TASK + "filter_list:\n  - name: remove_whitespace\n    filter:\n"
                    "      - function: remove_whitespace\n      - function: take_first\n",
                    encoding="utf-8")
    spec = task_file_values(task)["extract"]
    assert extract_answer(" New Delhi \n", spec) == "New Delhi"
    assert extract_answer("", spec) == "" and extract_answer(" a\nb", spec) == "a\nb"
    assert strict(extract_answer(" Paris", spec), "Paris") == 1.0
    task.write_text(GENERATION_TASK + FILTER.format(select="").replace(
        "      - function: take_first", "      - function: remove_whitespace"),
        encoding="utf-8")
    with pytest.raises(ConfigError, match="'remove_whitespace' is not supported"):
        task_file_values(task)


def test_include_merges_the_base_file(tmp_path: Path) -> None:
    sums(tmp_path)
    (tmp_path / "derived.yaml").write_text("include: sums.yaml\nnum_fewshot: 1\n",
                                           encoding="utf-8")
    values = task_file_values(tmp_path / "derived.yaml")
    assert values["num_fewshot"] == 1 and values["prompt_template"] == "{{prompt}}"


def test_data_dir_needs_a_task_file(capsys: pytest.CaptureFixture) -> None:
    assert main(["--no-ui", "--data-dir", "x"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_without_until_generation_stops_at_the_fewshot_delimiter(tmp_path: Path) -> None:
    task = sums(tmp_path)
    task.write_text(GENERATION_TASK.replace("  until: []  # the demo tokenizer cannot build "
                                            "transformers' stop-string tables\n", ""),
                    encoding="utf-8")
    assert task_file_values(task)["stop"] == ["\n\n"]  # lm-eval's default


def test_a_spelled_out_space_delimiter_is_auto() -> None:
    """lm-eval drops a task's " " before a choice under --apply_chat_template: so does
    "auto", which is a space everywhere else (the few-shot examples keep theirs)."""
    assert task_file_values(EXAMPLES / "science_mc.yaml")["target_delimiter"] == "auto"
