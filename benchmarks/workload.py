"""The CPU workload shared by the batch-size benchmarks: a random Llama model built offline
and prompts of varied length (1 to 6 phrases), so sorting, padding and probing matter."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

PHRASES = ["What is the capital of France?", "Add 12 and 30.", "Name a colour of the sky.",
           "How many legs does a spider have?", "Translate to French: cat.",
           "Write the number after 99."]


def make_prompts(count: int) -> list[str]:
    return [" ".join(PHRASES[(i + j) % len(PHRASES)] for j in range(1 + i % 6))
            for i in range(count)]


def add_workload_options(parser: argparse.ArgumentParser, *, samples: int,
                         max_tokens: int) -> None:
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--max-tokens", type=int, default=max_tokens)
    parser.add_argument("--hidden-size", type=int, default=64,
                        help="64 × 2 layers is the test suite's model")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="each figure is the best of N")


def make_workload(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Build the model and write the dataset under ``root``; returns (model dir, data file)."""
    import torch

    from tui_eval.model.backend import quiet_transformers
    from tui_eval.testing import build_tiny_model

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    model = build_tiny_model(root / "model", hidden_size=args.hidden_size,
                             num_layers=args.layers)
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"id": i, "prompt": p, "answer": "x"}) + "\n"
                            for i, p in enumerate(make_prompts(args.samples))),
                    encoding="utf-8")
    return model, data


def describe_machine(args: argparse.Namespace) -> str:
    import os

    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, load {load:.1f}, "
            f"{torch.get_num_threads()} torch threads, no GPU used; torch {torch.__version__}; "
            f"model: random Llama hidden {args.hidden_size} × {args.layers} layers; "
            f"{args.samples} samples, {args.max_tokens} new tokens, best of {args.repeats}")
