"""Train the tiny embedded demo model and write its held-out arithmetic dataset.

The demo lets tui-eval run end to end offline: a character-level tokenizer and a
small Llama model that does integer addition/subtraction, saved with
``save_pretrained`` so that ``AutoModelForCausalLM``/``AutoTokenizer`` load it
without network access or ``trust_remote_code``.

Usage::

    python scripts/train_demo_model.py --out-dir tui_eval/demo --steps 6000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = [PAD, UNK, BOS, EOS]
CHARS = list("0123456789+-=")
OPS = ("+", "-")
MAX_DIGITS = 3
# Longest sequence: "999+999=" (8) + "1998" (4) + eos; keep headroom for odd prompts.
MAX_POSITIONS = 64
N_EVAL = 200
EVAL_BATCH = 8
MAX_NEW_TOKENS = 8


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character; Fuse decoder so decode() re-joins without spaces."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    # No post-processor: tok(prompt) must not append eos, the evaluator generates after it.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="left",
        # Without this, transformers 4.x returns token_type_ids, which generate() rejects.
        model_input_names=["input_ids", "attention_mask"],
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, model_dir: Path) -> None:
    """Save, then name the class transformers 4.x also knows (5.x maps it to the same backend)."""
    tokenizer.save_pretrained(model_dir)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def sample_operand(rng: random.Random, digit_weights: list[float]) -> int:
    """Pick the digit count first so short operands are not swamped by 3-digit ones."""
    n_digits = rng.choices(range(1, MAX_DIGITS + 1), weights=digit_weights)[0]
    low = 0 if n_digits == 1 else 10 ** (n_digits - 1)
    return rng.randint(low, 10**n_digits - 1)


def make_problem(a: int, op: str, b: int) -> tuple[str, str]:
    answer = a + b if op == "+" else a - b
    return f"{a}{op}{b}=", str(answer)


def build_eval_set(seed: int) -> list[dict[str, str]]:
    """Held-out problems spread evenly over operation and operand lengths."""
    rng = random.Random(seed + 1_000_003)
    combos = [
        (op, da, db)
        for op in OPS
        for da in range(1, MAX_DIGITS + 1)
        for db in range(1, MAX_DIGITS + 1)
    ]
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    while len(rows) < N_EVAL:
        op, da, db = combos[len(rows) % len(combos)]
        one_hot_a = [1.0 if d == da else 0.0 for d in range(1, MAX_DIGITS + 1)]
        one_hot_b = [1.0 if d == db else 0.0 for d in range(1, MAX_DIGITS + 1)]
        prompt, answer = make_problem(
            sample_operand(rng, one_hot_a), op, sample_operand(rng, one_hot_b)
        )
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append({"id": f"q{len(rows) + 1:03d}", "prompt": prompt, "answer": answer})
    return rows


def training_batch(
    rng: random.Random,
    batch_size: int,
    held_out: set[str],
    vocab: dict[str, int],
    digit_weights: list[float],
    pad_id: int,
    eos_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompt+answer+eos; labels only on answer+eos so capacity goes to the sum."""
    seqs: list[list[int]] = []
    n_prompt: list[int] = []
    while len(seqs) < batch_size:
        prompt, answer = make_problem(
            sample_operand(rng, digit_weights), rng.choice(OPS), sample_operand(rng, digit_weights)
        )
        if prompt in held_out:  # never train on the demo dataset
            continue
        seqs.append([vocab[c] for c in prompt + answer] + [eos_id])
        n_prompt.append(len(prompt))
    width = max(len(s) for s in seqs)
    input_ids = torch.full((batch_size, width), pad_id, dtype=torch.long)
    labels = torch.full((batch_size, width), -100, dtype=torch.long)
    for i, (seq, k) in enumerate(zip(seqs, n_prompt, strict=True)):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, k : len(seq)] = input_ids[i, k : len(seq)]
    return input_ids, labels


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 0: small models need the high early LR."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast, held_out: set[str]
) -> LlamaForCausalLM:
    vocab = tokenizer.get_vocab()
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * args.mlp_ratio,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters ({n_params * 4 / 1e6:.2f} MB fp32)", flush=True)

    # Weight decay only on matrices; norms/embedding stay free.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    rng = random.Random(args.seed)
    digit_weights = [float(w) for w in args.digit_weights.split(",")]
    model.train()
    start = time.time()
    running = 0.0
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        input_ids, labels = training_batch(
            rng,
            args.batch_size,
            held_out,
            vocab,
            digit_weights,
            tokenizer.pad_token_id,
            tokenizer.eos_token_id,
        )
        # Right padding sits after eos and is causally invisible to the labelled tokens.
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            n = (step % args.log_every) + 1
            print(
                f"step {step + 1}/{args.steps} loss {running / n:.4f} "
                f"lr {optimizer.param_groups[0]['lr']:.2e} elapsed {time.time() - start:.0f}s",
                flush=True,
            )
            running = 0.0
    model.eval()
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    return model


