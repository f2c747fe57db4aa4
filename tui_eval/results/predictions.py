"""predictions.jsonl: one row per sample, appended as each batch ends, and in a run of
several processes each rank's own predictions.rank-N.jsonl, merged into it when the run
ends (or, after a stop, before a resume). Only the tail of a file may be damaged: a line
cut short by a kill is dropped and its sample generated again."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tui_eval.errors import UsageError
from tui_eval.results.json_io import from_known_fields
from tui_eval.results.names import PREDICTIONS_FILE, RANK_PREDICTIONS_GLOB
from tui_eval.results.tail import LineTail


def rank_prediction_paths(run_dir: Path) -> list[Path]:
    """The ranks' prediction files a run of several processes left in ``run_dir``."""
    return sorted(run_dir.glob(RANK_PREDICTIONS_GLOB))


@dataclass
class PredictionRow:
    """One sample's line in predictions.jsonl.

    A choice task's row holds the choice picked by log-likelihood as ``prediction``, the
    gold choice as ``reference``, acc and acc_norm as ``scores``, and the fields below
    ``error``; a generation row has none of those (they are left out of its line)."""

    index: int  # position in the dataset
    id: str
    prompt: str = ""
    # the prompt as the model saw it, wrapped in the chat template; None (and left out of
    # the line) when no chat template was applied
    rendered: str | None = None
    prediction: str | None = None  # None when the sample failed
    # the answer cut out of the prediction and scored; None without an extract spec
    extracted: str | None = None
    reference: str | list[str] = ""  # one reference, or the list of acceptable ones
    scores: dict[str, float] = field(default_factory=dict)
    new_tokens: int = 0
    error: str | None = None
    truncated: bool = False  # the prompt was cut from the left to fit the context
    # the prompt's chat turns (few-shot examples, a system prompt) when it has them: what a
    # chat template wrapped; left out of the line when None
    turns: list[dict[str, str]] | None = None
    # how many of its tokens were cut: ``prompt`` is the whole text, the model saw it
    # without them
    truncated_tokens: int = 0
    # choice tasks only
    choices: list[str] | None = None
    logprobs: list[float | None] | None = None  # per choice: summed log-probability
    is_greedy: list[bool | None] | None = None  # per choice: greedy decoding gives it
    pred: int | None = None  # the choice with the highest log-likelihood (None: failed)
    pred_norm: int | None = None  # the highest per character of the choice
    gold: int | None = None  # the expected choice

    @property
    def references(self) -> list[str]:
        return list(self.reference) if isinstance(self.reference, list) else [self.reference]

    @property
    def is_choice(self) -> bool:
        return self.gold is not None

    def passed(self, metric: str | None = None) -> bool:
        """The sample's verdict: right when ``metric`` (the run's first metric unless named)
        scored 1, wrong when it scored less or the sample failed."""
        if self.error is not None or self.prediction is None:
            return False
        name = metric if metric is not None else next(iter(self.scores), None)
        return name is not None and self.scores.get(name, 0.0) >= 1.0

    def matches(self, text: str) -> bool:
        """Whether ``text`` appears in the id, the prompt or the prediction (any case)."""
        needle = text.casefold()
        return any(needle in field.casefold()
                   for field in (self.id, self.prompt, self.prediction or ""))

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if self.rendered is None:
            del data["rendered"]
        if self.turns is None:
            del data["turns"]
        if not self.is_choice:
            for name in CHOICE_ROW_FIELDS:
                del data[name]
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionRow | None:
        """None for a line that is not a prediction row (no int index or no id)."""
        if not isinstance(data.get("index"), int) or "id" not in data:
            return None
        row = from_known_fields(cls, data)
        row.id = str(row.id)
        row.scores = dict(row.scores or {})
        return row


CHOICE_ROW_FIELDS = ("choices", "logprobs", "is_greedy", "pred", "pred_norm", "gold")


def parse_prediction_line(line: bytes | str) -> PredictionRow | None:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return PredictionRow.from_dict(data) if isinstance(data, dict) else None


def read_predictions(path: Path) -> list[PredictionRow]:
    """Every row of a whole predictions.jsonl (``read_done_rows`` for a torn one)."""
    rows: list[PredictionRow] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = parse_prediction_line(line)
            if row is None:
                raise UsageError(f"{path}:{number}: not a valid prediction row")
            rows.append(row)
    return rows


