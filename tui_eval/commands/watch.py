"""``tui-eval watch RUN_DIR``: follow a run from its results directory, read-only.

In a terminal it opens the app in its watch mode (this machine's gauges, the run's
progress, log and results); with ``--no-ui`` (or when stdout is not a terminal) it prints
plain lines and exits when the run ends. Neither writes to the run directory.

A bench directory (``tui-eval bench -o DIR``, holding bench.json) is shown as its chart
of samples/s and peak memory against batch size; with ``--no-ui``, bench.md is printed.

Exit codes of ``--no-ui``: 0 the run finished, 1 it failed, stopped without a final event
or did not start within ``--wait``, 2 bad usage, 130 the run was interrupted (partial; a
watcher that finds it so first waits ``--grace`` seconds for a resumed try).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui_eval.commands.options import ArgumentParser
from tui_eval.errors import EXIT_OK, UsageError
from tui_eval.headless.watcher import RESUME_GRACE_S, PlainWatcher
from tui_eval.results import BENCH_MD_FILE, holds_bench

POLL_INTERVAL_S = 0.5


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="tui-eval watch",
        description="Follow a run from its results directory (read-only): the app's watch "
                    "mode in a terminal, plain lines with --no-ui. Works for runs going, "
                    "finished, failed or not started yet.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="the run's results directory (its -o); a bench directory "
                             "shows its chart")
    parser.add_argument("--no-ui", action="store_true",
                        help="print plain progress lines; exit when the run ends")
    parser.add_argument("--once", action="store_true",
                        help="print where the run stands now and exit (implies --no-ui)")
    parser.add_argument("--wait", type=float, metavar="SECONDS",
                        help="give up when the run has not started within SECONDS "
                             "(default: wait as long as it takes)")
    parser.add_argument("--grace", type=float, default=RESUME_GRACE_S, metavar="SECONDS",
                        help="with --no-ui, on finding the run interrupted: wait this long for "
                             f"a resumed try before exiting 130 (default {RESUME_GRACE_S:g})")
    parser.add_argument("--interval", type=float, default=POLL_INTERVAL_S, metavar="SECONDS",
                        help=f"how often to look for new events (default {POLL_INTERVAL_S})")
    return parser


def print_bench(bench_dir: Path) -> int:
    """bench.md as written (the table for scripts), else the table from bench.json."""
    try:
        print((bench_dir / BENCH_MD_FILE).read_text(encoding="utf-8"), end="")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{bench_dir / BENCH_MD_FILE}: cannot read: {exc}") from None
    return EXIT_OK


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    run_dir: Path = args.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a directory")
    if args.interval <= 0:
        raise UsageError(f"--interval: must be a number > 0, got {args.interval:g}")
    if args.wait is not None and args.wait < 0:
        raise UsageError(f"--wait: must be a number ≥ 0, got {args.wait:g}")
    if args.grace < 0:
        raise UsageError(f"--grace: must be a number ≥ 0, got {args.grace:g}")
    plain = args.no_ui or args.once or not sys.stdout.isatty()
    if holds_bench(run_dir):  # a finished bench: nothing to follow, its table or chart
        if plain:
            return print_bench(run_dir)
        from tui_eval.ui.watch_app import run_bench_chart  # Textual: only for the app

        return run_bench_chart(run_dir)
    if plain:
        watcher = PlainWatcher(run_dir, interval=args.interval, wait=args.wait,
                               resume_grace=args.grace)
        return watcher.run(once=args.once)
    from tui_eval.ui.watch_app import run_watch_app  # Textual: only for the app

    return run_watch_app(run_dir, interval=args.interval)