@torch.no_grad()
def generate(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> list[str]:
    """Greedy, left-padded batch generation; returns only the stripped continuation."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    new_tokens = out[:, enc["input_ids"].shape[1] :]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def evaluate(model_dir: Path, rows: list[dict[str, str]]) -> float:
    """Reload from disk, exactly as the evaluator would, and score exact match."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    start = time.time()
    predictions: list[str] = []
    for i in range(0, len(rows), EVAL_BATCH):
        predictions += generate(model, tokenizer, [r["prompt"] for r in rows[i : i + EVAL_BATCH]])
    elapsed = time.time() - start
    correct = sum(p == r["answer"] for p, r in zip(predictions, rows, strict=True))
    misses = [
        (r["prompt"], r["answer"], p)
        for p, r in zip(predictions, rows, strict=True)
        if p != r["answer"]
    ]
    print(f"eval: {len(rows)} samples, batch {EVAL_BATCH}, {elapsed:.1f}s", flush=True)
    print(f"misses (prompt, answer, got): {misses[:20]}", flush=True)

    # Left padding must not change greedy outputs: compare with unbatched generation.
    probe = rows[:EVAL_BATCH]
    single = [generate(model, tokenizer, [r["prompt"]])[0] for r in probe]
    same = single == predictions[: len(probe)]
    print(f"batch-vs-single greedy match on {len(probe)} samples: {same}", flush=True)
    if not same:
        print(f"  batched: {predictions[: len(probe)]}\n  single:  {single}", flush=True)
    accuracy = correct / len(rows)
    print(f"exact match: {correct}/{len(rows)} = {accuracy:.3f}", flush=True)
    return accuracy


def check_tokenizer(tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, str]]) -> None:
    """Fail fast if decoding would not round-trip or prompts would gain an eos."""
    for row in rows:
        for text in (row["prompt"], row["answer"], row["prompt"] + row["answer"]):
            ids = tokenizer(text)["input_ids"]
            if tokenizer.eos_token_id in ids:
                raise RuntimeError(f"tokenizer appended eos to {text!r}")
            decoded = tokenizer.decode(ids, skip_special_tokens=True)
            if decoded != text:
                raise RuntimeError(f"round-trip failed: {text!r} -> {decoded!r}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, default=Path("tui_eval/demo"))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-ratio", type=int, default=3)
    parser.add_argument(
        "--digit-weights",
        default="0.15,0.3,0.55",
        help="relative frequency of 1,2,3-digit operands in training",
    )
    parser.add_argument("--log-every", type=int, default=250)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)  # reproducible speed on the 2-core reference machine
    total_start = time.time()

    tokenizer = build_tokenizer()
    rows = build_eval_set(args.seed)
    check_tokenizer(tokenizer, rows)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    data_path = args.out_dir / "arithmetic.jsonl"
    with data_path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} held-out samples to {data_path}", flush=True)

    model = train(args, tokenizer, {r["prompt"] for r in rows})
    train_time = time.time() - total_start

    model_dir = args.out_dir / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    save_tokenizer(tokenizer, model_dir)
    size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())
    print(
        f"saved model + tokenizer to {model_dir} ({size:,} bytes), training took {train_time:.0f}s",
        flush=True,
    )

    accuracy = evaluate(model_dir, rows)
    print(f"total time {time.time() - total_start:.0f}s", flush=True)
    if accuracy < 0.9:
        raise SystemExit(f"exact match {accuracy:.3f} is below the 0.9 target")


if __name__ == "__main__":
    main()
