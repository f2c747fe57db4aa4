"""Engine vs a plain hand-written ``model.generate`` loop, and vs batch size 1.

Same tiny random Llama model, same prompts, same batch sizes, left padding and greedy
decoding on both sides. Prints the seed guide's table shape:

    batch_size | time | speedup | samples/s | plain loop | engine/plain

``time`` is the engine's generation time (batching, generation, scoring and writing
predictions.jsonl), ``plain loop`` the hand-written loop's time for generation and
decoding; ``engine/plain`` is the engine's throughput over the loop's (≥ 0.95 is the
target). Each figure is the best of ``--repeats`` runs.

    python benchmarks/throughput.py --sizes 1,2,4,8,16 --samples 64 --max-tokens 32
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from workload import make_prompts


def plain_loop(model_dir: Path, prompts: list[str], batch_size: int, max_tokens: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            encoded = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True)
            output = model.generate(**encoded, max_new_tokens=max_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:],
                                   skip_special_tokens=True)
    return time.perf_counter() - started


def engine_run(model_dir: Path, data: Path, out: Path, batch_size: int,
               max_tokens: int) -> float:
    from tui_eval.config import EvalConfig
    from tui_eval.engine.evaluation import Evaluation

    config = EvalConfig(model=str(model_dir), data=str(data), batch_size=batch_size,
                        max_tokens=max_tokens, device="cpu", torch_dtype="float32",
                        output_dir=str(out), lang="en")
    metrics = Evaluation(config, lambda event: None).run()
    return metrics.generation_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8,16")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from tui_eval.model.backend import quiet_transformers
    from tui_eval.testing import build_tiny_model

    quiet_transformers()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model", hidden_size=args.hidden_size,
                                     num_layers=args.layers)
        prompts = make_prompts(args.samples)
        data = root / "data.jsonl"
        data.write_text("".join(json.dumps({"id": i, "prompt": p, "answer": "x"}) + "\n"
                                for i, p in enumerate(prompts)), encoding="utf-8")
        plain_loop(model_dir, prompts[:2], 2, 2)  # warm-up: first calls are slower
        rows = []
        for size in sizes:
            engine = min(engine_run(model_dir, data, root / f"run-{size}-{r}", size,
                                    args.max_tokens) for r in range(args.repeats))
            plain = min(plain_loop(model_dir, prompts, size, args.max_tokens)
                        for _ in range(args.repeats))
            rows.append({"batch_size": size, "seconds": engine, "plain_seconds": plain,
                         "samples_per_s": args.samples / engine,
                         "engine_over_plain": plain / engine})
    base = rows[0]["seconds"]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; model: random Llama "
          f"hidden {args.hidden_size} x {args.layers} layers; {args.samples} samples, "
          f"{args.max_tokens} new tokens, best of {args.repeats}")
    print("| batch_size | time | speedup | samples/s | plain loop | engine/plain |")
    print("|-----------:|-----:|--------:|----------:|-----------:|-------------:|")
    for row in rows:
        speedup = "baseline" if row is rows[0] else f"{base / row['seconds']:.2f}x"
        print(f"| {row['batch_size']} | {row['seconds']:.2f}s | {speedup} | "
              f"{row['samples_per_s']:.1f} | {row['plain_seconds']:.2f}s | "
              f"{row['engine_over_plain']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
