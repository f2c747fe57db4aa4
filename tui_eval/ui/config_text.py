"""Writing the app's config values into a TOML file without losing its comments.

The file is edited line by line so that a documented eval.toml stays documented: a key's
line is updated in place with its trailing comment, a commented-out example
(``# model = "…"  # what it is``) is uncommented where it stands, and a value the user
clears is commented out rather than deleted. Values are written by tomlkit.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import tomlkit

from tui_eval.config import DEFAULTS, load_config_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

NEW_FILE_HEADER = "# tui-eval configuration, saved from the app. Flags override these values.\n"


def toml_value(value: Any) -> str:
    """A value as TOML writes it (strings quoted and escaped by tomlkit)."""
    return tomlkit.item(value).as_string()


def _split_value(rest: str) -> tuple[str, str] | None:
    """Split 'VALUE   # comment' after the '='; None when no prefix is a TOML value."""
    cuts = [i for i, char in enumerate(rest) if char == "#"] + [len(rest)]
    for cut in cuts:
        try:
            tomllib.loads(f"v = {rest[:cut]}")
        except tomllib.TOMLDecodeError:
            continue
        return rest[:cut], rest[cut:]
    return None


def _find_line(lines: list[str], key: str, commented: bool) -> int | None:
    prefix = r"#\s*" if commented else ""
    pattern = re.compile(rf"^\s*{prefix}{re.escape(key)}\s*=(.*)$")
    for number, line in enumerate(lines):
        match = pattern.match(line)
        if match and _split_value(match.group(1)) is not None:
            return number
    return None


def _render_line(old: str | None, key: str, value: Any) -> str:
    """``key = value``, keeping the old line's trailing comment in the same column."""
    new = f"{key} = {toml_value(value)}"
    if old is None:
        return new
    body = re.sub(r"^\s*#\s*", "", old)
    rest = body.split("=", 1)[1]
    split = _split_value(rest)
    comment = split[1].strip() if split else ""
    if not comment:
        return new
    column = len(old) - len(split[1]) if split else len(new) + 1
    return new.ljust(max(column, len(new) + 1)) + comment


def render_config(text: str, values: dict[str, Any]) -> str:
    """The file's text with ``values`` set: existing lines are updated in place, commented
    examples are uncommented, a value equal to its default that the file does not set is
    left out, an unset value comments its line out, and new keys go at the end."""
    lines = text.splitlines()
    appended: list[str] = []
    for key, value in values.items():
        active = _find_line(lines, key, commented=False)
        if value is None:
            if active is not None:
                lines[active] = "# " + lines[active].lstrip()
            continue
        if active is not None:
            lines[active] = _render_line(lines[active], key, value)
            continue
        if value == DEFAULTS.get(key):
            continue
        example = _find_line(lines, key, commented=True)
        if example is not None:
            lines[example] = _render_line(lines[example], key, value)
        else:
            appended.append(f"{key} = {toml_value(value)}")
    if appended:
        if lines and lines[-1].strip():
            lines.append("")
        lines += appended
    return "\n".join(lines) + "\n"


def save_config(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` into the TOML file at ``path`` (created if missing), atomically;
    the result is read back with the CLI's loader before it replaces the file."""
    old = path.read_text(encoding="utf-8") if path.exists() else NEW_FILE_HEADER
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_config(old, values), encoding="utf-8")
    try:
        load_config_file(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
