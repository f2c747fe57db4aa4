"""Multiple-choice datasets: answers as index, text or letter, bad rows, detection, Parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import write_jsonl
from tui_eval.data import is_choice_dataset, load_choice_dataset
from tui_eval.errors import DataError

CHOICES = ["Paris", "Lyon", "Nice", "Lille"]


def test_answers_as_index_text_letter_and_digit_string(tmp_path: Path) -> None:
    rows = [
        {"id": "i", "question": "Capital?", "choices": CHOICES, "answer": 2},
        {"id": "t", "question": "Capital?", "choices": CHOICES, "answer": "Lille"},
        {"id": "l", "question": "Capital?", "choices": CHOICES, "answer": "B"},
        {"id": "s", "question": "Capital?", "choices": CHOICES, "answer": " c "},
        {"id": "d", "question": "Capital?", "choices": CHOICES, "label": "3"},
        {"id": "f", "question": "Capital?", "choices": CHOICES, "answer": 1.0},
        # a choice's own text wins over reading the answer as a letter
        {"id": "x", "question": "Pick", "choices": ["B", "A"], "answer": "A"},
        {"id": "n", "question": "Sum?", "choices": [13, 14.5, "15"], "answer": "14.5"},
    ]
    samples = load_choice_dataset(write_jsonl(tmp_path / "mc.jsonl", rows)).samples
    assert [(s.id, s.gold) for s in samples] == [
        ("i", 2), ("t", 3), ("l", 1), ("s", 2), ("d", 3), ("f", 1), ("x", 1), ("n", 1)]
    assert samples[0].choices == CHOICES and samples[0].prompt == "Capital?"
    assert samples[-1].choices == ["13", "14.5", "15"]
    assert [s.index for s in samples] == list(range(len(rows)))


def test_configured_fields_template_and_empty_context(tmp_path: Path) -> None:
    rows = [{"key": 7, "stem": "2+2", "opts": ["3", "4"], "gold": 1, "topic": "math"},
            {"key": 8, "stem": "", "opts": ["3", "4"], "gold": 0, "topic": "math"}]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    samples = load_choice_dataset(path, prompt_field="stem", choices_field="opts",
                                  answer_field="gold", id_field="key",
                                  prompt_template="[{topic}] {prompt} =").samples
    assert [(s.id, s.prompt, s.gold) for s in samples] == [("7", "[math] 2+2 =", 1),
                                                           ("8", "[math]  =", 0)]
    bare = load_choice_dataset(path, prompt_field="stem", choices_field="opts",
                               answer_field="gold").samples
    assert bare[1].prompt == ""  # scored after the BOS token, as lm-eval does


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "q", "choices": CHOICES, "answer": 4},
         "answer index 4 is out of range for 4 choices"),
        ({"prompt": "q", "choices": CHOICES, "answer": "Rome"},
         "answer 'Rome' is not among the choices"),
        ({"prompt": "q", "choices": CHOICES, "answer": "E"},
         "answer letter 'E' is out of range for 4 choices"),
        ({"prompt": "q", "choices": CHOICES, "answer": "7"},
         "answer index 7 is out of range for 4 choices"),
        ({"prompt": "q", "choices": CHOICES, "answer": -1},
         "answer index -1 is out of range"),
        ({"prompt": "q", "choices": CHOICES, "answer": True}, "must be a choice index"),
        ({"prompt": "q", "choices": CHOICES, "answer": [0, 1]}, "must be a choice index"),
        ({"prompt": "q", "choices": ["Paris"], "answer": 0},
         "'choices' needs at least two choices, got 1"),
        ({"prompt": "q", "choices": ["Paris", " "], "answer": 0}, "choice 2 in 'choices' is empty"),
        ({"prompt": "q", "choices": ["Paris", None], "answer": 0},
         "choice 2 in 'choices' is not text"),
        ({"prompt": "q", "choices": "Paris, Lyon", "answer": 0},
         "'choices' must be a list of choices, got str"),
        ({"prompt": "q", "answer": 0}, "missing choices field 'choices'"),
        ({"prompt": "q", "choices": CHOICES}, "no answer field"),
        ({"choices": CHOICES, "answer": 0}, "no prompt field"),
        ({"prompt": "q", "choices": ["a", "a"], "answer": "a"},
         "answer 'a' matches more than one choice"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: dict, message: str) -> None:
    good = {"prompt": "ok", "choices": CHOICES, "answer": 0}
    path = write_jsonl(tmp_path / "mc.jsonl", [good, row])
    with pytest.raises(DataError) as caught:
        load_choice_dataset(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:2: ") and message in text
    assert "\n" not in text


def test_bad_rows_are_skipped_when_asked(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "choices": CHOICES, "answer": 0},
            {"prompt": "b", "choices": CHOICES, "answer": 9},
            {"prompt": "c", "choices": ["x"], "answer": 0},
            {"prompt": "d", "choices": CHOICES, "answer": "D"}]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    dataset = load_choice_dataset(path, on_bad_line="skip")
    assert [(s.prompt, s.gold) for s in dataset.samples] == [("a", 0), ("d", 3)]
    assert [line.split(": ")[0] for line in dataset.skipped] == [f"{path}:2", f"{path}:3"]
    with pytest.raises(DataError, match="no usable samples"):
        load_choice_dataset(write_jsonl(tmp_path / "bad.jsonl", rows[1:3]), on_bad_line="skip")


def test_detection_looks_at_the_first_record(tmp_path: Path) -> None:
    choice = write_jsonl(tmp_path / "mc.jsonl", [{"prompt": "q", "choices": CHOICES, "answer": 0}])
    plain = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "q", "answer": "a"}])
    other = write_jsonl(tmp_path / "opts.jsonl", [{"prompt": "q", "opts": ["a", "b"],
                                                    "answer": 0}])
    assert is_choice_dataset(choice)
    assert not is_choice_dataset(plain)
    assert not is_choice_dataset(other)
    assert is_choice_dataset(other, choices_field="opts")
    assert not is_choice_dataset(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n", encoding="utf-8")
    assert not is_choice_dataset(broken)
    as_json = tmp_path / "mc.json"
    as_json.write_text(json.dumps([{"prompt": "q", "choices": ["a", "b"], "answer": 1}]),
                       encoding="utf-8")
    assert is_choice_dataset(as_json)
    assert load_choice_dataset(as_json).samples[0].gold == 1


def test_demo_choice_set_loads() -> None:
    demo = Path(__file__).resolve().parents[2] / "tui_eval" / "demo" / "arithmetic_choice.jsonl"
    assert is_choice_dataset(demo)
    samples = load_choice_dataset(demo).samples
    assert all(len(s.choices) == 4 and s.prompt.endswith("=") for s in samples)
    assert len({s.gold for s in samples}) == 4  # the right answer is not always in one place


def test_parquet_round_trip(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"id": "a", "prompt": "Capital?", "choices": CHOICES, "answer": 0},
            {"id": "b", "prompt": "2+2=", "choices": ["3", "4", "5"], "answer": 1}]
    path = tmp_path / "mc.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1)  # two batches
    assert is_choice_dataset(path)
    samples = load_choice_dataset(path).samples
    assert [(s.id, s.prompt, s.choices, s.gold) for s in samples] == [
        ("a", "Capital?", CHOICES, 0), ("b", "2+2=", ["3", "4", "5"], 1)]
    plain = tmp_path / "qa.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "answer": "a"}]), plain)
    from tui_eval.data import load_dataset

    assert not is_choice_dataset(plain)
    assert load_dataset(plain).samples[0].references == ["a"]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows + [{"id": "c", "prompt": "q",
                                                 "choices": ["x"], "answer": 0}]), bad)
    with pytest.raises(DataError, match=r"bad\.parquet: row 3: 'choices' needs at least two"):
        load_choice_dataset(bad)


def test_not_parquet_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"fake\.parquet: invalid Parquet: ") as caught:
        load_choice_dataset(path)
    assert "\n" not in str(caught.value)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "mc.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError) as caught:
        load_choice_dataset(path)
    assert str(caught.value) == (f"{path}: reading .parquet needs pyarrow: "
                                 "pip install 'tui-eval[parquet]'")
