"""Command line: ``tui-eval [COMMAND] …``. Only dispatches: each command is a module of
tui_eval.commands, imported when it runs, so start-up stays fast (no torch, transformers
or textual before a command needs them)."""

from __future__ import annotations

import importlib
import os
import sys

from tui_eval.commands import DEFAULT_COMMAND, SUBCOMMANDS
from tui_eval.errors import EXIT_INTERRUPTED, EXIT_RUN_FAILED, EXIT_USAGE, QuietExit, UsageError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    module, args = DEFAULT_COMMAND, argv
    if argv and argv[0] in SUBCOMMANDS:
        module, args = SUBCOMMANDS[argv[0]][0], argv[1:]
    try:
        return importlib.import_module(module).main(args)
    except QuietExit as exc:
        return exc.code
    except UsageError as exc:
        _say(f"tui-eval: {_rank_prefix()}error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ntui-eval: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the run failed; its events and finished batches are on disk
        _say(f"tui-eval: run failed: {type(exc).__name__}: {exc}")
        return EXIT_RUN_FAILED


def _say(text: str) -> None:
    """An error on stderr, wrapped to fit a terminal."""
    from tui_eval.headless.printer import fitted  # only on an error: --help stays lean

    print(fitted(text, sys.stderr), file=sys.stderr)


def _rank_prefix() -> str:
    """'rank 2: ' in a process of a run of several other than rank 0 (whose errors are the
    run's), so that the line says which process could not go on."""
    rank = os.environ.get("RANK", "0")
    return f"rank {rank}: " if rank not in ("", "0") else ""
