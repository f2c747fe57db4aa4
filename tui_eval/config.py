"""The run configuration: defaults, overridden by the TOML file, overridden by flags.

Every key is declared once below, with everything said about it: its default, its help,
its rule, its flag, the app form's label and placeholder, and whether a resumed run may
change it. The flag parser, the app's form, the TOML loader and the resume check are
generated from these declarations and validate through ``check_value``, so they give the
same messages. Declaration order is the order of the app's form.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_eval.batching.oom_policies import OOM_POLICIES
from tui_eval.batching.strategies import TUNE_MODES
from tui_eval.device.budgets import (
    DEVICE_BUDGETS_EXAMPLE,
    device_budgets_text,
    is_per_device,
    parse_device_budgets,
)
from tui_eval.errors import ConfigError
from tui_eval.extraction import EXTRACT_PRESETS, check_extract_spec
from tui_eval.formatting import size_bytes
from tui_eval.i18n import LANGUAGES
from tui_eval.metrics import CHOICE_METRICS, DEFAULT_METRICS, METRIC_FUNCTIONS
from tui_eval.prompts import TemplateError, check_template

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DTYPES = ("auto", "float16", "bfloat16", "float32")
COMPILE_MODES = ("auto", "graph", "on", "off")
BAD_LINE_POLICIES = ("error", "skip")
TRUNCATE_SIDES = ("none", "left")
TASKS = ("generate", "choice")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
INT_TEXT = re.compile(r"^[+-]?\d+$")
MAX_MEMORY_EXPECTED = ("a fraction above 0 and up to 1 (0.5), a size (20GiB) or, with "
                       "device_map, sizes per device (0=70GiB,cpu=200GiB)")
_NUMBER_TEXT = re.compile(r"^\s*\d*\.?\d+\s*$")


def parse_max_memory(value: Any) -> float | str:
    """A fraction of the card comes back as a float, a size ('20GiB') as its text, sizes
    per device (that text, or a TOML table {0 = "70GiB", cpu = "200GiB"}) as that text."""
    if isinstance(value, dict):
        value = device_budgets_text(value)
    if is_per_device(value):
        try:
            parse_device_budgets(value)
        except ValueError as exc:
            raise ValueError(f"must be sizes per device such as {DEVICE_BUDGETS_EXAMPLE}: "
                             f"{exc}") from None
        return ",".join("=".join(part.strip() for part in item.split("=", 1))
                        for item in value.split(","))
    if isinstance(value, bool):
        raise ValueError(f"must be {MAX_MEMORY_EXPECTED}, got {value!r}")
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER_TEXT.match(value)):
        fraction = float(value)
        if not 0 < fraction <= 1:
            raise ValueError(f"must be {MAX_MEMORY_EXPECTED}, got {value!r}")
        return fraction
    if isinstance(value, str):
        try:
            if size_bytes(value) > 0:
                return value.strip()
        except ValueError:
            pass
    raise ValueError(f"must be {MAX_MEMORY_EXPECTED}, got {value!r}")


def parse_extract(value: Any) -> str:
    """An answer-extraction spec: a preset's name or a regex with one capture group."""
    if not isinstance(value, str):
        raise ValueError(f"must be a preset name or a regex, got {value!r}")
    return check_extract_spec(value)


def parse_prompt_template(value: Any) -> str:
    """A prompt template that parses: Jinja2, or the older {field} form."""
    return _parsed_template(value, jinja=None)


def parse_jinja_template(value: Any) -> str:
    """A target or choices template: Jinja2 (a field's name is one too)."""
    return _parsed_template(value, jinja=True)


