"""A bench directory (``tui-eval bench``): one run directory per size and compile setting
(``bs_N/``…) and bench.json, one row per size and what was run (bench.md, the same table
in markdown, is written beside it by the engine)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_eval.results.json_io import from_known_fields, read_json_object, write_json_atomic
from tui_eval.results.names import BENCH_FILE


@dataclass
class BenchRow:
    batch_size: int
    seconds: float
    speedup: float
    samples_per_s: float
    tokens_per_s: float
    peak_memory_bytes: int | None
    gpu_util_percent: float | None
    fallbacks: int = 0
    final_batch_size: int | None = None
    pairs_per_s: float | None = None  # choice tasks: (context, choice) pairs scored per second
    compile: str = "off"  # as the run resolved it: "on", "graph" or "off"
    compile_seconds: float = 0.0  # not in ``seconds``
    requested_compile: str = "off"  # as asked: "auto", "graph", "on" or "off"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchResult:
    rows: list[BenchRow]
    context: dict[str, Any]  # model, data, samples, device…: what was run

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        rows = [from_known_fields(BenchRow, row) for row in data.get("rows", [])
                if isinstance(row, dict)]
        return cls(rows, {k: v for k, v in data.items() if k != "rows"})

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [row.to_dict() for row in self.rows], **self.context}

    def write(self, bench_dir: Path) -> None:
        write_json_atomic(bench_dir / BENCH_FILE, self.to_dict())

    @classmethod
    def read(cls, bench_dir: Path) -> BenchResult:
        return cls.from_dict(read_json_object(bench_dir / BENCH_FILE))


def holds_bench(directory: Path) -> bool:
    return (directory / BENCH_FILE).is_file()
