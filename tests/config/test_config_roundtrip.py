"""Every config key, file and flags → the app's form → the run's config.json, equal to the
headless run's config.json for the same file and flags.

The keys are read from ``tui_eval.config.KEYS``: a key added there is covered here, with
an awkward value of its own below or one derived from its rule.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from textual import events
from textual.widgets import Input

from tests.helpers import PROMPTS, write_jsonl
from tui_eval.commands.options import config_and_source
from tui_eval.commands.run import build_parser
from tui_eval.config import DEFAULTS, KEYS, check_value, format_text, load_config_file
from tui_eval.device.monitor import FixedGpuSource, FixedHostSource, HostReading, Sampler
from tui_eval.formatting import GIB
from tui_eval.ui.app import EvalApp

pytestmark = pytest.mark.slow  # a headless run and an app run per case

LONG_TEMPLATE = ("Réponds « court » — 答え: \"{question}\"\t(tab)\\ backslash\n"
                 + "Context line with ünïcödé and 'quotes'. " * 12 + "\nQ: {question}\nA:")

# A value for each key that a plain text field would mangle, where the key allows one.
AWKWARD: dict[str, Any] = {
    "batch_size": 3, "max_tokens": 3, "torch_dtype": "float32", "oom_policy": "bisect",
    "metrics": ["numeric"], "limit": 5, "simulate_oom_above": 2, "lang": "zh",
    "theme": "no-such-theme", "gpu_poll_seconds": 0.25, "prompt_field": "question",
    "answer_field": "answer", "id_field": "id", "prompt_template": LONG_TEMPLATE,
    "chat_template": True, "do_sample": True, "temperature": 0.7, "top_p": 0.95, "seed": 7,
    "stop": ["\n", "\t", "Q:", "」", '"'], "on_bad_line": "skip", "tune_mode": "binsearch",
    "max_batch_size": 7, "memory_headroom": 0.55, "max_memory": "20GiB",
    "extract": r"(\d+)\s*$", "truncate": "left", "task": "generate", "choices_field": "选项",
    "target_delimiter": "\t", "compile": "off", "retune": True,
    "device_map": None,  # unset here: it needs sizes per device (the third case)
    "target_template": "{{ answer }}", "choices_template": None,  # a choice task: not here
    "num_fewshot": 1, "fewshot_delimiter": "\n\n###\t", "fewshot_seed": 3,
    "system_prompt": "Réponds\tcourt.\n",
}
# where the run must go, the same for both runs (relative: each runs in its own directory)
FIXED = {"device": "cpu", "output_dir": "out"}
APP_SIZE = (100, 40)
TYPED = ("stop", "max_memory", "extract", "batch_size")  # typed key by key when ASCII


def derived_value(name: str) -> Any:
    """A valid value other than the default for a key not in AWKWARD (added later)."""
    rule, default = KEYS[name].rule, DEFAULTS[name]
    guesses: list[Any] = []
    if rule.type == "bool":
        guesses = [not default]
    elif rule.choices and rule.type == "list[str]":
        guesses = [[rule.choices[-1]]]
    elif rule.choices:
        guesses = [c for c in rule.choices if c != default]
    elif rule.type == "int":
        guesses = [int(rule.minimum or 0) + 2]
    elif rule.type == "float":
        low, high = rule.minimum or 0.0, rule.maximum or (rule.minimum or 0.0) + 2.0
        guesses = [round(low + (high - low) * 0.37, 6)]
    elif rule.type == "list[str]":
        guesses = [["a\tb", "ü"], []]
    else:
        guesses = ["x\ty ü"]
    for guess in guesses:
        try:
            return check_value(name, guess)
        except ValueError:
            continue
    return default


def file_values(model: Path, data: Path, **changes: Any) -> dict[str, Any]:
    """A value for every declared key: model and data, FIXED, AWKWARD, the rest derived."""
    values: dict[str, Any] = {}
    for name in KEYS:
        if name == "model":
            values[name] = str(model)
        elif name in ("data", "fewshot_file"):
            values[name] = str(data)
        elif name in FIXED:
            values[name] = FIXED[name]
        elif name in AWKWARD:
            values[name] = AWKWARD[name]
        else:
            values[name] = derived_value(name)
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def write_toml(path: Path, values: dict[str, Any]) -> Path:
    document = tomlkit.document()
    for name, value in values.items():
        document[name] = value
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return path


def headless_run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir()
    return subprocess.run([sys.executable, "-m", "tui_eval", "--no-ui", *argv], cwd=cwd,
                          text=True, capture_output=True, timeout=300)


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def app_run(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
            shown: dict[str, str]) -> None:
    """The app as ``tui-eval ARGV`` opens it; every text field is cleared and its text
    typed or pasted back, then s starts the run. ``shown`` gets each field's text."""
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    args = build_parser().parse_args(argv)
    config, source = config_and_source(args)
    sampler = Sampler(FixedGpuSource(unavailable="no GPU"),
                      FixedHostSource(HostReading(10.0, 2 * GIB, 8 * GIB)), clock=lambda: 0.0)
    app = EvalApp(config, config_path=args.config, run_options={"config_source": source},
                  sampler=sampler, theme_directories=[])

    async def scenario() -> None:
        async with app.run_test(size=APP_SIZE) as pilot:
            for field in app.config_pane.query(Input):
                key = (field.id or "").removeprefix("edit-")
                shown[key] = field.value
                if field.disabled:
                    continue
                field.focus()
                field.value = ""
                if key in TYPED and shown[key].isascii():  # key by key
                    await pilot.press(*shown[key])
                else:  # pasted: quicker for a long template, and any character
                    field.post_message(events.Paste(shown[key]))
                await wait_for(pilot, lambda f=field, k=key: f.value == shown[k])
            await pilot.press("escape")
            assert app.config_pane.errors() == {}
            await pilot.press("s")
            await wait_for(pilot, lambda: app.activity is None
                           and (cwd / "out" / "config.json").exists())

    asyncio.run(scenario())


