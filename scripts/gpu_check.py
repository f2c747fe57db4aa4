"""One-shot GPU check of compiled generation, batch-size tuning, bench and OOM recovery on a
real CUDA card.

For a CUDA machine with no network: torch, transformers and nvidia-ml-py installed, this
repository on PYTHONPATH (textual not needed). It builds a random Llama-style model of
about 0.5 B parameters and a tokenizer locally, writes datasets, then runs, in this order
(each stage prints its table as soon as it is done):

compile group (``--only compile``):
1. NVML readings;
1b. ``graph_stage``: eager against the CUDA-graph decode path against torch.compile on a
   "margins" model (the random model's output layer rewritten so that its top two logits
   differ clearly and bf16 noise cannot flip an argmax), bs 64, 128-token prompts, 64 new
   tokens: setup seconds for a new shape, ms per decode step, NVML utilisation, identical
   predictions against eager; the captured graph against the same loop uncaptured on the
   plain model; torch.compile in two fresh processes (the second with the first's on-disk
   inductor cache); within ~180 s;
2. ``tui-eval bench -b 64 --compile on,off``, 512 prompts of ~100-128 tokens, 64 new
   tokens: generation time, compile time, tokens/s, GPU utilisation outside compilation,
   peak memory, and whether compile on gives the same text;
3. ``tui-eval --no-ui -b auto`` on 1,024 prompts, 64 new tokens: tuning time against the
   run it tuned (tune.json, metrics.json: tune_seconds, generation and compile seconds,
   the compile auto decision);
4. the decode step through ``HFBackend``, compile off vs on, 64 prompts of ~128 tokens:
   ms per step, tokens/s, GPU utilisation, compile time of the first call;
5. ``-b auto --compile on``: tuning on the static cache, then the compiled run;

auto group (``--only auto``, about 150 s on the GPU):
5b. ``tui-eval --no-ui -b auto`` three times in fresh processes on 1,024 prompts, 64 new
   tokens (chosen size, tuning seconds, whole-process wall clock, whether the sizes
   agree), then ``tui-eval tune`` once: the doubling from 1 with its probes;

cli group (``--only cli``):
6. ``tui-eval bench`` at 1, 4, 16, 64 in bfloat16, then ``--task choice`` (pairs/s) on
   256 four-choice records;
7. ``tui-eval tune`` under ``--max-memory`` (doubling to the OOM, then bisecting);
8. a run whose first batch hits a real OOM under the same cap, every sample scored
   (default policy, then the seed's ``single`` policy with its two log lines).

ranks group (``--only ranks``):
9. one GPU against every GPU present (``--gpus all``, one process each): samples/s, each
   rank's share, identical predictions, NVML of every GPU afterwards (on the CPU smoke:
   torchrun with 2 CPU processes).

Every stage catches and prints its own failure, output is flushed as it comes, and a time
budget (default 420 s) skips a stage that would not fit (a CLI stage is also killed at what
is left). ``--out FILE`` keeps a Markdown copy of the tables, rewritten after each stage.
``--cpu-smoke`` runs the same stages on the CPU with a tiny model and simulated OOM, to
prove the script itself works (the compile CLI stage compiles for real on the CPU; the
decode-step stage uses the static path without torch.compile, unless ``--cpu-compile``).

    PYTHONPATH=. python scripts/gpu_check.py --only compile --out gpu_check.md   # GPU
    PYTHONPATH=. python scripts/gpu_check.py --cpu-smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# The GPU machine has no textual: the stages run in this process must not need it either.
sys.modules["textual"] = None  # type: ignore[assignment]

# Runs the CLI with textual made unimportable: the GPU machine has no textual, so nothing
# on these paths may need it.
LAUNCHER = ("import sys; sys.modules['textual'] = None; from tui_eval.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
STARTED = time.monotonic()


def say(text: str = "") -> None:
    print(text, flush=True)


class Report:
    """The Markdown copy of the tables (``--out``), rewritten whole after each addition so
    that a run killed at its time limit still leaves what it measured."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.sections: list[str] = []

    def add(self, title: str, body: str) -> None:
        self.sections.append(f"## {title}\n\n{body.strip()}\n")
        if self.path is not None:
            self.path.write_text("# gpu_check\n\n" + "\n".join(self.sections),
                                 encoding="utf-8")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def banner(title: str) -> None:
    say(f"\n=== {title} " + "=" * max(0, 70 - len(title)) + f" [{elapsed():.0f}s]")


def elapsed() -> float:
    return time.monotonic() - STARTED


# ── model, tokenizer and data, built offline ────────────────────────────────────

def words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
                    for _ in range(count))


