"""The one place the app calls the batch-size tuner (tui_eval.engine.tuning)."""

from __future__ import annotations

from dataclasses import replace

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.engine import tune as run_tuning
from tui_eval.events import EventSink, LogLine


def run_auto_tune(config: EvalConfig, sink: EventSink, cancel: CancelToken) -> None:
    """Tune into a directory of its own (the run's ``output_dir`` stays for the run); the
    tuner checks ``cancel`` before each probe."""
    run_tuning(replace(config, output_dir=None), sink, cancel)
    if cancel.cancelled:
        sink(LogLine(level="INFO", message="auto-tune cancelled"))