def saved_config(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "out" / "config.json").read_text(encoding="utf-8"))


def first_log_line(directory: Path) -> str:
    return (directory / "out" / "run.log").read_text(encoding="utf-8").splitlines()[0]


def check_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: Path,
                     flags: list[str], expected: dict[str, Any]) -> dict[str, str]:
    argv = ["-c", str(toml), *flags]
    done = headless_run(argv, tmp_path / "headless")
    assert (tmp_path / "headless" / "out" / "config.json").exists(), done.stderr
    shown: dict[str, str] = {}
    app_run(argv, tmp_path / "app", monkeypatch, shown)
    headless_config = saved_config(tmp_path / "headless")
    assert saved_config(tmp_path / "app") == headless_config
    for name, value in expected.items():
        assert headless_config["config"][name] == value, name
    # every field shows its value as it is typed in TOML
    for name, text in shown.items():
        assert text == format_text(headless_config["config"][name], KEYS[name].rule), name
    # the run log's first line names the file and the keys it set, in both
    line = first_log_line(tmp_path / "headless")
    assert str(toml) in line and "stop" in line
    assert first_log_line(tmp_path / "app").split(" - ", 1)[1] == line.split(" - ", 1)[1]
    return shown


@pytest.fixture()
def qa_data(tmp_path: Path) -> Path:

    return write_jsonl(tmp_path / "qa.jsonl",
                       [{"id": i, "question": q, "answer": a} for i, q, a in PROMPTS])


def test_every_key_from_the_file_reaches_the_app_run(tiny_model, qa_data, tmp_path,
                                                     monkeypatch):
    values = file_values(tiny_model, qa_data)
    unset = [name for name in KEYS if name not in values]
    assert all(AWKWARD.get(name, "") is None for name in unset)  # every key, unless said
    toml = write_toml(tmp_path / "all.toml", values)
    shown = check_round_trip(tmp_path, monkeypatch, toml, [], values)
    assert shown["stop"] == '["\\n", "\\t", "Q:", "」", "\\""]'
    assert shown["target_delimiter"] == '"\\t"'


