"""Flags generated from the config keys, and the parser every command uses.

Errors in flags are one line naming the flag, exit 2 (argparse's usage block is kept for
``--help``); values are checked by the config's own rules, so a flag and the same key in
eval.toml give the same message.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, NoReturn

from tui_eval.config import (
    DEFAULTS,
    KEYS,
    EvalConfig,
    find_default_config,
    format_text,
    resolve_config,
)
from tui_eval.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are a UsageError: one line, no usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_config_flags(parser: argparse.ArgumentParser, *, app: bool = False,
                     skip: tuple[str, ...] = ()) -> None:
    """One flag per config key that has one; ``app`` adds the app's own (--theme).
    Defaults stay None so that eval.toml shows through."""
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="TOML config file (default: ./eval.toml when present)")
    for key in KEYS.values():
        if not key.flags or key.name in skip or (key.app_flag and not app):
            continue
        rule = key.rule
        if rule.type == "bool":  # a switch: given means true
            parser.add_argument(*key.flags, dest=key.name, action="store_const", const=True,
                                help=key.help)
            continue
        metavar = key.metavar or ("{" + ",".join(rule.choices) + "}" if rule.choices else None)
        default = DEFAULTS[key.name]
        shown = f" (default {format_text(default)})" if default not in (None, "", []) else ""
        parser.add_argument(*key.flags, dest=key.name, metavar=metavar,
                            help=key.help.rstrip(".") + shown)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """defaults ◄ (a resumed run's config.json) ◄ config file ◄ flags."""
    base: dict[str, Any] | None = None
    if getattr(args, "resume", False):
        # The run's own config.json is the starting point; ./eval.toml is not consulted.
        from tui_eval.engine.resume import saved_config_values  # the engine: only to resume

        if args.output_dir is None:
            raise UsageError("--resume: name the run to continue with -o DIR")
        base = saved_config_values(Path(args.output_dir))
        config_file = args.config
    else:
        config_file = args.config if args.config is not None else find_default_config()
    if config_file is not None and config_file.is_dir():
        raise UsageError(f"{config_file}: is a directory; name a config file")
    if config_file is not None and not config_file.is_file():
        raise UsageError(f"{config_file}: config file not found")
    flags = {name: getattr(args, name, None) for name in KEYS}
    return resolve_config(config_file, flags, base=base)


def world_size_of_environment() -> int:
    """The processes torchrun says this run has (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def refuse_under_torchrun(command: str) -> None:
    """Commands that measure one process must not run once per rank."""
    if world_size_of_environment() > 1:
        raise UsageError(f"tui-eval {command} runs in one process: start it without torchrun "
                         "(an evaluation, tui-eval --no-ui, runs under torchrun)")