class PredictionTail:
    """The rows of a run's predictions.jsonl as batches land, and those of the ranks' own
    files in a run of several processes: ``poll()`` gives the rows appended since the last
    call; after ``restarted`` it gives every row again. A row may come twice (a rank's file
    merged into predictions.jsonl): readers key rows by their index."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.lines = LineTail(run_dir / PREDICTIONS_FILE)
        self.rank_lines: dict[Path, LineTail] = {}
        self.bad_lines = 0

    @property
    def restarted(self) -> bool:
        return self.lines.restarted

    def poll(self) -> list[PredictionRow]:
        lines = self.lines.read()
        if self.lines.restarted:  # rewritten whole: the ranks' files are read again too
            self.rank_lines.clear()
        for path in rank_prediction_paths(self.run_dir):
            self.rank_lines.setdefault(path, LineTail(path))
        for path, tail in list(self.rank_lines.items()):
            lines += tail.read()
            if not tail.exists:  # merged into predictions.jsonl and removed
                del self.rank_lines[path]
        rows = []
        for line in lines:
            if not line.strip():
                continue
            row = parse_prediction_line(line)
            if row is None:
                self.bad_lines += 1
            else:
                rows.append(row)
        return rows


def _write_rows(handle: IO[str], rows: Iterable[PredictionRow]) -> None:
    handle.write("".join(row.to_json() + "\n" for row in rows))


def write_predictions_atomic(path: Path, rows: Iterable[PredictionRow]) -> None:
    """Replace predictions.jsonl whole: a reader sees the old rows or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            _write_rows(handle, rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class PredictionWriter:
    """Appends prediction rows and flushes after each batch (to the rank's own file in a
    run of several processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")

    def write_batch(self, rows: Sequence[PredictionRow]) -> None:
        _write_rows(self._handle, rows)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def restore_dataset_order(self) -> None:
        """Rewrite the file in the dataset's order once the run is complete (atomically)."""
        rows = sorted(read_predictions(self.path), key=lambda row: row.index)
        write_predictions_atomic(self.path, rows)


# ── a torn tail, and the ranks' files ──────────────────────────────────────────────────

@dataclass
class DoneRows:
    """The rows of predictions.jsonl that can be kept, and how the file must be cut."""

    rows: list[PredictionRow] = field(default_factory=list)
    valid_bytes: int = 0  # the file's length up to the end of the last good line
    torn_bytes: int = 0  # bytes after it: a line cut short by a kill


def read_done_rows(path: Path) -> DoneRows:
    """Read predictions.jsonl without changing it. Only the tail may be damaged: a line that
    does not parse followed by a line that does means the file is corrupt, not torn."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return DoneRows()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    done = DoneRows()
    position = 0
    first_bad: int | None = None
    pieces = data.split(b"\n")
    for number, piece in enumerate(pieces, start=1):
        complete = number < len(pieces)  # only the last piece lacks its newline
        line = piece + b"\n" if complete else piece
        row = parse_prediction_line(line) if complete else None
        if row is None:
            if line.strip() and first_bad is None:
                first_bad = number
        elif first_bad is not None:
            raise UsageError(f"{path}:{first_bad}: not a valid prediction row (and rows "
                             "follow it); the file is damaged — use --overwrite or another -o")
        else:
            done.rows.append(row)
        position += len(line)
        if first_bad is None:
            done.valid_bytes = position
    done.torn_bytes = len(data) - done.valid_bytes
    return done


def merge_rank_files(run_dir: Path) -> int:
    """Fold the ranks' prediction files that a run of several processes left (it was
    stopped, or a rank died) into predictions.jsonl, so that a resume on any number of
    processes starts from one file. A row already in predictions.jsonl is not added again
    (a merge stopped between writing and removing). Returns the torn bytes dropped."""
    if not rank_prediction_paths(run_dir):
        return 0
    rows, torn = read_run_rows(run_dir)
    replace_rank_files(run_dir, rows)
    return torn


def read_run_rows(run_dir: Path) -> tuple[list[PredictionRow], int]:
    """Every row a run holds, in predictions.jsonl and the ranks' files (each sample once,
    the first found), and the torn bytes after the last whole line of each file."""
    rows: dict[int, PredictionRow] = {}
    torn = 0
    for path in (run_dir / PREDICTIONS_FILE, *rank_prediction_paths(run_dir)):
        done = read_done_rows(path)
        torn += done.torn_bytes
        for row in done.rows:
            rows.setdefault(row.index, row)
    return list(rows.values()), torn


def replace_rank_files(run_dir: Path, rows: list[PredictionRow]) -> None:
    """predictions.jsonl becomes ``rows``, whole, and then the ranks' files go: a stop
    between the two leaves rows twice, which the next merge reads once."""
    write_predictions_atomic(run_dir / PREDICTIONS_FILE, rows)
    for part in rank_prediction_paths(run_dir):
        part.unlink(missing_ok=True)


def cut_torn_tail(path: Path, valid_bytes: int) -> None:
    try:
        with path.open("r+b") as handle:
            handle.truncate(valid_bytes)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise UsageError(f"{path}: cannot cut its torn last line: {exc.strerror}") from None
