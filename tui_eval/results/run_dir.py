"""``RunDir``: one results directory (a run's, a tune's or a bench's), as everything that
writes or reads it names it: its default name, its preparation, its files and their typed
readers and writers."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tui_eval.errors import UsageError
from tui_eval.results.bench import BenchResult
from tui_eval.results.metrics import RunMetrics, write_metrics
from tui_eval.results.names import (
    BENCH_FILE,
    BENCH_MD_FILE,
    CONFIG_FILE,
    EVENTS_FILE,
    LOG_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    TUNE_FILE,
    rank_predictions_file,
)
from tui_eval.results.predictions import (
    PredictionRow,
    PredictionWriter,
    merge_rank_files,
    rank_prediction_paths,
    read_predictions,
    read_run_rows,
    replace_rank_files,
)
from tui_eval.results.run_config import RunConfig
from tui_eval.results.tune import TuneResult

RunKind = Literal["run", "tune", "bench"]
# Where a directory goes when the config names none (output_dir unset): one folder of
# results, each directory named by the time it was made, a tune's and a bench's marked.
DEFAULT_PARENT = Path("eval_results")
DEFAULT_PREFIXES: dict[str, str] = {"run": "", "tune": "tune-", "bench": "bench-"}


def default_run_dir(kind: RunKind = "run") -> Path:
    """eval_results/<time> for a run, eval_results/tune-<time>, eval_results/bench-<time>."""
    return DEFAULT_PARENT / time.strftime(f"{DEFAULT_PREFIXES[kind]}%Y%m%d-%H%M%S")


def resume_command(run_dir: Path | str | RunDir) -> str:
    """The one command that continues a run: its config is read back from config.json."""
    return f"tui-eval --no-ui --resume -o {shlex.quote(str(run_dir))}"


def remove_if_empty(directories: list[Path]) -> None:
    """Remove each directory (deepest first) that holds nothing; never one that holds a
    file or another directory."""
    for directory in directories:
        try:
            directory.rmdir()  # refuses a directory that is not empty
        except OSError:
            return


@dataclass(frozen=True)
class RunDir:
    """A results directory. ``kind`` ("run", "tune" or "bench") names it when the config
    does not (``RunDir.of``). ``str()`` and ``os.fspath()`` give its path, ``/`` a path in
    it. Each file has one writer (the process that owns the directory) and is read here."""

    path: Path
    kind: RunKind = "run"

    def __post_init__(self) -> None:
        if self.kind not in DEFAULT_PREFIXES:
            raise ValueError(f"unknown kind of results directory: {self.kind!r}")
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of(cls, output_dir: str | Path | RunDir | None, kind: RunKind = "run") -> RunDir:
        """The directory the config's ``output_dir`` names, or a new default one."""
        if isinstance(output_dir, RunDir):
            return output_dir
        return cls(Path(output_dir) if output_dir else default_run_dir(kind), kind)

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ── preparation ──────────────────────────────────────────────────────────────────

    def missing_dirs(self) -> list[Path]:
        """The directory and those of its parents that do not exist yet, deepest first: what
        ``prepare`` will create, so a run that fails can take back what it left empty."""
        missing = []
        for directory in (self.path, *self.path.parents):
            if directory.exists() or directory == directory.parent:
                break
            missing.append(directory)
        return missing

    def prepare(self) -> RunDir:
        """Create the directory and prove it is writable (and not on a full disk), before
        any model is loaded. Whether a run it already holds is continued is the engine's
        call."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok", encoding="utf-8")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot write results: {exc.strerror}") from None
        return self

    def holds_run(self) -> bool:
        return (self.config_path.exists() or self.predictions_path.exists()
                or bool(self.rank_prediction_paths()))

    def holds_bench(self) -> bool:
        return self.bench_path.is_file()

    def resume_command(self) -> str:
        return resume_command(self)

    # ── the files ────────────────────────────────────────────────────────────────────

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tune_path(self) -> Path:
        return self.path / TUNE_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def bench_path(self) -> Path:
        return self.path / BENCH_FILE

    @property
    def bench_md_path(self) -> Path:
        return self.path / BENCH_MD_FILE

    def rank_predictions_path(self, rank: int) -> Path:
        return self.path / rank_predictions_file(rank)

    def rank_prediction_paths(self) -> list[Path]:
        """The ranks' prediction files a run of several processes left here."""
        return rank_prediction_paths(self.path)

    # ── typed readers and writers ────────────────────────────────────────────────────

    def read_config(self) -> RunConfig:
        return RunConfig.read(self.path)

    def write_config(self, config: RunConfig) -> None:
        config.write(self.path)

    def read_predictions(self) -> list[PredictionRow]:
        """Every row of a whole predictions.jsonl."""
        return read_predictions(self.predictions_path)

    def prediction_writer(self, rank: int | None = None) -> PredictionWriter:
        """Rows appended to predictions.jsonl, or to ``rank``'s own file in a run of
        several processes."""
        return PredictionWriter(self.predictions_path if rank is None
                                else self.rank_predictions_path(rank))

    def read_run_rows(self) -> tuple[list[PredictionRow], int]:
        """Every row in predictions.jsonl and the ranks' files, and the torn bytes."""
        return read_run_rows(self.path)

    def replace_predictions(self, rows: list[PredictionRow]) -> None:
        """predictions.jsonl becomes ``rows``, whole; the ranks' files go."""
        replace_rank_files(self.path, rows)

    def merge_rank_files(self) -> int:
        """The ranks' files folded into predictions.jsonl; the torn bytes dropped."""
        return merge_rank_files(self.path)

    def read_metrics(self) -> RunMetrics | None:
        """None when there is no (readable) metrics.json yet."""
        return RunMetrics.read(self.path)

    def write_metrics(self, metrics: RunMetrics) -> None:
        write_metrics(self.path, metrics)

    def read_tune(self) -> TuneResult:
        return TuneResult.read(self.path)

    def write_tune(self, result: TuneResult) -> None:
        result.write(self.path)

    def read_bench(self) -> BenchResult:
        return BenchResult.read(self.path)

    def write_bench(self, result: BenchResult) -> None:
        result.write(self.path)

    def write_bench_markdown(self, markdown: str) -> None:
        """bench.md: bench.json's table for people, in the run's language."""
        self.bench_md_path.write_text(markdown, encoding="utf-8")
