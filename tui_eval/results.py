"""The results directory: the contract between a run and everything that reads it later.

config.json       the resolved config, versions and device          ``RunConfig``
predictions.jsonl one row per sample, appended as each batch ends    ``PredictionRow``
                  (a choice task's rows add every choice's log-likelihood and the
                  indices picked and expected)
metrics.json      the scores and the run's figures, written whole    ``RunMetrics``
tune.json         the batch-size probes and the size chosen          ``TuneResult``
run.log           the log lines, as the terminal shows them
events.jsonl      every engine event, one JSON object per line (tui_eval.events)

A bench directory (``tui-eval bench``) holds one run directory per size (``bs_N/``) and:
bench.json        one row per size and compile setting, and what was run  ``BenchResult``
bench.md          the same table in markdown, for people and scripts

Each file has one writer (the run that owns the directory) and typed readers here; code
elsewhere reads these types, not string keys. A crash at any moment loses at most the
batch in flight: rows are flushed per batch and JSON files are replaced atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from tui_eval.errors import UsageError
from tui_eval.metrics import mean_and_stderr

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


def rank_prediction_paths(run_dir: Path) -> list[Path]:
    """The ranks' prediction files a run of several processes left in ``run_dir``."""
    return sorted(run_dir.glob(RANK_PREDICTIONS_GLOB))

T = TypeVar("T")


def from_known_fields(cls: type[T], data: dict[str, Any]) -> T:
    """A dataclass from a dict written by this or another version: unknown keys are
    ignored, missing ones take their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def default_run_dir() -> Path:
    return Path("eval_results") / time.strftime("%Y%m%d-%H%M%S")


def resume_command(run_dir: Path | str) -> str:
    """The one command that continues a run: its config is read back from config.json."""
    return f"tui-eval --no-ui --resume -o {shlex.quote(str(run_dir))}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or a kill: leave no half file behind
        tmp.unlink(missing_ok=True)
        raise


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; UsageError naming the file (and line) otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what
    ``prepare_run_dir`` will create, so a run that fails can take back what it left empty."""
    missing = []
    for directory in (path, *path.parents):
        if directory.exists() or directory == directory.parent:
            break
        missing.append(directory)
    return missing


def remove_if_empty(directories: list[Path]) -> None:
    """Remove each directory (deepest first) that holds nothing; never one that holds a
    file or another directory."""
    for directory in directories:
        try:
            directory.rmdir()  # refuses a directory that is not empty
        except OSError:
            return


def prepare_run_dir(path: Path) -> Path:
    """Create the directory and prove it is writable (and not on a full disk), before any
    model is loaded. Whether a run it already holds is continued is the engine's call."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{path}: cannot write results: {exc.strerror}") from None
    return path


def holds_run(run_dir: Path) -> bool:
    return ((run_dir / CONFIG_FILE).exists() or (run_dir / PREDICTIONS_FILE).exists()
            or bool(rank_prediction_paths(run_dir)))


# ── config.json ───────────────────────────────────────────────────────────────────────

@dataclass
class RunConfig:
    """config.json: the resolved config (key → value, as ``EvalConfig.to_dict`` gives it)
    and what the run ran on."""

    config: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    device_name: str | None = None
    dtype: str | None = None
    host: str | None = None  # lets a watcher tell whether it can see the run's pid

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / CONFIG_FILE, dataclasses.asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunConfig:
        """UsageError naming the file when it is missing or not a run's config."""
        path = run_dir / CONFIG_FILE
        data = _read_json_object(path)
        if not isinstance(data.get("config"), dict):
            raise UsageError(f"{path}: no 'config' object")
        host = data.get("host")
        return cls(config=data["config"], versions=dict(data.get("versions") or {}),
                   device=data.get("device"), device_name=data.get("device_name"),
                   dtype=data.get("dtype"), host=host if isinstance(host, str) else None)


# ── predictions.jsonl ─────────────────────────────────────────────────────────────────

