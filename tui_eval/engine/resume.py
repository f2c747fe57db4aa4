"""Resuming a run: what a results directory already holds, and whether it may be continued.

A directory holds a run when it has config.json or predictions.jsonl. Continuing it is
allowed only when the new config matches the saved one on every key that changes what is
generated or how it is scored; the keys declared ``may_change`` in tui_eval.config only
change how the work is done (batch size, device, OOM settings…) and may differ between
tries. Rows already in
predictions.jsonl are kept and their samples skipped; a torn last line (the process was
killed while writing it) is cut off so that its sample is generated again (reading the
rows and merging the ranks' files are tui_eval.results.predictions').
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tui_eval.config import DEFAULTS, KEYS, EvalConfig, check_value
from tui_eval.data import ChoiceDataset, Dataset
from tui_eval.engine.preparation import with_task
from tui_eval.errors import UsageError
from tui_eval.events import Event, EventSink, Progress, RunStarted
from tui_eval.events.follow import last_run_status
from tui_eval.results.names import CONFIG_FILE, PREDICTIONS_FILE, RUN_FILES
from tui_eval.results.predictions import (
    PredictionRow,
    PredictionWriter,
    cut_torn_tail,
    read_done_rows,
)
from tui_eval.results.run_dir import RunDir


class Indexed(Protocol):
    """A sample by its place in the dataset."""

    @property
    def index(self) -> int: ...


SampleT = TypeVar("SampleT", bound=Indexed)


def saved_config_values(run_dir: RunDir) -> dict[str, Any]:
    """The config a run was started with, validated key by key; keys this version does not
    know are ignored and missing ones take their defaults."""
    path = run_dir.config_path
    if not path.exists():
        raise UsageError(f"{path}: not found; {run_dir} holds no run to resume")
    saved = run_dir.read_config().config
    values: dict[str, Any] = {}
    for key, value in saved.items():
        if key not in KEYS:
            continue
        try:
            values[key] = check_value(key, value)
        except ValueError as exc:
            raise UsageError(f"{path}: key 'config.{key}' {exc}") from None
    return values


# The keys `tui-eval rescore` changes on a finished run (engine/rescoring.py's SCORING_KEYS).
RESCORE_KEYS = ("metrics", "extract")


def config_differences(saved: dict[str, Any], config: EvalConfig) -> list[str]:
    """'key: X there, Y now' for every key that must match and does not."""
    differences = []
    for key, value in config.to_dict().items():
        if KEYS[key].may_change_on_resume:
            continue
        before = saved.get(key, DEFAULTS[key])
        if not _same_value(key, before, value):
            differences.append(f"{key}: {_shown(before)} there, {_shown(value)} now")
    return differences


def _shown(value: Any) -> str:
    # the user's words, not Python's: a key not set reads "unset"; a long value is cut, so
    # the refusal stays a short line
    text = "unset" if value is None else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _same_value(key: str, before: Any, now: Any) -> bool:
    if before == now:
        return True
    if key == "task" and before is None:
        return now == "generate"  # a run saved before tasks existed generated
    if key in ("model", "data") and isinstance(before, str) and isinstance(now, str):
        # The same file, named once relative to this directory and once absolute.
        try:
            return Path(before).expanduser().resolve() == Path(now).expanduser().resolve()
        except OSError:
            return False
    return False


@dataclass
class ResumePlan:
    """What the engine skips and adds back into the metrics; empty for a fresh run.
    A rank other than 0 in a run of several processes knows only the indices done."""

    rows: list[PredictionRow] = field(default_factory=list)
    torn_bytes: int = 0
    automatic: bool = False  # resumed because -o named a run of the same config
    indices: frozenset[int] | None = None  # the done samples, when the rows are not held

    @property
    def done_indices(self) -> frozenset[int]:
        if self.indices is not None:
            return self.indices
        return frozenset(row.index for row in self.rows)

    @property
    def done(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.rows)

    def remaining(self, samples: Sequence[SampleT]) -> list[SampleT]:
        done = self.done_indices
        return [s for s in samples if s.index not in done]


class ProgressOffset:
    """An event sink that counts the samples found on disk into the engine's progress, so a
    resumed run reports done/total over the whole dataset; rates and ETA stay this try's."""

    def __init__(self, sink: EventSink, done_before: int) -> None:
        self.sink = sink
        self.done_before = done_before

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            event = dataclasses.replace(event, done=event.done + self.done_before,
                                        total=event.total + self.done_before)
        elif isinstance(event, RunStarted):
            event = dataclasses.replace(event, total=event.total + self.done_before)
        self.sink(event)


