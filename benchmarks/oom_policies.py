"""The two OOM policies under a simulated memory limit, against a run that never OOMs.

Runs ``-b 16 --simulate-oom-above 4`` with ``oom_policy = "single"`` (the seed's fallback:
each failed batch regenerated one sample at a time) and ``"bisect"`` (halve until the parts
fit, keep that size), and ``-b 4`` with no OOM as the reference. Target: the default
policy's run ≤ 1.5× the reference.

    python benchmarks/oom_policies.py --samples 256 --max-tokens 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import add_workload_options, describe_machine, make_workload  # noqa: E402

from tui_eval.results import RunMetrics  # noqa: E402


def evaluate(model: Path, data: Path, out: Path, max_tokens: int, **options: Any) -> RunMetrics:
    from tui_eval.config import EvalConfig
    from tui_eval.engine.evaluation import Evaluation

    config = EvalConfig(model=str(model), data=str(data), max_tokens=max_tokens, device="cpu",
                        torch_dtype="float32", lang="en", output_dir=str(out), **options)
    return Evaluation(config, lambda event: None).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_options(parser, samples=256, max_tokens=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--oom-above", type=int, default=4)
    args = parser.parse_args()

    from tui_eval.config import EvalConfig

    runs = [
        ("reference", {"batch_size": args.oom_above}),
        ("single", {"batch_size": args.batch_size, "simulate_oom_above": args.oom_above,
                    "oom_policy": "single"}),
        ("bisect", {"batch_size": args.batch_size, "simulate_oom_above": args.oom_above,
                    "oom_policy": "bisect"}),
    ]
    best: dict[str, RunMetrics] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, data = make_workload(root, args)
        evaluate(model, data, root / "warm-up", args.max_tokens, batch_size=4, limit=8)
        for repeat in range(args.repeats):
            for name, options in runs:  # interleaved, so a busy spell hits every run alike
                metrics = evaluate(model, data, root / f"{name}-{repeat}", args.max_tokens,
                                   **options)
                if name not in best or (metrics.generation_seconds
                                        < best[name].generation_seconds):
                    best[name] = metrics
    reference = best["reference"].generation_seconds
    default = EvalConfig().oom_policy
    print(describe_machine(args))
    print(f"-b {args.batch_size} --simulate-oom-above {args.oom_above} vs -b {args.oom_above} "
          f"without OOM; default policy: {default}")
    print("| run | oom_policy | time | vs reference | samples/s | fallbacks | final batch size |")
    print("|-----|------------|-----:|-------------:|----------:|----------:|-----------------:|")
    for name, options in runs:
        m = best[name]
        label = (f"-b {options['batch_size']}" if name == "reference"
                 else f"-b {args.batch_size}, OOM above {args.oom_above}")
        policy = "-" if name == "reference" else name
        print(f"| {label} | {policy} | {m.generation_seconds:.2f}s | "
              f"{m.generation_seconds / reference:.2f}x | {m.samples_per_s:.1f} | "
              f"{m.fallback_count} | {m.final_batch_size} |")
        assert m.n == args.samples and m.n_errors == 0, f"{name} lost samples"


if __name__ == "__main__":
    main()
