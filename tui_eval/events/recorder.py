"""Writing a run's events.jsonl and run.log as the events happen."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from tui_eval.events import Event, LogLine, format_log_line
from tui_eval.results.run_dir import RunDir


class EventRecorder:
    """An event sink writing events.jsonl and run.log. Events that arrive before the
    directory is open (model loading, data errors) are kept and written once it opens."""

    def __init__(self) -> None:
        self.run_dir: RunDir | None = None
        self._pending: list[Event] = []
        self._events: IO[str] | None = None
        self._log: IO[str] | None = None

    def open(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self._events = _open_for_append(run_dir.events_path)
        self._log = _open_for_append(run_dir.log_path)
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