def build_model(directory: Path, *, cpu: bool) -> dict[str, Any]:
    """A random Llama: ~0.5 B parameters in bf16 on CUDA, a tiny fp32 one on CPU."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [words(rng, rng.randint(5, 30)) + "." for _ in range(3000 if cpu else 20000)]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512 if cpu else 8192, show_progress=False,
                                  special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    shape = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2) if cpu else
             dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=30,
                  num_attention_heads=16, num_key_value_heads=8))
    config = LlamaConfig(vocab_size=len(fast), max_position_embeddings=2048,
                         bos_token_id=fast.convert_tokens_to_ids("<s>"),
                         eos_token_id=fast.convert_tokens_to_ids("</s>"),
                         pad_token_id=fast.convert_tokens_to_ids("<pad>"),
                         tie_word_embeddings=False, **shape)
    torch.manual_seed(0)
    dtype = torch.float32 if cpu else torch.bfloat16
    with torch.device("cpu" if cpu else "cuda"):
        model = LlamaForCausalLM(config).to(dtype)
    params = sum(p.numel() for p in model.parameters())
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    del model
    if not cpu:
        torch.cuda.empty_cache()
    return {"parameters": params, "vocab": len(fast), "bytes": params * (4 if cpu else 2),
            **shape}


def write_choice_data(path: Path, count: int, min_words: int, max_words: int,
                      seed: int) -> Path:
    """Multiple-choice records: a context and four candidate continuations."""
    rng = random.Random(seed)
    rows = [{"id": f"c{i}", "question": words(rng, rng.randint(min_words, max_words)),
             "choices": [words(rng, rng.randint(1, 4)) for _ in range(4)],
             "answer": rng.randrange(4)} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_data(path: Path, count: int, min_words: int, max_words: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = [{"id": f"s{i}", "prompt": words(rng, rng.randint(min_words, max_words)),
             "answer": words(rng, 2)} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ── running the CLI ─────────────────────────────────────────────────────────────

def run_cli(args: list[str], *, cwd: Path, timeout: float, cpu: bool = False,
            processes: int = 1) -> int:
    """``tui-eval ARGS`` in a subprocess (under torchrun with ``processes`` > 1), its output
    streamed with a prefix; killed at the timeout. Returns the exit code (124 on timeout)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if cpu:  # a shared CPU: one thread avoids OpenMP stalls behind other processes
        env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-c", LAUNCHER, *args]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", "-m", "tui_eval", *args]
        say(f"$ torchrun --nproc-per-node {processes} -m tui_eval {' '.join(args)}")
    else:
        say(f"$ tui-eval {' '.join(args)}")
    process = subprocess.Popen(command, cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            say("  " + line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        say(f"  !! killed after {timeout:.0f}s (stage time limit)")
        code = 124
    reader.join(timeout=5)
    say(f"  -> exit code {code}")
    return code


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class Stages:
    """Runs each stage within the budget; a failure is printed and the next stage runs."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.results: list[tuple[str, str, float]] = []

    def left(self) -> float:
        return self.budget - elapsed()

    def run(self, name: str, needs: float, stage: Callable[[float], bool | None]) -> None:
        banner(name)
        if self.left() < needs:
            say(f"skipped: {self.left():.0f}s left of the budget, the stage needs ~{needs:.0f}s")
            self.results.append((name, "SKIPPED", 0.0))
            return
        started = time.monotonic()
        try:
            ok = stage(self.left())
            status = "PASS" if ok is not False else "FAIL"
        except Exception:  # noqa: BLE001 - print it and go on to the next stage
            traceback.print_exc(file=sys.stdout)
            status = "ERROR"
        sys.stdout.flush()
        self.results.append((name, status, time.monotonic() - started))

    def summary(self, report: Report | None = None) -> None:
        banner("summary")
        for name, status, seconds in self.results:
            say(f"{status:8} {seconds:6.1f}s  {name}")
        say(f"total {elapsed():.0f}s")
        if report is not None:
            report.add("summary", markdown_table(
                ["stage", "status", "seconds"],
                [[name, status, f"{seconds:.1f}"] for name, status, seconds in self.results])
                + f"\n\ntotal {elapsed():.0f} s")


# ── the stages ──────────────────────────────────────────────────────────────────

def environment(cpu: bool) -> bool:
    import torch
    import transformers

    say(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, CUDA available: {torch.cuda.is_available()}")
    if cpu:
        say("--cpu-smoke: CPU only, OOM simulated")
        return True
    from tui_eval.device import nvml

    props = torch.cuda.get_device_properties(0)
    say(f"device 0: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
        f"capability {props.major}.{props.minor}, bf16: {torch.cuda.is_bf16_supported()}")
    say(f"NVML: {nvml_readings()}")
    return nvml.device_handle("cuda:0") is not None


def nvml_readings() -> list[dict[str, Any]]:
    """What the app's gauges show, one dict per GPU (memory in GiB)."""
    from dataclasses import asdict

    from tui_eval.device.monitor import GpuUnavailable, NvmlGpuSource

    try:
        gpus = [asdict(reading) for reading in NvmlGpuSource().read()]
    except GpuUnavailable as exc:
        return [{"error": str(exc)}]
    for gpu in gpus:
        for key in ("memory_total_bytes", "memory_used_bytes"):
            if gpu.get(key) is not None:
                gpu[key.replace("_bytes", "_gib")] = round(gpu.pop(key) / 2**30, 2)
    return gpus


# ── compiled decode (static KV cache) ───────────────────────────────────────────

def open_backend(model_dir: Path, *, cpu: bool, compile: bool, compile_decode: bool) -> Any:
    """A fresh model, and torch's compiled-code caches emptied: each measurement compiles
    from scratch, as a new process would (inductor's on-disk cache aside)."""
    import gc

    import torch

    from tui_eval.model.backend import HFBackend

    gc.collect()
    torch._dynamo.reset()
    if not cpu:
        torch.cuda.empty_cache()
    backend = HFBackend(str(model_dir), device="cpu" if cpu else "cuda",
                        dtype="float32" if cpu else "bfloat16", compile=compile,
                        compile_decode=compile_decode)
    backend.load_model()
    return backend


def prompts_of_length(backend: Any, count: int, low: int, high: int, seed: int) -> list[str]:
    """Prompts of ``low``..``high`` tokens, as the backend counts them."""
    rng = random.Random(seed)
    tok = backend.tokenizer
    prompts: list[str] = []
    while len(prompts) < count:
        target = rng.randint(low, high)
        ids = tok(words(rng, target), add_special_tokens=False)["input_ids"][:target]
        text = tok.decode(ids)
        if low <= backend.token_counts([text])[0] <= high:  # decoding may merge tokens
            prompts.append(text)
    return prompts


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()  # generate returns Python lists: the GPU has finished
    return time.perf_counter() - started, result


def decode_speed(backend: Any, prompts: list[str], new_tokens: int,
                 repeats: int) -> dict[str, Any]:
    """First call (compiling, when on), then the best of ``repeats`` for a prefill alone
    and for prefill + decode; every row makes exactly ``new_tokens`` tokens."""
    from tui_eval.device.meter import ResourceMeter

    def generate(tokens: int) -> Any:
        return backend.generate(prompts, max_new_tokens=tokens, force_length=True)

    first, generation = timed(lambda: generate(new_tokens))
    prefill = min(timed(lambda: generate(1))[0] for _ in range(repeats))
    with ResourceMeter(backend.device) as meter:
        full = min(timed(lambda: generate(new_tokens))[0] for _ in range(repeats))
    step = (full - prefill) / max(1, new_tokens - 1)
    return {"first_call_s": first, "compile_s": backend.compile_seconds,
            "prefill_ms": prefill * 1e3, "step_ms": step * 1e3,
            "tokens_per_s": len(prompts) * new_tokens / full, "seconds": full,
            "gpu_util": meter.gpu_util_percent, "shape": generation.shape,
            "texts": generation.texts}


def label(mode: str, compile_decode: bool) -> str:
    return mode if mode == "eager" or compile_decode else "static, not compiled"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def decode_stage(model_dir: Path, *, cpu: bool, compile_decode: bool,
                 report: Report) -> bool:
    rows, new_tokens = (8, 8) if cpu else (64, 64)
    low, high = (24, 32) if cpu else (120, 128)
    results: dict[str, dict[str, Any]] = {}
    for mode in ("eager", "compiled"):
        backend = open_backend(model_dir, cpu=cpu, compile=mode == "compiled",
                               compile_decode=compile_decode)
        prompts = prompts_of_length(backend, rows, low, high, seed=5)
        if mode == "eager":  # CUDA's one-time start-up costs are not the eager path's
            backend.generate(prompts[:1], max_new_tokens=2)
        graphs = graphs_compiled()
        results[mode] = decode_speed(backend, prompts, new_tokens, repeats=2)
        results[mode]["graphs"] = graphs_compiled() - graphs
        say(f"{mode}: {results[mode]['step_ms']:.2f} ms per decode step, "
            f"shape {results[mode]['shape']}, graphs compiled {results[mode]['graphs']}")
        del backend
    eager, compiled = results["eager"], results["compiled"]
    table = markdown_table(
        ["mode", "first call s", "compile s", "prefill ms", "ms/decode step", "tokens/s",
         "GPU util %", "graphs compiled"],
        [[label(mode, compile_decode), f"{r['first_call_s']:.2f}", f"{r['compile_s']:.2f}",
          f"{r['prefill_ms']:.1f}", f"{r['step_ms']:.2f}", f"{r['tokens_per_s']:.0f}",
          percent(r["gpu_util"]), r["graphs"]] for mode, r in results.items()])
    same = sum(a == b for a, b in zip(eager["texts"], compiled["texts"], strict=True))
    path = ("static cache, decode compiled by transformers" if compile_decode
            else "static cache without torch.compile (CPU smoke)")
    note = (f"{rows} prompts of {low}-{high} tokens, {new_tokens} new tokens (forced), best of "
            f"2; decode step = (full call - prefill-only call) / {new_tokens - 1}. Compiled "
            f"path: {path}, shape {compiled['shape']}. Speed-up per decode step: "
            f"{eager['step_ms'] / compiled['step_ms']:.2f}x; tokens/s: "
            f"{compiled['tokens_per_s'] / eager['tokens_per_s']:.2f}x. Same text as eager: "
            f"{same}/{rows} rows.")
    say(table)
    say(note)
    report.add("decode step: compile off vs on", table + "\n\n" + note)
    return compiled["step_ms"] > 0


# ── CUDA-graph decode against eager and torch.compile (margins model) ───────────

# The margins model: the embeddings scaled to this standard deviation, so that the residual
# stream keeps the input token in view; the output layer maps each token to a successor.
MARGIN_EMBED_STD = 1.0
# Measured on an H200: ~145 s with torch.compile's second process cut at 34 s; this leaves
# that process ~60 s (its model load and, on a cache miss, a ~48 s compile).
GRAPH_STAGE_BUDGET = 180.0
INDUCTOR_WORKER = ("import sys; sys.modules['textual'] = None; sys.path.insert(0, {scripts!r}); "
                   "import gpu_check; gpu_check.inductor_worker(sys.argv[1])")


def build_margins_model(source: Path, target: Path, *, cpu: bool) -> dict[str, Any]:
    """The random model with clear margins between its top two logits, so that bf16
    noise cannot flip an argmax: each ordinary token's successor (a fixed random
    permutation, never a special token) gets the output row of the token's own unit
    embedding, and the embeddings are scaled up so that they dominate the residual."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch.float32 if cpu else torch.bfloat16).to("cpu" if cpu else "cuda")
    specials = 4  # <pad> <s> </s> <unk>, the first ids of build_model's tokenizer
    with torch.no_grad():
        embed = model.get_input_embeddings().weight
        head = model.get_output_embeddings().weight
        embed.mul_(MARGIN_EMBED_STD / embed.float().std().item())
        ordinary = torch.arange(specials, embed.shape[0], device=embed.device)
        order = torch.randperm(len(ordinary), generator=torch.Generator().manual_seed(0))
        successor = ordinary[order.to(embed.device)]
        unit = embed.float() / embed.float().norm(dim=-1, keepdim=True)
        rows = torch.zeros_like(head, dtype=torch.float32)
        rows[successor] = unit[ordinary]
        head.copy_(rows.to(head.dtype))
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            (target / name).write_bytes((source / name).read_bytes())
    del model
    if not cpu:
        torch.cuda.empty_cache()
    return {"specials": specials}


def logit_margins(backend: Any, prompts: list[str]) -> dict[str, float]:
    """Top-1 minus top-2 logit at the prompts' last positions, against the spacing of bf16
    numbers at the top logit (2^-7 of its magnitude, rounded up to a power of two)."""
    import torch

    encoded = backend._encode(prompts, padding=True).to(backend.device)
    with torch.inference_mode():
        logits = backend.model(**encoded).logits[:, -1, :].float()
    top = logits.topk(2, dim=-1).values
    gaps = (top[:, 0] - top[:, 1]).cpu()
    spacing = (top[:, 0].abs().max().item() or 1.0) * 2.0 ** -7
    return {"min": gaps.min().item(), "median": gaps.median().item(), "bf16_step": spacing}


def decode_measure(backend: Any, prompts: list[str], new_tokens: int, *,
                   graph: bool) -> dict[str, Any]:
    """First call (its setup: capture or compile), then the best of 2 of a prefill-only
    call and of a full call; ms per decode step from their difference, NVML utilisation
    over the full calls."""
    from tui_eval.device.meter import ResourceMeter

    def generate(tokens: int) -> Any:
        return backend.generate(prompts, max_new_tokens=tokens, graph=graph)

    backend._synchronize()
    first, generation = timed(lambda: generate(new_tokens))
    prefill = min(timed(lambda: generate(1))[0] for _ in range(2))
    with ResourceMeter(backend.device) as meter:
        full = min(timed(lambda: generate(new_tokens))[0] for _ in range(2))
    steps = max(1, max(generation.new_tokens) - 1)
    return {"setup_s": generation.compile_seconds, "first_call_s": first,
            "step_ms": (full - prefill) / steps * 1e3, "gpu_util": meter.gpu_util_percent,
            "texts": generation.texts, "full_rows": sum(n == new_tokens
                                                        for n in generation.new_tokens)}


def inductor_worker(spec_path: str) -> None:
    """A process of its own for the torch.compile path (``INDUCTOR_WORKER``): its compile
    seconds show whether the on-disk cache of an earlier process served it."""
    spec = read_json(Path(spec_path))
    result: dict[str, Any] = {}
    try:
        backend = open_backend(Path(spec["model"]), cpu=spec["cpu"], compile=True,
                               compile_decode=spec["compile_decode"])
        # CUDA's start-up costs, not a compilation: this one call eager
        backend.generate(spec["prompts"][:1], max_new_tokens=2, static=False)
        result = decode_measure(backend, spec["prompts"], spec["new_tokens"], graph=False)
        result["setup_s"] = backend.compile_seconds
    except Exception as exc:  # noqa: BLE001 - reported by the stage
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    Path(spec["out"]).write_text(json.dumps(result), encoding="utf-8")


def run_inductor_worker(workdir: Path, spec: dict[str, Any], name: str,
                        timeout: float) -> dict[str, Any]:
    out = workdir / f"{name}.json"
    spec_path = workdir / f"{name}-spec.json"
    spec_path.write_text(json.dumps({**spec, "out": str(out)}), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if spec["cpu"]:
        env["OMP_NUM_THREADS"] = "1"
    code = INDUCTOR_WORKER.format(scripts=str(REPO / "scripts"))
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", code, str(spec_path)], cwd=workdir,
                              env=env, timeout=max(1.0, timeout), capture_output=True,
                              text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {done.returncode}: {' | '.join(tail)[:300]}"}
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {timeout:.0f}s"}
    result = read_json(out) if out.exists() else {"error": "no result written"}
    result["process_s"] = time.monotonic() - started
    return result


def graph_stage(workdir: Path, model_dir: Path, *, cpu: bool, compile_decode: bool,
                left: float, report: Report) -> bool:
    """Eager against the CUDA-graph path against torch.compile on the margins model: setup
    seconds for a new shape, ms per decode step, NVML utilisation, identical predictions;
    then torch.compile again in a second process (its on-disk cache)."""
    import gc

    import torch

    deadline = time.monotonic() + min(left, GRAPH_STAGE_BUDGET) - 5
    rows, new_tokens = (8, 8) if cpu else (64, 64)
    low, high = (24, 32) if cpu else (120, 128)
    margins_dir = workdir / "margins-model"
    if not (margins_dir / "config.json").exists():
        build_margins_model(model_dir, margins_dir, cpu=cpu)
    results: dict[str, dict[str, Any]] = {}
    backend = open_backend(margins_dir, cpu=cpu, compile=False, compile_decode=False)
    prompts = prompts_of_length(backend, rows, low, high, seed=7)
    margins = logit_margins(backend, prompts)
    say(f"margins model: top-1 minus top-2 logit min {margins['min']:.3f}, median "
        f"{margins['median']:.3f}; bf16 spacing at the top logit {margins['bf16_step']:.4f}")
    backend.generate(prompts[:1], max_new_tokens=2)  # CUDA's start-up costs
    for mode, graph in (("eager", False), ("graph", True)):
        try:
            results[mode] = decode_measure(backend, prompts, new_tokens, graph=graph)
            say(f"{mode}: {results[mode]['step_ms']:.2f} ms/step, setup "
                f"{results[mode]['setup_s']:.2f}s")
        except Exception as exc:  # noqa: BLE001 - print it and measure the next path
            results[mode] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            say(f"{mode}: {results[mode]['error']}")
    # the captured graph against the same loop uncaptured, on the plain random model: the
    # same kernels, so any difference is the capture's (stale buffers, positions, mask)
    same_loop = "n/a"
    # on the CPU both runs are uncaptured: the smoke checks the code path
    try:
        from tui_eval.model.graph_decode import GraphDecoder

        plain = open_backend(model_dir, cpu=cpu, compile=False, compile_decode=False)
        plain_prompts = prompts_of_length(plain, rows, low, high, seed=7)
        captured = plain.generate(plain_prompts, max_new_tokens=new_tokens, graph=True)
        plain._graphs = GraphDecoder(plain.model, capture=False)
        uncaptured = plain.generate(plain_prompts, max_new_tokens=new_tokens, graph=True)
        pairs = list(zip(captured.texts, uncaptured.texts, strict=True))
        hits = sum(a == b for a, b in pairs)
        # where rows part: late (after many tokens) is bf16 noise on flat logits, at the
        # first token a capture bug
        firsts = sorted(next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                             min(len(a), len(b))) for a, b in pairs if a != b)
        same_loop = f"{hits}/{rows}" + (f" (differing rows part at character "
                                         f"{firsts[0]} at the earliest, median "
                                         f"{firsts[len(firsts) // 2]})" if firsts else "")
        del plain
    except Exception as exc:  # noqa: BLE001
        same_loop = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    del backend
    gc.collect()
    if not cpu:
        torch.cuda.empty_cache()
    spec = {"model": str(margins_dir), "cpu": cpu, "compile_decode": compile_decode,
            "prompts": prompts, "new_tokens": new_tokens}
    inductor = "inductor" if compile_decode else "static, not compiled"
    for process in (1, 2):
        name = f"{inductor} (process {process})"
        timeout = deadline - time.monotonic()
        if timeout < 20:
            results[name] = {"error": f"skipped: {max(0.0, timeout):.0f}s left"}
        else:
            results[name] = run_inductor_worker(workdir, spec, f"inductor-{process}", timeout)
        say(f"{name}: " + (results[name].get("error") or
                           f"{results[name]['step_ms']:.2f} ms/step, setup "
                           f"{results[name]['setup_s']:.2f}s"))
    eager_texts = results["eager"].get("texts")

    def same(result: dict[str, Any]) -> str:
        texts = result.get("texts")
        if not texts or not eager_texts:
            return "n/a"
        hits = sum(a == b for a, b in zip(texts, eager_texts, strict=True))
        return f"{hits}/{len(texts)} ({100 * hits / len(texts):.0f} %)"

    table_rows = []
    for mode, r in results.items():
        if "error" in r:
            table_rows.append([mode, "error", "", "", "", "", r["error"][:160]])
            continue
        table_rows.append([mode, f"{r['setup_s']:.2f}", f"{r['first_call_s']:.2f}",
                           f"{r['step_ms']:.2f}", percent(r["gpu_util"]),
                           f"{r['full_rows']}/{rows}", same(r)])
    table = markdown_table(["path", "setup s", "first call s", "ms/decode step",
                            "GPU util %", "rows at full length", "same as eager"], table_rows)
    eager_ms = results["eager"].get("step_ms")
    speedups = ", ".join(f"{mode} {eager_ms / r['step_ms']:.2f}x" for mode, r in results.items()
                         if mode != "eager" and r.get("step_ms") and eager_ms)
    note = (f"margins model ({rows} prompts of {low}-{high} tokens, {new_tokens} new tokens, "
            f"greedy; best of 2; step = (full call - prefill-only call) / (new tokens - 1)). "
            f"Top-1 minus top-2 logit: min {margins['min']:.3f}, median "
            f"{margins['median']:.3f}, bf16 spacing {margins['bf16_step']:.4f}. "
            f"Speed-up per step against eager: {speedups or 'n/a'}. Captured graph vs the "
            f"same loop uncaptured (plain random model): {same_loop} rows identical. "
            "Process 2 compiles the same shape with process 1's on-disk inductor cache.")
    say(table)
    say(note)
    report.add("CUDA-graph decode vs eager vs torch.compile", table + "\n\n" + note)
    graph = results.get("graph", {})
    return "error" not in graph and graph.get("texts") == eager_texts


# ── compiled generation and tuning through the CLI ─────────────────────────────

def predictions_by_id(run_dir: Path) -> dict[str, str]:
    lines = (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["id"]: row["prediction"] for row in map(json.loads, lines)}


def gib_text(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f}"


def log_lines(run_dir: Path, *markers: str) -> list[str]:
    """The lines of run.log that hold one of ``markers``, without the timestamp."""
    path = run_dir / "run.log"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split(" - ", 1)[-1] for line in lines if any(m in line for m in markers)]


def cli_compile_stage(workdir: Path, model_dir: Path, device: list[str], *, cpu: bool,
                      left: float, report: Report) -> bool:
    """``tui-eval bench --compile on,off`` at one batch size: the compiled static path
    against eager generation, through the engine."""
    size, tokens = ("8", "8") if cpu else ("64", "64")
    out = workdir / "bench-compile"
    code = run_cli(["bench", "-m", str(model_dir), "-d", str(workdir / "compile.jsonl"),
                    "-b", size, "--compile", "on,off", "--max-tokens", tokens, "--lang", "en",
                    "-o", str(out), *device], cwd=workdir, timeout=min(left - 5, 300), cpu=cpu)
    bench = read_json(out / "bench.json")
    rows = {row["compile"]: row for row in bench["rows"]}
    on_text = predictions_by_id(out / f"bs_{size}-compile_on")
    off_text = predictions_by_id(out / f"bs_{size}-compile_off")
    same = sum(on_text[key] == off_text.get(key) for key in on_text)
    table = markdown_table(
        ["compile", "batch size", "generation s", "compile s", "tokens/s", "samples/s",
         "GPU util % (outside compile)", "peak GiB", "same text as off"],
        [[mode, row["batch_size"], f"{row['seconds']:.2f}", f"{row['compile_seconds']:.1f}",
          f"{row['tokens_per_s']:.0f}", f"{row['samples_per_s']:.1f}",
          percent(row["gpu_util_percent"]), gib_text(row["peak_memory_bytes"]),
          f"{same}/{len(on_text)}" if mode == "on" else "-"]
         for mode, row in rows.items()])
    speedup = rows["on"]["tokens_per_s"] / max(rows["off"]["tokens_per_s"], 1e-9)
    whole = (rows["off"]["seconds"] / max(rows["on"]["seconds"] + rows["on"]["compile_seconds"],
                                          1e-9))
    note = (f"{bench['samples']} prompts, {tokens} new tokens, batch size {size}, "
            f"{bench['dtype']}; tokens/s over generation time (compile excluded): compile on "
            f"is {speedup:.2f}x compile off; with its compile time counted, "
            f"{whole:.2f}x. Log: " + "; ".join(log_lines(out / f"bs_{size}-compile_on",
                                                        "for shape")))
    say(table)
    say(note)
    report.add("tui-eval bench --compile on,off", table + "\n\n" + note)
    return code == 0 and rows["on"]["compile_seconds"] > 0 and speedup > 0


def auto_row(name: str, metrics: dict, tune: dict) -> list[Any]:
    wall = metrics["wall_seconds"]
    tuning = metrics.get("tune_seconds") or 0.0
    return [name, metrics["batch_size"], f"{tuning:.2f}", f"{metrics['generation_seconds']:.2f}",
            f"{metrics.get('compile_seconds', 0.0):.1f}", f"{wall:.2f}",
            f"{tuning / wall:.1%}" if wall else "-",
            f"{metrics['tokens_per_s']:.0f}", len(tune["probes"]), tune.get("stopped_by"),
            tune.get("from_cache")]


AUTO_HEADER = ["run", "batch size", "tuning s", "generation s", "compile s",
               "wall s (load + tune + generate)", "tuning share", "tokens/s", "probes",
               "stopped by", "from cache"]


def cli_auto_stage(workdir: Path, model_dir: Path, device: list[str], *, cpu: bool,
                   left: float, report: Report, compile_mode: str = "auto") -> bool:
    """``tui-eval --no-ui -b auto``: what tuning cost against the run it tuned."""
    tokens = "16" if cpu else "64"
    deadline = time.monotonic() + left  # the stage's share of the budget, for both calls
    out = workdir / f"auto-compile-{compile_mode}"
    flags = ["-m", str(model_dir), "-d", str(workdir / "auto.jsonl"), "--max-tokens", tokens,
             "--compile", compile_mode, "--lang", "en", *device]
    code = run_cli(["--no-ui", "-b", "auto", *flags, "-o", str(out)], cwd=workdir,
                   timeout=min(deadline - time.monotonic() - 25, 240), cpu=cpu)
    metrics, tune = read_json(out / "metrics.json"), read_json(out / "tune.json")
    rows = [auto_row(f"-b auto --compile {compile_mode}", metrics, tune)]
    table = markdown_table(AUTO_HEADER, rows)
    probes = markdown_table(
        ["batch size", "status", "predicted s per batch", "samples/s", "peak GiB (full length)",
         "probe s", "tokens probed"],
        [[p["batch_size"], p["status"], f"{p['seconds']:.2f}", f"{p['samples_per_s']:.1f}",
          gib_text(p["peak_memory_bytes"]), f"{p.get('probe_seconds', 0.0):.2f}",
          "full" if p.get("full_length") else p.get("new_tokens")] for p in tune["probes"]])
    budget, estimate = tune.get("budget_seconds"), tune.get("estimated_run_seconds") or 0.0
    about = f"{metrics['n']} prompts, {tokens} new tokens."
    if budget is not None:
        about += (f" Tuning budget {budget:.2f} s: a tenth of the run as estimated at full "
                  f"length ({estimate:.1f} s).")
    note = about + " Log: " + "; ".join(log_lines(
        out, "compile auto", "for shape", "CUDA graph decode", "Tuning budget",
        "Memory per row", "not confirmed",
        "Chosen batch size"))
    say(table)
    say(probes)
    say(note)
    report.add(f"-b auto --compile {compile_mode}: tuning against the run it tuned",
               table + "\n\nProbes:\n\n" + probes + "\n\n" + note)
    return code == 0

AUTO_RUNS = 3


def auto_repeat_stage(workdir: Path, model_dir: Path, device: list[str], *, cpu: bool,
                      left: float, report: Report) -> bool:
    """``tui-eval --no-ui -b auto`` three times, each a fresh process tuning afresh
    (``--retune``), on the -b auto dataset with 64 new tokens: the size chosen, the tuning
    seconds (tune.json), the whole process's wall clock taken here, and whether the sizes
    agree (on CUDA the size comes from memory, not timing); then ``tui-eval tune`` once,
    the doubling action, with its probes. Each call gets its share of what is left."""
    tokens = "16" if cpu else "64"
    deadline = time.monotonic() + left - 5
    flags = ["-m", str(model_dir), "-d", str(workdir / "auto.jsonl"), "--max-tokens", tokens,
             "--lang", "en", *device]
    rows, sizes, ok = [], [], True
    for index in range(1, AUTO_RUNS + 1):
        out = workdir / f"auto-repeat-{index}"
        calls_left = AUTO_RUNS - index + 2  # these runs and the tune
        started = time.monotonic()
        code = run_cli(["--no-ui", "-b", "auto", "--retune", *flags, "-o", str(out)],
                       cwd=workdir, cpu=cpu,
                       timeout=min((deadline - time.monotonic()) / calls_left, 60))
        wall = time.monotonic() - started
        if code != 0 or not (out / "tune.json").exists():
            say(f"!! run {index}: exit code {code}, no tune.json: not counted")
            rows.append([index, "-", "-", "-", f"{wall:.1f}", "-", f"exit {code}"])
            ok = False
            continue
        tune = read_json(out / "tune.json")
        sizes.append(tune["chosen_batch_size"])
        rows.append([index, tune["chosen_batch_size"], tune["mode"], f"{tune['seconds']:.2f}",
                     f"{wall:.1f}", len(tune["probes"]), f"exit {code}"])
    agree = len(sizes) == AUTO_RUNS and len(set(sizes)) == 1
    table = markdown_table(["run", "chosen", "mode", "tuning s (tune.json)",
                            "whole process s", "probes", "result"], rows)
    note = (f"{AUTO_RUNS} fresh processes, {tokens} new tokens: sizes {sizes}, "
            f"{'the same' if agree else 'NOT the same'} in {len(sizes)}/{AUTO_RUNS}."
            + (" On the CPU -b auto sizes by timing: the sizes need not agree." if cpu
               else " Targets: whole process <= 15 s, tuning <= 2 s, 3/3 the same."))
    say(table)
    say(note)
    out = workdir / "tune-doubling"
    code = run_cli(["tune", *flags, "-o", str(out)], cwd=workdir, cpu=cpu,
                   timeout=max(5.0, deadline - time.monotonic()))
    probes_table = "tui-eval tune: no tune.json"
    if (out / "tune.json").exists():
        tuned = read_json(out / "tune.json")
        probes_table = markdown_table(
            ["batch size", "status", "predicted s per batch", "samples/s",
             "peak GiB (full length)", "probe s"],
            [[p["batch_size"], p["status"], f"{p['seconds']:.2f}", f"{p['samples_per_s']:.1f}",
              gib_text(p["peak_memory_bytes"]), f"{p.get('probe_seconds', 0.0):.2f}"]
             for p in tuned["probes"]]) + (
            f"\n\ntui-eval tune (doubling, no budget): chose {tuned['chosen_batch_size']} "
            f"in {tuned['seconds']:.1f} s, stopped by {tuned['stopped_by']}")
        ok = ok and tuned["budget_seconds"] is None and tuned["probes"][0]["batch_size"] == 1
    else:
        ok = False
    say(probes_table)
    report.add("-b auto three times in fresh processes; tui-eval tune's doubling",
               table + "\n\n" + note + "\n\n" + probes_table)
    return ok and code == 0 and (agree or cpu)  # on the CPU the size comes from timing


def ranks_stage(workdir: Path, model_dir: Path, device: list[str], *, cpu: bool,
                left: float, report: Report) -> bool:
    """One GPU against every GPU present, one process each: the same run, the same
    predictions, and what each rank did."""
    import torch

    gpus = 2 if cpu else torch.cuda.device_count()
    if gpus < 2:
        say(f"{gpus} GPU: nothing to spread over")
        report.add("one GPU against all of them", f"{gpus} GPU present: not run")
        return True
    deadline = time.monotonic() + left
    flags = ["-m", str(model_dir), "-d", str(workdir / "auto.jsonl"), "-b", "8" if cpu
             else "32", "--max-tokens", "16" if cpu else "64", "--compile", "off", "--lang",
             "en", *device]
    one, many = workdir / "ranks-1", workdir / f"ranks-{gpus}"
    code_one = run_cli(["--no-ui", *flags, "-o", str(one)], cwd=workdir, cpu=cpu,
                       timeout=min((deadline - time.monotonic()) / 2, 200))
    many_args = ["--no-ui", *flags, "-o", str(many)]
    if not cpu:
        many_args[1:1] = ["--gpus", "all"]
    code_many = run_cli(many_args, cwd=workdir, cpu=cpu, processes=gpus if cpu else 1,
                        timeout=min(deadline - time.monotonic() - 5, 200))
    first, second = read_json(one / "metrics.json"), read_json(many / "metrics.json")
    same = predictions_by_id(one) == predictions_by_id(many)
    events = [json.loads(line) for line in
              (many / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    shares = {e["rank"]: e for e in events if e["event"] == "rank_finished"}
    rows = [["1 process", 1, f"{first['samples_per_s']:.1f}",
             f"{first['generation_seconds']:.2f}", f"{first['wall_seconds']:.1f}", "1.00×", "-"],
            [f"{gpus} processes", gpus, f"{second['samples_per_s']:.1f}",
             f"{second['generation_seconds']:.2f}", f"{second['wall_seconds']:.1f}",
             f"{second['samples_per_s'] / max(first['samples_per_s'], 1e-9):.2f}×",
             " · ".join(f"r{rank} {e['done']} in {e['generation_seconds']:.1f}s"
                        for rank, e in sorted(shares.items()))]]
    table = markdown_table(["run", "processes", "samples/s", "generation s", "wall s",
                            "speed-up", "each rank"], rows)
    note = f"{first['n']} prompts; predictions identical: {'yes' if same else 'NO'}."
    if not cpu:
        note += f" NVML afterwards: {nvml_readings()}"
    say(table)
    say(note)
    report.add(f"one {'process' if cpu else 'GPU'} against {gpus}", table + "\n\n" + note)
    return code_one == 0 and code_many == 0 and same and len(shares) == gpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny model on the CPU with simulated OOM (checks the script)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all stages")
    parser.add_argument("--workdir", type=Path, help="keep the model and results here")
    parser.add_argument("--only", choices=["all", "compile", "auto", "cli", "ranks"],
                        default="all",
                        help="compile: compiled generation and -b auto; auto: -b auto three "
                             "times in fresh processes and tui-eval tune; cli: bench, tune "
                             "under a memory cap and OOM recovery; ranks: one GPU against "
                             "all of them")
    parser.add_argument("--out", type=Path, help="write a Markdown copy of the tables here")
    parser.add_argument("--cpu-compile", action="store_true",
                        help="with --cpu-smoke: compile the decode-step stage on the CPU too")
    args = parser.parse_args()
    cpu = args.cpu_smoke
    stages = Stages(args.budget)
    report = Report(args.out)
    compile_decode = not cpu or args.cpu_compile
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tui-eval-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # the tune cache of these runs: their own, not the user's
    os.environ["XDG_CACHE_HOME"] = str(workdir / "cache")
    model_dir = workdir / "model"
    say(f"gpu_check: work directory {workdir}; budget {args.budget:.0f}s")
    state: dict[str, Any] = {}
    device = ["--device", "cpu"] if cpu else ["--device", "cuda", "--torch-dtype", "bfloat16"]

    stages.run("environment and NVML", 0, lambda left: environment(cpu))

    def build(left: float) -> bool:
        info = build_model(model_dir, cpu=cpu)
        state["model"] = info
        say(f"model: {info['parameters'] / 1e6:.0f} M parameters "
            f"({info['hidden_size']} hidden × {info['num_hidden_layers']} layers, "
            f"vocab {info['vocab']}), {info['bytes'] / 2**30:.2f} GiB of weights")
        write_data(workdir / "bench.jsonl", 64, 10, 80, seed=1)
        # near-equal long prompts: the tuner's probes and the runs' first batches match
        long_words = (40, 44) if cpu else (250, 260)
        write_data(workdir / "long.jsonl", 512, *long_words, seed=2)
        # ~100-128 tokens: the compile comparison at one static shape
        write_data(workdir / "compile.jsonl", 64 if cpu else 512,
                   *((10, 16) if cpu else (60, 64)), seed=3)
        write_data(workdir / "auto.jsonl", 200 if cpu else 1024,
                   *((4, 30) if cpu else (8, 130)), seed=4)
        write_choice_data(workdir / "choice.jsonl", 32 if cpu else 256,
                          *((4, 20) if cpu else (40, 120)), seed=5)
        return True

    stages.run("build a random Llama model and datasets", 20 if not cpu else 5, build)

    def ranks() -> None:
        stages.run("one GPU against every GPU (--gpus all)" if not cpu
                   else "one process against 2 (torchrun, CPU)", 150 if not cpu else 60,
                   lambda left: ranks_stage(workdir, model_dir, device, cpu=cpu, left=left,
                                            report=report))

    if args.only == "ranks":
        ranks()
        stages.summary(report)
        return 0
    if args.only in ("all", "compile"):
        stages.run("CUDA-graph decode vs eager vs torch.compile, margins model" if not cpu
                   else "graph decode (uncaptured) vs eager vs static path", 60 if not cpu
                   else 10,
                   lambda left: graph_stage(workdir, model_dir, cpu=cpu,
                                            compile_decode=compile_decode, left=left,
                                            report=report))
        stages.run("bench -b 64 --compile on,off, 64 new tokens" if not cpu
                   else "bench -b 8 --compile on,off", 150 if not cpu else 40,
                   lambda left: cli_compile_stage(workdir, model_dir, device, cpu=cpu,
                                                  left=left, report=report))
        stages.run("-b auto (compile auto): tuning vs the run it tuned",
                   90 if not cpu else 30,
                   lambda left: cli_auto_stage(workdir, model_dir, device, cpu=cpu,
                                               left=left, report=report))
        static = "compiled" if compile_decode else "static path"
        stages.run("decode step: compile off vs on, bs 64, 128-token prompts" if not cpu
                   else f"decode step: eager vs {static}, bs 8", 110 if not cpu else 5,
                   lambda left: decode_stage(model_dir, cpu=cpu,
                                             compile_decode=compile_decode, report=report))
        stages.run("-b auto --compile on: tuning on the static cache, then compiled",
                   100 if not cpu else 40,
                   lambda left: cli_auto_stage(workdir, model_dir, device, cpu=cpu,
                                               left=left, report=report, compile_mode="on"))
    if args.only == "compile":
        stages.summary(report)
        return 0
    if args.only in ("all", "auto"):
        stages.run("-b auto three times in fresh processes; tui-eval tune doubling",
                   150 if not cpu else 40,
                   lambda left: auto_repeat_stage(workdir, model_dir, device, cpu=cpu,
                                                  left=min(left, 150 if not cpu else 60),
                                                  report=report))
    if args.only == "auto":
        stages.summary(report)
        return 0

    def bench(left: float) -> bool:
        sizes = "1,2,4" if cpu else "1,4,16,64"
        out = workdir / "bench"
        code = run_cli(["bench", "-m", str(model_dir), "-d", str(workdir / "bench.jsonl"),
                        "-b", sizes, "--max-tokens", "16", "--compile", "off", "--lang", "en",
                        "-o", str(out), *device], cwd=workdir, timeout=min(left - 5, 200),
                       cpu=cpu)
        if (out / "bench.md").exists():
            say((out / "bench.md").read_text(encoding="utf-8"))
            report.add("tui-eval bench", (out / "bench.md").read_text(encoding="utf-8"))
        if not cpu:
            say(f"NVML after bench: {nvml_readings()}")
        return code == 0 and len(read_json(out / "bench.json")["rows"]) == len(sizes.split(","))

    stages.run("bench 1, 4, 16, 64 in bfloat16" if not cpu else "bench 1,2,4",
               110 if not cpu else 30, bench)

    def tune(left: float) -> bool:
        out = workdir / "tune"
        if cpu:
            cap, extra = "0.5", ["--simulate-oom-above", "12"]
        else:  # the weights plus 1.5 GiB: a few dozen long prompts fit, not 512
            cap_bytes = int(state.get("model", {}).get("bytes", 2**30)) + 3 * 2**29
            cap, extra = f"{cap_bytes / 2**30:.2f}GiB", []
        state["cap"], state["cap_extra"] = cap, extra
        code = run_cli(["tune", "-m", str(model_dir), "-d", str(workdir / "long.jsonl"),
                        "--max-memory", cap, "--max-batch-size", "512", "--tune-mode",
                        "binsearch", "--memory-headroom", "1.0", "--max-tokens", "32",
                        "--compile", "off", "--lang", "en", "-o", str(out), *device, *extra],
                       cwd=workdir, timeout=min(left - 5, 150), cpu=cpu)
        result = read_json(out / "tune.json")
        oom = [p["batch_size"] for p in result["probes"] if p["status"] == "oom"]
        chosen = result["chosen_batch_size"]
        # the size a first batch surely runs out of memory at
        state["first_oom"] = min(oom) if oom else 2 * chosen
        capacity = (result.get("memory_capacity_bytes") or 0) / 2**30
        say(f"tune.json: chosen {chosen}, OOM at {oom}, memory capacity {capacity:.2f} GiB, "
            f"probes {[p['batch_size'] for p in result['probes']]} (headroom 1.0 here)")
        report.add("tune under --max-memory", markdown_table(
            ["batch size", "status", "peak GiB (full length)", "tokens probed"],
            [[p["batch_size"], p["status"], gib_text(p["peak_memory_bytes"]),
              "full" if p.get("full_length") else p.get("new_tokens")]
             for p in result["probes"]]) + f"\n\nchosen {chosen}, cap {cap}")
        return code == 0 and chosen >= 1

    def choice(left: float) -> bool:
        sizes = "1,4,16" if cpu else "1,4,16,64"
        out = workdir / "bench-choice"
        code = run_cli(["bench", "-m", str(model_dir), "-d", str(workdir / "choice.jsonl"),
                        "--task", "choice", "-b", sizes, "--lang", "en", "-o", str(out),
                        *device], cwd=workdir, timeout=min(left - 5, 150), cpu=cpu)
        if (out / "bench.md").exists():
            say((out / "bench.md").read_text(encoding="utf-8"))
            report.add("multiple choice: pairs/s by batch size (tui-eval bench --task choice)",
                       (out / "bench.md").read_text(encoding="utf-8"))
        rows = read_json(out / "bench.json")["rows"]
        return code == 0 and len(rows) == len(sizes.split(",")) and all(
            row.get("pairs_per_s") for row in rows)

    stages.run("multiple choice: pairs/s at 1, 4, 16, 64" if not cpu
               else "multiple choice: pairs/s at 1, 4, 16", 60 if not cpu else 30, choice)
    stages.run("tune under --max-memory (double to the OOM, then bisect)", 40, tune)

    def fallback(policy: str, max_tokens: str) -> Callable[[float], bool]:
        def stage(left: float) -> bool:
            first_oom = state.get("first_oom") or 64
            size = 2 * first_oom  # surely over the limit found by tuning
            out = workdir / f"fallback-{policy}"
            code = run_cli(["--no-ui", "-m", str(model_dir), "-d", str(workdir / "long.jsonl"),
                            "--limit", str(size), "-b", str(size), "--max-memory",
                            state.get("cap", "0.5"), "--oom-policy", policy, "--max-tokens",
                            max_tokens, "--compile", "off", "--lang", "en", "-o", str(out),
                            *device, *state.get("cap_extra", [])], cwd=workdir,
                           timeout=min(left - 5, 120), cpu=cpu)
            metrics = read_json(out / "metrics.json")
            log = (out / "run.log").read_text(encoding="utf-8")
            seed_lines = ("Batch generation failed: CUDA out of memory" in log,
                          "Falling back to single-sample generation" in log)
            say(f"metrics: n={metrics['n']}/{size}, errors={metrics['n_errors']}, "
                f"fallbacks={metrics['fallback_count']}, batch size {metrics['batch_size']} "
                f"→ {metrics.get('final_batch_size')}; seed lines in run.log: {seed_lines}")
            scored = metrics["n"] == size and metrics["n_errors"] == 0
            return code == 0 and scored and metrics["fallback_count"] > 0 and (
                policy != "single" or all(seed_lines))
        return stage

    stages.run("real OOM mid-run, default policy (bisect): every sample scored", 40,
               fallback("bisect", "32"))
    stages.run("real OOM mid-run, seed policy (single): the seed's two lines", 50,
               fallback("single", "8"))
    ranks()
    stages.summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