def _parsed_template(value: Any, *, jinja: bool | None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a template, got {value!r}")
    try:
        check_template(value, jinja=jinja)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


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


@dataclass(frozen=True)
class Key:
    """Everything said about one config key besides its default."""

    name: str
    rule: Rule
    flags: tuple[str, ...]  # e.g. ("-m", "--model"); empty: set in the file or the app only
    metavar: str | None
    label: str  # the app form's label
    placeholder: str  # the app form's text for an unset value
    may_change_on_resume: bool  # only how the work is done, not what is generated or scored
    app_flag: bool  # the flag belongs to the app (the main command), not to tune/bench

    @property
    def help(self) -> str:
        return self.rule.help

    @property
    def flag(self) -> str:
        """The flag as error messages name it: '-b/--batch-size'."""
        return "/".join(self.flags) if self.flags else "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return self.name


def setting(default: Any, help: str, *, label: str, flags: tuple[str, ...] = (),
            metavar: str | None = None, placeholder: str = "", may_change: bool = False,
            app_flag: bool = False, **rule: Any) -> Any:
    """Declare a config key: its default, its help, its flag, its form label, its resume
    rule and its validation rule."""
    meta = {"key": dict(rule=Rule(help=help, **rule), flags=flags, metavar=metavar,
                        label=label, placeholder=placeholder, may_change_on_resume=may_change,
                        app_flag=app_flag)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class EvalConfig:
    # ── the fields users touch most: first in the app's form ───────────────────────
    model: str | None = setting(
        None, "Model directory, or a hub id already in the local cache; unset runs the demo.",
        type="str", optional=True, flags=("-m", "--model"), metavar="PATH", label="model",
        placeholder="built-in demo")
    data: str | None = setting(
        None, "Dataset file: .jsonl, .json (a list of objects) or .csv; unset runs the demo.",
        type="str", optional=True, flags=("-d", "--data"), metavar="FILE", label="data",
        placeholder="built-in demo")
    batch_size: int | str = setting(
        4, "Samples generated together; 'auto' tunes it first (short probes on the longest "
        "prompts, at most a tenth of the run; cached per model and device).", type="int",
        minimum=1, allow_auto=True,
        flags=("-b", "--batch-size"), metavar="N", label="batch size", may_change=True)
    max_tokens: int = setting(
        512, "Most new tokens generated per sample.", type="int", minimum=1,
        flags=("--max-tokens",), metavar="N", label="max tokens")
    torch_dtype: str = setting(
        "auto", "Weights dtype: auto (bf16 or fp16 on GPU, fp32 on CPU), float16, bfloat16 "
        "or float32.", type="str", choices=DTYPES, flags=("--torch-dtype",), label="dtype")
    device: str = setting(
        "auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.",
        type="str", pattern=DEVICE_PATTERN, flags=("--device",), metavar="DEVICE",
        label="device", may_change=True)
    output_dir: str | None = setting(
        None, "Results directory; unset means eval_results/<timestamp>.",
        type="str", optional=True, flags=("-o", "--output"), metavar="DIR", label="output",
        placeholder="eval_results/<time>", may_change=True)
    oom_policy: str = setting(
        "bisect", "On OOM: 'bisect' splits the failed batch in halves until they fit and "
        "keeps the smaller size for the rest of the run; 'single' regenerates the failed "
        "batch one sample at a time.", type="str", choices=tuple(OOM_POLICIES),
        flags=("--oom-policy",), label="on OOM", may_change=True)
    metrics: list[str] = setting(
        list(DEFAULT_METRICS), "Metrics to compute: " + ", ".join(METRIC_FUNCTIONS)
        + " (a choice task ignores them: it reports " + " and ".join(CHOICE_METRICS) + ").",
        type="list[str]", choices=tuple(METRIC_FUNCTIONS), label="metrics")
    limit: int | None = setting(
        None, "Evaluate only the first N samples.", type="int", optional=True, minimum=1,
        flags=("--limit",), metavar="N", label="limit", placeholder="all")
    simulate_oom_above: int | None = setting(
        None, "Rehearse OOM: every generate call with more than N rows fails as CUDA OOM.",
        type="int", optional=True, minimum=1, flags=("--simulate-oom-above",), metavar="N",
        label="fake OOM >", placeholder="off", may_change=True)
    lang: str | None = setting(
        None, "Log language, en or zh; unset follows the locale.", type="str", optional=True,
        choices=LANGUAGES, flags=("--lang",), label="log lang", placeholder="locale",
        may_change=True)
    theme: str | None = setting(
        None, "Colour theme of the app: a built-in name or a TOML theme's name "
        "(from themes/ or ~/.config/tui-eval/themes); unset uses the default.",
        type="str", optional=True, flags=("--theme",), metavar="NAME", label="theme",
        may_change=True, app_flag=True)
    gpu_poll_seconds: float = setting(
        1.0, "Seconds between GPU/CPU gauge readings in the app.",
        type="float", minimum=0.2, maximum=60.0, label="poll (s)", may_change=True)
    # ── the rest, in the form's order ───────────────────────────────────────────────
    prompt_field: str | None = setting(
        None, "Dataset field with the prompt; unset finds prompt/question/input/instruction.",
        type="str", optional=True, label="prompt field")
    answer_field: str | None = setting(
        None, "Dataset field with the reference; unset finds answer/output/target/reference/label.",
        type="str", optional=True, label="answer field")
    id_field: str | None = setting(
        None, "Dataset field with the sample id; unset uses 'id' or the line number.",
        type="str", optional=True, label="id field")
    prompt_template: str = setting(
        "{prompt}", "Prompt text over each record's fields: a Jinja2 template "
        "('Question: {{question}}\\nAnswer:', as lm-eval task files write them) or, without "
        "Jinja's marks, {field} placeholders; {prompt} is the prompt field.", type="str",
        parse=parse_prompt_template, flags=("--prompt-template",), metavar="TEMPLATE",
        label="template")
    target_template: str | None = setting(
        None, "The reference (a choice task: the gold choice, its text or index) as a Jinja2 "
        "template over the record's fields, or a field's name; also each few-shot example's "
        "answer. Unset reads the answer field.", type="str", optional=True,
        parse=parse_jinja_template, label="target tmpl", placeholder="answer field")
    choices_template: str | None = setting(
        None, "Choice tasks: the choices as a Jinja2 template that gives a list "
        "('{{[opa, opb]}}'), a field's name or a list's text ('[\"yes\", \"no\"]'); unset "
        "reads choices_field.", type="str", optional=True, parse=parse_jinja_template,
        label="choice tmpl",
        placeholder="choices field")
    num_fewshot: int = setting(
        0, "Few-shot examples put before each prompt: each example's prompt, "
        "target_delimiter and answer, then fewshot_delimiter (lm-eval's rule).", type="int",
        minimum=0, flags=("--num-fewshot",), metavar="K", label="few-shot K")
    fewshot_file: str | None = setting(
        None, "Dataset the few-shot examples come from (any supported format, rendered with "
        "the same templates); unset takes them from the data itself, never a record's own.",
        type="str", optional=True, flags=("--fewshot-file",), metavar="FILE",
        label="shots from", placeholder="the data")
    fewshot_delimiter: str = setting(
        "\n\n", "Text after each few-shot example.", type="str", label="shots sep")
    fewshot_seed: int | None = setting(
        None, "Draw each record's few-shot examples with this seed, as lm-eval's default "
        "sampler does (1234, its default, picks what it picks); unset gives every record "
        "the first num_fewshot examples.", type="int", optional=True, minimum=0,
        flags=("--fewshot-seed",), metavar="N", label="shots seed", placeholder="first K")
    chat_template: bool = setting(
        False, "Wrap prompts in the tokenizer's chat template when it has one; few-shot "
        "examples become user/assistant turns.", type="bool", label="chat tmpl")
    system_prompt: str | None = setting(
        None, "A system turn before the prompt with chat_template (without it, text put in "
        "front of the prompt, as lm-eval does).", type="str", optional=True,
        flags=("--system-prompt",), metavar="TEXT", label="system msg", placeholder="none")
    do_sample: bool = setting(False, "Sample instead of greedy decoding.", type="bool",
                              label="sample")
    temperature: float = setting(
        1.0, "Sampling temperature (with do_sample).", type="float", minimum=0.0,
        label="temperature")
    top_p: float = setting(
        1.0, "Nucleus sampling mass (with do_sample).", type="float", minimum=0.0, maximum=1.0,
        label="top p")
    seed: int = setting(0, "Random seed for sampling.", type="int", minimum=0, label="seed")
    stop: list[str] = setting(
        [], "Stop strings: each prediction ends where one first appears. --stop is "
        "repeatable and reads TOML's escapes (--stop '\\n' --stop 'Q:'); given, it replaces "
        "the file's list.", type="list[str]", flags=("--stop",), metavar="TEXT", label="stop",
        placeholder="none")
    on_bad_line: str = setting(
        "error", "A malformed dataset line: 'error' stops, 'skip' skips and counts it.",
        type="str", choices=BAD_LINE_POLICIES, label="bad lines")
    tune_mode: str = setting(
        "power", "How batch sizes are searched: 'power' doubles from 1 until OOM, the max "
        "batch size or the dataset size; 'binsearch' then bisects to the exact largest size "
        "that fits; 'memory' sizes from the KV cache and activations (what -b auto does on "
        "CUDA).",
        type="str", choices=tuple(TUNE_MODES),
        flags=("--tune-mode",), label="tune mode", may_change=True)
    max_batch_size: int = setting(
        256, "-b auto: the largest batch size probed.", type="int", minimum=1,
        flags=("--max-batch-size",), metavar="N", label="max batch", may_change=True)
    memory_headroom: float = setting(
        0.9, "-b auto: never choose a size whose peak memory is above this share of the "
        "device (or of max_memory).", type="float", minimum=0.1, maximum=1.0,
        flags=("--memory-headroom",), metavar="F", label="headroom", may_change=True)
    max_memory: float | str | None = setting(
        None, "Cap this process's CUDA memory: a fraction of the card (0.5) or a size "
        "(20GiB); ignored on CPU. With device_map, a size per device instead "
        f"({DEVICE_BUDGETS_EXAMPLE}): where the weights may go.", type="str", optional=True,
        parse=parse_max_memory,
        flags=("--max-memory",), metavar="CAP", label="max memory", placeholder="no cap",
        may_change=True)
    extract: str | None = setting(
        None, "Cut the answer out of each prediction before scoring: a preset ("
        + ", ".join(EXTRACT_PRESETS) + ") or a regex with one capture group (its last "
        "match counts); unset scores the whole prediction.", type="str", optional=True,
        parse=parse_extract, flags=("--extract",), metavar="SPEC", label="extract",
        placeholder="off")
    truncate: str = setting(
        "none", "A prompt too long for the model's context with max_tokens: 'none' stops "
        "before the first batch and names it; 'left' cuts such prompts from the left to fit "
        "(counted as n_truncated).", type="str", choices=TRUNCATE_SIDES,
        flags=("--truncate",), label="truncate")
    task: str | None = setting(
        None, "generate: generate an answer and score it with `metrics`; choice: pick the "
        "choice with the highest log-likelihood (acc, acc_norm). Unset: choice when the "
        "data's first record holds a list under choices_field.", type="str", optional=True,
        choices=TASKS, flags=("--task",), label="task", placeholder="from data")
    choices_field: str = setting(
        "choices", "Choice tasks: the dataset field with each sample's list of choices.",
        type="str", label="choice field")
    target_delimiter: str = setting(
        "auto", "The text put between a context and each choice (choice tasks) and between a "
        "few-shot example's prompt and its answer. 'auto': ' ', except before a choice under "
        "chat_template, where the choice follows the assistant header with none, as in "
        "lm-eval's --apply_chat_template; any other text is kept as given (the built-in demo, "
        "whose tokenizer has no space, uses '' for choices).", type="str", allow_auto=True,
        flags=("--target-delimiter",), metavar="TEXT", label="delimiter")
    compile: str = setting(
        "auto", "Faster decoding with a static KV cache: 'graph' captures the decode step as a "
        "CUDA graph per shape (seconds of setup; greedy only, sampling runs eagerly); 'on' "
        "compiles it with torch.compile (~40 s per shape, cached on disk); 'off' is eager; "
        "'auto': graph on CUDA when the eager time left after the first batch would exceed "
        "the setup it costs, off on CPU and MPS.",
        type="str", choices=COMPILE_MODES, flags=("--compile",), label="compile",
        may_change=True)
    retune: bool = setting(
        False, "-b auto: probe again even when the tune cache (~/.cache/tui-eval/tune.json) "
        "holds a result for this model, device, dtype, compile, max_tokens and prompt length.",
        type="bool", flags=("--retune",), label="retune", may_change=True)
    device_map: str | None = setting(
        None, "Spread a model too large for one GPU over every GPU (and the CPU when they "
        "are full) with accelerate: auto, balanced, balanced_low_0 or sequential; unset "
        "loads it whole on the device.", type="str", optional=True, choices=DEVICE_MAPS,
        flags=("--device-map",), label="device map", placeholder="one device",
        may_change=True)

    @property
    def metric_names(self) -> list[str]:
        """What the run reports: acc and acc_norm for a choice task, else ``metrics``."""
        return list(CHOICE_METRICS) if self.task == "choice" else list(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build_keys() -> dict[str, Key]:
    return {f.name: Key(name=f.name, **f.metadata["key"]) for f in dataclasses.fields(EvalConfig)}


KEYS: dict[str, Key] = _build_keys()
DEFAULTS: dict[str, Any] = EvalConfig().to_dict()


def rules() -> dict[str, Rule]:
    return {name: key.rule for name, key in KEYS.items()}


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
    rule = KEYS[key].rule
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
        if not math.isfinite(value):  # nan passes every comparison, and is not JSON
            raise ValueError(f"must be {_describe(rule, with_auto=False)}, got {value!r}")
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


# ── text, as typed in a flag or a form field, to values and back ──────────────────────
#
# The form shows every value as a user would type it in TOML: a plain string as it is, a
# string that plain text cannot show (control characters, spaces at its ends, empty, an
# opening quote) as a TOML string ("\nQ:"), a list as a TOML array (["\n", "Q:"]), a list
# of names as "a, b". What is typed back is read with the same rules, so that every value
# round-trips exactly: parse_text(rule, format_text(value, rule)) == value.

_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"',
            "\\": "\\"}
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.?)", re.DOTALL)
_SHOWN_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r",
                  '"': '\\"', "\\": "\\\\"}


