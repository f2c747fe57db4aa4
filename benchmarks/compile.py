"""Eager generation vs the static-shape path (static KV cache, batches padded to fixed
shapes), and optionally the decode step compiled by torch, on the CPU.

Same tiny random Llama, same prompts (longest first, as the engine orders them), greedy,
through ``HFBackend.generate``. Prints tokens/s per path and batch size; each figure is the
best of ``--repeats`` full passes over the prompts, after one untimed pass (which is where
``--compile`` pays its compilation, reported apart).

The point of the static path is the GPU, where eager decoding waits on Python to launch
kernels; on a CPU there is no launch overhead to hide, and padding costs real arithmetic.

    python benchmarks/compile.py --sizes 1,4,16 --samples 64 --max-tokens 32 [--compile]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from workload import add_workload_options, describe_machine, make_workload


def timed_pass(backend: Any, prompts: list[str], batch_size: int,
               max_tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    tokens = 0
    for start in range(0, len(prompts), batch_size):
        generation = backend.generate(prompts[start:start + batch_size],
                                      max_new_tokens=max_tokens)
        tokens += sum(generation.new_tokens)
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--compile", action="store_true",
                        help="also compile the decode step (inductor on the CPU: tens of "
                             "seconds per shape)")
    add_workload_options(parser, samples=64, max_tokens=32)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import torch

    from tui_eval.model.backend import HFBackend

    paths = {"eager": {"compile": False}, "static": {"compile": True, "compile_decode": False}}
    if args.compile:
        paths["static + compile"] = {"compile": True, "compile_decode": True}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, data = make_workload(Path(tmp), args)
        prompts = [json.loads(line)["prompt"] for line in data.read_text().splitlines()]
        for size in sizes:
            for name, options in paths.items():
                torch._dynamo.reset()  # each path and size compiles afresh
                backend = HFBackend(str(model_dir), device="cpu", dtype="float32", **options)
                backend.load_model()
                counts = backend.token_counts(prompts)
                ordered = [p for _, p in sorted(zip(counts, prompts, strict=True),
                                                key=lambda pair: -pair[0])]
                warm, _ = timed_pass(backend, ordered, size, args.max_tokens)
                seconds, tokens = min(timed_pass(backend, ordered, size, args.max_tokens)
                                      for _ in range(args.repeats))
                rows.append({"path": name, "batch_size": size, "seconds": seconds,
                             "tokens": tokens, "tokens_per_s": tokens / seconds,
                             "compile_seconds": backend.compile_seconds,
                             "first_pass_seconds": warm,
                             "shapes": backend.compiled_shapes})
    print(describe_machine(args))
    print("| path | batch_size | time | tokens/s | vs eager | compile s | shapes (rows, cache) |")
    print("|------|-----------:|-----:|---------:|---------:|----------:|------|")
    eager = {row["batch_size"]: row["tokens_per_s"] for row in rows if row["path"] == "eager"}
    for row in rows:
        ratio = row["tokens_per_s"] / eager[row["batch_size"]]
        shapes = ", ".join(f"{r}×{c}" for r, c in row["shapes"]) or "-"
        compile_s = f"{row['compile_seconds']:.1f}" if row["path"].endswith("compile") else "-"
        print(f"| {row['path']} | {row['batch_size']} | {row['seconds']:.2f}s | "
              f"{row['tokens_per_s']:.0f} | {ratio:.2f}x | {compile_s} | {shapes} |")


if __name__ == "__main__":
    main()
