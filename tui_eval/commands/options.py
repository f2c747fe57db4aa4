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

from tui_eval import engine  # its face: each name loads on first use
from tui_eval.config import (
    DEFAULTS,
    KEYS,
    ConfigSource,
    EvalConfig,
    find_default_config,
    format_text,
    resolve_with_source,
)
from tui_eval.errors import UsageError
from tui_eval.results.run_dir import RunDir


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are a UsageError: one line, no usage block. A flag must be
    spelled in full: with prefix matching, --max-token 8 would set --max-tokens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_config_flags(parser: argparse.ArgumentParser, *, app: bool = False,
                     skip: tuple[str, ...] = ()) -> None:
    """One flag per config key that has one; ``app`` adds the app's own (--theme).
    Defaults stay None so that eval.toml shows through."""
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="TOML config file (default: ./eval.toml when present)")
    parser.add_argument("--task-file", type=Path, metavar="YAML",
                        help="an lm-evaluation-harness task file, read offline: its data, "
                        "templates, few-shot, generation and scoring keys become config keys "
                        "(over eval.toml, under the flags given); keys it cannot honour are "
                        "refused")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="with --task-file: where its dataset's split files are "
                        "(<dataset_path>/<dataset_name>/<split>.jsonl and the like; default: "
                        "the task file's directory)")
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
        # a list key's flag is given once per item (--stop '\n' --stop 'Q:')
        action = "append" if rule.type == "list[str]" else "store"
        parser.add_argument(*key.flags, dest=key.name, metavar=metavar, action=action,
                            help=key.help.rstrip(".").replace("%", "%%") + shown)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """defaults ◄ (a resumed run's config.json) ◄ config file ◄ task file ◄ flags."""
    return config_and_source(args)[0]


def config_and_source(args: argparse.Namespace) -> tuple[EvalConfig, ConfigSource | None]:
    """``config_from_args``, and the config file with the keys it set, for the run log."""
    base: dict[str, Any] | None = None
    if getattr(args, "resume", False):
        # The run's own config.json is the starting point; ./eval.toml is not consulted.

        if args.output_dir is None:
            raise UsageError("--resume: name the run to continue with -o DIR")
        base = engine.saved_config_values(RunDir(Path(args.output_dir)))
        config_file = args.config
    else:
        config_file = args.config if args.config is not None else find_default_config()
    if config_file is not None and config_file.is_dir():
        raise UsageError(f"{config_file}: is a directory; name a config file")
    if config_file is not None and not config_file.is_file():
        raise UsageError(f"{config_file}: config file not found")
    task_file, data_dir = getattr(args, "task_file", None), getattr(args, "data_dir", None)
    if data_dir is not None and task_file is None:
        raise UsageError("--data-dir: names where a task file's data is; add --task-file")
    flags = {name: getattr(args, name, None) for name in KEYS}
    task_values = None
    if task_file is not None:
        from tui_eval.taskfile import task_file_values  # yaml: only when a task file is read

        # the task file names this benchmark: over eval.toml, under the flags typed
        task_values = task_file_values(task_file, data_dir)
    return resolve_with_source(config_file, flags, base=base, task_values=task_values,
                               found=args.config is None and config_file is not None)


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
