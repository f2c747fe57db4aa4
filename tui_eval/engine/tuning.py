"""Tuning the batch size for a run's config: ``-b auto`` inside a run, ``tui-eval tune`` and
the app's auto-tune all come here; the search itself is tui_eval.batching.tuner, over the
task's batch unit (samples generated, or pairs scored).

``-b auto`` inside a run spends at most its budget (tui_eval.batching.budget), sizes a
generation on CUDA from memory (``memory`` mode: no timing in the decision) and answers a
repeat with the same key from the user's tune cache (tui_eval.engine.tune_cache). A tune the
user asked for (``tui-eval tune``, the app's ``a``) doubles from 1 with no budget and probes
every time."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tui_eval.batching.budget import BUDGET_SHARE
from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.device.memcap import memory_capacity
from tui_eval.engine.device_hooks import DEVICE_HOOKS
from tui_eval.engine.generation import GenerationTask
from tui_eval.engine.preparation import device_description, prepare
from tui_eval.engine.tasks import RunTask
from tui_eval.engine.tune_cache import TuneKey, cache_path, lookup, store
from tui_eval.errors import UsageError
from tui_eval.events import EventSink, FanOut, RunLog, TuneFinished
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.model.backend import HFBackend
from tui_eval.model.static_shapes import prompt_bucket
from tui_eval.results.run_dir import RunDir
from tui_eval.results.tune import TuneResult


def tune_key(config: EvalConfig, backend: HFBackend, longest_prompt_tokens: int,
             capacity: int | None, mode: str | None = None) -> TuneKey:
    import torch

    model = Path(backend.model_path)
    return TuneKey(
        model=str(model.resolve()) if model.exists() else backend.model_path,
        device_name=device_description(backend.device), dtype=backend.dtype_name,
        # the probes' path: the static cache with compile on, else eager (task.tuner)
        compile="on" if config.compile == "on" else "off", max_tokens=config.max_tokens,
        prompt_bucket=prompt_bucket(longest_prompt_tokens),
        max_batch_size=config.max_batch_size, tune_mode=mode or config.tune_mode,
        memory_headroom=config.memory_headroom, memory_capacity_bytes=capacity,
        simulate_oom_above=config.simulate_oom_above,
        threads=torch.get_num_threads() if backend.device == "cpu" else None,
        placement=None if config.device_map is None else
        f"{','.join(backend.devices)} {config.max_memory or 'all memory'}")


def search_mode(config: EvalConfig, task: RunTask, device: str, explicit: bool) -> str:
    """The strategy: a generation's ``-b auto`` on CUDA from memory, else the config's."""
    if not explicit and isinstance(task, GenerationTask) and device.startswith("cuda"):
        return "memory"
    return config.tune_mode


def tune_batch_size(task: RunTask, items: list[Any], config: EvalConfig, backend: HFBackend,
                    sink: EventSink, lang: str, run_dir: RunDir | None = None,
                    cancel: CancelToken | None = None, *, explicit: bool = False) -> TuneResult:
    """Tune the task's batch unit over ``items`` (as its ``plan`` ordered them) for a run's
    config, and write tune.json to its results directory. A generation task probes the
    path its run starts on (the static cache with compile on), naming it in each call, so
    the backend's own path is left as the run set it. Inside a run
    (``explicit`` False) the prompts' lengths and the probes estimate the run, a tenth of
    which is the budget, and a generation's result for the same key is taken from the tune
    cache unless ``retune`` is set; a tune the user asked for (``explicit``) has no budget
    and always probes."""
    log = RunLog(sink, lang)
    started = time.perf_counter()
    capacity = memory_capacity(config.max_memory, backend.device, backend.devices)
    options: dict[str, Any] = {
        "mode": search_mode(config, task, backend.device, explicit),
        "max_batch_size": config.max_batch_size,
        "memory_headroom": config.memory_headroom, "memory_capacity": capacity,
        "sink": sink, "lang": lang, "cancel": cancel, "hooks": DEVICE_HOOKS,
        "budget_share": None if explicit else BUDGET_SHARE}
    if not isinstance(task, GenerationTask):  # the cache's key is about prompts and tokens
        result = task.tuner(items, **options).run()
    else:
        key = tune_key(config, backend, max(task.prompt_tokens(items), default=1), capacity,
                       options["mode"])
        cached = None if config.retune or explicit else lookup(key, len(items))
        if cached is not None:
            ceiling = max(1, min(config.max_batch_size, len(items)))
            chosen = min(cached.result.chosen_batch_size, ceiling)
            result = replace(cached.result, chosen_batch_size=chosen, from_cache=True,
                             seconds=time.perf_counter() - started)
            log("INFO", "tune_from_cache", batch_size=chosen, path=cache_path(),
                when=time.strftime("%Y-%m-%d %H:%M", time.localtime(cached.saved_at)))
            sink(TuneFinished(chosen_batch_size=chosen, mode=result.mode,
                              probes=list(result.probes), from_cache=True))
        else:
            result = task.tuner(items, **options).run()
            try:
                store(key, result)
            except OSError as exc:
                log("WARNING", "tune_cache_unwritable", path=cache_path(), error=exc.strerror)
    if run_dir is not None:
        run_dir.write_tune(result)
    return result


def run_batch_size(task: RunTask, items: list[Any], config: EvalConfig, backend: HFBackend,
                   sink: EventSink, lang: str, run_dir: RunDir, *, resumed: bool,
                   cancel: CancelToken | None = None) -> tuple[int, float | None]:
    """A run's batch size and the seconds its tune took: the configured size, or with
    batch_size = "auto" the size tuned on the run's longest items (tune.json); a resumed
    run keeps the size its tune.json chose, unless retune is set."""
    if config.batch_size != "auto":
        return int(config.batch_size), None
    if not items:
        return 1, None
    if resumed and not config.retune and run_dir.tune_path.exists():
        try:
            earlier = run_dir.read_tune()
        except (UsageError, TypeError):
            earlier = None
        if earlier is not None and earlier.chosen_batch_size >= 1:
            RunLog(sink, lang)("INFO", "tune_from_run_dir", batch_size=earlier.chosen_batch_size)
            return earlier.chosen_batch_size, 0.0
    result = tune_batch_size(task, items, config, backend, sink, lang, run_dir, cancel=cancel)
    return result.chosen_batch_size, result.seconds


def run_tuning(config: EvalConfig, sink: EventSink,
               cancel: CancelToken | None = None) -> tuple[TuneResult, RunDir]:
    """Load the model and the data as a run would, tune, and write the results directory."""
    lang = config.lang or default_language()
    recorder = EventRecorder()
    events = FanOut(recorder, sink)
    log = RunLog(events, lang)
    try:
        prepared = prepare(config, log)
        config, backend, dataset, task = (prepared.config, prepared.backend, prepared.dataset,
                                          prepared.task)
        # the probes run the longest prompts: they must fit as a run's would
        task.check(dataset.samples, log)
        run_dir = RunDir.of(config.output_dir, "tune").prepare()
        recorder.open(run_dir)
        prepared.load_weights()
        prepared.describe(run_dir)
        items = task.plan(dataset.samples)
        result = tune_batch_size(task, items, config, backend, events, lang, run_dir, cancel,
                                 explicit=True)
        return result, run_dir
    finally:
        recorder.close()
