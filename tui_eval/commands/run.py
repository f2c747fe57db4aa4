"""``tui-eval [--no-ui] …``: evaluate, in the app or headless."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

from tui_eval import (
    __version__,
    engine,  # its face: each name loads on first use
)
from tui_eval.commands import SUBCOMMANDS
from tui_eval.commands.options import (
    ArgumentParser,
    add_config_flags,
    config_and_source,
    world_size_of_environment,
)
from tui_eval.config import ConfigSource, EvalConfig, find_default_config
from tui_eval.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, QuietExit, UsageError
from tui_eval.events import EventSink, FanOut
from tui_eval.events.view import RunView
from tui_eval.headless.printer import HeadlessPrinter, fitted
from tui_eval.headless.signals import HeadlessSignals
from tui_eval.results.run_dir import RunDir
from tui_eval.theme_names import theme_not_found

GPUS_TEXT = re.compile(r"^(all|[1-9]\d*)$")


def wrapped(*paragraphs: str) -> str:
    """Paragraphs filled to the width argparse gives its own text (the raw formatter, which
    keeps the sub-command table's lines, would not wrap them)."""
    width = max(shutil.get_terminal_size().columns - 2, 40)
    return "\n".join(textwrap.fill(text, width) for text in paragraphs)


def build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in SUBCOMMANDS)
    commands = "\n".join(f"  {name:<{width}}  {about}"
                         for name, (_, about) in SUBCOMMANDS.items())
    parser = ArgumentParser(
        prog="tui-eval",
        description=wrapped(
            "Evaluate a Hugging Face causal LM on a local dataset with OOM-proof batched "
            "generation, or multiple-choice scoring by log-likelihood.",
            "Without -m and -d it runs the built-in demo (its multiple-choice set with "
            "--task choice)."),
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
    parser.add_argument("--gpus", metavar="N", help="with --no-ui: run on N GPUs of this "
                        "machine (or all), one process each, started with torch's launcher "
                        "(as torchrun --nproc-per-node N does); the samples are shared out, "
                        "the results are one run")
    return parser


def run_headless(config: EvalConfig, *, resume: bool = False, overwrite: bool = False,
                 config_source: ConfigSource | None = None) -> int:
    """Run in this thread; SIGINT/SIGTERM stop it (exit 130), SIGHUP is logged and ignored.
    Under torchrun this process is one rank of several: rank 0 prints and owns the results
    directory, the others run their share silently."""
    # the engine: once the flags are valid, so that --help and bad flags answer at once

    world = engine.world_from_env()
    world.join()
    if world.is_main and config.theme:  # the app warns of it too, and uses its default
        problem = theme_not_found(config.theme)
        if problem is not None:
            print(fitted(f"tui-eval: warning: {problem}; the app would use its default",
                         sys.stderr), file=sys.stderr)
    view = RunView()  # what a stop's wrap-up needs: the run's size and latest rates
    sinks: tuple[EventSink, ...] = ((HeadlessPrinter(), view.apply) if world.is_main
                                    else (view.apply,))
    evaluation = engine.Evaluation(config, FanOut(*sinks), resume=resume, overwrite=overwrite,
                            world=world, config_source=config_source)
    try:
        with HeadlessSignals(evaluation, view) as signals:
            try:
                metrics = evaluation.run()
            except KeyboardInterrupt:
                if not signals.stopped_at_once:
                    raise
                return signals.exit_interrupted(None) if world.is_main else EXIT_INTERRUPTED
            except (UsageError, QuietExit):
                raise
            except Exception as exc:  # e.g. a full disk: the finished batches are kept
                rank = f"rank {world.rank}: " if world.several else ""
                print(f"tui-eval: {rank}run failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                if world.is_main:
                    signals.hint_resume()
                return EXIT_RUN_FAILED
        if signals.stop_signal is not None and metrics.partial:
            # started by --gpus, a SIGTERM is the launcher's, which says why itself
            launched = os.environ.get(engine.LAUNCHED_ENV) and signals.stop_signal == "SIGTERM"
            if world.is_main and not launched:
                return signals.exit_interrupted(metrics)
            return EXIT_INTERRUPTED
        return EXIT_OK
    finally:
        world.leave()


def run_on_gpus(argv: list[str], args: argparse.Namespace, config: EvalConfig) -> int:
    """``--gpus N``: the same command in N processes (this one waits for them)."""

    if args.resume:  # -o names the run; its directory is the one to continue
        run_dir = RunDir(Path(args.output_dir))
        forwarded = list(argv)
    else:  # every rank must write to the same directory: name it now
        run_dir = RunDir.of(config.output_dir)
        forwarded = argv if config.output_dir else [*argv, "-o", str(run_dir)]
    return engine.launch_ranks(without_gpus_flag(forwarded), engine.gpu_count(args.gpus),
                               run_dir)


def without_gpus_flag(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            kept.append(arg)
    return kept


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.gpus is not None and not GPUS_TEXT.match(args.gpus):
        raise UsageError(f"--gpus {args.gpus!r}: expected a number of GPUs (1, 2, …) or all")
    config, source = config_and_source(args)
    under_torchrun = world_size_of_environment() > 1
    if args.gpus is not None:
        if not args.no_ui:
            raise UsageError("--gpus runs headless: add --no-ui, and follow the run from "
                             "another terminal with tui-eval watch DIR")
        if under_torchrun:
            raise UsageError("--gpus starts the processes itself; under torchrun leave it out")
        return run_on_gpus(argv, args, config)
    if under_torchrun and not args.no_ui:
        raise UsageError("under torchrun tui-eval runs headless: add --no-ui (and follow "
                         "the run with tui-eval watch DIR)")
    if not args.no_ui:
        from tui_eval.ui import run_app  # Textual: only for the app

        # ctrl+s in the app writes to the file the settings came from (./eval.toml if none)
        options: dict[str, object] = {key: True for key in ("resume", "overwrite")
                                      if getattr(args, key)}
        options["config_source"] = source
        return run_app(config, config_path=args.config or find_default_config(),
                       run_options=options)
    return run_headless(config, resume=args.resume, overwrite=args.overwrite,
                        config_source=source)

