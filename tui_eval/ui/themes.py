"""Colour themes read from TOML files: the repo's ``themes/`` and the user's config directory.

A theme file holds the fields of a Textual ``Theme`` (``name``, ``primary`` and any of the
other colours, ``dark``, ``ansi``) and an optional ``[variables]`` table. A file that
cannot be used is reported with its path and the offending key, and skipped.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

from tui_eval.config import toml_error_location
from tui_eval.theme_names import REPO_THEMES_DIR, theme_dirs, user_themes_dir  # noqa: F401

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_THEME = "textual-dark"
DEFAULT_16_COLOUR_THEME = "ansi-16"

COLOUR_KEYS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground",
               "background", "surface", "panel", "boost")
BOOL_KEYS = ("dark", "ansi")
FRACTION_KEYS = ("luminosity_spread", "text_alpha")
ANSI_THEME_VARIABLES = {"ansi-background": "ansi_black", "ansi-foreground": "ansi_white"}
TEXT_STYLES = {"none", "bold", "dim", "italic", "underline", "reverse", "strike", "blink"}


class ThemeFileError(Exception):
    """A theme file that cannot be used; the message names the file and the key."""


@dataclass
class LoadedThemes:
    themes: list[Theme]
    problems: list[str]


def _is_colour(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        Color.parse(value)
    except ColorParseError:
        return False
    return True


def _is_variable_value(name: str, value: Any) -> bool:
    if name.endswith("text-style"):
        return isinstance(value, str) and set(value.split()) <= TEXT_STYLES
    return _is_colour(value)


def theme_from_toml(path: Path) -> Theme:
    """Read one theme file; raise ThemeFileError naming the file and the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThemeFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ThemeFileError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        line, reason = toml_error_location(exc)
        raise ThemeFileError(f"{path}:{line}: invalid TOML: {reason}" if line
                             else f"{path}: invalid TOML: {reason}") from None

    def fail(key: str, problem: str) -> ThemeFileError:
        return ThemeFileError(f"{path}: key '{key}' {problem}")

    known = {"name", "variables", *COLOUR_KEYS, *BOOL_KEYS, *FRACTION_KEYS}
    for key in data:
        if key not in known:
            raise fail(key, "is not a theme key (one of: " + ", ".join(sorted(known)) + ")")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "must be a non-empty string")
    if "primary" not in data:
        raise fail("primary", "is required")
    for key in COLOUR_KEYS:
        if key in data and not _is_colour(data[key]):
            raise fail(key, f"must be a colour such as \"#1e90ff\" or \"ansi_blue\", "
                            f"got {data[key]!r}")
    for key in BOOL_KEYS:
        if key in data and not isinstance(data[key], bool):
            raise fail(key, f"must be true or false, got {data[key]!r}")
    for key in FRACTION_KEYS:
        value = data.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise fail(key, f"must be a number from 0 to 1, got {value!r}")
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise fail("variables", "must be a table of name = \"colour\"")
    for variable, value in variables.items():
        if not _is_variable_value(variable, value):
            raise fail(f"variables.{variable}", f"must be a colour, got {value!r}")
    fields = {key: data[key] for key in (*COLOUR_KEYS, *BOOL_KEYS, *FRACTION_KEYS)
              if key in data}
    if data.get("ansi"):
        # Textual's widgets need these two in an ANSI theme; it only derives them for others
        variables = {**ANSI_THEME_VARIABLES, **variables}
    theme = Theme(name=name.strip(), variables=dict(variables), **fields)
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # a combination Textual cannot derive its palette from
        raise ThemeFileError(f"{path}: cannot build theme: {exc}") from None
    return theme


def load_theme_dirs(directories: list[Path]) -> LoadedThemes:
    """Every ``*.toml`` in the directories, in order; a later file with the same name wins."""
    by_name: dict[str, Theme] = {}
    problems: list[str] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = theme_from_toml(path)
            except ThemeFileError as exc:
                problems.append(str(exc))
                continue
            by_name[theme.name] = theme
    return LoadedThemes(themes=list(by_name.values()), problems=problems)


def terminal_has_few_colours(environ: dict[str, str] | None = None) -> bool:
    """True for 16-colour terminals (TERM=screen, linux, vt100…) with no truecolor hint."""
    env = os.environ if environ is None else environ
    if env.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return False
    term = env.get("TERM", "").lower()
    return bool(term) and "256" not in term and "direct" not in term and "kitty" not in term
