"""One way to stop work early: a run, a tuning or a bench checks its token between
batches and probes, and anything (a key in the app, a signal handler, a test) may set it
from any thread. The work in flight finishes; nothing half-written is left behind."""

from __future__ import annotations

import threading


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
