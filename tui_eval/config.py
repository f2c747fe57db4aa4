"""The run configuration: defaults, overridden by the TOML file, overridden by flags.

Every key is declared once below with its documentation and its rule; the TOML loader,
the flag parser and the UI's form all validate through ``check_value`` so they give the
same messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_eval.errors import ConfigError
from tui_eval.memcap import parse_max_memory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DTYPES = ("auto", "float16", "bfloat16", "float32")
METRICS = ("exact_match", "contains", "numeric", "token_f1")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


@dataclass(frozen=True)
class Rule:
    """How one key is checked: its type and the values it may take."""

    type: str  # "str" | "int" | "float" | "bool" | "list[str]"
    optional: bool = False  # may be left unset (None)
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: re.Pattern[str] | None = None
    allow_auto: bool = False  # an int key that also takes the string "auto"
    # a key whose values no type above describes: returns the value or raises ValueError
    parse: Callable[[Any], Any] | None = None
    help: str = ""


def setting(default: Any, help: str, **rule: Any) -> Any:
    """Declare a config key: its default, its documentation and its validation rule."""
    meta = {"rule": Rule(help=help, **rule)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class EvalConfig:
    model: str | None = setting(
        None, "Model directory, or a hub id already in the local cache; unset runs the demo.",
        type="str", optional=True)
    data: str | None = setting(
        None, "Dataset file: .jsonl, .json (a list of objects) or .csv; unset runs the demo.",
        type="str", optional=True)
    batch_size: int | str = setting(
        4, "Samples generated together; 'auto' tunes it first (probes 1, 2, 4, … on the "
        "longest prompts).", type="int", minimum=1, allow_auto=True)
    output_dir: str | None = setting(
        None, "Results directory; unset means eval_results/<timestamp>.",
        type="str", optional=True)
    torch_dtype: str = setting(
        "auto", "Weights dtype: auto, float16, bfloat16 or float32.", type="str", choices=DTYPES)
    device: str = setting(
        "auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.",
        type="str", pattern=DEVICE_PATTERN)
    max_tokens: int = setting(
        512, "Most new tokens generated per sample.", type="int", minimum=1)
    limit: int | None = setting(
        None, "Evaluate only the first N samples.", type="int", optional=True, minimum=1)
    lang: str | None = setting(
        None, "Log language, en or zh; unset follows the locale.",
        type="str", optional=True, choices=("en", "zh"))
    simulate_oom_above: int | None = setting(
        None, "Rehearse OOM: every generate call with more than N rows fails as CUDA OOM.",
        type="int", optional=True, minimum=0)
    prompt_field: str | None = setting(
        None, "Dataset field with the prompt; unset finds prompt/question/input/instruction.",
        type="str", optional=True)
    answer_field: str | None = setting(
        None, "Dataset field with the reference; unset finds answer/output/target/reference/label.",
        type="str", optional=True)
    id_field: str | None = setting(
        None, "Dataset field with the sample id; unset uses 'id' or the line number.",
        type="str", optional=True)
    prompt_template: str = setting(
        "{prompt}", "Prompt text with {field} placeholders from each sample.", type="str")
    chat_template: bool = setting(
        False, "Wrap prompts in the tokenizer's chat template when it has one.", type="bool")
    do_sample: bool = setting(False, "Sample instead of greedy decoding.", type="bool")
    temperature: float = setting(
        1.0, "Sampling temperature (with do_sample).", type="float", minimum=0.0)
    top_p: float = setting(
        1.0, "Nucleus sampling mass (with do_sample).", type="float", minimum=0.0, maximum=1.0)
    seed: int = setting(0, "Random seed for sampling.", type="int", minimum=0)
    stop: list[str] = setting(
        [], "Stop strings: each prediction ends where one first appears.", type="list[str]")
    metrics: list[str] = setting(
        list(METRICS), "Metrics to compute: exact_match, contains, numeric, token_f1.",
        type="list[str]", choices=METRICS)
    on_bad_line: str = setting(
        "error", "A malformed dataset line: 'error' stops, 'skip' skips and counts it.",
        type="str", choices=("error", "skip"))
    oom_policy: str = setting(
        "bisect", "On OOM: 'bisect' splits the failed batch in halves until they fit and "
        "keeps the smaller size for the rest of the run; 'single' regenerates the failed "
        "batch one sample at a time.",
        type="str", choices=("bisect", "single"))
    tune_mode: str = setting(
        "power", "-b auto: 'power' doubles until OOM; 'binsearch' then bisects between the "
        "last success and the first OOM.", type="str", choices=("power", "binsearch"))
    max_batch_size: int = setting(
        256, "-b auto: the largest batch size probed.", type="int", minimum=1)
    memory_headroom: float = setting(
        0.9, "-b auto: never choose a size whose peak memory is above this share of the "
        "device (or of max_memory).", type="float", minimum=0.1, maximum=1.0)
    max_memory: float | str | None = setting(
        None, "Cap this process's CUDA memory: a fraction of the card (0.5) or a size "
        "(20GiB); ignored on CPU.", type="str", optional=True, parse=parse_max_memory)
    theme: str | None = setting(
        None, "Colour theme of the app: a built-in name or a TOML theme's name "
        "(from themes/ or ~/.config/tui-eval/themes); unset uses the default.",
        type="str", optional=True)
    gpu_poll_seconds: float = setting(
        1.0, "Seconds between GPU/CPU gauge readings in the app.",
        type="float", minimum=0.2, maximum=60.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rules() -> dict[str, Rule]:
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(EvalConfig)}


def _describe(rule: Rule, *, with_auto: bool = True) -> str:
    if rule.choices:
        kind = "one of " + ", ".join(rule.choices)
        return f"a list of {kind}" if rule.type == "list[str]" else kind
    names = {"str": "a string", "int": "an integer", "float": "a number",
             "bool": "true or false", "list[str]": "a list of strings"}
    text = names[rule.type]
    if rule.minimum is not None and rule.maximum is not None:
        text += f" from {rule.minimum:g} to {rule.maximum:g}"
    elif rule.minimum is not None:
        text += f" ≥ {rule.minimum:g}"
    if rule.allow_auto and with_auto:
        text += " or 'auto'"
    return text


def check_value(key: str, value: Any) -> Any:
    """Return the value, normalised, or raise ValueError saying what the key expects."""
    rule = rules()[key]
    expected = _describe(rule)
    if value is None:
        if rule.optional:
            return None
        raise ValueError(f"must be {expected}")
    if rule.allow_auto and value == "auto":
        return "auto"
    if rule.parse is not None:
        return rule.parse(value)
    if rule.type == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"must be {expected}, got {value!r}")
        return value
    if rule.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be {expected}, got {value!r}")
    elif rule.type == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be {expected}, got {value!r}")
        value = float(value)
    elif rule.type == "str":
        if not isinstance(value, str):
            raise ValueError(f"must be {expected}, got {value!r}")
    elif rule.type == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be {expected}, got {value!r}")
        if rule.choices:
            for item in value:
                if item not in rule.choices:
                    raise ValueError(f"must be {expected}, got {item!r}")
        return list(value)
    # a number out of range: say the range ("or 'auto'" is no help to someone who typed 0)
    in_range = _describe(rule, with_auto=False)
    if rule.minimum is not None and value < rule.minimum:
        raise ValueError(f"must be {in_range}, got {value!r}")
    if rule.maximum is not None and value > rule.maximum:
        raise ValueError(f"must be {in_range}, got {value!r}")
    if rule.choices and value not in rule.choices:
        raise ValueError(f"must be {expected}, got {value!r}")
    if rule.pattern and not rule.pattern.match(value):
        raise ValueError(f"must be {rule.help[:-1].lower()}, got {value!r}")
    return value


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


def load_config_file(path: Path) -> dict[str, Any]:
    """Read and validate a TOML config; errors name the file, the line and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    known = rules()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        line = _line_of(text, key)
        where = f"{path}:{line}" if line else str(path)
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        try:
            values[key] = check_value(key, value)
        except ValueError as exc:
            raise ConfigError(f"{where}: key '{key}' {exc}") from None
    return values


def resolve_config(
    config_file: Path | None,
    flag_values: dict[str, Any],
    flag_names: dict[str, str] | None = None,
    base: dict[str, Any] | None = None,
) -> EvalConfig:
    """defaults ◄ base ◄ config file ◄ flags, each layer validated; flag errors name the
    flag. ``base`` holds already validated values (a resumed run's saved config)."""
    merged: dict[str, Any] = dict(base or {})
    if config_file is not None:
        merged.update(load_config_file(config_file))
    flag_names = flag_names or {}
    for key, value in flag_values.items():
        if value is None:
            continue
        try:
            merged[key] = check_value(key, value)
        except ValueError as exc:
            flag = flag_names.get(key, "--" + key.replace("_", "-"))
            raise ConfigError(f"{flag}: {exc}") from None
    return EvalConfig(**merged)


def find_default_config(cwd: Path | None = None) -> Path | None:
    candidate = (cwd or Path.cwd()) / "eval.toml"
    return candidate if candidate.is_file() else None
