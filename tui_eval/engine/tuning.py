"""Tuning the batch size for a run's config: ``-b auto`` inside a run, ``tui-eval tune`` and
the app's auto-tune all come here; the search itself is tui_eval.model.tuner, over the
task's batch unit (samples generated, or pairs scored)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.device.memcap import memory_capacity
from tui_eval.engine.preparation import (
    load_weights,
    open_backend,
    read_dataset,
    run_description,
    settle_config,
)
from tui_eval.engine.tasks import RunTask, make_task
from tui_eval.events import EventSink, FanOut, RunLog
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.results import TuneResult, prepare_run_dir


def tune_batch_size(task: RunTask, items: list[Any], config: EvalConfig, device: str,
                    sink: EventSink, lang: str, run_dir: Path | None = None,
                    cancel: CancelToken | None = None) -> TuneResult:
    """Tune the task's batch unit over ``items`` (as its ``plan`` ordered them) for a run's
    config, and write tune.json to its results directory."""
    tuner = task.tuner(
        items, mode=config.tune_mode, max_batch_size=config.max_batch_size,
        memory_headroom=config.memory_headroom,
        memory_capacity=memory_capacity(config.max_memory, device), sink=sink, lang=lang,
        cancel=cancel)
    result = tuner.run()
    if run_dir is not None:
        result.write(run_dir)
    return result


def default_tune_dir() -> Path:
    return Path("eval_results") / time.strftime("tune-%Y%m%d-%H%M%S")


def run_tuning(config: EvalConfig, sink: EventSink,
               cancel: CancelToken | None = None) -> tuple[TuneResult, Path]:
    """Load the model and the data as a run would, tune, and write the results directory."""
    lang = config.lang or default_language()
    recorder = EventRecorder()
    events = FanOut(recorder, sink)
    log = RunLog(events, lang)
    try:
        config = settle_config(config, log)
        backend = open_backend(config, log)
        dataset = read_dataset(config, log)
        task = make_task(config, backend, dataset)
        # the probes run the longest prompts: they must fit as a run's would
        task.check(dataset.samples, log)
        run_dir = prepare_run_dir(Path(config.output_dir or default_tune_dir()))
        recorder.open(run_dir)
        load_weights(backend, config, log)
        run_description(config, backend).write(run_dir)
        items = task.plan(dataset.samples)
        result = tune_batch_size(task, items, config, backend.device, events, lang, run_dir,
                                 cancel)
        return result, run_dir
    finally:
        recorder.close()
