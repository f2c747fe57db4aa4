"""``tui-eval tune``: find the fastest batch size that fits and write tune.json."""

from __future__ import annotations

import argparse

from tui_eval import engine  # its face: each name loads on first use
from tui_eval.commands.options import (
    ArgumentParser,
    add_config_flags,
    config_from_args,
    refuse_under_torchrun,
)
from tui_eval.errors import EXIT_OK, UsageError
from tui_eval.headless.printer import HeadlessPrinter
from tui_eval.i18n import default_language, message

RETUNE_REFUSED = ("--retune: tui-eval tune always probes again (it never reads the tune "
                  "cache, and replaces its entry); --retune is for -b auto in a run")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="tui-eval tune",
        description="Find the fastest batch size that fits: short probes of real generation "
                    "on the longest prompts, doubling from 1 (1, 2, 4, …) until OOM, "
                    "--max-batch-size or the dataset size, every probe shown, and write "
                    "tune.json (and ~/.cache/tui-eval/tune.json, which -b auto reuses). "
                    "-b is ignored.")
    add_config_flags(parser, skip=("batch_size", "retune"))
    # accepted and ignored, whatever it says: tune chooses the batch size
    parser.add_argument("-b", "--batch-size", dest="ignored_batch_size", metavar="N",
                        help="ignored: tune chooses the batch size")
    # refused: it would promise a choice tune does not have (it always probes)
    parser.add_argument("--retune", dest="refused_retune", action="store_true",
                        help=argparse.SUPPRESS)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.refused_retune:
        raise UsageError(RETUNE_REFUSED)
    refuse_under_torchrun("tune")
    config = config_from_args(args)

    result, run_dir = engine.tune(config, HeadlessPrinter())
    lang = config.lang or default_language()
    # the table was printed row by row as the probes ran
    print(message("tune_summary", lang, batch_size=result.chosen_batch_size,
                  path=run_dir.tune_path))
    return EXIT_OK
