"""What a run does between reading a large dataset and its first batch, timed step by step:
load the file, render the prompts, count their tokens: the engine's ``token_counts``, and
the tokenizer's own call it replaced (ids and attention masks as Python lists).

    python benchmarks/preparation.py --rows 588519

The dataset is generated (arithmetic prompts, about 100 bytes a row) and the tokenizer is
the built-in demo's, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

DEMO_MODEL = Path(__file__).resolve().parents[1] / "tui_eval" / "demo" / "model"


def write_rows(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for number in range(rows):
            a, b = rng.randint(0, 99999), rng.randint(0, 99999)
            handle.write(json.dumps({"id": f"q{number:06d}",
                                     "prompt": f"Compute {a} + {b} and answer with the number:",
                                     "answer": str(a + b)}) + "\n")


def timed(what: str, repeats: int, step):  # noqa: ANN001, ANN201 - a tiny timing helper
    best = float("inf")
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - started)
    print(f"{what:<14} {best:7.2f}s (best of {repeats})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=588_519)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tui_eval.data import load_dataset
    from tui_eval.model.backend import HFBackend

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "large.jsonl"
        write_rows(path, args.rows)
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB")
        dataset = timed("load", 1, lambda: load_dataset(path))
        backend = HFBackend(str(DEMO_MODEL), device="cpu")
        texts = timed("render", args.repeats,
                      lambda: [backend.render(sample.prompt, sample.turns)
                               for sample in dataset.samples])
        timed("tokenizer call", args.repeats,  # what token_counts did before: ids and masks
              lambda: [len(ids) for ids in backend.tokenizer(texts)["input_ids"]])
        timed("token counts", args.repeats, lambda: backend.token_counts(texts))


if __name__ == "__main__":
    main()