def unescape(text: str) -> str:
    """TOML's basic-string escapes (\\n, \\t, \\", \\\\, \\uXXXX …) in unquoted text, as
    typed after --stop; ValueError names an escape TOML does not have."""
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[:1] in ("u", "U") and len(code) > 1:
            try:
                return chr(int(code[1:], 16))
            except ValueError:  # above U+10FFFF
                raise ValueError(f"\\{code} is not a character") from None
        if code in _ESCAPES:
            return _ESCAPES[code]
        raise ValueError(f"unknown escape '\\{code}' (TOML's are \\n \\t \\\" \\\\ "
                         "\\uXXXX; write \\\\ for a backslash)")
    return _ESCAPE.sub(one, text)


def _needs_escape(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quoted, control characters escaped."""
    out = []
    for char in text:
        if char in _SHOWN_ESCAPES:
            out.append(_SHOWN_ESCAPES[char])
        elif _needs_escape(char):
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _plain(text: str) -> bool:
    """Whether a string shows as itself: nothing invisible, nothing read as a quote."""
    return (text != "" and text == text.strip() and not text.startswith(('"', "'"))
            and not any(_needs_escape(char) for char in text))


def format_text(value: Any, rule: Rule | None = None) -> str:
    """A value as a form field shows it (and as it would be typed back)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if not value:
            return ""
        if rule is not None and rule.choices and all(item in rule.choices for item in value):
            return ", ".join(value)  # names: read as they are
        return "[" + ", ".join(toml_string(item) if isinstance(item, str) else repr(item)
                               for item in value) + "]"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, str):
        return value if _plain(value) else toml_string(value)
    return str(value)


