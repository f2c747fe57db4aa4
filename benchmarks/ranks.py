"""One process vs several (torch's launcher, gloo, one CPU thread each) on the same run.

Each run is the real command (``python -m tui_eval --no-ui`` and ``torchrun
--nproc-per-node N -m tui_eval --no-ui``) on the test model; samples/s is the run's own
(metrics.json: samples over the generation time, which for several processes runs from
rank 0's first batch until the last rank reported). Predictions must be identical.

    OMP_NUM_THREADS=1 python benchmarks/ranks.py --processes 2 --samples 400
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from workload import add_workload_options, describe_machine, make_workload

REPO = Path(__file__).resolve().parent.parent


def run(processes: int, model: Path, data: Path, out: Path, args: argparse.Namespace) -> dict:
    flags = ["--no-ui", "-m", str(model), "-d", str(data), "--device", "cpu",
             "--torch-dtype", "float32", "-b", str(args.batch_size), "--max-tokens",
             str(args.max_tokens), "-o", str(out)]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={processes}"] if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get(
               "PYTHONPATH")]))}
    subprocess.run([*launcher, "-m", "tui_eval", *flags], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = [json.loads(line)["prediction"]
                   for line in (out / "predictions.jsonl").read_text().splitlines()]
    return {"samples_per_s": metrics["samples_per_s"], "seconds": metrics["generation_seconds"],
            "wall": metrics["wall_seconds"], "predictions": predictions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_options(parser, samples=400, max_tokens=16)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    args.threads = 1
    with tempfile.TemporaryDirectory() as root:
        model, data = make_workload(Path(root), args)
        best: dict[int, dict] = {}
        for repeat in range(args.repeats):
            for processes in (1, args.processes):
                result = run(processes, model, data, Path(root) / f"run-{processes}-{repeat}",
                             args)
                if processes not in best or result["samples_per_s"] > best[processes][
                        "samples_per_s"]:
                    best[processes] = result
    one, many = best[1], best[args.processes]
    print(describe_machine(args) + f"; batch size {args.batch_size}")
    print("| processes × threads | samples/s | generation s | wall s | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for processes, result in ((1, one), (args.processes, many)):
        print(f"| {processes} × 1 | {result['samples_per_s']:.1f} | {result['seconds']:.2f} | "
              f"{result['wall']:.1f} | {result['samples_per_s'] / one['samples_per_s']:.2f}× |")
    same = one["predictions"] == many["predictions"]
    print(f"predictions identical: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
