"""Following a file that another process appends to (predictions.jsonl, events.jsonl), one
complete line at a time."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class LineTail:
    """Reads a file that another process appends to, one complete line at a time.

    ``read()`` returns the lines appended since the previous call; a line still being
    written (no newline yet) waits for the next call. When the file is replaced or
    truncated (a run rewrites predictions.jsonl in dataset order when it ends, or starts
    over with --overwrite), reading starts again from the top and ``restarted`` is set for
    that call. ``compact`` may shrink a long list of lines while they are read, so that a
    big backlog is never held whole.
    """

    CHUNK_BYTES = 8 * 1024 * 1024
    MAX_LINE_BYTES = 4 * 1024 * 1024  # a "line" longer than this is garbage, not a record

    def __init__(self, path: Path,
                 compact: Callable[[list[bytes]], list[bytes]] | None = None) -> None:
        self.path = path
        self.compact = compact
        self.offset = 0
        self.bad_lines = 0  # over-long lines dropped
        self.restarted = False
        self._identity: tuple[int, int] | None = None
        self._pending = b""

    @property
    def exists(self) -> bool:
        return self._identity is not None

    def _check_identity(self) -> os.stat_result | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._identity is not None:
                self._start_over(None)
            return None
        identity = (stat.st_dev, stat.st_ino)
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity or stat.st_size < self.offset:
            self._start_over(identity)
        return stat

    def _start_over(self, identity: tuple[int, int] | None) -> None:
        self._identity = identity
        self.offset = 0
        self._pending = b""
        self.restarted = True

    def read(self, compact_above: int = 0) -> list[bytes]:
        """Complete lines appended since the last call (``compact`` applied whenever more
        than ``compact_above`` have piled up, and once at the end)."""
        self.restarted = False
        stat = self._check_identity()
        if stat is None or stat.st_size == self.offset:
            return []
        lines: list[bytes] = []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                while True:
                    chunk = handle.read(self.CHUNK_BYTES)
                    if not chunk:
                        break
                    self.offset += len(chunk)
                    parts = (self._pending + chunk).split(b"\n")
                    self._pending = parts.pop()
                    if len(self._pending) > self.MAX_LINE_BYTES:
                        self._pending = b""
                        self.bad_lines += 1
                    lines.extend(parts)
                    if self.compact is not None and compact_above and len(lines) > compact_above:
                        lines = self.compact(lines)
        except FileNotFoundError:
            self._start_over(None)
            return []
        return self.compact(lines) if self.compact is not None else lines