def _toml_value(text: str, what: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"must be {what} as TOML writes it, got {text!r} "
                         f"({toml_error_location(exc)[1]})") from None


def parse_text(rule: Rule, text: str) -> Any:
    """What the user typed in a form field, as the value the rule checks: numbers become
    numbers; a string in quotes is a TOML string (escapes read), other text is taken as
    typed; a list is a TOML array, or comma-separated items (escapes read); an empty
    optional field is unset. ValueError: a quoted string or an array TOML cannot read."""
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
        return {"true": True, "false": False}.get(stripped.lower(), stripped)
    if rule.type == "list[str]":
        if stripped.startswith("["):
            return _toml_value(stripped, 'a TOML array such as ["\\n", "Q:"]')
        return [unescape(item.strip()) for item in stripped.split(",") if item.strip()]
    if stripped.startswith(('"', "'")):
        return _toml_value(stripped, "a TOML string such as \"\\nQ:\"")
    return text


def parse_flag(rule: Rule, value: Any) -> Any:
    """A flag's value as the rule checks it: the shell has already given the exact text,
    so a string is taken as it is; a repeatable flag's items (--stop) read escapes."""
    if isinstance(value, list):
        return [unescape(item) if isinstance(item, str) else item for item in value]
    if isinstance(value, str) and rule.type == "str":
        return None if value.strip() == "" and rule.optional else value
    return parse_text(rule, value) if isinstance(value, str) else value


