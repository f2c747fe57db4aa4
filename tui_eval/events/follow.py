"""Following a run through its events.jsonl: read only what was appended since the last
look (the caller folds the events into a ``RunView``), and tell whether its process is
still alive.

Only reads: several followers may watch one run, and none of them changes the directory.
"""

from __future__ import annotations

import json
import os
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tui_eval.errors import UsageError
from tui_eval.events import Event, event_from_dict
from tui_eval.events.view import KEEP_LOG_LINES, RunView
from tui_eval.results import EVENTS_FILE, LineTail, RunConfig, resume_command

# Events every reader needs in full; the rest are "latest wins" (progress, gauges, …)
# except log lines, of which the last KEEP_LOG_LINES are kept.
_KEPT_KINDS = {b"try_started", b"started", b"finished", b"failed", b"fallback", b"tune_step",
               b"tune_finished", b"resume_decided"}
_EVENT_PREFIX = b'{"event": "'


def _kind_of(line: bytes) -> bytes | None:
    """The event kind from the line's first bytes, without parsing it (the recorder always
    writes the kind first); None when the line does not start that way."""
    if not line.startswith(_EVENT_PREFIX):
        return None
    end = line.find(b'"', len(_EVENT_PREFIX))
    return line[len(_EVENT_PREFIX):end] if end != -1 else None


def condense(lines: list[bytes], keep_logs: int = KEEP_LOG_LINES) -> list[bytes]:
    """Keep, in order, what a reader needs from a backlog: every structural event, the last
    log lines, and the last line of any other kind. A 100 MB file is mostly progress and
    log lines, so this is what keeps catching up fast."""
    last_of_kind: dict[bytes | None, int] = {}
    log_positions: deque[int] = deque(maxlen=keep_logs)
    kept: list[int] = []
    for position, line in enumerate(lines):
        kind = _kind_of(line)
        if kind in _KEPT_KINDS:
            kept.append(position)
        elif kind == b"log":
            log_positions.append(position)
        elif kind is None:
            kept.append(position)  # unknown layout: let the parser decide
        else:
            last_of_kind[kind] = position
    kept.extend(log_positions)
    kept.extend(last_of_kind.values())
    return [lines[i] for i in sorted(kept)]


class EventFollower:
    """Reads events.jsonl incrementally by byte offset.

    ``poll()`` returns the events appended since the previous call. A line still being
    written (no newline yet) waits for the next poll; a complete line that does not parse is
    skipped and counted. When the file is replaced or truncated (a run started over with
    --overwrite), reading starts again from the top and ``restarted`` is set for that poll.
    """

    def __init__(self, path: Path, keep_logs: int = KEEP_LOG_LINES) -> None:
        self.path = path
        self.keep_logs = keep_logs
        self.tail = LineTail(path, compact=lambda lines: condense(lines, keep_logs))
        self.parse_errors = 0

    @property
    def exists(self) -> bool:
        return self.tail.exists

    @property
    def offset(self) -> int:
        return self.tail.offset

    @property
    def restarted(self) -> bool:
        return self.tail.restarted

    @property
    def bad_lines(self) -> int:
        return self.tail.bad_lines + self.parse_errors

    def read_new_lines(self) -> list[bytes]:
        """Complete lines appended since the last call, condensed."""
        return self.tail.read(compact_above=4 * self.keep_logs)

    def poll(self) -> list[Event]:
        events = []
        for line in self.read_new_lines():
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.parse_errors += 1  # torn by a kill, then appended to by a resumed run
                continue
            event = event_from_dict(data) if isinstance(data, dict) else None
            if event is not None:
                events.append(event)
        return events


# A run's state, as events.jsonl tells it: the one reading every front end shares.
RunState = RunView


def run_host(run_dir: Path) -> str | None:
    """The machine the run was started on, from config.json (None when not recorded)."""
    try:
        return RunConfig.read(run_dir).host
    except UsageError:
        return None


def process_alive(pid: int, started_at: float | None = None) -> bool:
    """Whether ``pid`` is still the run's process on this machine: it exists, is not a
    zombie, and did not begin after the run started (pids are reused)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        import psutil

        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if started_at is not None and process.create_time() > started_at + 1.0:
            return False
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - psutil raises NoSuchProcess and friends
        return False
    return True


@dataclass
class Liveness:
    pid: int | None  # the pid of the latest try, None before it started
    alive: bool | None  # None: cannot tell (not started, or started on another machine)
    host: str | None


def liveness(run_dir: Path, state: RunView) -> Liveness:
    if not state.pid:
        return Liveness(pid=None, alive=None, host=None)
    pid = state.pid
    if state.ended:
        return Liveness(pid=pid, alive=False, host=None)
    host = run_host(run_dir)
    if host is not None and host != socket.gethostname():
        return Liveness(pid=pid, alive=None, host=host)
    return Liveness(pid=pid, alive=process_alive(pid, state.pid_since), host=host)


def read_run_state(run_dir: Path) -> RunView:
    """The state of a run as its events.jsonl describes it now."""
    state = RunView()
    for event in EventFollower(run_dir / EVENTS_FILE).poll():
        state.apply(event)
    return state


def last_run_status(run_dir: Path) -> Liveness:
    return liveness(run_dir, read_run_state(run_dir))


def stopped_line(run_dir: Path, pid: int | None) -> str:
    """What a watcher says when the run's process is gone without a final event."""
    return (f"stopped — no final event (pid {pid} is gone); resume with: "
            f"{resume_command(run_dir)}")
