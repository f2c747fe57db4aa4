"""Dataset loading: JSONL, JSON lists and CSV into samples with an id, a prompt and references."""

from __future__ import annotations

import csv
import json
import math
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

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
    """One record that cannot become a sample; the loader adds where it is."""


def _records(path: Path) -> Iterator[tuple[str, int, Any]]:
    """Yield (location, line or item number, record); an unparsable record yields BadRecord."""
    suffix = path.suffix.lower()
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"{path}: cannot read dataset: {exc.strerror}") from None
    with handle:
        if suffix == ".json":
            try:
                items = json.load(handle)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
            except UnicodeDecodeError:
                raise DataError(f"{path}: not UTF-8 text") from None
            if not isinstance(items, list):
                raise DataError(f"{path}: a .json dataset must be a list of objects")
            for number, item in enumerate(items, start=1):
                yield f"{path}: item {number}", number, item
        elif suffix == ".csv":
            try:
                reader = csv.DictReader(handle)
                for row in reader:
                    yield f"{path}:{reader.line_num}", reader.line_num, row
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: invalid CSV: {exc}") from None
        elif suffix in (".jsonl", ".ndjson"):
            try:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield f"{path}:{number}", number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield f"{path}:{number}", number, BadRecord(f"invalid JSON: {exc.msg}")
            except UnicodeDecodeError:
                raise DataError(f"{path}: not UTF-8 text") from None
        else:
            raise DataError(f"{path}: unknown dataset format '{suffix}' "
                            "(use .jsonl, .json or .csv)")


def _pick_field(record: dict[str, Any], configured: str | None, candidates: tuple[str, ...],
                what: str) -> str:
    if configured is not None:
        if configured not in record:
            raise BadRecord(f"missing {what} field '{configured}'")
        return configured
    for name in candidates:
        if name in record:
            return name
    raise BadRecord(f"no {what} field (looked for {', '.join(candidates)})")


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
    values = {k: "" if v is None else v for k, v in record.items()}
    values["prompt"] = prompt_value
    missing = _template_fields(template) - set(values)
    if missing:
        raise BadRecord(f"prompt_template uses missing field '{sorted(missing)[0]}'")
    try:
        prompt = template.format_map(values)
    except (IndexError, KeyError, ValueError, AttributeError) as exc:
        raise BadRecord(f"prompt_template cannot be filled: {exc!r}") from None
    if id_field is not None:
        if id_field not in record:
            raise BadRecord(f"missing id field '{id_field}'")
        sample_id = str(record[id_field])
    else:
        sample_id = str(record["id"]) if record.get("id") is not None else str(number)
    return Sample(index=index, id=sample_id, prompt=prompt,
                  references=_as_references(record[answer_key]))


def load_dataset(path: str | Path, *, prompt_template: str = "{prompt}",
                 prompt_field: str | None = None, answer_field: str | None = None,
                 id_field: str | None = None, on_bad_line: str = "error",
                 limit: int | None = None) -> Dataset:
    """Read every record into a Sample. A bad record raises DataError naming its file and
    line, unless ``on_bad_line == "skip"``, which records it in ``Dataset.skipped``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found")
    try:
        _template_fields(prompt_template)  # a broken template fails before any reading
    except ValueError as exc:
        raise DataError(f"prompt_template: {exc}") from None
    samples: list[Sample] = []
    skipped: list[str] = []
    seen_ids: set[str] = set()
    for where, number, record in _records(path):
        if limit is not None and len(samples) >= limit:
            break
        try:
            sample = _make_sample(record, len(samples), number, prompt_template, prompt_field,
                                  answer_field, id_field)
            if sample.id in seen_ids:
                raise BadRecord(f"duplicate id '{sample.id}'")
        except BadRecord as exc:
            if on_bad_line == "skip":
                skipped.append(f"{where}: {exc}")
                continue
            raise DataError(f"{where}: {exc}") from None
        seen_ids.add(sample.id)
        samples.append(sample)
    if not samples:
        reason = "no usable samples" if skipped else "empty dataset"
        raise DataError(f"{path}: {reason}")
    return Dataset(path=path, samples=samples, skipped=skipped)
