"""The one place the app calls the batch-size tuner (``tui_eval.tune``).

Kept apart so the app still works, with auto-tune reported as unavailable, in a build
whose tuner is missing or has another shape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tui_eval.config import EvalConfig
from tui_eval.events import Event, EventSink, LogLine


class TuneCancelled(Exception):
    """Raised through the tuner from its event sink once the user cancels."""


def find_tuner() -> Callable[[EvalConfig, EventSink], Any] | None:
    """The tuner's entry point (``run_tuning(config, sink)``), or None when there is none."""
    try:
        from tui_eval import tune
    except ImportError:
        return None
    return getattr(tune, "run_tuning", None)


def run_auto_tune(tuner: Callable[[EvalConfig, EventSink], Any], config: EvalConfig,
                  sink: EventSink, cancel: threading.Event) -> None:
    """Tune into a directory of its own (the run's ``output_dir`` stays for the run).

    The tuner has no cancel flag of its own; it reports after every probe, so the sink
    raises ``TuneCancelled`` there once ``cancel`` is set.
    """

    def cancellable(event: Event) -> None:
        sink(event)
        if cancel.is_set():
            raise TuneCancelled

    try:
        tuner(replace(config, output_dir=None), cancellable)
    except TuneCancelled:
        sink(LogLine(level="INFO", message="auto-tune cancelled"))
