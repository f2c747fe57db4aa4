"""Flags and keys that were accepted without a word: --stop, nan and inf, a cap of 0,
flag prefixes, an unknown theme headless, generation on data answered by index, and the
run log's first line naming the config file."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import Collect
from tui_eval.commands import SUBCOMMANDS
from tui_eval.commands.options import config_and_source, config_from_args
from tui_eval.commands.run import build_parser, run_headless
from tui_eval.config import KEYS, EvalConfig, check_value, load_config_file, resolve_config
from tui_eval.engine.evaluation import Evaluation
from tui_eval.engine.preparation import with_task
from tui_eval.errors import ConfigError, UsageError
from tui_eval.theme_names import TEXTUAL_THEMES, theme_not_found

FLOAT_KEYS = [name for name, key in KEYS.items() if key.rule.type == "float"]


def parse(*argv: str) -> EvalConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_stop_flag_is_repeatable_reads_escapes_and_replaces_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # away from the repo's eval.toml
    assert parse("--stop", "\\n", "--stop", "Q:").stop == ["\n", "Q:"]
    assert parse("--stop", "\\t\\u00e9\\\\", "--stop", 'say "x"').stop == ["\té\\", 'say "x"']
    (tmp_path / "stop.toml").write_text('stop = ["END"]\n', encoding="utf-8")
    assert parse("-c", "stop.toml").stop == ["END"]
    assert parse("-c", "stop.toml", "--stop", "\\n").stop == ["\n"]
    with pytest.raises(ConfigError, match=r"^--stop: unknown escape '\\d'"):
        parse("--stop", "\\d")


@pytest.mark.parametrize("name", FLOAT_KEYS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_every_float_key_refuses_nan_and_inf(name, text, tmp_path):
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, {name: text})
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{KEYS[name].flag}: must be a number")
    path = tmp_path / "f.toml"
    path.write_text(f"{name} = {text.lower()}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"f.toml:1: key '{name}' must be a number"):
        load_config_file(path)


def test_nan_never_reaches_a_config():
    for name in [*FLOAT_KEYS, "max_memory"]:
        with pytest.raises(ValueError):
            check_value(name, math.nan)


@pytest.mark.parametrize("text", ["0", "0.0", "1.5", "-0.5"])
def test_max_memory_out_of_range_says_a_rule_it_breaks(text):
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, {"max_memory": text})
    message = str(raised.value)
    assert "above 0 and up to 1" in message and "from 0 to 1" not in message
    assert message.endswith(f"got {text!r}")


def all_parsers() -> list:
    from importlib import import_module

    return [build_parser()] + [import_module(module).build_parser()
                               for module, _ in SUBCOMMANDS.values()]


def test_no_parser_takes_a_flag_prefix():
    with pytest.raises(UsageError, match="unrecognized arguments: --max-token 8"):
        build_parser().parse_args(["--max-token", "8"])
    for parser in all_parsers():
        assert parser.allow_abbrev is False, parser.prog


def test_theme_names_without_textual_match_textual():
    from textual.theme import BUILTIN_THEMES

    assert set(TEXTUAL_THEMES) == set(BUILTIN_THEMES)


def test_unknown_theme_is_one_warning_line_headless(tmp_path, capsys):
    (tmp_path / "mine.toml").write_text('name = "mine"\nprimary = "#112233"\n')
    assert theme_not_found("mine", [tmp_path]) is None
    assert theme_not_found("nord", [tmp_path]) is None
    problem = theme_not_found("nope", [tmp_path])
    assert problem is not None and problem.startswith("theme 'nope' not found (available: mine,")
    # the run goes on (it fails here on its missing data, after the warning)
    config = EvalConfig(theme="nope", model=str(tmp_path), data=str(tmp_path / "no.jsonl"),
                        output_dir=str(tmp_path / "out"))
    with pytest.raises(UsageError):
        run_headless(config)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "theme 'nope' not found" in line]
    assert len(warnings) == 1 and warnings[0].startswith("tui-eval: warning: ")


def test_generate_on_data_answered_by_index_warns_once(tmp_path):
    data = tmp_path / "choice.jsonl"
    data.write_text(json.dumps({"question": "2+2?", "choices": ["3", "4"], "answer": 1}) + "\n")
    said: list[tuple[str, str]] = []

    def log(level: str, key: str, **values: object) -> None:
        said.append((level, key))

    config = EvalConfig(model="m", data=str(data), task="generate")
    assert with_task(config, log).task == "generate"
    assert said == [("WARNING", "task_generate_on_index")]
    from tui_eval.i18n import message

    assert "--task choice" in message("task_generate_on_index", "en", field="choices")
    said.clear()
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"question": "2+2?", "choices": ["3", "4"], "answer": "4"}) + "\n")
    with_task(EvalConfig(model="m", data=str(text), task="generate"), log)
    assert said == []


def test_the_log_first_line_names_the_config_file_and_its_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.toml").write_text('stop = ["\\n"]\nmax_tokens = 9\n', encoding="utf-8")
    config, source = config_and_source(build_parser().parse_args(["-d", "missing.jsonl",
                                                                 "-m", str(tmp_path)]))
    assert source is not None and source.found and source.keys == ("stop", "max_tokens")
    sink = Collect()
    with pytest.raises(UsageError):  # the run stops on its missing data; the line is first
        Evaluation(replace_lang(config), sink, config_source=source).run()
    first = sink.logs()[0]
    assert "eval.toml" in first and "found in the working directory" in first
    assert first.endswith("sets stop, max_tokens (-c FILE names another)")
    _, named = config_and_source(build_parser().parse_args(["-c", "eval.toml"]))
    assert named is not None and not named.found


def replace_lang(config: EvalConfig) -> EvalConfig:
    from dataclasses import replace

    return replace(config, lang="en")
