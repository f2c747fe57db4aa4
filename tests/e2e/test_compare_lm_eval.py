"""scripts/compare_lm_eval.py's task-file mode without lm-eval: the offline copy of a task
file, the per-sample comparison of logged samples against tui-eval's rows, and the line it
stops with when lm-eval is missing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_lm_eval",
                                                  REPO / "scripts" / "compare_lm_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_offline_copy_names_the_split_files_tui_eval_reads(
        script: ModuleType, tmp_path: Path) -> None:
    name = script.offline_task_copy(REPO / "examples" / "tasks" / "science_mc.yaml", tmp_path)
    task = json.loads((tmp_path / "science_mc.yaml").read_text(encoding="utf-8"))
    folder = REPO / "examples" / "tasks" / "science_mc"
    assert name == "science_mc" and task["dataset_path"] == "json"
    assert task["dataset_kwargs"] == {"data_files": {"train": str(folder / "train.jsonl"),
                                                     "test": str(folder / "test.jsonl")}}
    assert task["doc_to_text"] == "Question: {{question}}\nAnswer:"


def lm_eval_row(context: str, answer: str, score: float) -> dict:
    return {"arguments": {"gen_args_0": {"arg_0": context, "arg_1": {}}},
            "filtered_resps": [answer], "metrics": ["exact_match"], "exact_match": score}


def our_row(sample_id: str, prompt: str, prediction: str, score: float) -> dict:
    return {"id": sample_id, "prompt": prompt, "prediction": prediction,
            "extracted": prediction.strip(), "scores": {"exact_match_strict": score}}


def test_a_disagreeing_verdict_is_a_row(script: ModuleType,
                                        capsys: pytest.CaptureFixture) -> None:
    theirs = [lm_eval_row("Q: a?\nA:", "Paris", 1.0), lm_eval_row("Q: b?\nA:", "Rome", 0.0)]
    ours = [our_row("t1", "Q: a?\nA:", " Paris", 1.0), our_row("t2", "Q: b?\nA:", " Rome", 1.0)]
    assert script.compare_task_file(theirs, ours, chat=False) == 1
    out = capsys.readouterr().out
    assert "identical prompts 2/2, identical answers 2/2, identical verdicts 1/2" in out
    assert "| t2 | same | 'Rome' | 'Rome' | exact_match 0 | exact_match 1 |" in out
    assert "| t1 |" not in out


def test_choices_compare_log_likelihoods_and_picks(script: ModuleType,
                                                    capsys: pytest.CaptureFixture) -> None:
    theirs = [{"arguments": {"gen_args_0": {"arg_0": "Sky?", "arg_1": " blue"}},
               "filtered_resps": [["-0.5", "False"], ["-2.0", "False"]],
               "acc": 1.0, "acc_norm": 1.0}]
    ours = [{"id": "c1", "prompt": "Sky?", "choices": ["blue", "red"],
             "logprobs": [-3.0, -2.0], "pred": 1, "pred_norm": 1, "gold": 0}]
    assert script.compare_task_file(theirs, ours, chat=False) == 1
    out = capsys.readouterr().out
    assert "max |Δ log-likelihood| 2.5e+00" in out
    assert "| c1 | same | '0: blue' | '1: red' | acc 1, acc_norm 1 | acc 0, acc_norm 0 |" in out


@pytest.mark.slow  # a subprocess
def test_missing_lm_eval_is_one_line(script: ModuleType) -> None:
    if importlib.util.find_spec("lm_eval") is not None:
        pytest.skip("lm-eval is installed in this environment")
    with pytest.raises(SystemExit, match="lm-eval is not installed there"):
        script.check_lm_eval(sys.executable)
