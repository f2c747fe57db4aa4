"""Dataset formats, field discovery, templates, ids and bad lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tui_eval.data import load_dataset
from tui_eval.errors import DataError


def test_jsonl_finds_fields_and_keeps_ids(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "question": "Q1", "answer": "A1"}\n\n'
                    '{"instruction": "Q2", "output": ["x", 3]}\n', encoding="utf-8")
    dataset = load_dataset(path)
    assert [(s.id, s.prompt, s.references) for s in dataset.samples] == [
        ("a", "Q1", ["A1"]), ("3", "Q2", ["x", "3"])]  # id falls back to the line number


def test_json_list_and_csv(tmp_path: Path) -> None:
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps([{"input": "x", "target": "y"}]), encoding="utf-8")
    assert load_dataset(json_path).samples[0].references == ["y"]
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("prompt,label\n\"1,2\",3\nfour,4\n", encoding="utf-8")
    samples = load_dataset(csv_path).samples
    assert [(s.id, s.prompt) for s in samples] == [("2", "1,2"), ("3", "four")]


def test_configured_fields_and_template(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "2+2", "ctx": "math", "gold": "4", "key": 7}\n', encoding="utf-8")
    sample = load_dataset(path, prompt_field="q", answer_field="gold", id_field="key",
                          prompt_template="[{ctx}] {prompt} =").samples[0]
    assert (sample.id, sample.prompt, sample.references) == ("7", "[math] 2+2 =", ["4"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a", "answer": "b"}\n{"prompt": "a", \n', r"d\.jsonl:2: invalid JSON"),
        ('{"prompt": "a", "answer": "b"}\n{"prompt": "c"}\n', r"d\.jsonl:2: no answer field"),
        ('{"answer": "b"}\n', r"d\.jsonl:1: no prompt field"),
        ('[1, 2]\n', r"d\.jsonl:1: expected an object"),
        ('{"prompt": "", "answer": "b"}\n', r"d\.jsonl:1: empty prompt"),
        ('{"id": 1, "prompt": "a", "answer": "b"}\n{"id": 1, "prompt": "c", "answer": "d"}\n',
         r"d\.jsonl:2: duplicate id '1'"),
        ("", r"d\.jsonl: empty dataset"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_dataset(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.jsonl", b'{"prompt": "a", "answer": "b"}\n{"prompt": "caf\xe9", "answer": "b"}\n',
         r"d\.jsonl:2: not UTF-8 text \(byte 0xe9 in column 16\); save the file as UTF-8; "
         'on_bad_line = "skip" skips it$'),
        ("d.csv", b"prompt,answer\na,b\ncaf\xe9,b\n", r"d\.csv:3: not UTF-8 text \(byte 0xe9 "),
        ("d.json", b'[{"prompt": "a", "answer": "b"},\n {"prompt": "\xff", "answer": "b"}]',
         r"d\.json:2: not UTF-8 text \(byte 0xff in column 14\)"),
    ],
)
def test_text_that_is_not_utf8_names_the_line(tmp_path: Path, name: str, content: bytes,
                                             message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_a_line_that_is_not_utf8_can_be_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "a", "answer": "b"}\n{"prompt": "\xe9", "answer": "b"}\n'
                     b'{"prompt": "c", "answer": "d"}\n')
    dataset = load_dataset(path, on_bad_line="skip")
    assert [s.prompt for s in dataset.samples] == ["a", "c"]
    assert dataset.skipped == [f"{path}:2: not UTF-8 text (byte 0xe9 in column 13); "
                               "save the file as UTF-8"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # the first record: the field is most likely named otherwise
        ('{"q": "a", "gold": "b"}\n', "d.jsonl:1: no prompt field (looked for prompt, question, "
         'input, instruction; the record has q, gold); name it with prompt_field = "…" in the '
         "config"),
        ('{"prompt": "a", "gold": "b"}\n', "d.jsonl:1: no answer field (looked for answer, "
         "output, target, reference, label; the record has prompt, gold); name it with "
         'answer_field = "…" in the config'),
        # a later line: a malformed line, which on_bad_line skips
        ('{"prompt": "a", "answer": "b"}\n{"prompt": "c"}\n', "d.jsonl:2: no answer field "
         "(looked for answer, output, target, reference, label; the record has prompt); "
         'on_bad_line = "skip" skips it'),
        ('{"prompt": "a", "answer": "b"}\nnot json\n', "d.jsonl:2: invalid JSON: Expecting "
         'value; on_bad_line = "skip" skips it'),
    ],
)
def test_a_bad_record_names_the_documented_fix(tmp_path: Path, content: str,
                                              message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as error:
        load_dataset(path)
    assert str(error.value) == f"{tmp_path}/{message}"


def test_a_configured_field_that_is_missing_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:1: missing prompt field 'q' \(the record has "
                       r"question, answer\); check prompt_field$"):
        load_dataset(path, prompt_field="q")


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.csv"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path, name: str) -> None:
    text = {"d.jsonl": '{"prompt": "a", "answer": "b"}\n{"prompt": "c", "answer": "d"}\n',
            "d.json": '[{"prompt": "a", "answer": "b"}, {"prompt": "c", "answer": "d"}]',
            "d.csv": "prompt,answer\na,b\nc,d\n"}[name]
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert [(s.prompt, s.references) for s in load_dataset(path).samples] == [
        ("a", ["b"]), ("c", ["d"])]


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r": is a directory; name a dataset file in it$"):
        load_dataset(tmp_path)


def test_template_with_missing_field_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "answer": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:1: prompt_template uses missing field 'ctx'"):
        load_dataset(path, prompt_template="{ctx}: {prompt}")


def test_skip_counts_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "answer": "b"}\nnot json\n{"prompt": "c"}\n'
                    '{"prompt": "d", "answer": "e"}\n', encoding="utf-8")
    dataset = load_dataset(path, on_bad_line="skip")
    assert [s.prompt for s in dataset.samples] == ["a", "d"]
    assert [line.split(": ")[0] for line in dataset.skipped] == [f"{path}:2", f"{path}:3"]


def test_limit_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(f'{{"prompt": "p{i}", "answer": "a"}}\n' for i in range(5)),
                    encoding="utf-8")
    assert len(load_dataset(path, limit=3).samples) == 3
    with pytest.raises(DataError, match="dataset file not found"):
        load_dataset(tmp_path / "nope.jsonl")
    other = tmp_path / "d.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="unknown dataset format"):
        load_dataset(other)


def test_json_numbers_become_their_canonical_text(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    answers = ["3.0", "2.50", "1e21", "-0.0", "0.1", "1E-7", "-12", "100.0", '"3.0"',
               '[1.0, "x", null, "", 2.25]']
    path.write_text("".join(f'{{"prompt": "p", "answer": {a}}}\n' for a in answers),
                    encoding="utf-8")
    assert [s.references for s in load_dataset(path).samples] == [
        ["3"], ["2.5"], ["1000000000000000000000"], ["0"], ["0.1"], ["0.0000001"], ["-12"],
        ["100"], ["3.0"], ["1", "x", "2.25"]]  # a string is kept as written


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("true", "answer must be a string, a number or a list of them, got true"),
        ("false", "answer must be a string, a number or a list of them, got false"),
        ('{"value": 3}', 'answer must be a string, a number or a list of them, got {"value": 3}'),
        ('["a", [1, 2]]', "answer must be a string, a number or a list of them, got \\[1, 2\\]"),
        ('["a", false]', "answer must be a string, a number or a list of them, got false"),
        ("NaN", "answer must be a finite number, got NaN"),
        ("[]", "empty answer"),
        ('["", null]', "empty answer"),
        ("null", "empty answer"),
    ],
)
def test_bad_answers_name_file_and_line(tmp_path: Path, answer: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(f'{{"prompt": "p", "answer": "a"}}\n{{"prompt": "p", "answer": {answer}}}\n',
                    encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: {message}; "
                       'on_bad_line = "skip" skips it$'):
        load_dataset(path)
