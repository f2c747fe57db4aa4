"""``tui-eval bench -b 1,2,4,8,16``: the seed guide's performance loop as one command."""

from __future__ import annotations

import argparse
import shlex
import sys

from tui_eval import engine  # its face: each name loads on first use
from tui_eval.commands.options import (
    ArgumentParser,
    add_config_flags,
    config_from_args,
    refuse_under_torchrun,
)
from tui_eval.config import COMPILE_MODES
from tui_eval.errors import EXIT_OK, UsageError
from tui_eval.headless.printer import HeadlessPrinter, fitted, terminal_width
from tui_eval.i18n import default_language, message
from tui_eval.reports.bench import bench_markdown, bench_table

DEFAULT_SIZES = "1,2,4,8,16"
SIZES_FLAG = "-b/--batch-sizes"
COMPILE_FLAG = "--compile"


def parse_batch_sizes(text: str) -> list[int]:
    """'1,2,4,8,16' → [1, 2, 4, 8, 16], in that order; a size given twice is refused (it
    would run once, and the table would not have the rows asked for)."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise UsageError(f"{SIZES_FLAG}: expected comma-separated integers ≥ 1 such as "
                             f"{DEFAULT_SIZES}, got {text!r}")
        if int(part) in sizes:
            raise UsageError(f"{SIZES_FLAG}: {int(part)} is given twice in {text!r}; "
                             "give each size once")
        sizes.append(int(part))
    return sizes


def parse_compile_modes(text: str) -> list[str]:
    """'on,off' → ['on', 'off'], in that order; a mode given twice is refused."""
    modes: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part not in COMPILE_MODES:
            raise UsageError(f"{COMPILE_FLAG}: expected comma-separated values of "
                             f"{', '.join(COMPILE_MODES)} such as on,off, got {text!r}")
        if part in modes:
            raise UsageError(f"{COMPILE_FLAG}: {part} is given twice in {text!r}; give each "
                             "mode once")
        modes.append(part)
    return modes


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="tui-eval bench",
        description="Evaluate the same data at several batch sizes and print the seed guide's "
                    "table: time, speedup over the first size, samples/s, peak memory, GPU "
                    "utilisation. Writes bench.json, bench.md and one bs_N/ run per size.")
    add_config_flags(parser, skip=("batch_size", "compile"))
    parser.add_argument("-b", "--batch-sizes", "--batch-size", dest="batch_sizes",
                        default=DEFAULT_SIZES, metavar="LIST",
                        help=f"comma-separated batch sizes (default {DEFAULT_SIZES})")
    parser.add_argument("--compile", dest="compile_modes", metavar="LIST",
                        help="compile settings to compare, comma-separated (on,off): each "
                        "size runs with each, in one table (default: the config's compile)")
    parser.add_argument("--overwrite", action="store_true",
                        help="measure again into an -o directory that holds a bench")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    refuse_under_torchrun("bench")
    sizes = parse_batch_sizes(args.batch_sizes)
    modes = parse_compile_modes(args.compile_modes) if args.compile_modes else None
    config = config_from_args(args)
    # the engine: once the flags are valid
    lang = config.lang or default_language()
    result, bench_dir = engine.bench(config, sizes, HeadlessPrinter(),
                                     overwrite=args.overwrite, compile_modes=modes)
    rows = result.rows
    # bench.json is the engine's; its table for people is written here, in the run's language
    bench_dir.write_bench_markdown(bench_markdown(rows, result.context, lang))
    # a terminal gets lines that fit it (a narrow one, the compact table); a file or a pipe
    # gets bench.md's table and whole lines
    print()
    print(bench_table(rows, lang, terminal_width(sys.stdout)))
    print(fitted(message("bench_written", lang, json=bench_dir.bench_path,
                         md=bench_dir.bench_md_path), sys.stdout))
    if rows:
        print(fitted(message("bench_chart", lang, out=shlex.quote(str(bench_dir))), sys.stdout))
    return EXIT_OK
