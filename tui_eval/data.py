"""Dataset loading: JSONL, JSON lists and CSV into samples with an id, a prompt and references.

The prompt is built by ``tui_eval.prompts``: the template over the record's fields, after
the few-shot examples when ``num_fewshot`` asks for them."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from tui_eval.errors import DataError
from tui_eval.prompts import (
    PromptStyle,
    Shot,
    ShotSampler,
    TemplateError,
    chat_turns,
    check_template,
    fill_format,
    is_jinja,
    plain_context,
    render,
    render_value,
)

PROMPT_FIELDS = ("prompt", "question", "input", "instruction")
ANSWER_FIELDS = ("answer", "output", "target", "reference", "label")


@dataclass
class Sample:
    index: int  # position in the dataset, used to restore order after sorting
    id: str
    prompt: str  # rendered from the template, after any few-shot examples
    references: list[str]
    # the prompt as chat turns (system, few-shot user/assistant pairs, the record), for a
    # chat template; None: one user turn holding ``prompt``
    turns: list[dict[str, str]] | None = None


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


@dataclass(frozen=True)
class PromptSpec:
    """How a record becomes a prompt and a target: the config's prompt keys."""

    prompt_template: str = "{prompt}"
    target_template: str | None = None  # unset: the answer field
    choices_template: str | None = None  # choice tasks; unset: the choices field
    prompt_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None
    choices_field: str = "choices"
    num_fewshot: int = 0
    fewshot_file: str | None = None  # unset: examples from the data itself
    fewshot_seed: int | None = None  # unset: the first num_fewshot examples for every record
    style: PromptStyle = PromptStyle()

    def check(self) -> None:
        """Every template parses: DataError naming the key, before any record is read."""
        for key in ("prompt_template", "target_template", "choices_template"):
            template = getattr(self, key)
            if template is None:
                continue
            try:  # the target and choices templates are Jinja2 whatever their marks
                check_template(template, jinja=key != "prompt_template" or None)
            except TemplateError as exc:
                raise DataError(f"{key}: {exc}") from None


def _filled(key: str, template: str, record: dict[str, Any]) -> str:
    try:
        return render(template, record)
    except TemplateError as exc:
        raise BadRecord(f"{key} {exc}", _fields(record)) from None


def _filled_value(key: str, template: str, record: dict[str, Any]) -> Any:
    try:
        return render_value(template, record)
    except TemplateError as exc:
        raise BadRecord(f"{key} {exc}", _fields(record)) from None


def _record_text(record: dict[str, Any], spec: PromptSpec, *, required: bool) -> str:
    """The record's own prompt text, before any few-shot examples. A Jinja2 template names
    its fields itself; the older ``{prompt}`` form reads the prompt field."""
    template = spec.prompt_template
    if is_jinja(template):
        values = dict(record)
        if spec.prompt_field is not None or any(name in record for name in PROMPT_FIELDS):
            values.setdefault("prompt", record[_pick_field(record, spec.prompt_field,
                                                           PROMPT_FIELDS, "prompt")])
        text = _filled("prompt_template", template, values)
        if required and not text.strip():
            raise BadRecord("empty prompt: prompt_template renders to blank text")
        return text
    key = _pick_field(record, spec.prompt_field, PROMPT_FIELDS, "prompt")
    value = record[key]
    if required and (value is None or str(value).strip() == ""):
        raise BadRecord(f"empty prompt field '{key}'")
    values = {k: "" if v is None else v for k, v in record.items()}
    values["prompt"] = "" if value is None else value
    try:
        return fill_format(template, values)
    except TemplateError as exc:
        raise BadRecord(f"prompt_template {exc}", _fields(record)) from None


def _record_references(record: dict[str, Any], spec: PromptSpec) -> list[str]:
    if spec.target_template is not None:
        return _as_references(_filled_value("target_template", spec.target_template, record))
    return _as_references(record[_pick_field(record, spec.answer_field, ANSWER_FIELDS,
                                             "answer")])


def _make_sample(record: Any, index: int, number: int, spec: PromptSpec) -> Sample:
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, dict):
        raise BadRecord(f"expected an object, got {type(record).__name__}")
    prompt = _record_text(record, spec, required=True)
    return Sample(index=index, id=_sample_id(record, spec.id_field, number), prompt=prompt,
                  references=_record_references(record, spec))


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
                 limit: int | None = None, spec: PromptSpec | None = None) -> Dataset:
    """Read every record into a Sample. A bad record raises DataError naming its file and
    line, unless ``on_bad_line == "skip"``, which records it in ``Dataset.skipped``.
    ``spec``, when given, replaces the template and field arguments."""
    path = Path(path)
    spec = spec or PromptSpec(prompt_template=prompt_template, prompt_field=prompt_field,
                              answer_field=answer_field, id_field=id_field)
    samples, skipped = _read_samples(
        path, spec, on_bad_line, limit, _make_sample, lambda sample: sample.references[0])
    return Dataset(path=path, samples=samples, skipped=skipped)


S = TypeVar("S", bound="Sample | ChoiceSample")
Make = Callable[[Any, int, int, PromptSpec], S]


