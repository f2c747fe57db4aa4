"""Dataset loading: JSONL, JSON lists and CSV into samples with an id, a prompt and references."""

from __future__ import annotations

import csv
import io
import json
import math
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from tui_eval.errors import DataError

PROMPT_FIELDS = ("prompt", "question", "input", "instruction")
ANSWER_FIELDS = ("answer", "output", "target", "reference", "label")


@dataclass
class Sample:
    index: int  # position in the dataset, used to restore order after sorting
    id: str
    prompt: str  # rendered from the template, before any chat template
    references: list[str]


@dataclass
class Dataset:
    path: Path
    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" per skipped line


class BadRecord(Exception):
    """One record that cannot become a sample; the loader adds where it is. ``fix`` names the
    config key that cures it when the first record fails (a field under another name)."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


SKIP_FIX = 'on_bad_line = "skip" skips it'


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> tuple[int, str]:
    """(newlines before the bad byte, what is wrong) for a decoding error in ``data``."""
    before = data.count(b"\n", 0, exc.start)
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    return before, (f"not UTF-8 text (byte 0x{data[exc.start]:02x} in column {column}); "
                    "save the file as UTF-8")


def _utf8(path: Path, data: bytes) -> str:
    """A whole file's bytes decoded, or DataError naming its line that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is no text
    except UnicodeDecodeError as exc:
        before, reason = _not_utf8(data, exc)
        raise DataError(f"{path}:{before + 1}: {reason}") from None


def _records(path: Path) -> Iterator[tuple[str, int, Any]]:
    """Yield (location, line or item number, record); an unparsable record yields BadRecord."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_records(path)
        return
    if suffix not in (".json", ".csv", ".jsonl", ".ndjson"):
        raise DataError(f"{path}: unknown dataset format '{suffix}' "
                        "(use .jsonl, .json, .csv or .parquet)")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read dataset: {exc.strerror}") from None
    with handle:
        if suffix == ".json":
            try:
                items = json.loads(_utf8(path, handle.read()))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
            if not isinstance(items, list):
                raise DataError(f"{path}: a .json dataset must be a list of objects")
            for number, item in enumerate(items, start=1):
                yield f"{path}: item {number}", number, item
        elif suffix == ".csv":
            # decoded whole first, so that a bad byte is reported with its line
            text = io.StringIO(_utf8(path, handle.read()), newline="")
            try:
                reader = csv.DictReader(text)
                for row in reader:
                    yield f"{path}:{reader.line_num}", reader.line_num, row
            except csv.Error as exc:
                raise DataError(f"{path}: invalid CSV: {exc}") from None
        else:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:  # a bad line like any other: "skip" skips it
                    yield f"{path}:{number}", number, BadRecord(_not_utf8(raw, exc)[1])
                    continue
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{number}", number, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{path}:{number}", number, BadRecord(f"invalid JSON: {exc.msg}")


def _pick_field(record: dict[str, Any], configured: str | None, candidates: tuple[str, ...],
                what: str) -> str:
    if configured is not None:
        if configured not in record:
            raise BadRecord(f"missing {what} field '{configured}' ({_fields(record)})",
                            f"check {what}_field")
        return configured
    for name in candidates:
        if name in record:
            return name
    raise BadRecord(f"no {what} field (looked for {', '.join(candidates)}; "
                    f"{_fields(record)})", f'name it with {what}_field = "…" in the config')


def _fields(record: dict[str, Any]) -> str:
    names = list(record)
    shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
    return f"the record has {shown}" if names else "the record has no fields"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _number_text(value: int | float) -> str:
    """A JSON number as the text a person would write: 3.0 → "3", 2.50 → "2.5",
    1e21 → "1000000000000000000000", -0.0 → "0"."""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise BadRecord(f"answer must be a finite number, got {_shown(value)}")
    # repr is the shortest text that reads back as the same float: 0.1 stays "0.1".
    text = format(Decimal(repr(value)).normalize(), "f")
    return "0" if text == "-0" else text


def _as_references(value: Any) -> list[str]:
    """An answer field as its references: a string, a number or a list of strings and numbers.
    Nulls and blank strings in a list are dropped; nothing left is an "empty answer"."""
    values = value if isinstance(value, list) else [value]
    references: list[str] = []
    for item in values:
        if item is None:
            continue
        if isinstance(item, str):
            if item.strip():
                references.append(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            references.append(_number_text(item))
        else:  # true/false, an object, or a list inside the list
            raise BadRecord("answer must be a string, a number or a list of them, "
                            f"got {_shown(item)}")
    if not references:
        raise BadRecord("empty answer")
    return references


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _make_sample(record: Any, index: int, number: int, template: str, prompt_field: str | None,
                 answer_field: str | None, id_field: str | None) -> Sample:
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, dict):
        raise BadRecord(f"expected an object, got {type(record).__name__}")
    prompt_key = _pick_field(record, prompt_field, PROMPT_FIELDS, "prompt")
    answer_key = _pick_field(record, answer_field, ANSWER_FIELDS, "answer")
    prompt_value = record[prompt_key]
    if prompt_value is None or str(prompt_value).strip() == "":
        raise BadRecord(f"empty prompt field '{prompt_key}'")
    return Sample(index=index, id=_sample_id(record, id_field, number),
                  prompt=_render_prompt(record, template, prompt_value),
                  references=_as_references(record[answer_key]))


def _render_prompt(record: dict[str, Any], template: str, prompt_value: Any) -> str:
    """The template filled from the record's fields, ``{prompt}`` being the prompt field."""
    values = {k: "" if v is None else v for k, v in record.items()}
    values["prompt"] = prompt_value
    missing = _template_fields(template) - set(values)
    if missing:
        raise BadRecord(f"prompt_template uses missing field '{sorted(missing)[0]}'")
    try:
        return template.format_map(values)
    except (IndexError, KeyError, ValueError, AttributeError) as exc:
        raise BadRecord(f"prompt_template cannot be filled: {exc!r}") from None


