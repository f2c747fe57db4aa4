"""``-b auto`` against ``tui-eval bench`` over the same sizes, on the CPU test model.

1. bench: the whole dataset at 1, 2, 4, … up to the tuner's ceiling (best of N per size);
2. ``-b auto`` runs (tuning + evaluation) and runs at the bench's best fixed size,
   interleaved, best of N each.

Targets: the tuned size's bench throughput is within 10% of the best size's; the whole
``-b auto`` run (model load + tuning + evaluation) costs ≤ 1.3× the run at the best size.

    python benchmarks/autotune.py --samples 8192 --bench-samples 2048 --max-tokens 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import add_workload_options, describe_machine, make_workload  # noqa: E402


def doubling(ceiling: int) -> list[int]:
    sizes, size = [], 1
    while size < ceiling:
        sizes.append(size)
        size *= 2
    return [*sizes, ceiling]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_options(parser, samples=2048, max_tokens=16)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument("--bench-samples", type=int,
                        help="bench the first N samples only (bs 1 dominates its time); "
                        "the -b auto and fixed runs use all of them")
    args = parser.parse_args()

    from tui_eval.config import EvalConfig
    from tui_eval.engine.bench import bench_table, run_bench, with_speedups
    from tui_eval.engine.evaluation import Evaluation

    sizes = doubling(min(args.max_batch_size, args.samples))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, data = make_workload(root, args)
        base = EvalConfig(model=str(model), data=str(data), max_tokens=args.max_tokens,
                          device="cpu", torch_dtype="float32", lang="en",
                          max_batch_size=args.max_batch_size)
        best_rows = {}
        for repeat in range(args.repeats):
            rows, _ = run_bench(replace(base, output_dir=str(root / f"bench-{repeat}"),
                                        limit=args.bench_samples), sizes, lambda event: None)
            for row in rows:
                if row.batch_size not in best_rows or row.seconds < best_rows[
                        row.batch_size].seconds:
                    best_rows[row.batch_size] = row
        bench = with_speedups([best_rows[size] for size in sizes])
        fastest = max(bench, key=lambda r: r.samples_per_s)

        auto_runs: list[dict] = []
        fixed_runs: list[dict] = []
        for repeat in range(args.repeats):
            auto_runs.append(Evaluation(replace(base, batch_size="auto", output_dir=str(
                root / f"auto-{repeat}")), lambda event: None).run())
            fixed_runs.append(Evaluation(replace(base, batch_size=fastest.batch_size,
                                                 output_dir=str(root / f"fixed-{repeat}")),
                                         lambda event: None).run())
    auto = min(auto_runs, key=lambda m: m["wall_seconds"])
    fixed = min(fixed_runs, key=lambda m: m["wall_seconds"])
    rate_of = {row.batch_size: row.samples_per_s for row in bench}

    print(describe_machine(args))
    print(f"\ntui-eval bench over {', '.join(map(str, sizes))} "
          f"({args.bench_samples or args.samples} samples):\n")
    print(bench_table(bench))
    print("\nchosen by -b auto in each run: "
          + ", ".join(str(m["batch_size"]) for m in auto_runs))
    for m in auto_runs:
        share = rate_of[m["batch_size"]] / fastest.samples_per_s
        print(f"  batch size {m['batch_size']}: {share:.1%} of the best bench throughput "
              f"(batch size {fastest.batch_size}); tuning took {m['tune_seconds']:.2f}s")
    print("every run's wall time (load + tune + eval): -b auto "
          + ", ".join(f"{m['wall_seconds']:.2f}s" for m in auto_runs)
          + f"; -b {fastest.batch_size} "
          + ", ".join(f"{m['wall_seconds']:.2f}s" for m in fixed_runs))
    print("\n| run | batch size | wall (load + tune + eval) | tuning | generation | vs best |")
    print("|-----|-----------:|--------------------------:|-------:|-----------:|--------:|")
    for name, m in (("-b auto", auto), (f"-b {fastest.batch_size}", fixed)):
        tuning = f"{m['tune_seconds']:.2f}s" if m["tune_seconds"] else "-"
        print(f"| {name} | {m['batch_size']} | {m['wall_seconds']:.2f}s | {tuning} | "
              f"{m['generation_seconds']:.2f}s | "
              f"{m['wall_seconds'] / fixed['wall_seconds']:.2f}x |")


if __name__ == "__main__":
    main()
