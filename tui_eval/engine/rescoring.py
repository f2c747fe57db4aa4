"""Scoring a finished run again from its predictions.jsonl: no model, no torch.

Each row's ``extracted`` and ``scores`` are recomputed from its ``prediction`` and
``reference`` with the run's metrics and extract spec (from config.json) or the ones given
instead. The run's figures in metrics.json (rates, times, batch sizes) belong to its
generation and are kept. What is rewritten, in this order, so that rescoring again finishes
the job after a crash at any point:

1. the old metrics.json is copied to metrics.before-rescore-<time>.json (never replacing
   an earlier copy);
2. predictions.jsonl, atomically;
3. config.json, atomically, when the metrics or the extract spec changed: the saved config
   says how the rows on disk were scored, so a later --resume or auto-resume scores new
   rows the same way (or is refused with the difference);
4. metrics.json, atomically; its ``extract`` and its metric names say what produced it;
5. a log line and the new final event are appended to run.log and events.jsonl, so that
   ``tui-eval watch`` shows the new scores.

A choice run (``task = "choice"``) is scored by log-likelihood, not by comparing texts: its
rows' acc and acc_norm are recomputed from the log-likelihoods they hold, and ``--metrics``
or ``--extract`` are refused, since they do not apply to it.

Only a finished run is rescored: a run still writing, or one stopped part-way (metrics.json
``partial``), is refused with the command that finishes it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_eval.config import DEFAULTS
from tui_eval.engine.resume import refuse_if_still_running, saved_config_values
from tui_eval.errors import UsageError
from tui_eval.events import EventSink, FanOut, RunFinished, RunLog
from tui_eval.events.recorder import EventRecorder
from tui_eval.i18n import default_language
from tui_eval.metrics import CHOICE_METRICS, choice_picks, choice_scores, score_prediction
from tui_eval.results.metrics import RunMetrics, rescored_metrics
from tui_eval.results.names import CONFIG_FILE, METRICS_FILE
from tui_eval.results.predictions import PredictionRow, read_predictions, write_predictions_atomic
from tui_eval.results.run_dir import RunDir

# The config keys that decide how a prediction is scored: all a rescore may change.
SCORING_KEYS = ("metrics", "extract")
PREVIOUS_METRICS_PREFIX = "metrics.before-rescore-"


@dataclass
class Rescored:
    metrics: RunMetrics
    previous_copy: Path  # where the metrics.json it replaced was kept
    changed: dict[str, Any]  # the scoring keys whose value changed in config.json


def rescore_row(row: PredictionRow, names: Sequence[str], extract: str | None) -> PredictionRow:
    extracted, scores = score_prediction(row.prediction, row.references, names, extract)
    return dataclasses.replace(row, extracted=extracted, scores=scores)


def rescore_choice_row(row: PredictionRow) -> PredictionRow:
    """A choice row scored again from its stored log-likelihoods; a row with a failed
    choice keeps its zero scores."""
    logprobs = row.logprobs or []
    if row.error is not None or row.choices is None or row.gold is None or not logprobs \
            or any(value is None for value in logprobs):
        return dataclasses.replace(row, scores=dict.fromkeys(CHOICE_METRICS, 0.0))
    pred, pred_norm = choice_picks(row.choices, [float(value) for value in logprobs
                                                 if value is not None])
    return dataclasses.replace(row, prediction=row.choices[pred], pred=pred,
                               pred_norm=pred_norm, scores=choice_scores(pred, pred_norm, row.gold))


def finished_run_metrics(run_dir: RunDir) -> RunMetrics:
    """The metrics.json of a finished run that no process is writing; UsageError otherwise."""
    if not run_dir.config_path.is_file():
        raise UsageError(f"{run_dir}: no run here (no {CONFIG_FILE})")
    refuse_if_still_running(run_dir)
    metrics = run_dir.read_metrics()
    if metrics is None:
        raise UsageError(f"{run_dir}: no readable {METRICS_FILE}, so the run did not finish; "
                         f"finish it with `{run_dir.resume_command()}`, then rescore")
    if metrics.partial:
        raise UsageError(f"{run_dir}: the run stopped after {metrics.n}/{metrics.n_total} "
                         f"samples; finish it with `{run_dir.resume_command()}`, then rescore")
    return metrics


def keep_previous_metrics(run_dir: RunDir) -> Path:
    """Copy metrics.json to a new metrics.before-rescore-<time>[-k].json; an existing copy
    is never replaced."""
    data = run_dir.metrics_path.read_bytes()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        path = run_dir / f"{PREVIOUS_METRICS_PREFIX}{stamp}{suffix}.json"
        try:
            with path.open("xb") as handle:
                handle.write(data)
            return path
        except FileExistsError:
            continue
    raise UsageError(f"{run_dir}: too many {PREVIOUS_METRICS_PREFIX}{stamp}*.json copies")


def rescore_run(run_dir: RunDir, overrides: dict[str, Any], sink: EventSink) -> Rescored:
    """Score every row of a finished run again. ``overrides``: values for the keys of
    SCORING_KEYS (already validated; extract None turns extraction off) that replace the
    saved ones. Sends a log line and RunFinished with the new metrics to ``sink``."""
    previous = finished_run_metrics(run_dir)
    saved = saved_config_values(run_dir)
    choice = previous.task == "choice" or saved.get("task") == "choice"
    if choice and overrides:
        flags = ", ".join(f"--{key}" for key in overrides)
        raise UsageError(f"{run_dir}: a choice run is scored by log-likelihood (acc, acc_norm); "
                         f"{flags} applies to generation runs only")
    scoring = {key: overrides.get(key, saved.get(key, DEFAULTS[key])) for key in SCORING_KEYS}
    names, extract = list(scoring["metrics"]), scoring["extract"]
    if choice:
        names, extract = list(CHOICE_METRICS), None
    path = run_dir.predictions_path
    if not path.is_file():
        raise UsageError(f"{path}: not found")
    rows = read_predictions(path)
    if len(rows) != previous.n:
        raise UsageError(f"{path}: holds {len(rows)} rows but {METRICS_FILE} counts "
                         f"{previous.n}; the run's files disagree")
    if choice:
        rows = [rescore_choice_row(row) for row in rows]
        changed: dict[str, Any] = {}
    else:
        rows = [rescore_row(row, names, extract) for row in rows]
        changed = {key: value for key, value in scoring.items()
                   if value != saved.get(key, DEFAULTS[key])}
    metrics = rescored_metrics(previous, rows, names, extract)

    previous_copy = keep_previous_metrics(run_dir)
    write_predictions_atomic(path, rows)
    if changed:
        described = run_dir.read_config()
        described.config.update(changed)
        run_dir.write_config(described)
    run_dir.write_metrics(metrics)

    config_lang = saved.get("lang")
    recorder = EventRecorder()
    recorder.open(run_dir)
    events = FanOut(recorder, sink)
    try:
        RunLog(events, config_lang or default_language())(
            "INFO", "rescored", n=metrics.n, run_dir=run_dir, metrics=", ".join(names),
            extract=extract or "off", previous=previous_copy.name)
        events(RunFinished(metrics=metrics))
    finally:
        recorder.close()
    return Rescored(metrics=metrics, previous_copy=previous_copy, changed=changed)
