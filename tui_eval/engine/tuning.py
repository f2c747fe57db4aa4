"""Tuning the batch size for a run's config: ``-b auto`` inside a run, ``tui-eval tune`` and
the app's auto-tune all come here; the search itself is tui_eval.model.tuner, and a repeat
with the same key is answered from the user's tune cache (tui_eval.engine.tune_cache)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.device.memcap import memory_capacity, usable_memory
from tui_eval.engine.preparation import (
    device_description,
    load_weights,
    open_backend,
    read_dataset,
    run_description,
    with_demo_defaults,
)
from tui_eval.engine.tune_cache import TuneKey, cache_path, lookup, store
from tui_eval.events import EventSink, FanOut, RunLog, TuneFinished
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.model.backend import HFBackend
from tui_eval.model.batching import longest_first
from tui_eval.model.probe import kv_cache_bytes_per_token
from tui_eval.model.static_shapes import prompt_bucket
from tui_eval.model.tuner import BatchSizeTuner
from tui_eval.results import TuneResult, prepare_run_dir


def tune_key(config: EvalConfig, backend: HFBackend, longest_prompt: str,
             capacity: int | None) -> TuneKey:
    import torch

    model = Path(backend.model_path)
    return TuneKey(
        model=str(model.resolve()) if model.exists() else backend.model_path,
        device_name=device_description(backend.device), dtype=backend.dtype_name,
        compile="on" if backend.compile else "off", max_tokens=config.max_tokens,
        prompt_bucket=prompt_bucket(backend.token_counts([longest_prompt])[0]),
        max_batch_size=config.max_batch_size, tune_mode=config.tune_mode,
        memory_headroom=config.memory_headroom, memory_capacity_bytes=capacity,
        simulate_oom_above=config.simulate_oom_above,
        threads=torch.get_num_threads() if backend.device == "cpu" else None)


def tune_batch_size(backend: HFBackend, prompts: list[str], config: EvalConfig,
                    sink: EventSink, lang: str, run_dir: Path | None = None,
                    cancel: CancelToken | None = None, *,
                    prompt_tokens: list[int] | None = None) -> TuneResult:
    """Tune for a run's config (on the static path when ``backend.compile`` is on) and
    write tune.json to its results directory. ``prompts``: rendered, longest first;
    ``prompt_tokens``: their token counts (counted here when not given), which with the
    probes estimate the run, a tenth of which is the budget."""
    log = RunLog(sink, lang)
    started = time.perf_counter()
    capacity = memory_capacity(config.max_memory, backend.device)
    key = tune_key(config, backend, prompts[0], capacity)
    if prompt_tokens is None:
        prompt_tokens = sorted(backend.token_counts(prompts), reverse=True)
    cached = None if config.retune else lookup(key, len(prompts))
    if cached is not None:
        ceiling = max(1, min(config.max_batch_size, len(prompts)))
        chosen = min(cached.result.chosen_batch_size, ceiling)
        result = replace(cached.result, chosen_batch_size=chosen, from_cache=True,
                         seconds=time.perf_counter() - started)
        log("INFO", "tune_from_cache", batch_size=chosen, path=cache_path(),
            when=time.strftime("%Y-%m-%d %H:%M", time.localtime(cached.saved_at)))
        sink(TuneFinished(chosen_batch_size=chosen, mode=result.mode,
                          probes=list(result.probes), from_cache=True))
    else:
        tuner = BatchSizeTuner(
            backend, prompts, max_tokens=config.max_tokens, mode=config.tune_mode,
            max_batch_size=config.max_batch_size, memory_headroom=config.memory_headroom,
            memory_capacity=capacity, sink=sink, lang=lang, cancel=cancel,
            prompt_tokens=prompt_tokens, static_cache=backend.compile,
            kv_bytes_per_token=kv_cache_bytes_per_token(backend.model.config,
                                                        backend.dtype.itemsize),
            usable_memory=lambda: usable_memory(backend.device, capacity))
        result = tuner.run()
        try:
            store(key, result)
        except OSError as exc:
            log("WARNING", "tune_cache_unwritable", path=cache_path(), error=exc.strerror)
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
        config = with_demo_defaults(config, log)
        backend = open_backend(config, log)
        dataset = read_dataset(config, log)
        run_dir = prepare_run_dir(Path(config.output_dir or default_tune_dir()))
        recorder.open(run_dir)
        load_weights(backend, config, log)
        run_description(config, backend).write(run_dir)
        rendered = [backend.render(s.prompt) for s in dataset.samples]
        counts = backend.token_counts(rendered)
        prompts = longest_first(rendered, counts)
        backend.compile = config.compile == "on"  # probe the path the run would take first
        result = tune_batch_size(backend, prompts, config, events, lang, run_dir, cancel,
                                 prompt_tokens=sorted(counts, reverse=True))
        return result, run_dir
    finally:
        recorder.close()
