"""``-b auto`` against the best fixed batch size, on the CPU test model.

1. ``tui-eval bench`` over 1, 2, 4, … up to the tuner's ceiling (best of N per size): the
   best fixed size and each size's throughput;
2. in this process, interleaved, best of N each: ``-b auto`` runs with an empty tune cache
   (they tune), one with the cache filled (it does not), and runs at the best fixed size;
3. the same as whole processes (``python -m tui_eval --no-ui``: start-up, imports, model
   load, tuning, evaluation), best of N each.

Targets: tuning ≤ 10% of the whole ``-b auto`` run; the whole process ≤ 1.15× the process at
the best fixed size; the size chosen within 10% of the best bench throughput.

    OMP_NUM_THREADS=1 python benchmarks/autotune.py --samples 200 --max-tokens 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import add_workload_options, describe_machine, make_workload  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def doubling(ceiling: int) -> list[int]:
    sizes, size = [], 1
    while size < ceiling:
        sizes.append(size)
        size *= 2
    return [*sizes, ceiling]


def in_process(config: Any, cache: Path) -> Any:
    """One run in this process, with its own tune cache directory."""
    from tui_eval.engine.evaluation import Evaluation

    os.environ["XDG_CACHE_HOME"] = str(cache)
    return Evaluation(config, lambda event: None).run()


def as_process(args: list[str], out: Path, cache: Path, threads: int) -> tuple[float, dict]:
    """``python -m tui_eval --no-ui ARGS -o OUT``: its wall time and its metrics.json."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), OMP_NUM_THREADS=str(threads),
               PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tui_eval", "--no-ui", *args, "-o", str(out)],
                   env=env, check=True, stdout=subprocess.DEVNULL, cwd=out.parent)
    wall = time.perf_counter() - started
    return wall, json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_options(parser, samples=200, max_tokens=16)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument("--bench-samples", type=int,
                        help="bench the first N samples only (bs 1 dominates its time); "
                        "the -b auto and fixed runs use all of them")
    args = parser.parse_args()

    from tui_eval.config import EvalConfig
    from tui_eval.engine.benching import run_bench, with_speedups
    from tui_eval.reports.bench import bench_table

    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 1
    sizes = doubling(min(args.max_batch_size, args.samples))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, data = make_workload(root, args)
        base = EvalConfig(model=str(model), data=str(data), max_tokens=args.max_tokens,
                          device="cpu", torch_dtype="float32", lang="en",
                          max_batch_size=args.max_batch_size)
        best_rows = {}
        for repeat in range(args.repeats):
            result, _ = run_bench(replace(base, output_dir=str(root / f"bench-{repeat}"),
                                          limit=args.bench_samples), sizes, lambda event: None)
            for row in result.rows:
                if row.batch_size not in best_rows or row.seconds < best_rows[
                        row.batch_size].seconds:
                    best_rows[row.batch_size] = row
        bench = with_speedups([best_rows[size] for size in sizes])
        fastest = max(bench, key=lambda r: r.samples_per_s)
        rate_of = {row.batch_size: row.samples_per_s for row in bench}

        runs: dict[str, list[Any]] = {"auto": [], "cached": [], "fixed": []}
        for repeat in range(args.repeats):
            fresh = root / f"cache-{repeat}"
            runs["auto"].append(in_process(replace(base, batch_size="auto", output_dir=str(
                root / f"auto-{repeat}")), fresh))
            runs["cached"].append(in_process(replace(base, batch_size="auto", output_dir=str(
                root / f"cached-{repeat}")), fresh))
            runs["fixed"].append(in_process(replace(base, batch_size=fastest.batch_size,
                                                    output_dir=str(root / f"fixed-{repeat}")),
                                            fresh))
        flags = ["-m", str(model), "-d", str(data), "--max-tokens", str(args.max_tokens),
                 "--device", "cpu", "--torch-dtype", "float32", "--lang", "en",
                 "--max-batch-size", str(args.max_batch_size)]
        processes: dict[str, list[tuple[float, dict]]] = {"auto": [], "fixed": []}
        for repeat in range(args.repeats):
            processes["auto"].append(as_process(
                [*flags, "-b", "auto"], root / f"p-auto-{repeat}", root / f"pcache-{repeat}",
                threads))
            processes["fixed"].append(as_process(
                [*flags, "-b", str(fastest.batch_size)], root / f"p-fixed-{repeat}",
                root / f"pcache-fixed-{repeat}", threads))

    def best(name: str) -> Any:
        return min(runs[name], key=lambda m: m.wall_seconds)

    auto, cached, fixed = best("auto"), best("cached"), best("fixed")
    auto_process = min(processes["auto"], key=lambda p: p[0])
    fixed_process = min(processes["fixed"], key=lambda p: p[0])

    print(describe_machine(args))
    print(f"\ntui-eval bench over {', '.join(map(str, sizes))} "
          f"({args.bench_samples or args.samples} samples):\n")
    print(bench_table(bench))
    print("\n-b auto chose (in-process runs, then processes): "
          + ", ".join(str(m.batch_size) for m in runs["auto"]) + "; "
          + ", ".join(str(m["batch_size"]) for _, m in processes["auto"]))
    for m in runs["auto"]:
        share = rate_of.get(int(m.batch_size), 0.0) / fastest.samples_per_s
        print(f"  batch size {m.batch_size}: {share:.0%} of the best bench throughput "
              f"(batch size {fastest.batch_size}); tuning {m.tune_seconds:.3f}s = "
              f"{m.tune_seconds / m.wall_seconds:.1%} of its run ({m.wall_seconds:.2f}s)")
    print("\nIn this process (wall = model load + tuning + evaluation), best of "
          f"{args.repeats}:\n")
    print("| run | batch size | wall | tuning | tuning share | generation | vs best fixed |")
    print("|-----|-----------:|-----:|-------:|-------------:|-----------:|--------------:|")
    for name, m in (("-b auto (tunes)", auto), ("-b auto (tune cache)", cached),
                    (f"-b {fastest.batch_size}", fixed)):
        tuning = f"{m.tune_seconds:.3f}s" if m.tune_seconds is not None else "-"
        share = f"{m.tune_seconds / m.wall_seconds:.1%}" if m.tune_seconds else "-"
        print(f"| {name} | {m.batch_size} | {m.wall_seconds:.2f}s | {tuning} | {share} | "
              f"{m.generation_seconds:.2f}s | {m.wall_seconds / fixed.wall_seconds:.2f}x |")
    print(f"\nWhole processes (python -m tui_eval --no-ui, empty tune cache), best of "
          f"{args.repeats}:\n")
    print("| process | batch size | wall | tuning | tuning share | vs best fixed |")
    print("|---------|-----------:|-----:|-------:|-------------:|--------------:|")
    for name, (wall, m) in (("-b auto", auto_process),
                            (f"-b {fastest.batch_size}", fixed_process)):
        tuning = m.get("tune_seconds")
        print(f"| {name} | {m['batch_size']} | {wall:.2f}s | "
              f"{f'{tuning:.3f}s' if tuning else '-'} | "
              f"{f'{tuning / wall:.1%}' if tuning else '-'} | "
              f"{wall / fixed_process[0]:.2f}x |")


if __name__ == "__main__":
    main()
