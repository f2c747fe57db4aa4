"""The one place the app calls the batch-size tuner (``tui_eval.tune``).

Kept apart so the app module stays free of the tuner's imports until `a` is pressed.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from tui_eval.config import EvalConfig
from tui_eval.events import Event, EventSink, LogLine


class TuneCancelled(Exception):
    """Raised through the tuner from its event sink once the user cancels."""


def run_auto_tune(config: EvalConfig, sink: EventSink, cancel: threading.Event) -> None:
    """Tune into a directory of its own (the run's ``output_dir`` stays for the run).

    The tuner has no cancel flag of its own; it reports after every probe, so the sink
    raises ``TuneCancelled`` there once ``cancel`` is set.
    """

    def cancellable(event: Event) -> None:
        sink(event)
        if cancel.is_set():
            raise TuneCancelled

    from tui_eval.tune import run_tuning

    try:
        run_tuning(replace(config, output_dir=None), cancellable)
    except TuneCancelled:
        sink(LogLine(level="INFO", message="auto-tune cancelled"))
