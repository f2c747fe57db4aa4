"""``tui-eval compare RUN_A RUN_B``: two runs of the same samples side by side.

Prints the metrics of both with the difference, and the samples whose verdict changed.
Exit codes: 0 compared, 2 bad usage (not a run directory, or runs that hold different
samples: one line says how they differ). Nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tui_eval import engine  # its face: each name loads on first use
from tui_eval.commands.options import ArgumentParser
from tui_eval.errors import EXIT_OK, UsageError
from tui_eval.reports.compare import comparison_report


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="tui-eval compare",
        description="Compare two runs of the same samples (two results directories): their "
                    "metrics side by side with the difference, and every sample whose "
                    "verdict (the first metric = 1) changed. Read-only.")
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the first results directory")
    parser.add_argument("run_b", type=Path, metavar="RUN_B",
                        help="the second, compared with the first (B − A)")
    parser.add_argument("--all", action="store_true", dest="show_all",
                        help="list every changed sample (default: the first 50)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    for run_dir in (args.run_a, args.run_b):
        if not run_dir.is_dir():
            raise UsageError(f"{run_dir}: not a directory")
    # the comparison: once the arguments are valid (no torch involved)

    comparison = engine.compare(args.run_a, args.run_b)
    print(comparison_report(comparison, show_all=args.show_all))
    return EXIT_OK
