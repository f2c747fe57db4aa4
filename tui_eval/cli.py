"""Command line: ``tui-eval [--no-ui] …``.

Start-up must stay fast: nothing here imports torch, transformers or textual at module
level; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui_eval import __version__
from tui_eval.config import DTYPES, EvalConfig, find_default_config, resolve_config
from tui_eval.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, UsageError

# config key -> the flag that sets it, for error messages that name what the user typed
FLAG_NAMES = {
    "model": "-m/--model",
    "data": "-d/--data",
    "batch_size": "-b/--batch-size",
    "output_dir": "-o/--output",
    "torch_dtype": "--torch-dtype",
    "device": "--device",
    "max_tokens": "--max-tokens",
    "limit": "--limit",
    "lang": "--lang",
    "simulate_oom_above": "--simulate-oom-above",
    "oom_policy": "--oom-policy",
    "max_memory": "--max-memory",
    "tune_mode": "--tune-mode",
    "max_batch_size": "--max-batch-size",
    "memory_headroom": "--memory-headroom",
    "theme": "--theme",
}


def batch_size_value(text: str) -> int | str:
    """-b N or -b auto; the range is checked later by the config rule, as for the file."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer ≥ 1 or 'auto', got {text!r}") from None


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The seed guide's flags plus ours; defaults stay None so the config file shows through."""
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="TOML config file (default: ./eval.toml when present)")
    parser.add_argument("-m", "--model", help="model directory or cached hub id "
                        "(omit -m and -d to run the built-in demo)")
    parser.add_argument("-d", "--data", help="dataset file: .jsonl, .json or .csv")
    parser.add_argument("-b", "--batch-size", dest="batch_size", type=batch_size_value,
                        metavar="N", help="samples per generate call (default 4); 'auto' "
                        "probes 1, 2, 4, … on the longest prompts and takes the fastest")
    parser.add_argument("-o", "--output", dest="output_dir", metavar="DIR",
                        help="results directory (default eval_results/<timestamp>)")
    parser.add_argument("--torch-dtype", dest="torch_dtype", choices=DTYPES,
                        help="weights dtype (default auto)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--max-tokens", dest="max_tokens", type=int, metavar="N",
                        help="most new tokens per sample (default 512)")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate the first N samples")
    parser.add_argument("--lang", choices=("en", "zh"), help="log language (default: locale)")
    parser.add_argument("--simulate-oom-above", dest="simulate_oom_above", type=int,
                        metavar="N", help="fail every generate call with more than N rows "
                        "as CUDA OOM, to rehearse the fallback")
    parser.add_argument("--oom-policy", dest="oom_policy", choices=("bisect", "single"),
                        help="on OOM: split the batch in halves and keep the size that fits "
                        "(bisect, default) or regenerate it one sample at a time (single)")
    parser.add_argument("--max-memory", dest="max_memory", metavar="CAP",
                        help="cap this process's CUDA memory: a fraction (0.5) or a size "
                        "(20GiB); ignored on CPU")
    parser.add_argument("--tune-mode", dest="tune_mode", choices=("power", "binsearch"),
                        help="-b auto: double until OOM (power, default), then bisect "
                        "(binsearch)")
    parser.add_argument("--max-batch-size", dest="max_batch_size", type=int, metavar="N",
                        help="-b auto: the largest size probed (default 256)")
    parser.add_argument("--memory-headroom", dest="memory_headroom", type=float,
                        metavar="F", help="-b auto: never choose a size peaking above this "
                        "share of the memory (default 0.9)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tui-eval",
        description="Evaluate a Hugging Face causal LM on a local dataset with OOM-proof "
                    "batched generation. Without -m and -d it runs the built-in demo.",
    )
    parser.add_argument("--version", action="version", version=f"tui-eval {__version__}")
    parser.add_argument("--no-ui", action="store_true",
                        help="run headless: print progress and results (scripts, CI, nohup)")
    parser.add_argument("--theme", metavar="NAME",
                        help="colour theme of the app: a built-in or a TOML theme from "
                        "themes/ or ~/.config/tui-eval/themes (t cycles them in the app)")
    add_run_options(parser)
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in -o DIR: its saved config is used (flags "
                          "may change batch size, device, lang, OOM settings) and samples "
                          "already in predictions.jsonl are skipped")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace the run that -o DIR holds instead of continuing it")
    return parser


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    base: dict[str, Any] | None = None
    if getattr(args, "resume", False):
        # The run's own config.json is the starting point; ./eval.toml is not consulted.
        from tui_eval.resume import saved_config_values

        if args.output_dir is None:
            raise UsageError("--resume: name the run to continue with -o DIR")
        base = saved_config_values(Path(args.output_dir))
        config_file = args.config
    else:
        config_file = args.config if args.config is not None else find_default_config()
    if config_file is not None and not config_file.is_file():
        raise UsageError(f"{config_file}: config file not found")
    flags: dict[str, Any] = {key: getattr(args, key, None) for key in FLAG_NAMES}
    return resolve_config(config_file, flags, FLAG_NAMES, base=base)


def run_headless(config: EvalConfig, *, resume: bool = False, overwrite: bool = False) -> int:
    """Run in this thread; SIGINT/SIGTERM stop it (exit 130), SIGHUP is logged and ignored."""
    from tui_eval.engine import Evaluation
    from tui_eval.events import FanOut
    from tui_eval.headless import HeadlessPrinter
    from tui_eval.signals import HeadlessSignals, RunTracker

    tracker = RunTracker()
    evaluation = Evaluation(config, FanOut(HeadlessPrinter(), tracker), resume=resume,
                            overwrite=overwrite)
    with HeadlessSignals(evaluation, tracker) as signals:
        try:
            metrics = evaluation.run()
        except KeyboardInterrupt:
            if not signals.stopped_at_once:
                raise
            return signals.exit_interrupted(None)
        except UsageError:
            raise
        except Exception as exc:  # e.g. a full disk: the finished batches are kept
            print(f"tui-eval: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            signals.hint_resume()
            return EXIT_RUN_FAILED
    if signals.stop_signal is not None and metrics.get("partial"):
        return signals.exit_interrupted(metrics)
    return EXIT_OK


# Sub-commands, imported only when used: "name": "module:function(argv) -> exit code".
COMMANDS: dict[str, str] = {
    "watch": "tui_eval.watch:watch_main",
    "tune": "tui_eval.tune:tune_main",
    "bench": "tui_eval.bench:bench_main",
}


def _load_command(spec: str) -> Callable[[list[str]], int]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def run_command(argv: list[str]) -> int:
    """The default command: evaluate, in the app or headless."""
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if not args.no_ui:
        from tui_eval.ui import run_app

        # ctrl+s in the app writes to the file the settings came from (./eval.toml if none)
        options = {key: True for key in ("resume", "overwrite") if getattr(args, key)}
        return run_app(config, config_path=args.config or find_default_config(),
                       run_options=options)
    return run_headless(config, resume=args.resume, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in COMMANDS:
            return _load_command(COMMANDS[argv[0]])(argv[1:])
        return run_command(argv)
    except UsageError as exc:
        print(f"tui-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ntui-eval: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the run failed; its events and finished batches are on disk
        print(f"tui-eval: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