def _read_samples(path: Path, spec: PromptSpec, on_bad_line: str, limit: int | None,
                  make: Make[S], target_of: Callable[[S], str]) -> tuple[list[S], list[str]]:
    """Every record made into a sample by ``make(record, index, line number, spec)``,
    with its few-shot examples in front; a bad record (or a duplicate id) raises DataError
    naming its file and line, unless ``on_bad_line == "skip"``, which lists it as
    skipped. Everything is checked here, before a run writes anything."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory; name a dataset file in it")
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found")
    spec.check()  # a broken template fails before any reading
    sampler = _shot_sampler(path, spec, make, target_of)
    samples: list[S] = []
    skipped: list[str] = []
    seen_ids: set[str] = set()
    for where, number, record in _records(path):
        if limit is not None and len(samples) >= limit:
            break
        try:
            sample = make(record, len(samples), number, spec)
            if sample.id in seen_ids:
                raise BadRecord(f"duplicate id '{sample.id}'")
        except BadRecord as exc:
            if on_bad_line == "skip":
                skipped.append(f"{where}: {exc}")
                continue
            # the first record failing on a field is most likely named otherwise
            fix = exc.fix if exc.fix and not samples and not skipped else SKIP_FIX
            raise DataError(f"{where}: {exc}; {fix}") from None
        shots = sampler.shots_for(record) if sampler is not None else []
        sample.turns = chat_turns(shots, sample.prompt, spec.style)
        sample.prompt = plain_context(shots, sample.prompt, spec.style)
        seen_ids.add(sample.id)
        samples.append(sample)
    if not samples:
        reason = "no usable samples" if skipped else "empty dataset"
        raise DataError(f"{path}: {reason}")
    return samples, skipped


def _shot_sampler(path: Path, spec: PromptSpec, make: Make[S],
                  target_of: Callable[[S], str]) -> ShotSampler | None:
    """The few-shot examples' pool, each rendered as the records are: from fewshot_file,
    or from the data itself (then a record is never its own example)."""
    if spec.num_fewshot == 0:
        return None
    source = Path(spec.fewshot_file) if spec.fewshot_file is not None else path
    if not source.is_file():
        raise DataError(f"{source}: fewshot_file not found")
    same_data = source.resolve() == path.resolve()
    pool_spec = dataclasses.replace(spec, id_field=None)  # examples need no id
    pool: list[tuple[dict[str, Any], Shot]] = []
    for where, number, record in _records(source):
        try:
            sample = make(record, len(pool), number, pool_spec)
        except BadRecord as exc:
            if same_data:  # the record itself is reported (or skipped) as a record
                continue
            raise DataError(f"{where}: {exc} (a few-shot example)") from None
        pool.append((record, Shot(text=sample.prompt, target=target_of(sample))))
    sampler = ShotSampler(pool, spec.num_fewshot, spec.fewshot_seed, same_data)
    if len(pool) < sampler.needed():
        more = " besides the record itself" if same_data else ""
        raise DataError(f"{source}: num_fewshot {spec.num_fewshot} needs "
                        f"{spec.num_fewshot} examples{more}, the file has {len(pool)}")
    return sampler


# ── multiple-choice datasets ────────────────────────────────────────────────────────────

CHOICES_FIELD = "choices"


@dataclass
class ChoiceSample:
    index: int  # position in the dataset, used to restore order after sorting
    id: str
    prompt: str  # the context every choice is scored after, rendered from the template
    choices: list[str]
    gold: int  # index into choices
    turns: list[dict[str, str]] | None = None  # as Sample.turns


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


def _make_choice_sample(record: Any, index: int, number: int,
                        spec: PromptSpec) -> ChoiceSample:
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, dict):
        raise BadRecord(f"expected an object, got {type(record).__name__}")
    if spec.choices_template is not None:
        choices = _as_choices(_filled_value("choices_template", spec.choices_template, record),
                              "choices_template")
    elif spec.choices_field not in record:
        raise BadRecord(f"missing choices field '{spec.choices_field}' ({_fields(record)})",
                        "check choices_field")
    else:
        choices = _as_choices(record[spec.choices_field], spec.choices_field)
    if spec.target_template is not None:
        gold = _gold_index(_filled_value("target_template", spec.target_template, record),
                           choices, "target_template")
    else:
        answer_key = _pick_field(record, spec.answer_field, ANSWER_FIELDS, "answer")
        gold = _gold_index(record[answer_key], choices, answer_key)
    # an empty context is allowed: the scorer conditions on the BOS token instead
    prompt = _record_text(record, spec, required=False)
    return ChoiceSample(index=index, id=_sample_id(record, spec.id_field, number), prompt=prompt,
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


def answers_by_index(path: str | Path, choices_field: str = CHOICES_FIELD,
                     answer_field: str | None = None) -> bool:
    """Whether the first record holds a list of choices and an integer answer: an index
    into them, which a generation task would score text against."""
    if not is_choice_dataset(path, choices_field):
        return False
    for _, _, record in _records(Path(path)):
        names = (answer_field,) if answer_field else ANSWER_FIELDS
        answer = next((record[name] for name in names if name in record), None)
        return isinstance(answer, int) and not isinstance(answer, bool)
    return False


def load_choice_dataset(path: str | Path, *, prompt_template: str = "{prompt}",
                        prompt_field: str | None = None, choices_field: str = CHOICES_FIELD,
                        answer_field: str | None = None, id_field: str | None = None,
                        on_bad_line: str = "error", limit: int | None = None,
                        spec: PromptSpec | None = None) -> ChoiceDataset:
    """Read every record into a ChoiceSample: a context, a list of choices and the gold
    choice. A bad record raises DataError naming its file and line, unless
    ``on_bad_line == "skip"``, which records it in ``ChoiceDataset.skipped``. ``spec``,
    when given, replaces the template and field arguments."""
    path = Path(path)
    spec = spec or PromptSpec(prompt_template=prompt_template, prompt_field=prompt_field,
                              choices_field=choices_field, answer_field=answer_field,
                              id_field=id_field)
    samples, skipped = _read_samples(path, spec, on_bad_line, limit, _make_choice_sample,
                                     lambda sample: sample.choices[sample.gold])
    return ChoiceDataset(path=path, samples=samples, skipped=skipped)
