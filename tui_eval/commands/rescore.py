"""``tui-eval rescore RUN_DIR [--metrics …] [--extract …]``: score a finished run again from
its predictions.jsonl, without a model (see ``tui_eval.engine.rescoring``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tui_eval import engine  # its face: each name loads on first use
from tui_eval.commands.options import ArgumentParser
from tui_eval.config import KEYS, check_value, parse_flag
from tui_eval.errors import EXIT_OK, UsageError
from tui_eval.headless.printer import HeadlessPrinter
from tui_eval.results.run_dir import RunDir

# The flags, each the config key it sets; values are checked by that key's rule.
SCORING_FLAGS = {"metrics": "--metrics", "extract": "--extract"}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="tui-eval rescore",
        description="Score a finished run again from its predictions.jsonl, without loading "
                    "a model: every row's scores and extracted answer, and metrics.json. The "
                    "run's metrics and extract spec are used unless given here; a change is "
                    "saved in its config.json. The old metrics.json is kept as "
                    "metrics.before-rescore-<time>.json.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="the run's results directory (its -o)")
    parser.add_argument("--metrics", metavar="NAMES",
                        help=KEYS["metrics"].help[:-1] + ", comma-separated.")
    parser.add_argument("--extract", metavar="SPEC",
                        help=KEYS["extract"].help + " --extract '' turns it off.")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The scoring keys given on the command line, validated; a bad one names its flag."""
    values: dict[str, Any] = {}
    for key, flag in SCORING_FLAGS.items():
        text = getattr(args, key)
        if text is None:
            continue
        try:
            values[key] = check_value(key, parse_flag(KEYS[key].rule, text))
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    if values.get("metrics") == []:
        raise UsageError("--metrics: name at least one metric")
    return values


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    overrides = overrides_from_args(args)

    engine.rescore(RunDir(run_dir), overrides, HeadlessPrinter())
    return EXIT_OK
