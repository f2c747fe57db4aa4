"""The config form's text ⇄ values, and saving them into a TOML file with its comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_eval.config import (
    KEYS,
    format_text,
    load_config_file,
    resolve_config,
    shows_exactly,
    validate_text,
)
from tui_eval.errors import ConfigError
from tui_eval.ui.config_text import NEW_FILE_HEADER, render_config, save_config


@pytest.mark.parametrize(("key", "text"), [
    ("batch_size", "0"), ("batch_size", "four"), ("max_tokens", "-3"), ("device", "gpu"),
    ("top_p", "1.5"), ("metrics", "exact_match, bleu"), ("limit", "0"),
])
def test_form_errors_use_the_cli_message(key, text):
    _, error = validate_text(key, text)
    assert error is not None and error.startswith(f"{key}: must be")
    flag_value = int(text) if text.lstrip("-").isdigit() else text
    if key == "metrics":
        flag_value = [m.strip() for m in text.split(",")]
    elif key == "top_p":
        flag_value = float(text)
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, {key: flag_value})
    # "must be …" from both; the flag's error names the flag, the form's the key
    assert str(raised.value).split(": ", 1)[1] == error.split(": ", 1)[1]


@pytest.mark.parametrize(("key", "text", "value"), [
    ("batch_size", " 16 ", 16), ("batch_size", "auto", "auto"), ("limit", "", None),
    ("top_p", "0.9", 0.9), ("metrics", "exact_match, numeric", ["exact_match", "numeric"]),
    ("stop", '["\\n", "Q:"]', ["\n", "Q:"]), ("stop", "", []), ("model", "m/x", "m/x"),
    ("gpu_poll_seconds", "2", 2.0),
])
def test_form_text_becomes_config_values(key, text, value):
    assert validate_text(key, text) == (value, None)


def test_values_are_shown_as_they_are_typed():
    assert format_text(["exact_match", "numeric"], KEYS["metrics"].rule) == "exact_match, numeric"
    assert format_text(None) == "" and format_text(True) == "true" and format_text(1.0) == "1"


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("stop", ["\n"], '["\\n"]'),
    ("stop", ["\n", "Q:"], '["\\n", "Q:"]'),
    ("stop", ["\t", 'say "hi"', "a\\b", "é"], '["\\t", "say \\"hi\\"", "a\\\\b", "é"]'),
    ("stop", [], ""),
    ("stop", [","], '[","]'),
    ("prompt_template", "Q: {prompt}\nA:", '"Q: {prompt}\\nA:"'),
    ("prompt_template", "{prompt}", "{prompt}"),
    ("prompt_template", "'{prompt}'", "\"'{prompt}'\""),
    ("target_delimiter", " ", '" "'),
    ("target_delimiter", "", '""'),
    ("prompt_field", "", '""'),
    ("model", "模型/路径", "模型/路径"),
    ("extract", r"answer: (\d+)", r"answer: (\d+)"),
    ("max_memory", "0=70GiB,cpu=200GiB", "0=70GiB,cpu=200GiB"),
    ("max_memory", 0.123456789, "0.123456789"),
    ("temperature", 0.30000000000000004, "0.30000000000000004"),
])
def test_form_text_is_toml_and_reads_back_exactly(key, value, shown):
    """A newline, a tab or a quote shows as its TOML escape, and what is shown reads back
    as the very value (issue: a stop string of one newline came back as [])."""
    assert format_text(value, KEYS[key].rule) == shown
    assert validate_text(key, shown) == (value, None)
    assert shows_exactly(key, value)


@pytest.mark.parametrize(("key", "text", "value"), [
    ("stop", "\\n, Q:", ["\n", "Q:"]),  # comma-separated items read escapes too
    ("stop", "[]", []),
    ("prompt_template", "'C:\\{prompt}'", "C:\\{prompt}"),  # a TOML literal string
    ("prompt_template", "a \\n b", "a \\n b"),  # unquoted: as typed
])
def test_typed_text_is_read_with_toml_rules(key, text, value):
    assert validate_text(key, text) == (value, None)


@pytest.mark.parametrize(("key", "text", "said"), [
    ("stop", '["\\n"', "must be a TOML array"),
    ("stop", "\\d", "unknown escape"),
    ("prompt_template", '"unfinished', "must be a TOML string"),
])
def test_text_toml_cannot_read_names_the_rule(key, text, said):
    _, error = validate_text(key, text)
    assert error is not None and error.startswith(f"{key}: ") and said in error


ORIGINAL = """\
# my settings
# model = "path/to/model"        # the model
batch_size = 4                    # samples per call
# limit = 100                     # first N
lang = "zh"                       # log language
"""


def test_render_keeps_comments_and_layout():
    text = render_config(ORIGINAL, {"model": "/m", "batch_size": 16, "limit": None,
                                    "lang": None, "max_tokens": 512, "theme": "paper"})
    assert text == """\
# my settings
model = "/m"                     # the model
batch_size = 16                   # samples per call
# limit = 100                     # first N
# lang = "zh"                       # log language

theme = "paper"
"""


def test_saved_file_reads_back_with_the_cli_loader(tmp_path):
    path = tmp_path / "eval.toml"
    save_config(path, {"batch_size": 8, "stop": ['a "quoted" # stop', "\\"],
                       "metrics": ["numeric"], "theme": "ansi-16", "model": None})
    text = path.read_text(encoding="utf-8")
    assert text.startswith(NEW_FILE_HEADER)
    assert load_config_file(path) == {"batch_size": 8, "stop": ['a "quoted" # stop', "\\"],
                                      "metrics": ["numeric"], "theme": "ansi-16"}
    save_config(path, {"batch_size": 2, "stop": ['a "quoted" # stop', "\\"]})
    assert load_config_file(path)["batch_size"] == 2
    assert not Path(str(path) + ".tmp").exists()
