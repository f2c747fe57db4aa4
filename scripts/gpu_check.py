"""One-shot GPU check of batch-size tuning, bench and OOM recovery on a real CUDA card.

For a CUDA machine with no network: torch, transformers and nvidia-ml-py installed, this
repository on PYTHONPATH (textual not needed). It builds a random Llama-style model of
about 0.5 B parameters and a tokenizer locally, writes datasets, then prints:

1. NVML readings;
2. ``tui-eval bench`` at 1, 2, 4, 8, 16, 32, 64 in bfloat16;
3. ``tui-eval tune`` under ``--max-memory`` until a real CUDA OOM;
4. a run whose first batch hits a real OOM under the same cap, every sample scored
   (default policy, then the seed's ``single`` policy with its two log lines).

Every stage catches and prints its own failure, output is flushed as it comes, and a time
budget (default 330 s) skips what would not fit. ``--cpu-smoke`` runs the same stages on
the CPU with a tiny model and simulated OOM, to prove the script itself works.

    PYTHONPATH=. python scripts/gpu_check.py            # on the GPU machine
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

# Runs the CLI with textual made unimportable: the GPU machine has no textual, so nothing
# on these paths may need it.
LAUNCHER = ("import sys; sys.modules['textual'] = None; from tui_eval.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
STARTED = time.monotonic()


def say(text: str = "") -> None:
    print(text, flush=True)


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


def write_data(path: Path, count: int, min_words: int, max_words: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = [{"id": f"s{i}", "prompt": words(rng, rng.randint(min_words, max_words)),
             "answer": words(rng, 2)} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ── running the CLI ─────────────────────────────────────────────────────────────

def run_cli(args: list[str], *, cwd: Path, timeout: float, cpu: bool = False) -> int:
    """``tui-eval ARGS`` in a subprocess, its output streamed with a prefix; killed at the
    timeout. Returns the exit code (124 on timeout)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if cpu:  # a shared CPU: one thread avoids OpenMP stalls behind other processes
        env["OMP_NUM_THREADS"] = "1"
    say(f"$ tui-eval {' '.join(args)}")
    process = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], cwd=cwd, env=env,
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

    def summary(self) -> None:
        banner("summary")
        for name, status, seconds in self.results:
            say(f"{status:8} {seconds:6.1f}s  {name}")
        say(f"total {elapsed():.0f}s")


# ── the stages ──────────────────────────────────────────────────────────────────

def environment(cpu: bool) -> bool:
    import torch
    import transformers

    say(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, CUDA available: {torch.cuda.is_available()}")
    if cpu:
        say("--cpu-smoke: CPU only, OOM simulated")
        return True
    from tui_eval import nvml

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny model on the CPU with simulated OOM (checks the script)")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for all stages")
    parser.add_argument("--workdir", type=Path, help="keep the model and results here")
    args = parser.parse_args()
    cpu = args.cpu_smoke
    stages = Stages(args.budget)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tui-eval-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
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
        return True

    stages.run("build a random Llama model and datasets", 20, build)

    def bench(left: float) -> bool:
        sizes = "1,2,4" if cpu else "1,2,4,8,16,32,64"
        out = workdir / "bench"
        code = run_cli(["bench", "-m", str(model_dir), "-d", str(workdir / "bench.jsonl"),
                        "-b", sizes, "--max-tokens", "16", "--lang", "en", "-o", str(out),
                        *device], cwd=workdir, timeout=min(left - 5, 200), cpu=cpu)
        if (out / "bench.md").exists():
            say((out / "bench.md").read_text(encoding="utf-8"))
        if not cpu:
            say(f"NVML after bench: {nvml_readings()}")
        return code == 0 and len(read_json(out / "bench.json")["rows"]) == len(sizes.split(","))

    stages.run("bench 1..64 in bfloat16" if not cpu else "bench 1,2,4", 30, bench)

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
                        "--lang", "en", "-o", str(out), *device, *extra], cwd=workdir,
                       timeout=min(left - 5, 150), cpu=cpu)
        result = read_json(out / "tune.json")
        oom = [p["batch_size"] for p in result["probes"] if p["status"] == "oom"]
        state["first_oom"] = min(oom) if oom else None
        capacity = (result.get("memory_capacity_bytes") or 0) / 2**30
        say(f"tune.json: chosen {result['chosen_batch_size']}, OOM at {oom}, "
            f"memory capacity {capacity:.2f} GiB (headroom 1.0 here so that doubling runs "
            "into the real OOM)")
        return code == 0 and bool(oom)

    stages.run("tune under --max-memory until a real CUDA OOM", 30, tune)

    def fallback(policy: str, max_tokens: str) -> Callable[[float], bool]:
        def stage(left: float) -> bool:
            first_oom = state.get("first_oom") or 64
            size = 2 * first_oom  # surely over the limit found by tuning
            out = workdir / f"fallback-{policy}"
            code = run_cli(["--no-ui", "-m", str(model_dir), "-d", str(workdir / "long.jsonl"),
                            "--limit", str(size), "-b", str(size), "--max-memory",
                            state.get("cap", "0.5"), "--oom-policy", policy, "--max-tokens",
                            max_tokens, "--lang", "en", "-o", str(out), *device,
                            *state.get("cap_extra", [])], cwd=workdir,
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

    stages.run("real OOM mid-run, default policy (bisect): every sample scored", 30,
               fallback("bisect", "32"))
    stages.run("real OOM mid-run, seed policy (single): the seed's two lines", 45,
               fallback("single", "8"))
    stages.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
