"""``tui-eval [--no-ui] …``: evaluate, in the app or headless."""

from __future__ import annotations

import argparse
import sys

from tui_eval import __version__
from tui_eval.commands import SUBCOMMANDS
from tui_eval.commands.options import ArgumentParser, add_config_flags, config_from_args
from tui_eval.config import EvalConfig, find_default_config
from tui_eval.errors import EXIT_OK, EXIT_RUN_FAILED, UsageError
from tui_eval.events import FanOut
from tui_eval.headless.printer import HeadlessPrinter


def build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in SUBCOMMANDS)
    commands = "\n".join(f"  {name:<{width}}  {about}"
                         for name, (_, about) in SUBCOMMANDS.items())
    parser = ArgumentParser(
        prog="tui-eval",
        description="Evaluate a Hugging Face causal LM on a local dataset with OOM-proof "
                    "batched generation, or multiple-choice scoring by log-likelihood.\n"
                    "Without -m and -d it runs the built-in demo (its multiple-choice set "
                    "with --task choice).",
        epilog=f"sub-commands (tui-eval COMMAND --help):\n{commands}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tui-eval {__version__}")
    parser.add_argument("--no-ui", action="store_true",
                        help="run headless: print progress and results (scripts, CI, nohup)")
    add_config_flags(parser, app=True)
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in -o DIR: its saved config is used (flags "
                          "may change batch size, device, lang, OOM settings) and samples "
                          "already in predictions.jsonl are skipped")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace the run that -o DIR holds instead of continuing it")
    return parser


def run_headless(config: EvalConfig, *, resume: bool = False, overwrite: bool = False) -> int:
    """Run in this thread; SIGINT/SIGTERM stop it (exit 130), SIGHUP is logged and ignored."""
    # the engine: once the flags are valid, so that --help and bad flags answer at once
    from tui_eval.engine.evaluation import Evaluation
    from tui_eval.engine.signals import HeadlessSignals, RunTracker

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
    if signals.stop_signal is not None and metrics.partial:
        return signals.exit_interrupted(metrics)
    return EXIT_OK


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if not args.no_ui:
        from tui_eval.ui import run_app  # Textual: only for the app

        # ctrl+s in the app writes to the file the settings came from (./eval.toml if none)
        options = {key: True for key in ("resume", "overwrite") if getattr(args, key)}
        return run_app(config, config_path=args.config or find_default_config(),
                       run_options=options)
    return run_headless(config, resume=args.resume, overwrite=args.overwrite)