@dataclass
class PredictionRow:
    """One sample's line in predictions.jsonl.

    A choice task's row holds the choice picked by log-likelihood as ``prediction``, the
    gold choice as ``reference``, acc and acc_norm as ``scores``, and the fields below
    ``error``; a generation row has none of those (they are left out of its line)."""

    index: int  # position in the dataset
    id: str
    prompt: str = ""
    # the prompt as the model saw it, wrapped in the chat template; None (and left out of
    # the line) when no chat template was applied
    rendered: str | None = None
    prediction: str | None = None  # None when the sample failed
    # the answer cut out of the prediction and scored; None without an extract spec
    extracted: str | None = None
    reference: str | list[str] = ""  # one reference, or the list of acceptable ones
    scores: dict[str, float] = field(default_factory=dict)
    new_tokens: int = 0
    error: str | None = None
    truncated: bool = False  # the prompt was cut from the left to fit the context
    # the prompt's chat turns (few-shot examples, a system prompt) when it has them: what a
    # chat template wrapped; left out of the line when None
    turns: list[dict[str, str]] | None = None
    # how many of its tokens were cut: ``prompt`` is the whole text, the model saw it
    # without them
    truncated_tokens: int = 0
    # choice tasks only
    choices: list[str] | None = None
    logprobs: list[float | None] | None = None  # per choice: summed log-probability
    is_greedy: list[bool | None] | None = None  # per choice: greedy decoding gives it
    pred: int | None = None  # the choice with the highest log-likelihood (None: failed)
    pred_norm: int | None = None  # the highest per character of the choice
    gold: int | None = None  # the expected choice

    @property
    def references(self) -> list[str]:
        return list(self.reference) if isinstance(self.reference, list) else [self.reference]

    @property
    def is_choice(self) -> bool:
        return self.gold is not None

    def passed(self, metric: str | None = None) -> bool:
        """The sample's verdict: right when ``metric`` (the run's first metric unless named)
        scored 1, wrong when it scored less or the sample failed."""
        if self.error is not None or self.prediction is None:
            return False
        name = metric if metric is not None else next(iter(self.scores), None)
        return name is not None and self.scores.get(name, 0.0) >= 1.0

    def matches(self, text: str) -> bool:
        """Whether ``text`` appears in the id, the prompt or the prediction (any case)."""
        needle = text.casefold()
        return any(needle in field.casefold()
                   for field in (self.id, self.prompt, self.prediction or ""))

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if self.rendered is None:
            del data["rendered"]
        if self.turns is None:
            del data["turns"]
        if not self.is_choice:
            for name in CHOICE_ROW_FIELDS:
                del data[name]
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionRow | None:
        """None for a line that is not a prediction row (no int index or no id)."""
        if not isinstance(data.get("index"), int) or "id" not in data:
            return None
        row = from_known_fields(cls, data)
        row.id = str(row.id)
        row.scores = dict(row.scores or {})
        return row


CHOICE_ROW_FIELDS = ("choices", "logprobs", "is_greedy", "pred", "pred_norm", "gold")


def parse_prediction_line(line: bytes | str) -> PredictionRow | None:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return PredictionRow.from_dict(data) if isinstance(data, dict) else None


def read_predictions(path: Path) -> list[PredictionRow]:
    """Every row of a whole predictions.jsonl (see ``engine.resume`` for a torn one)."""
    rows: list[PredictionRow] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = parse_prediction_line(line)
            if row is None:
                raise UsageError(f"{path}:{number}: not a valid prediction row")
            rows.append(row)
    return rows


class LineTail:
    """Reads a file that another process appends to, one complete line at a time.

    ``read()`` returns the lines appended since the previous call; a line still being
    written (no newline yet) waits for the next call. When the file is replaced or
    truncated (a run rewrites predictions.jsonl in dataset order when it ends, or starts
    over with --overwrite), reading starts again from the top and ``restarted`` is set for
    that call. ``compact`` may shrink a long list of lines while they are read, so that a
    big backlog is never held whole.
    """

    CHUNK_BYTES = 8 * 1024 * 1024
    MAX_LINE_BYTES = 4 * 1024 * 1024  # a "line" longer than this is garbage, not a record

    def __init__(self, path: Path,
                 compact: Callable[[list[bytes]], list[bytes]] | None = None) -> None:
        self.path = path
        self.compact = compact
        self.offset = 0
        self.bad_lines = 0  # over-long lines dropped
        self.restarted = False
        self._identity: tuple[int, int] | None = None
        self._pending = b""

    @property
    def exists(self) -> bool:
        return self._identity is not None

    def _check_identity(self) -> os.stat_result | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._identity is not None:
                self._start_over(None)
            return None
        identity = (stat.st_dev, stat.st_ino)
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity or stat.st_size < self.offset:
            self._start_over(identity)
        return stat

    def _start_over(self, identity: tuple[int, int] | None) -> None:
        self._identity = identity
        self.offset = 0
        self._pending = b""
        self.restarted = True

    def read(self, compact_above: int = 0) -> list[bytes]:
        """Complete lines appended since the last call (``compact`` applied whenever more
        than ``compact_above`` have piled up, and once at the end)."""
        self.restarted = False
        stat = self._check_identity()
        if stat is None or stat.st_size == self.offset:
            return []
        lines: list[bytes] = []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                while True:
                    chunk = handle.read(self.CHUNK_BYTES)
                    if not chunk:
                        break
                    self.offset += len(chunk)
                    parts = (self._pending + chunk).split(b"\n")
                    self._pending = parts.pop()
                    if len(self._pending) > self.MAX_LINE_BYTES:
                        self._pending = b""
                        self.bad_lines += 1
                    lines.extend(parts)
                    if self.compact is not None and compact_above and len(lines) > compact_above:
                        lines = self.compact(lines)
        except FileNotFoundError:
            self._start_over(None)
            return []
        return self.compact(lines) if self.compact is not None else lines


