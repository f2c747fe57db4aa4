"""The names of the app's colour themes, known without loading Textual: Textual's
built-ins and the ``name`` of each TOML theme file. Headless, a ``theme`` that names no
theme is warned about as the app does (the app reads the files themselves, ui/themes.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

REPO_THEMES_DIR = Path(__file__).resolve().parents[1] / "themes"

# textual.theme.BUILTIN_THEMES, spelled out so that a headless run need not import Textual
# (a test keeps the two equal)
TEXTUAL_THEMES = (
    "ansi-dark", "ansi-light", "atom-one-dark", "atom-one-light", "catppuccin-frappe",
    "catppuccin-latte", "catppuccin-macchiato", "catppuccin-mocha", "dracula", "flexoki",
    "gruvbox", "monokai", "nord", "rose-pine", "rose-pine-dawn", "rose-pine-moon",
    "solarized-dark", "solarized-light", "textual-dark", "textual-light", "tokyo-night",
)


def user_themes_dir() -> Path:
    """``$XDG_CONFIG_HOME/tui-eval/themes``, or ``~/.config/tui-eval/themes``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tui-eval" / "themes"


def theme_dirs() -> list[Path]:
    return [REPO_THEMES_DIR, user_themes_dir()]


def file_theme_names(directories: list[Path]) -> list[str]:
    """The ``name`` of every readable ``*.toml`` theme file in the directories."""
    names: list[str] = []
    for directory in directories:
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            try:
                name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue  # the app reports the file; headless only needs the names
            if isinstance(name, str) and name.strip() and name.strip() not in names:
                names.append(name.strip())
    return names


def theme_not_found(name: str, directories: list[Path] | None = None) -> str | None:
    """The app's warning for a theme it does not know, or None when it knows it."""
    files = file_theme_names(theme_dirs() if directories is None else directories)
    if name in files or name in TEXTUAL_THEMES:
        return None
    available = files + sorted(set(TEXTUAL_THEMES) - set(files))
    return f"theme '{name}' not found (available: {', '.join(available)})"
