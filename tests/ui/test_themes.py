"""Theme files: the shipped ones load, bad ones are reported by file and key, and the
stylesheets use theme variables only."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from textual.color import COLOR_NAME_TO_RGB
from textual.widget import Widget

import tui_eval.ui.app
import tui_eval.ui.screens
import tui_eval.ui.widgets.config_form
import tui_eval.ui.widgets.gauges
import tui_eval.ui.widgets.log_pane
import tui_eval.ui.widgets.meter
import tui_eval.ui.widgets.progress
import tui_eval.ui.widgets.results
import tui_eval.ui.widgets.spark
from tui_eval.ui.themes import (
    REPO_THEMES_DIR,
    load_theme_dirs,
    terminal_has_few_colours,
    theme_dirs,
    theme_from_toml,
    user_themes_dir,
)


def test_shipped_themes_load_and_cover_light_and_16_colours():
    loaded = load_theme_dirs([REPO_THEMES_DIR])
    assert loaded.problems == []
    assert len(loaded.themes) >= 3
    assert any(not theme.dark for theme in loaded.themes)
    ansi = [theme for theme in loaded.themes if theme.ansi]
    assert ansi, "one theme must use the terminal's own 16 colours"
    for theme in ansi:
        colours = [theme.primary, theme.secondary, theme.accent, theme.warning, theme.error,
                   theme.success, theme.foreground, theme.background]
        assert all(str(colour).startswith("ansi_") for colour in colours)


def test_user_dir_honours_xdg_config_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert user_themes_dir() == tmp_path / "tui-eval" / "themes"
    assert theme_dirs() == [REPO_THEMES_DIR, tmp_path / "tui-eval" / "themes"]
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_themes_dir() == tmp_path / "home" / ".config" / "tui-eval" / "themes"


@pytest.mark.parametrize(("text", "key"), [
    ('name = "x"\nprimary = "#12345"\n', "'primary'"),
    ('name = "x"\nprimary = "#123456"\nbackground = 3\n', "'background'"),
    ('name = "x"\nprimary = "#123456"\ncolour = "#000000"\n', "'colour'"),
    ('name = "x"\n', "'primary'"),
    ('primary = "#123456"\n', "'name'"),
    ('name = "x"\nprimary = "#123456"\ndark = "yes"\n', "'dark'"),
    ('name = "x"\nprimary = "#123456"\n[variables]\nborder = "wobbly"\n', "'variables.border'"),
    ('name = "x"\nprimary = "#123456"\ntext_alpha = 2\n', "'text_alpha'"),
])
def test_a_bad_theme_names_its_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    loaded = load_theme_dirs([tmp_path])
    assert loaded.themes == []
    (problem,) = loaded.problems
    assert problem.startswith(f"{path}: key {key}")


def test_invalid_toml_is_reported_and_other_files_still_load(tmp_path):
    (tmp_path / "a-broken.toml").write_text("name = \n", encoding="utf-8")
    (tmp_path / "b-fine.toml").write_text('name = "fine"\nprimary = "ansi_red"\nansi = true\n',
                                          encoding="utf-8")
    loaded = load_theme_dirs([tmp_path, tmp_path / "missing"])
    assert [theme.name for theme in loaded.themes] == ["fine"]
    assert loaded.problems[0].startswith(f"{tmp_path / 'a-broken.toml'}:1: invalid TOML")
    # ANSI themes get the two variables Textual's widgets need
    assert "ansi-background" in loaded.themes[0].variables


def test_a_user_theme_replaces_a_repo_theme_of_the_same_name(tmp_path):
    first, second = tmp_path / "repo", tmp_path / "user"
    for directory, colour in ((first, "#111111"), (second, "#222222")):
        directory.mkdir()
        (directory / "mine.toml").write_text(f'name = "mine"\nprimary = "{colour}"\n')
    (theme,) = load_theme_dirs([first, second]).themes
    assert theme.primary == "#222222"
    assert theme_from_toml(first / "mine.toml").primary == "#111111"


@pytest.mark.parametrize(("env", "few"), [
    ({"TERM": "screen"}, True), ({"TERM": "linux"}, True), ({"TERM": "xterm"}, True),
    ({"TERM": "xterm-256color"}, False), ({"TERM": "screen-256color"}, False),
    ({"TERM": "screen", "COLORTERM": "truecolor"}, False), ({}, False),
])
def test_sixteen_colour_terminals_are_recognised(env, few):
    assert terminal_has_few_colours(env) is few


UI_MODULES = [tui_eval.ui.app, tui_eval.ui.screens, tui_eval.ui.widgets.config_form,
              tui_eval.ui.widgets.gauges, tui_eval.ui.widgets.log_pane,
              tui_eval.ui.widgets.meter, tui_eval.ui.widgets.progress,
              tui_eval.ui.widgets.results, tui_eval.ui.widgets.spark]
COLOUR_PROPERTIES = re.compile(r"(color|background|border[\w-]*|tint|outline[\w-]*)\s*:")


def stylesheets() -> dict[str, str]:
    sheets = {"app.tcss": (Path(tui_eval.ui.app.__file__).parent / "app.tcss").read_text()}
    for module in UI_MODULES:
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Widget) and cls.__module__ == module.__name__:
                sheets[f"{module.__name__}.{name}"] = cls.__dict__.get("DEFAULT_CSS", "")
    return sheets


def test_stylesheets_use_theme_variables_only():
    names = set(COLOR_NAME_TO_RGB)
    for sheet, css in stylesheets().items():
        css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
        assert not re.search(r"#[0-9a-fA-F]{3,8}\b|\b(rgb|rgba|hsl|hsla)\(", css), sheet
        for declaration in re.findall(r"[\w-]+\s*:[^;{}]+;", css):
            if not COLOUR_PROPERTIES.match(declaration.strip()):
                continue
            words = re.findall(r"[a-z_]+", declaration.split(":", 1)[1].lower())
            literal = [w for w in words if w in names and w not in ("transparent",)]
            assert not literal, f"{sheet}: {declaration.strip()}"


def test_theme_flag_reaches_the_config(tmp_path, monkeypatch):
    from tui_eval.commands.options import config_from_args
    from tui_eval.commands.run import build_parser

    monkeypatch.chdir(tmp_path)  # no ./eval.toml here
    config = config_from_args(build_parser().parse_args(["--theme", "paper"]))
    assert config.theme == "paper"
