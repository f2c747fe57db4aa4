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
}


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The seed guide's flags plus ours; defaults stay None so the config file shows through."""
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="TOML config file (default: ./eval.toml when present)")
    parser.add_argument("-m", "--model", help="model directory or cached hub id "
                        "(omit -m and -d to run the built-in demo)")
    parser.add_argument("-d", "--data", help="dataset file: .jsonl, .json or .csv")
    parser.add_argument("-b", "--batch-size", dest="batch_size", type=int, metavar="N",
                        help="samples per generate call (default 4)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tui-eval",
        description="Evaluate a Hugging Face causal LM on a local dataset with OOM-proof "
                    "batched generation. Without -m and -d it runs the built-in demo.",
    )
    parser.add_argument("--version", action="version", version=f"tui-eval {__version__}")
    parser.add_argument("--no-ui", action="store_true",
                        help="run headless: print progress and results (scripts, CI, nohup)")
    add_run_options(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    config_file = args.config if args.config is not None else find_default_config()
    if config_file is not None and not config_file.is_file():
        raise UsageError(f"{config_file}: config file not found")
    flags: dict[str, Any] = {key: getattr(args, key, None) for key in FLAG_NAMES}
    return resolve_config(config_file, flags, FLAG_NAMES)


def run_headless(config: EvalConfig) -> int:
    from tui_eval.engine import Evaluation
    from tui_eval.headless import HeadlessPrinter

    evaluation = Evaluation(config, HeadlessPrinter())
    evaluation.run()
    return EXIT_OK


# Sub-commands, imported only when used: "name": "module:function(argv) -> exit code".
COMMANDS: dict[str, str] = {}


def _load_command(spec: str) -> Callable[[list[str]], int]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def run_command(argv: list[str]) -> int:
    """The default command: evaluate, in the app or headless."""
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if not args.no_ui:
        print("tui-eval: the interactive UI is not available yet; use --no-ui", file=sys.stderr)
        return EXIT_USAGE
    return run_headless(config)


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