def _sample_id(record: dict[str, Any], id_field: str | None, number: int) -> str:
    """The configured id field, else the record's 'id', else its line or item number."""
    if id_field is not None:
        if id_field not in record:
            raise BadRecord(f"missing id field '{id_field}' ({_fields(record)})",
                            "check id_field")
        return str(record[id_field])
    return str(record["id"]) if record.get("id") is not None else str(number)


def load_dataset(path: str | Path, *, prompt_template: str = "{prompt}",
                 prompt_field: str | None = None, answer_field: str | None = None,
                 id_field: str | None = None, on_bad_line: str = "error",
                 limit: int | None = None) -> Dataset:
    """Read every record into a Sample. A bad record raises DataError naming its file and
    line, unless ``on_bad_line == "skip"``, which records it in ``Dataset.skipped``."""
    path = Path(path)
    samples, skipped = _read_samples(
        path, prompt_template, on_bad_line, limit,
        lambda record, index, number: _make_sample(record, index, number, prompt_template,
                                                   prompt_field, answer_field, id_field))
    return Dataset(path=path, samples=samples, skipped=skipped)


S = TypeVar("S", bound="Sample | ChoiceSample")


def _read_samples(path: Path, prompt_template: str, on_bad_line: str, limit: int | None,
                  make: Callable[[Any, int, int], S]) -> tuple[list[S], list[str]]:
    """Every record made into a sample by ``make(record, index, line number)``; a bad
    record (or a duplicate id) raises DataError naming its file and line, unless
    ``on_bad_line == "skip"``, which lists it as skipped."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory; name a dataset file in it")
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found")
    try:
        _template_fields(prompt_template)  # a broken template fails before any reading
    except ValueError as exc:
        raise DataError(f"prompt_template: {exc}") from None
    samples: list[S] = []
    skipped: list[str] = []
    seen_ids: set[str] = set()
    for where, number, record in _records(path):
        if limit is not None and len(samples) >= limit:
            break
        try:
            sample = make(record, len(samples), number)
            if sample.id in seen_ids:
                raise BadRecord(f"duplicate id '{sample.id}'")
        except BadRecord as exc:
            if on_bad_line == "skip":
                skipped.append(f"{where}: {exc}")
                continue
            # the first record failing on a field is most likely named otherwise
            fix = exc.fix if exc.fix and not samples and not skipped else SKIP_FIX
            raise DataError(f"{where}: {exc}; {fix}") from None
        seen_ids.add(sample.id)
        samples.append(sample)
    if not samples:
        reason = "no usable samples" if skipped else "empty dataset"
        raise DataError(f"{path}: {reason}")
    return samples, skipped


# ── multiple-choice datasets ────────────────────────────────────────────────────────────

CHOICES_FIELD = "choices"


@dataclass
class ChoiceSample:
    index: int  # position in the dataset, used to restore order after sorting
    id: str
    prompt: str  # the context every choice is scored after, rendered from the template
    choices: list[str]
    gold: int  # index into choices


@dataclass
class ChoiceDataset:
    path: Path
    samples: list[ChoiceSample]
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" per skipped line


def _parquet_records(path: Path) -> Iterator[tuple[str, int, Any]]:
    """Rows of a Parquet file as dicts, read batch by batch so a large file is not held
    twice; pyarrow is an optional dependency."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading .parquet needs pyarrow: "
                        "pip install 'tui-eval[parquet]'") from None
    try:
        batches = pq.ParquetFile(path).iter_batches()
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield f"{path}: row {number}", number, row
    except (OSError, pa.ArrowException) as exc:  # not Parquet, truncated, unreadable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: invalid Parquet: {first}") from None


