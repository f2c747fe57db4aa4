"""The names of the files in a results directory, and of the ranks' prediction files."""

from __future__ import annotations

CONFIG_FILE = "config.json"
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
TUNE_FILE = "tune.json"
LOG_FILE = "run.log"
EVENTS_FILE = "events.jsonl"
BENCH_FILE = "bench.json"
BENCH_MD_FILE = "bench.md"
# Files a run writes; --overwrite removes exactly these (and their temporary twins, and
# the ranks' prediction files), predictions first: a kill half-way then leaves at worst a
# config with no rows.
RUN_FILES = (PREDICTIONS_FILE, METRICS_FILE, CONFIG_FILE, LOG_FILE, EVENTS_FILE, TUNE_FILE)
# In a run of several processes each rank appends its rows to its own file; the run merges
# them into predictions.jsonl when it ends, and a resume merges whatever a stop left.
RANK_PREDICTIONS_GLOB = "predictions.rank-*.jsonl"


def rank_predictions_file(rank: int) -> str:
    return f"predictions.rank-{rank}.jsonl"