def test_flags_and_empty_lists_reach_the_app_run(tiny_model, qa_data, tmp_path, monkeypatch):
    values = file_values(tiny_model, qa_data, stop=[], metrics=["exact_match"],
                         prompt_template="{question}", target_delimiter="")
    toml = write_toml(tmp_path / "flags.toml", values)
    flags = ["--max-tokens", "2", "-b", "2", "--max-memory", "0.25", "--extract", "",
             "--target-delimiter", " "]
    expected = {"stop": [], "metrics": ["exact_match"], "max_tokens": 2, "batch_size": 2,
                "max_memory": 0.25, "extract": None, "target_delimiter": " "}
    shown = check_round_trip(tmp_path, monkeypatch, toml, flags, expected)
    assert shown["stop"] == "" and shown["target_delimiter"] == '" "'


def test_stop_flags_and_sizes_per_device_reach_the_app_run(tiny_model, qa_data, tmp_path,
                                                          monkeypatch):
    values = file_values(tiny_model, qa_data, device_map="sequential",
                         max_memory={"cpu": "2GiB"}, stop=["ignored"])
    toml = write_toml(tmp_path / "per-device.toml", values)
    flags = ["--stop", "\\n", "--stop", "Q:", "--stop", "\\u00e9\\t"]
    expected = {"stop": ["\n", "Q:", "é\t"], "max_memory": "cpu=2GiB",
                "device_map": "sequential"}
    shown = check_round_trip(tmp_path, monkeypatch, toml, flags, expected)
    assert shown["stop"] == '["\\n", "Q:", "é\\t"]'


def quiet_app(config: Any, **options: Any) -> EvalApp:
    sampler = Sampler(FixedGpuSource(unavailable="no GPU"),
                      FixedHostSource(HostReading(10.0, 2 * GIB, 8 * GIB)), clock=lambda: 0.0)
    return EvalApp(config, sampler=sampler, theme_directories=[], **options)


SAVED = """\
# my settings
max_memory = {cpu = "2GiB"}   # a table, as written by hand
device_map = "sequential"
stop = ["\\n"]                 # one newline
"""


def test_ctrl_s_writes_only_what_was_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "eval.toml"
    toml.write_text(SAVED, encoding="utf-8")
    args = build_parser().parse_args(["-c", "eval.toml", "--max-tokens", "3"])
    config, _ = config_and_source(args)
    app = quiet_app(config, config_path=args.config)

    async def scenario() -> None:
        async with app.run_test(size=APP_SIZE) as pilot:
            await pilot.press("ctrl+s")  # nothing changed: the file is left as it is
            await pilot.pause()
            assert toml.read_text(encoding="utf-8") == SAVED
            field = app.query_one("#edit-batch_size", Input)
            field.focus()
            field.value = ""
            await pilot.press("8", "escape", "ctrl+s")
            await wait_for(pilot, lambda: "batch_size" in toml.read_text(encoding="utf-8"))
            # the flag's max_tokens and the file's own spelling of its values stay out
            assert toml.read_text(encoding="utf-8") == SAVED + "\nbatch_size = 8\n"
            field.focus()
            field.value = ""
            await pilot.press("4", "escape", "ctrl+s")  # back to the start: saved too
            await wait_for(pilot, lambda: "batch_size = 4" in toml.read_text(encoding="utf-8"))

    asyncio.run(scenario())
    assert load_config_file(toml) == {"max_memory": "cpu=2GiB", "device_map": "sequential",
                                      "stop": ["\n"], "batch_size": 4}


def test_a_value_the_form_cannot_show_is_kept_read_only(tmp_path):
    from dataclasses import replace

    from textual.widgets import Static

    from tui_eval.config import EvalConfig
    from tui_eval.ui.widgets.config_form import KEPT_NOTE

    # not a value any loader gives; it stands for one the form's text cannot carry
    config = replace(EvalConfig(), stop=[1, "\n"])
    app = quiet_app(config)

    async def scenario() -> None:
        async with app.run_test(size=APP_SIZE) as pilot:
            await pilot.pause()
            field = app.query_one("#edit-stop", Input)
            assert field.disabled
            note = app.query_one("#error-stop", Static)
            assert note.display and str(note.render()) == KEPT_NOTE
            assert app.config_pane.config().stop == [1, "\n"]
            assert app.config_pane.errors() == {} and app.config_pane.unsaved() == {}

    asyncio.run(scenario())