def _letter_index(text: str) -> int | None:
    """'A' -> 0, 'b' -> 1: a single Latin letter names a choice by position."""
    letter = text.strip().upper()
    if len(letter) == 1 and "A" <= letter <= "Z":
        return ord(letter) - ord("A")
    return None


def _as_choices(value: Any, name: str) -> list[str]:
    if not isinstance(value, list):
        raise BadRecord(f"'{name}' must be a list of choices, got {type(value).__name__}")
    if len(value) < 2:
        raise BadRecord(f"'{name}' needs at least two choices, got {len(value)}")
    choices: list[str] = []
    for number, choice in enumerate(value, start=1):
        # numbers are fine as choice text; bools and nested values are a malformed row
        if isinstance(choice, bool) or not isinstance(choice, (str, int, float)):
            raise BadRecord(f"choice {number} in '{name}' is not text: {choice!r}")
        if str(choice).strip() == "":  # lm-eval's acc_norm divides by the choice's length
            raise BadRecord(f"choice {number} in '{name}' is empty")
        choices.append(str(choice))
    return choices


def _gold_index(answer: Any, choices: list[str], name: str) -> int:
    """The answer as an index (int or digit string), a choice's exact text, or a letter.
    A choice's text wins over a letter or digit reading, so choices such as
    ['B', 'A'] with answer 'A' mean the second choice."""
    count = len(choices)
    if isinstance(answer, bool) or answer is None or isinstance(answer, (list, dict)):
        raise BadRecord(f"answer field '{name}' must be a choice index, a choice's text or a "
                        f"letter, got {answer!r}")
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    if isinstance(answer, int):
        if not 0 <= answer < count:
            raise BadRecord(f"answer index {answer} is out of range for {count} choices")
        return answer
    text = str(answer)
    matches = [i for i, choice in enumerate(choices) if choice == text]
    if len(matches) > 1:
        raise BadRecord(f"answer '{text}' matches more than one choice")
    if matches:
        return matches[0]
    letter = _letter_index(text)
    if letter is not None:
        if letter >= count:
            raise BadRecord(f"answer letter '{text.strip()}' is out of range for {count} "
                            "choices")
        return letter
    if text.strip().isdigit():
        index = int(text.strip())
        if index >= count:
            raise BadRecord(f"answer index {index} is out of range for {count} choices")
        return index
    raise BadRecord(f"answer '{text}' is not among the choices")


def _make_choice_sample(record: Any, index: int, number: int, template: str,
                        prompt_field: str | None, choices_field: str,
                        answer_field: str | None, id_field: str | None) -> ChoiceSample:
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, dict):
        raise BadRecord(f"expected an object, got {type(record).__name__}")
    if choices_field not in record:
        raise BadRecord(f"missing choices field '{choices_field}' ({_fields(record)})",
                        "check choices_field")
    choices = _as_choices(record[choices_field], choices_field)
    answer_key = _pick_field(record, answer_field, ANSWER_FIELDS, "answer")
    gold = _gold_index(record[answer_key], choices, answer_key)
    prompt_key = _pick_field(record, prompt_field, PROMPT_FIELDS, "prompt")
    prompt_value = record[prompt_key]
    # an empty context is allowed: the scorer conditions on the BOS token instead
    prompt = _render_prompt(record, template, "" if prompt_value is None else prompt_value)
    return ChoiceSample(index=index, id=_sample_id(record, id_field, number), prompt=prompt,
                        choices=choices, gold=gold)


def is_choice_dataset(path: str | Path, choices_field: str = CHOICES_FIELD) -> bool:
    """Whether the dataset's first record holds a list under ``choices_field``: such a
    dataset is scored by log-likelihood rather than by generation. A missing or unreadable
    file is not one; the loader reports it."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        for _, _, record in _records(path):
            return isinstance(record, dict) and isinstance(record.get(choices_field), list)
    except DataError:
        return False
    return False


def load_choice_dataset(path: str | Path, *, prompt_template: str = "{prompt}",
                        prompt_field: str | None = None, choices_field: str = CHOICES_FIELD,
                        answer_field: str | None = None, id_field: str | None = None,
                        on_bad_line: str = "error", limit: int | None = None) -> ChoiceDataset:
    """Read every record into a ChoiceSample: a context, a list of choices and the gold
    choice. A bad record raises DataError naming its file and line, unless
    ``on_bad_line == "skip"``, which records it in ``ChoiceDataset.skipped``."""
    path = Path(path)
    samples, skipped = _read_samples(
        path, prompt_template, on_bad_line, limit,
        lambda record, index, number: _make_choice_sample(
            record, index, number, prompt_template, prompt_field, choices_field, answer_field,
            id_field))
    return ChoiceDataset(path=path, samples=samples, skipped=skipped)