class PredictionTail:
    """The rows of a run's predictions.jsonl as batches land, and those of the ranks' own
    files in a run of several processes: ``poll()`` gives the rows appended since the last
    call; after ``restarted`` it gives every row again. A row may come twice (a rank's file
    merged into predictions.jsonl): readers key rows by their index."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.lines = LineTail(run_dir / PREDICTIONS_FILE)
        self.rank_lines: dict[Path, LineTail] = {}
        self.bad_lines = 0

    @property
    def restarted(self) -> bool:
        return self.lines.restarted

    def poll(self) -> list[PredictionRow]:
        lines = self.lines.read()
        if self.lines.restarted:  # rewritten whole: the ranks' files are read again too
            self.rank_lines.clear()
        for path in rank_prediction_paths(self.run_dir):
            self.rank_lines.setdefault(path, LineTail(path))
        for path, tail in list(self.rank_lines.items()):
            lines += tail.read()
            if not tail.exists:  # merged into predictions.jsonl and removed
                del self.rank_lines[path]
        rows = []
        for line in lines:
            if not line.strip():
                continue
            row = parse_prediction_line(line)
            if row is None:
                self.bad_lines += 1
            else:
                rows.append(row)
        return rows


def _write_rows(handle: IO[str], rows: Iterable[PredictionRow]) -> None:
    handle.write("".join(row.to_json() + "\n" for row in rows))


def write_predictions_atomic(path: Path, rows: Iterable[PredictionRow]) -> None:
    """Replace predictions.jsonl whole: a reader sees the old rows or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            _write_rows(handle, rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class PredictionWriter:
    """Appends prediction rows and flushes after each batch (to the rank's own file in a
    run of several processes)."""

    def __init__(self, run_dir: Path, name: str = PREDICTIONS_FILE) -> None:
        self.path = run_dir / name
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")

    def write_batch(self, rows: Sequence[PredictionRow]) -> None:
        _write_rows(self._handle, rows)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def restore_dataset_order(self) -> None:
        """Rewrite the file in the dataset's order once the run is complete (atomically)."""
        rows = sorted(read_predictions(self.path), key=lambda row: row.index)
        write_predictions_atomic(self.path, rows)


# ── metrics.json ──────────────────────────────────────────────────────────────────────

@dataclass
class RunMetrics:
    """metrics.json. ``partial``: the run stopped before every sample was done;
    ``stopped_at_once``: it was stopped mid-batch (a second signal) and these figures were
    rebuilt from the rows on disk. A choice task (``task == "choice"``) generates nothing:
    its tokens are the tokens its forward passes read, and ``pairs_per_s`` the
    (context, choice) pairs scored per second."""

    metrics: dict[str, float]
    n: int
    n_total: int
    # each metric's standard error of the mean; None with fewer than two samples
    stderr: dict[str, float | None] = field(default_factory=dict)
    extract: str | None = None  # the extraction spec the scores were computed with
    n_errors: int = 0
    n_resumed: int = 0
    n_skipped_lines: int = 0
    n_truncated: int = 0  # prompts cut from the left to fit (truncate = "left")
    partial: bool = False
    stopped_at_once: bool = False
    batch_size: int | str = 0
    final_batch_size: int | str = 0
    tune_seconds: float | None = None
    fallback_count: int = 0
    wall_seconds: float = 0.0
    generation_seconds: float = 0.0  # generating only: compile_seconds are not in it
    compiled: bool = False  # the run used a faster path than eager (``compile``)
    compile_seconds: float = 0.0  # compiling its shapes (the first call of each)
    # the path that ran: "off" (eager), "on" (compiled static cache) or "graph" (CUDA-graph
    # decode); a file written without it reads "on" when compiled (the graph path came later)
    compile: str = "off"
    requested_compile: str | None = None  # the setting that chose it ("auto", …); None: unknown
    samples_per_s: float = 0.0
    tokens_per_s: float = 0.0
    generated_tokens: int = 0  # 0 for a choice task, which generates nothing
    read_tokens: int = 0  # a choice task's input tokens (its tokens_per_s is their rate)
    device: str | None = None
    dtype: str | None = None
    model: str = ""
    task: str = "generate"
    pairs_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunMetrics:
        batch_size = data.get("batch_size", 0)
        return from_known_fields(cls, {"metrics": {}, "n": 0, "n_total": 0,
                                       "final_batch_size": batch_size,
                                       "compile": "on" if data.get("compiled") else "off",
                                       **data})

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / METRICS_FILE, self.to_dict())

    @classmethod
    def read(cls, run_dir: Path) -> RunMetrics | None:
        """None when the run has no (readable) metrics.json yet."""
        try:
            return cls.from_dict(_read_json_object(run_dir / METRICS_FILE))
        except UsageError:
            return None


