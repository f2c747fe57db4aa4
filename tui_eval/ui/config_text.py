"""Between the config form's text and config values: parsing what was typed, formatting
values back, and writing them into a TOML file without losing its comments.

No Textual here; the form and the tests both use it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from tui_eval.config import EvalConfig, Rule, check_value, load_config_file, rules

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

INT_TEXT = re.compile(r"^[+-]?\d+$")
NEW_FILE_HEADER = "# tui-eval configuration, saved from the app. Flags override these values.\n"


def parse_text(rule: Rule, text: str) -> Any:
    """What the user typed, as the value the rule checks: numbers become numbers, lists are
    comma-separated (or a TOML array), an empty optional field is unset."""
    stripped = text.strip()
    if stripped == "" and rule.optional:
        return None
    if rule.allow_auto and stripped == "auto":
        return "auto"
    if rule.type == "int":
        return int(stripped) if INT_TEXT.match(stripped) else stripped
    if rule.type == "float":
        try:
            return float(stripped)
        except ValueError:
            return stripped
    if rule.type == "bool":
        lowered = stripped.lower()
        return {"true": True, "false": False}.get(lowered, stripped)
    if rule.type == "list[str]":
        if stripped.startswith("["):
            try:
                return tomllib.loads(f"v = {stripped}")["v"]
            except tomllib.TOMLDecodeError:
                return stripped
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return text


def validate_text(key: str, text: str) -> tuple[Any, str | None]:
    """(value, None) when valid, else (None, 'key: message') with the CLI's wording."""
    try:
        return check_value(key, parse_text(rules()[key], text)), None
    except ValueError as exc:
        return None, f"{key}: {exc}"


def format_text(value: Any) -> str:
    """A value as the form shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


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
    defaults = EvalConfig().to_dict()
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
        if value == defaults.get(key):
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
