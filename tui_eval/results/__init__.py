"""The results directory: the contract between a run and everything that reads it later.
One module per file (named after the dash), and ``RunDir`` (run_dir.py) for the directory
itself: its default name, its preparation, its files and their readers and writers.

config.json       the resolved config, versions and device       ``RunConfig`` — run_config
predictions.jsonl one row per sample, appended as each batch ends ``PredictionRow`` —
                  predictions (a choice task's rows add every choice's log-likelihood and
                  the indices picked and expected); in a run of several processes each
                  rank appends to its own predictions.rank-N.jsonl, merged when it ends
metrics.json      the scores and the run's figures, written whole ``RunMetrics`` — metrics
tune.json         the batch-size probes and the size chosen       ``TuneResult`` — tune
run.log           the log lines, as the terminal shows them
events.jsonl      every engine event, one JSON object per line (tui_eval.events)

A bench directory (``tui-eval bench``) holds one run directory per size (``bs_N/``) and:
bench.json        one row per size and compile setting, and what was run
                                                                  ``BenchResult`` — bench
bench.md          the same table in markdown, for people and scripts

The files' names are in names.py; JSON replaced atomically in json_io.py; a file another
process appends to is followed by tail.py; the summary's rows (text) in summary.py.

Each file has one writer (the run that owns the directory) and typed readers here; code
elsewhere reads these types, not string keys. A crash at any moment loses at most the
batch in flight: rows are flushed per batch and JSON files are replaced atomically.
"""

from tui_eval.results.bench import BenchResult, BenchRow, holds_bench
from tui_eval.results.json_io import from_known_fields, write_json_atomic
from tui_eval.results.metrics import (
    RunMetrics,
    build_run_metrics,
    rescored_metrics,
    write_metrics,
)
from tui_eval.results.names import (
    BENCH_FILE,
    BENCH_MD_FILE,
    CONFIG_FILE,
    EVENTS_FILE,
    LOG_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RUN_FILES,
    TUNE_FILE,
    rank_predictions_file,
)
from tui_eval.results.predictions import (
    PredictionRow,
    PredictionTail,
    PredictionWriter,
    parse_prediction_line,
    rank_prediction_paths,
    read_predictions,
    write_predictions_atomic,
)
from tui_eval.results.run_config import RunConfig
from tui_eval.results.run_dir import RunDir, default_run_dir, remove_if_empty, resume_command
from tui_eval.results.tail import LineTail
from tui_eval.results.tune import TuneProbe, TuneResult

__all__ = [
    "BENCH_FILE", "BENCH_MD_FILE", "CONFIG_FILE", "EVENTS_FILE", "LOG_FILE", "METRICS_FILE",
    "PREDICTIONS_FILE", "RUN_FILES", "TUNE_FILE", "BenchResult", "BenchRow", "LineTail",
    "PredictionRow", "PredictionTail", "PredictionWriter", "RunConfig", "RunDir", "RunMetrics",
    "TuneProbe", "TuneResult", "build_run_metrics", "default_run_dir",
    "from_known_fields", "holds_bench", "parse_prediction_line", "rank_prediction_paths",
    "rank_predictions_file", "read_predictions", "remove_if_empty", "rescored_metrics",
    "resume_command", "write_json_atomic", "write_metrics",
    "write_predictions_atomic",
]
