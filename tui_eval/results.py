"""The results directory: the contract between a run and everything that reads it later.

config.json       resolved config, versions and device
predictions.jsonl one line per sample, appended and flushed as each batch finishes
metrics.json      the scores, written atomically at the end (``partial`` when cut short)
run.log           the log lines, as the terminal shows them
events.jsonl      every engine event, one JSON object per line

A crash at any moment loses at most the batch in flight.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

from tui_eval.errors import UsageError
from tui_eval.events import Event, LogLine, format_log_line

CONFIG_FILE = "config.json"
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
LOG_FILE = "run.log"
EVENTS_FILE = "events.jsonl"


def default_run_dir() -> Path:
    return Path("eval_results") / time.strftime("%Y%m%d-%H%M%S")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or a kill: leave no half file behind
        tmp.unlink(missing_ok=True)
        raise


def prepare_run_dir(path: Path) -> Path:
    """Create the directory and prove it is writable (and not on a full disk), before any
    model is loaded. Whether a run it already holds is continued is resume.py's call."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{path}: cannot write results: {exc.strerror}") from None
    return path


class EventRecorder:
    """An event sink writing events.jsonl and run.log. Events that arrive before the
    directory is open (model loading, data errors) are kept and written once it opens."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self._pending: list[Event] = []
        self._events: IO[str] | None = None
        self._log: IO[str] | None = None

    def open(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._events = _open_for_append(run_dir / EVENTS_FILE)
        self._log = _open_for_append(run_dir / LOG_FILE)
        pending, self._pending = self._pending, []
        for event in pending:
            self(event)

    def __call__(self, event: Event) -> None:
        if self._events is None or self._log is None:
            self._pending.append(event)
            return
        self._events.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        self._events.flush()
        if isinstance(event, LogLine):
            self._log.write(format_log_line(event) + "\n")
            self._log.flush()

    def close(self) -> None:
        for handle in (self._events, self._log):
            if handle is not None:
                handle.close()
        self._events = self._log = None


def _open_for_append(path: Path) -> IO[str]:
    """Append mode, first ending a line torn by a killed writer, so that the next line is
    not glued onto it."""
    handle = path.open("a", encoding="utf-8")
    if handle.tell() > 0:
        with path.open("rb") as reader:
            reader.seek(-1, os.SEEK_END)
            if reader.read(1) != b"\n":
                handle.write("\n")
    return handle


class PredictionWriter:
    """Appends prediction rows and flushes after each batch."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / PREDICTIONS_FILE
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        self._handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def restore_dataset_order(self) -> None:
        """Rewrite the file in the dataset's order once the run is complete (atomically)."""
        rows = read_predictions(self.path)
        rows.sort(key=lambda row: row["index"])
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


def read_predictions(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows
