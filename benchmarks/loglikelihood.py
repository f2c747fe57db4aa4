"""Multiple-choice scoring throughput: (context, choice) pairs per second by batch size.

The test suite's tiny random Llama model on the CPU, four multi-word choices per context
(no two pairs share a model input, so every pair is its own row), and two sets of
contexts: ``short`` (one phrase, about 20 tokens a row with the choice, like ARC) and
``long`` (one to six phrases, 23 to 105 tokens a row, like HellaSwag). ``time`` covers the
forward passes, slicing and sums; tokenizing is timed once apart, since it does not depend
on the batch size. Each figure is the best of ``--repeats`` runs.

Each batch size runs twice: ``unshared`` feeds every (context, choice) row whole;
``shared`` lets the scorer run a context once with the KV cache and its choices against
copies of it, in the batches where that feeds fewer tokens (``share_prefix = "auto"``).
Speed-ups are against the unshared bs 1.

    OMP_NUM_THREADS=1 python benchmarks/loglikelihood.py --sizes 1,2,4,8,16,32,64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from workload import PHRASES, add_workload_options, describe_machine, make_prompts

CHOICES = ["Paris is the capital of France.", "The sum of 12 and 30 is 42.", "Blue.",
           "A spider has eight legs."]


def contexts(kind: str, count: int) -> list[str]:
    # numbered, so that no two contexts are the same and no rows are shared
    prompts = ([PHRASES[i % len(PHRASES)] for i in range(count)] if kind == "short"
               else make_prompts(count))
    return [f"Question {i}. {p}" for i, p in enumerate(prompts)]


def timed(scorer: Any, pairs: list[Any], size: int, repeats: int) -> tuple[float, list[float]]:
    best = float("inf")
    scores: list[Any] = []
    for _ in range(repeats):
        started = time.perf_counter()
        scores = scorer.score(pairs, batch_size=size)
        best = min(best, time.perf_counter() - started)
    return best, [s.logprob for s in scores]


def run(scorers: dict[str, Any], samples: list[Any], sizes: list[int], repeats: int) -> None:
    unshared = scorers["unshared"]
    started = time.perf_counter()
    pairs = unshared.encode_samples(samples)
    encode_seconds = time.perf_counter() - started
    inputs = [unshared.model_input(p) for p in pairs]
    shared = sum(len(p.context) for p in pairs[::len(CHOICES)]) + sum(
        len(p.continuation) - 1 for p in pairs)
    for scorer in scorers.values():
        scorer.score(pairs[:8], batch_size=4)  # warm-up: first calls are slower
    results = []
    reference: list[float] = []
    for size in sizes:
        row = [size]
        for scorer in scorers.values():
            seconds, logprobs = timed(scorer, pairs, size, repeats)
            reference = reference or logprobs
            drift = max(abs(a - b) for a, b in zip(logprobs, reference, strict=True))
            row += [seconds, drift]
        results.append(row)
    print(f"{len(pairs)} pairs, {len(set(inputs))} distinct model inputs, "
          f"{min(map(len, inputs))}-{max(map(len, inputs))} tokens a row, "
          f"{sum(map(len, inputs))} tokens fed ({shared} if each context were fed once); "
          f"tokenizing {encode_seconds * 1000:.0f} ms once")
    names = list(scorers)
    print("| batch_size | " + " | ".join(f"{n} pairs/s | {n} speedup" for n in names)
          + " | max |Δ logprob| vs bs1 |")
    print("|-----------:|" + "-----:|-----:|" * len(names) + "-----:|")
    base = results[0][1]
    for size, *figures in results:
        cells = []
        for seconds in figures[::2]:
            cells += [f"{len(pairs) / seconds:.0f}", f"{base / seconds:.1f}x"]
        print(f"| {size} | " + " | ".join(cells) + f" | {max(figures[1::2]):.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--contexts", default="short,long", help="short, long or both")
    add_workload_options(parser, samples=64, max_tokens=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tui_eval.data import ChoiceSample
    from tui_eval.model.backend import quiet_transformers
    from tui_eval.model.loglikelihood import ChoiceScorer
    from tui_eval.testing import build_tiny_model

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=args.hidden_size,
                                     num_layers=args.layers)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    scorers = {mode: ChoiceScorer(model, tokenizer, "cpu", share_prefix=share)
               for mode, share in (("unshared", "never"), ("shared", "auto"))}
    print(describe_machine(args).replace(f", {args.max_tokens} new tokens", ""))
    for kind in args.contexts.split(","):
        samples = [ChoiceSample(index=i, id=str(i), prompt=c, choices=CHOICES, gold=0)
                   for i, c in enumerate(contexts(kind, args.samples))]
        print(f"\n{kind} contexts:")
        run(scorers, samples, sizes, args.repeats)


if __name__ == "__main__":
    main()