def check_rows_match(path: Path, rows: list[PredictionRow],
                     dataset: Dataset | ChoiceDataset) -> None:
    """Every kept row must be the same sample (index, id and prompt) as in today's dataset,
    and none may appear twice: otherwise the data changed under the run."""
    samples = dataset.samples
    seen: set[int] = set()
    for number, row in enumerate(rows, start=1):
        index = row.index
        if index in seen:
            raise UsageError(f"{path}:{number}: sample index {index} appears twice; "
                             "use --overwrite or another -o")
        seen.add(index)
        sample = samples[index] if 0 <= index < len(samples) else None
        if sample is None or row.id != sample.id or row.prompt != sample.prompt:
            raise UsageError(f"{path}:{number}: sample {row.id!r} does not match "
                             f"{dataset.path} (was the dataset changed?); use --overwrite "
                             "or another -o")


def plan_resume(run_dir: RunDir, config: EvalConfig, dataset: Dataset | ChoiceDataset, *,
                resume: bool, overwrite: bool) -> ResumePlan:
    """Decide, before the model loads, how to use ``run_dir``: start fresh, continue the run
    it holds, or refuse. Cuts a torn last line off predictions.jsonl when continuing."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; choose one")
    if not run_dir.holds_run():
        if resume:
            raise UsageError(f"{run_dir}: no run to resume (no {CONFIG_FILE})")
        return ResumePlan()
    refuse_if_still_running(run_dir)
    if overwrite:
        remove_run_files(run_dir)
        return ResumePlan()
    if not run_dir.config_path.exists():
        raise UsageError(f"{run_dir}: holds {PREDICTIONS_FILE} but no {CONFIG_FILE}, so its "
                         "config is unknown; use --overwrite or another -o")
    differences = config_differences(saved_config_values(run_dir), with_task(config))
    if differences:
        shown = "; ".join(differences[:3]) + ("; …" if len(differences) > 3 else "")
        metrics = run_dir.read_metrics()
        if metrics is not None and not metrics.partial:  # nothing left to continue
            rescore = ""
            if all(line.split(":", 1)[0] in RESCORE_KEYS for line in differences):
                rescore = f"score it again with `tui-eval rescore {shlex.quote(str(run_dir))}`, "
            raise UsageError(f"{run_dir}: holds a finished run with a different config "
                             f"({shown}); {rescore}replace it with --overwrite, or choose "
                             "another -o")
        raise UsageError(f"{run_dir}: holds a run with a different config ({shown}); continue "
                         f"it with `{run_dir.resume_command()}`, replace it with --overwrite, "
                         "or choose another -o")
    path = run_dir.predictions_path
    torn_in_ranks = run_dir.merge_rank_files()
    done = read_done_rows(path)
    check_rows_match(path, done.rows, dataset)
    if done.torn_bytes:
        cut_torn_tail(path, done.valid_bytes)
    return ResumePlan(rows=done.rows, torn_bytes=done.torn_bytes + torn_in_ranks,
                      automatic=not resume)


@dataclass
class RunFiles:
    """A try's prediction files as the run's end reads and orders them: ``writer``'s file
    (predictions.jsonl, or this rank's), and in a run of several every rank's."""

    run_dir: RunDir
    resumed: ResumePlan
    writer: PredictionWriter

    def rows_of_try(self) -> list[PredictionRow]:
        """This try's rows in every rank's file (a rank that died left its batches)."""
        kept = self.resumed.done_indices
        return [row for row in self.run_dir.read_run_rows()[0] if row.index not in kept]

    def keep_in_order(self, rows: list[PredictionRow] | None) -> None:
        """predictions.jsonl in dataset order: the file as written (``None``), or the rows
        kept from earlier tries and every rank's ``rows`` merged into it."""
        if rows is None:
            self.writer.restore_dataset_order()
            return
        all_rows = self.resumed.rows + rows
        self.run_dir.replace_predictions(sorted(all_rows, key=lambda row: row.index))


def remove_run_files(run_dir: RunDir) -> None:
    for name in (*RUN_FILES, *(part.name for part in run_dir.rank_prediction_paths())):
        for path in (run_dir / name, run_dir / (name + ".tmp")):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise UsageError(f"{path}: cannot remove for --overwrite: {exc.strerror}") \
                    from None


def refuse_if_still_running(run_dir: RunDir) -> None:
    """Two processes appending to one run would score samples twice."""
    status = last_run_status(run_dir.path)
    if status.alive:
        raise UsageError(f"{run_dir}: a run (pid {status.pid}) is still writing here; stop it "
                         f"first, or follow it with `tui-eval watch {shlex.quote(str(run_dir))}`")
