"""How engine events reach the app: as messages, from any thread.

Every event becomes an ``EngineEvent`` message, except progress: only the newest progress
event is kept, and one ``ProgressReady`` wake-up is queued until the app has taken it, so
a fast run cannot flood the message queue whatever its batch rate.
"""

from __future__ import annotations

import threading

from textual.message import Message
from textual.message_pump import MessagePump

from tui_eval.device.monitor import Snapshot
from tui_eval.events import Event, Progress


class EngineEvent(Message):
    """One engine event for the app's ``apply_event``."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class ProgressReady(Message):
    """A newer progress event is waiting in the bridge."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ProgressReady)


class EventBridge:
    """An event sink (``bridge(event)``) that is safe to call from the engine's thread."""

    def __init__(self, target: MessagePump) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._latest_progress: Progress | None = None
        self.progress_received = 0  # for the coalescing test: events in, messages out

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            with self._lock:
                self.progress_received += 1
                wake = self._latest_progress is None
                self._latest_progress = event
            if wake:
                self.target.post_message(ProgressReady())
            return
        self.target.post_message(EngineEvent(event))

    def take_progress(self) -> Progress | None:
        with self._lock:
            event, self._latest_progress = self._latest_progress, None
        return event


class GaugeReadings(Message):
    """One poll of the GPU and host gauges, taken off the UI thread."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot
