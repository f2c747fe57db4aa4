"""``tui-eval bench -b 1,2,4,8,16``: the seed guide's performance loop as one command.

The same data is evaluated at each batch size with one loaded model, each run in its own
``bs_N/`` results directory, and the seed's table (batch_size | time | speedup | …) is
written to bench.json (its text, printed and in bench.md, is tui_eval.reports.bench's).
``--compile on,off`` runs every size with each compile setting (``bs_N-compile_on/``…) and
the table gains a compile column and the compile time; ``time`` and the rates are
generation only, compile time apart.
"""

from __future__ import annotations

from dataclasses import replace

from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.device.meter import ResourceMeter
from tui_eval.device.oom import free_memory
from tui_eval.engine.evaluation import Evaluation
from tui_eval.engine.preparation import device_description, prepare
from tui_eval.errors import UsageError
from tui_eval.events import Event, EventSink, LogLine, Progress, RunLog
from tui_eval.formatting import format_bytes, format_percent, format_seconds
from tui_eval.i18n import default_language
from tui_eval.model.backend import HFBackend
from tui_eval.results.bench import BenchResult, BenchRow
from tui_eval.results.names import BENCH_FILE, BENCH_MD_FILE
from tui_eval.results.run_dir import RunDir


def run_dir_name(size: int, mode: str, modes: list[str]) -> str:
    return f"bs_{size}" if len(modes) == 1 else f"bs_{size}-compile_{mode}"


def with_speedups(rows: list[BenchRow]) -> list[BenchRow]:
    """Speedup over the first size, as in the seed's table."""
    if not rows:
        return rows
    base = rows[0].seconds
    return [replace(r, speedup=base / r.seconds if r.seconds > 0 else 0.0) for r in rows]




class _RunFilter:
    """A sub-run's events for the terminal: its warnings, errors and progress only; the
    full log of each run is in its own bs_N/run.log."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress) or (isinstance(event, LogLine) and event.level != "INFO"):
            self.sink(event)


def refuse_existing_bench(bench_dir: RunDir, sizes: list[int],
                          modes: list[str] | None = None) -> None:
    """A bench directory that already holds results is never measured into again without
    --overwrite: its sub-runs would be 'resumed' with nothing left to generate."""
    modes = modes or ["off"]
    runs = [run_dir_name(size, mode, modes) for mode in modes for size in sizes]
    existing = [name for name in (BENCH_FILE, BENCH_MD_FILE, *runs)
                if (bench_dir / name).exists()]
    if existing:
        raise UsageError(f"{bench_dir}: holds a bench already ({', '.join(existing[:3])}); "
                         "choose another -o, or pass --overwrite to measure again")


def run_bench(config: EvalConfig, sizes: list[int], sink: EventSink, *,
              overwrite: bool = False, cancel: CancelToken | None = None,
              compile_modes: list[str] | None = None) -> tuple[BenchResult, RunDir]:
    """Evaluate the data at each size (for each compile setting: ``compile_modes``, by
    default the config's) with one loaded model; write bench.json (bench.md, its table
    for people, is the command's: tui_eval.reports.bench)."""
    cancel = cancel or CancelToken()
    lang = config.lang or default_language()
    log = RunLog(sink, lang)
    # settling the config (the demo, the task) leaves its output_dir and compile as they are
    modes = compile_modes or [config.compile]
    bench_dir = RunDir.of(config.output_dir, "bench")

    def refuse_existing(settled: EvalConfig) -> EvalConfig:
        if not overwrite:  # before the tokenizer opens
            refuse_existing_bench(bench_dir, sizes, modes)
        return settled

    prepared = prepare(config, log, settled=refuse_existing)
    config, backend, dataset, task = (prepared.config, prepared.backend, prepared.dataset,
                                      prepared.task)
    # each size's run checks again; this one answers before the weights load
    task.check(dataset.samples, log)
    bench_dir.prepare()
    prepared.load_weights()
    listed = ", ".join(map(str, sizes))
    if len(modes) > 1:
        listed += f" × compile {', '.join(modes)}"
    if config.task == "choice":
        log("INFO", "bench_started_choice", n=len(dataset.samples), sizes=listed,
            out=bench_dir, pairs=len(task.plan(dataset.samples)))
    else:
        log("INFO", "bench_started", n=len(dataset.samples), sizes=listed,
            max_tokens=config.max_tokens, out=bench_dir)
    # One-time costs of the first call must not count against the first size.
    task.warm_up(dataset.samples[0])
    rows: list[BenchRow] = []
    for mode in modes:
        for size in sizes:
            if cancel.cancelled:
                break
            run_dir = bench_dir / run_dir_name(size, mode, modes)
            row = _bench_one(backend, replace(config, batch_size=size, compile=mode,
                                              output_dir=str(run_dir)),
                             sink, cancel, overwrite)
            if row is None:  # cancelled: a half-measured size is no figure
                break
            rows.append(row)
            label = str(size) if len(modes) == 1 else f"{size} (compile {row.compile})"
            log("INFO", "bench_row", batch_size=label, time=format_seconds(row.seconds),
                rate=row.samples_per_s, peak=format_bytes(row.peak_memory_bytes),
                util=format_percent(row.gpu_util_percent))
    rows = with_speedups(rows)
    # a choice task generates nothing: its task takes max_tokens' place
    unit = ({"task": config.task} if config.task == "choice"
            else {"max_tokens": config.max_tokens})
    context = {"model": config.model, "data": str(dataset.path), "samples": len(dataset.samples),
               **unit, "device": backend.device,
               "device_name": device_description(backend.device), "dtype": backend.dtype_name}
    if len(modes) > 1:
        context["compile"] = ",".join(modes)
    result = BenchResult(rows, context)
    bench_dir.write_bench(result)
    return result, bench_dir


def _bench_one(backend: HFBackend, config: EvalConfig, sink: EventSink, cancel: CancelToken,
               overwrite: bool) -> BenchRow | None:
    """One size at one compile setting; None when cancelled."""
    free_memory()  # the allocator's cache from the previous size would inflate this peak
    spans_before = len(backend.compile_spans)
    with ResourceMeter(backend.device, devices=backend.devices) as meter:
        metrics = Evaluation(config, _RunFilter(sink), cancel, backend=backend,
                             overwrite=overwrite).run()
    if metrics.partial:
        return None
    # the GPU idles while the CPU compiles: its utilisation is read outside compilation
    util = meter.gpu_util_percent_outside(backend.compile_spans[spans_before:])
    return BenchRow(
        batch_size=int(config.batch_size), seconds=metrics.generation_seconds, speedup=1.0,
        samples_per_s=metrics.samples_per_s, tokens_per_s=metrics.tokens_per_s,
        peak_memory_bytes=meter.peak_memory_bytes, gpu_util_percent=util,
        fallbacks=metrics.fallback_count, final_batch_size=int(metrics.final_batch_size),
        compile=metrics.compile,
        compile_seconds=metrics.compile_seconds,
        requested_compile=config.compile,
        pairs_per_s=metrics.pairs_per_s if metrics.task == "choice" else None)