def build_run_metrics(rows: Sequence[PredictionRow], names: Sequence[str], *, n_total: int,
                      n_resumed: int = 0, n_skipped_lines: int = 0,
                      batch_size: int | str = 0, final_batch_size: int | str | None = None,
                      tune_seconds: float | None = None, fallback_count: int = 0,
                      wall_seconds: float = 0.0, generation_seconds: float = 0.0,
                      compile: str = "off", requested_compile: str | None = None,
                      compile_seconds: float = 0.0,
                      generated: int = 0, generated_tokens: int = 0,
                      device: str | None = None, dtype: str | None = None, model: str = "",
                      stopped_at_once: bool = False, extract: str | None = None,
                      task: str = "generate") -> RunMetrics:
    """metrics.json from every row the run holds: those kept from earlier tries, then the
    ``generated`` rows made now. Rates are this try's: ``generated`` samples and
    ``generated_tokens`` tokens (read, for a choice task) in ``generation_seconds``, which
    excludes ``compile_seconds`` (the seconds the compiled path spent compiling its shapes:
    a one-off cost, reported apart); ``compile`` is the path that ran ("off", "on",
    "graph") and ``requested_compile`` the setting that chose it. Every path that ends a run
    builds its metrics here."""
    def rate(amount: float) -> float:
        return amount / generation_seconds if generation_seconds > 0 else 0.0

    means, stderr = mean_and_stderr([row.scores for row in rows], names)
    this_try = rows[len(rows) - generated:] if generated > 0 else []
    pairs = sum(len(row.choices or ()) for row in this_try)
    return RunMetrics(
        metrics=means, stderr=stderr, extract=extract,
        n=len(rows), n_total=n_total,
        n_errors=sum(1 for row in rows if row.error is not None),
        n_resumed=n_resumed, n_skipped_lines=n_skipped_lines,
        n_truncated=sum(1 for row in rows if row.truncated),
        partial=len(rows) < n_total, stopped_at_once=stopped_at_once,
        batch_size=batch_size,
        final_batch_size=batch_size if final_batch_size is None else final_batch_size,
        tune_seconds=tune_seconds, fallback_count=fallback_count,
        wall_seconds=wall_seconds, generation_seconds=generation_seconds,
        compiled=compile != "off", compile_seconds=compile_seconds, compile=compile,
        requested_compile=requested_compile,
        samples_per_s=rate(generated), tokens_per_s=rate(generated_tokens),
        generated_tokens=0 if task == "choice" else generated_tokens,
        read_tokens=generated_tokens if task == "choice" else 0, device=device, dtype=dtype,
        model=model, task=task, pairs_per_s=rate(pairs))


def rescored_metrics(previous: RunMetrics, rows: Sequence[PredictionRow], names: Sequence[str],
                     extract: str | None) -> RunMetrics:
    """metrics.json after the rows were scored again: the scores as ``build_run_metrics``
    computes them; the run's figures (rates, batch sizes, times) are the generation's, kept
    from ``previous``."""
    scored = build_run_metrics(rows, names, n_total=previous.n_total, extract=extract)
    return dataclasses.replace(previous, metrics=scored.metrics, stderr=scored.stderr,
                               extract=extract, n=scored.n, n_errors=scored.n_errors,
                               n_truncated=scored.n_truncated)


# ── tune.json ─────────────────────────────────────────────────────────────────────────

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
        return cls.from_dict(_read_json_object(run_dir / TUNE_FILE))


# ── bench.json ────────────────────────────────────────────────────────────────────────

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
        return cls.from_dict(_read_json_object(bench_dir / BENCH_FILE))


def holds_bench(directory: Path) -> bool:
    return (directory / BENCH_FILE).is_file()