def validate_text(key: str, text: str) -> tuple[Any, str | None]:
    """(value, None) when valid, else (None, 'key: message') with the CLI's wording."""
    try:
        return check_value(key, parse_text(KEYS[key].rule, text)), None
    except ValueError as exc:
        return None, f"{key}: {exc}"


def shows_exactly(key: str, value: Any) -> bool:
    """Whether the form's text for ``value`` reads back as that very value."""
    try:
        return check_value(key, parse_text(KEYS[key].rule,
                                           format_text(value, KEYS[key].rule))) == value
    except ValueError:
        return False


# ── the TOML file and the layers ──────────────────────────────────────────────────────

def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def toml_error_location(exc: tomllib.TOMLDecodeError) -> tuple[int | None, str]:
    """(line, reason) of a TOML syntax error. Python 3.14 gives the line as an attribute;
    before, tomllib only writes it at the end of the message ("… (at line 2, column 9)")."""
    message = str(getattr(exc, "msg", None) or exc)
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    match = _TOML_POSITION.search(message)
    if match is not None:
        message = message[:match.start()]
        line, column = line or int(match.group(1)), column or int(match.group(2))
    return line, f"{message} (column {column})" if column else message


def load_config_file(path: Path) -> dict[str, Any]:
    """Read and validate a TOML config; errors name the file, the line and the key."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is no TOML
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        bad_line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{bad_line}: not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, reason = toml_error_location(exc)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: invalid TOML: {reason}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        line = _line_of(text, key)
        where = f"{path}:{line}" if line else str(path)
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        try:
            values[key] = check_value(key, value)
        except ValueError as exc:
            raise ConfigError(f"{where}: key '{key}' {exc}") from None
    return values


@dataclass(frozen=True)
class ConfigSource:
    """The TOML file a run's settings came from, named in the run log's first lines."""

    path: str
    keys: tuple[str, ...]  # the keys the file sets, in its order
    found: bool = False  # ./eval.toml picked up from the working directory, not named by -c


def resolve_config(config_file: Path | None, flag_values: dict[str, Any],
                   base: dict[str, Any] | None = None) -> EvalConfig:
    """defaults ◄ base ◄ config file ◄ flags, each layer validated; a flag's error names
    the flag. ``base`` holds already validated values (a resumed run's saved config);
    flag values are the text typed (or values already of the key's type)."""
    return resolve_with_source(config_file, flag_values, base)[0]


def resolve_with_source(config_file: Path | None, flag_values: dict[str, Any],
                        base: dict[str, Any] | None = None, *, found: bool = False,
                        task_values: dict[str, Any] | None = None,
                        ) -> tuple[EvalConfig, ConfigSource | None]:
    """``resolve_config``, and the file with the keys it set (None without a file).
    ``task_values``: a task file's values, already validated, between the file and flags."""
    merged: dict[str, Any] = dict(base or {})
    source = None
    if config_file is not None:
        from_file = load_config_file(config_file)
        merged.update(from_file)
        source = ConfigSource(str(config_file), tuple(from_file), found)
    merged.update(task_values or {})
    for name, value in flag_values.items():
        if value is None:
            continue
        key = KEYS[name]
        try:
            merged[name] = check_value(name, parse_flag(key.rule, value))
        except ValueError as exc:
            raise ConfigError(f"{key.flag}: {exc}") from None
    config = EvalConfig(**merged)
    check_together(config)
    return config, source


def check_together(config: EvalConfig) -> None:
    """Keys valid one by one that do not go together: ConfigError naming both."""
    if is_per_device(config.max_memory) and config.device_map is None:
        raise ConfigError(f"--max-memory {config.max_memory}: a size per device needs "
                          "--device-map (" + ", ".join(DEVICE_MAPS) + ")")
    if config.max_memory is not None and not is_per_device(config.max_memory) \
            and config.device_map is not None:
        raise ConfigError(f"--max-memory {config.max_memory}: with --device-map give a "
                          f"size per device, such as {DEVICE_BUDGETS_EXAMPLE}")


def find_default_config(cwd: Path | None = None) -> Path | None:
    candidate = (cwd or Path.cwd()) / "eval.toml"
    return candidate if candidate.is_file() else None
