"""Tune results kept between runs, so that a repeat run does not tune again.

One JSON file, ``$XDG_CACHE_HOME/tui-eval/tune.json`` (``~/.cache/tui-eval/tune.json`` when
XDG_CACHE_HOME is unset), maps a ``TuneKey`` to the last result for it: the model, the
device's name, the dtype, compile (whether the probes ran on the static cache), max_tokens
and the longest prompt's bucket, plus the settings that change the answer (the ceiling, the
tune mode, the memory headroom and capacity, a simulated OOM, the CPU's threads, the
devices a spread model spans).
``--retune`` probes again and replaces the entry.

A search that the budget cut short only answers runs no longer than the one it was tuned
for (a longer run may spend longer tuning): a short run's few probes do not decide for a
long run. A cancelled search is never kept. An unreadable file counts as empty and is
replaced by the next result.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tui_eval.paths import user_cache_dir
from tui_eval.results.json_io import write_json_atomic
from tui_eval.results.tune import TuneResult

CACHE_FORMAT = 1


def cache_path() -> Path:
    return user_cache_dir() / "tune.json"


@dataclass(frozen=True)
class TuneKey:
    model: str
    device_name: str
    dtype: str
    compile: str  # "on": probed on the static cache (compile on); "off": the dynamic cache
    max_tokens: int
    prompt_bucket: int  # tui_eval.model.static_shapes.prompt_bucket of the longest prompt
    max_batch_size: int
    tune_mode: str
    memory_headroom: float
    memory_capacity_bytes: int | None
    simulate_oom_above: int | None
    threads: int | None  # on CPU the best size depends on the threads
    # a model spread over devices: the devices it spans and the sizes per device it was
    # placed within; None for a model on one device
    placement: str | None = None

    def text(self) -> str:
        values = asdict(self)
        if values["placement"] is None:  # as keys were written before placement existed
            del values["placement"]
        return json.dumps(values, sort_keys=True)


@dataclass
class CachedTune:
    result: TuneResult
    saved_at: float  # time.time()


def _entries(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def lookup(key: TuneKey, n_samples: int, path: Path | None = None) -> CachedTune | None:
    """The cached result for ``key``, when it holds for a run of ``n_samples``."""
    entry = _entries(path or cache_path()).get(key.text())
    if not isinstance(entry, dict) or not isinstance(entry.get("result"), dict):
        return None
    try:
        result = TuneResult.from_dict(entry["result"])
        saved_at = float(entry.get("saved_at", 0.0))
    except (TypeError, ValueError):
        return None
    if result.stopped_by == "cancelled":
        return None
    if result.stopped_by == "budget" and (result.n_samples is None
                                          or n_samples > result.n_samples):
        return None  # a longer run may spend longer tuning than that search could
    return CachedTune(result=result, saved_at=saved_at)


def store(key: TuneKey, result: TuneResult, path: Path | None = None) -> Path:
    """Keep ``result`` for ``key`` (a cancelled search is not kept); OSError when the
    cache cannot be written."""
    path = path or cache_path()
    if result.stopped_by == "cancelled":
        return path
    entries = _entries(path)
    entries[key.text()] = {"key": asdict(key), "saved_at": time.time(),
                           "result": result.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"format": CACHE_FORMAT, "entries": entries})
    return path
