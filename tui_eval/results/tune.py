"""tune.json: the batch sizes probed and the size chosen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_eval.results.json_io import from_known_fields, read_json_object, write_json_atomic
from tui_eval.results.names import TUNE_FILE


@dataclass
class TuneProbe:
    """One batch size tried by the tuner.

    A probe generates a few tokens per row (``new_tokens``) and predicts the figures of a
    batch that generates ``max_tokens`` (``full_length`` when it generated them all)."""

    batch_size: int
    status: str  # "ok" | "oom" | "predicted" (not probed: extrapolated from the probes)
    seconds: float  # per full-length generate call, predicted (or until the OOM)
    samples_per_s: float
    tokens_per_s: float
    peak_memory_bytes: int | None  # at full length, predicted unless ``full_length``
    gpu_util_percent: float | None
    new_tokens: int = 0  # tokens each row generated in the probe
    step_seconds: float | None = None  # one decode step of the whole batch
    first_token_seconds: float | None = None  # tokenizing, the prefill and the first token
    probe_seconds: float = 0.0  # what the probe itself took
    full_length: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def has_rate(self) -> bool:
        """Whether its time and rates are figures: measured, or predicted."""
        return self.status in ("ok", "predicted")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TuneResult:
    chosen_batch_size: int
    mode: str
    probes: list[TuneProbe]
    seconds: float  # spent tuning (about zero when it came from the cache)
    max_tokens: int
    max_batch_size: int
    memory_capacity_bytes: int | None
    memory_headroom: float
    unit: str = "samples"  # what the probes' rates count: "samples", or "pairs" (choice)
    # what ended the search: "done", "budget" (it spent its share of the estimated run
    # time) or "cancelled"
    stopped_by: str = "done"
    budget_seconds: float | None = None  # the share of the run it could spend; None: no limit
    n_samples: int | None = None  # the run it was tuned for (its size sets the budget)
    estimated_run_seconds: float | None = None  # the run at the chosen size, full length
    static_cache: bool = False  # probed on the static-cache path (compile on)
    from_cache: bool = False  # taken from the user's tune cache instead of probed now

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneResult:
        result = from_known_fields(cls, data)
        result.probes = [from_known_fields(TuneProbe, p) if isinstance(p, dict) else p
                         for p in data.get("probes", [])]
        return result

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / TUNE_FILE, self.to_dict())

    @classmethod
    def read(cls, run_dir: Path) -> TuneResult:
        return cls.from_dict(read_json_object(run_dir / TUNE_FILE))
