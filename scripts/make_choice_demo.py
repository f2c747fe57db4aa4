"""Write the multiple-choice demo: the held-out arithmetic prompts, each with its result and
three near misses (off by one, two, ten or a hundred, the sign flipped, digits reversed).

The demo model reads digits and operators only, one token per character: it has no space
token, so the demo is scored with target_delimiter "" and the continuation of "5+8=" is
"13" itself, exactly as the generation demo answers it.

A choice that is a proper prefix of the result ("1" for "13") is never offered: a sum of
log-probabilities always prefers the shorter of two such strings, whatever the model knows.

Usage::

    python scripts/make_choice_demo.py --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent.parent / "tui_eval" / "demo"
N_CHOICES = 4


def near_misses(result: int) -> list[int]:
    candidates = [result + 1, result - 1, result + 2, result - 2, result + 10, result - 10]
    if abs(result) >= 50:
        candidates += [result + 100, result - 100]
    if result != 0:
        candidates.append(-result)
    digits = str(abs(result))
    if len(digits) > 1 and digits[::-1] != digits and not digits.endswith("0"):
        candidates.append(int(digits[::-1]) * (1 if result >= 0 else -1))
    text = str(result)
    unique: list[int] = []
    for value in candidates:
        shown = str(value)
        if value != result and not text.startswith(shown) and value not in unique:
            unique.append(value)
    return unique


def make_row(row: dict[str, str], rng: random.Random) -> dict[str, object]:
    result = int(row["answer"])
    choices = [str(v) for v in rng.sample(near_misses(result), N_CHOICES - 1)]
    gold = rng.randrange(N_CHOICES)
    choices.insert(gold, row["answer"])
    return {"id": row["id"], "prompt": row["prompt"], "choices": choices, "answer": gold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEMO_DIR / "arithmetic.jsonl")
    parser.add_argument("--out", type=Path, default=DEMO_DIR / "arithmetic_choice.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = [json.loads(line) for line in args.source.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    with args.out.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(make_row(row, rng)) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
