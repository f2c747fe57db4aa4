"""lm-evaluation-harness task files (YAML) read offline into config values.

A task file says how a benchmark's records become prompts and how answers are scored;
here each of its keys becomes a config key (``KEY_MAP`` below says which), its dataset
splits become local files, and anything that would change the results and has no
counterpart here is refused by name (exit 2), never dropped. ``!function`` (Python code in
lm-eval's task package) is refused: write it as a Jinja2 template instead.

Splits are found under the data directory (``--data-dir``; the task file's own directory
when unset), as ``<dataset_path>/<dataset_name>/<split>.<ext>``, ``<dataset_path>/<split>.<ext>``,
``<dataset_name>/<split>.<ext>`` or ``<split>.<ext>``, for each supported format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_eval.config import DEFAULTS, check_value
from tui_eval.errors import ConfigError
from tui_eval.prompts import FIELD_NAME, LM_EVAL_FEWSHOT_SEED, is_jinja

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
OUTPUT_TYPES = {"generate_until": "generate", "multiple_choice": "choice"}
# lm-eval's defaults for what a task file leaves out (HFLM's max_gen_toks, the evaluator's
# fewshot seed): the same task file asks for the same prompts and lengths
LM_EVAL_MAX_GEN_TOKS = 256
# what a task file may hold that changes nothing here (names, bookkeeping)
IGNORED_KEYS = ("task", "tag", "group", "metadata", "should_decontaminate",
                "doc_to_decontamination_query", "task_alias")
SUPPORTED_KEYS = ("include", "dataset_path", "dataset_name", "test_split", "validation_split",
                  "training_split", "fewshot_split", "doc_to_text", "doc_to_target",
                  "doc_to_choice", "target_delimiter", "fewshot_delimiter", "num_fewshot",
                  "output_type", "generation_kwargs", "filter_list", "metric_list",
                  "description", "fewshot_config", "repeats")
GENERATION_KWARGS = {"until": "stop", "max_gen_toks": "max_tokens", "do_sample": "do_sample",
                     "temperature": "temperature", "top_p": "top_p"}
# lm-eval's name → ours (generation): its exact_match compares the text as it is
METRICS = {"exact_match": "exact_match_strict"}
CHOICE_METRIC_NAMES = ("acc", "acc_norm")
METRIC_OPTIONS = {"aggregation": "mean", "higher_is_better": True}
# the task file's key each config key comes from, to name it in an error
SOURCE_KEYS = {"prompt_template": "doc_to_text", "target_template": "doc_to_target",
               "choices_template": "doc_to_choice", "stop": "generation_kwargs",
               "max_tokens": "generation_kwargs", "do_sample": "generation_kwargs",
               "temperature": "generation_kwargs", "top_p": "generation_kwargs",
               "data": "test_split", "fewshot_file": "fewshot_split", "extract": "filter_list",
               "metrics": "metric_list", "system_prompt": "description", "task": "output_type"}
LM_EVAL_REGEX_FALLBACK = "[invalid]"
# lm-eval's remove_whitespace filter strips the output: the whole text as one match, which
# extraction strips
STRIP_PATTERN = r"(?s)\A(.*)\Z"


@dataclass(frozen=True)
class FunctionRef:
    """A ``!function module.name`` tag: Python code that tui-eval does not run."""

    name: str
    where: str  # file:line


def _yaml_loader(path: Path) -> Any:
    import yaml  # only once a task file is read: not on the --help path

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: Any, node: Any) -> FunctionRef:
        return FunctionRef(str(loader.construct_scalar(node)),
                           f"{path}:{node.start_mark.line + 1}")

    Loader.add_constructor("!function", function)
    return Loader


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read task file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_yaml_loader(path))  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a task file is a mapping of keys (task, dataset_path, "
                          "doc_to_text, …)")
    return data, text


class TaskFile:
    """One task file, its ``include`` chain merged (the including file's keys win)."""

    def __init__(self, path: Path, data_dir: Path | None = None) -> None:
        self.path = path
        self.data_dir = data_dir if data_dir is not None else path.parent
        self.raw, self.text = self._merged(path, seen=())

    def _merged(self, path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], str]:
        if not path.is_file():
            where = f"{seen[-1]}: include " if seen else ""
            raise ConfigError(f"{where}{path}: task file not found")
        if path.resolve() in seen:
            raise ConfigError(f"{path}: includes itself")
        data, text = _read_yaml(path)
        include = data.pop("include", None)
        if include is None:
            return data, text
        if not isinstance(include, str):
            raise ConfigError(f"{self._where(path, text, 'include')}: include must be a file "
                              "name")
        base, _ = self._merged(path.parent / include, (*seen, path.resolve()))
        return {**base, **data}, text

    def _where(self, path: Path, text: str, key: str) -> str:
        for number, line in enumerate(text.splitlines(), start=1):
            if re.match(rf"^\s*{re.escape(key)}\s*:", line):
                return f"{path}:{number}"
        return str(path)

    def where(self, key: str) -> str:
        """'file:line' of a top-level key (the file given, or just its name)."""
        return self._where(self.path, self.text, key)

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {key}: {message}")

    # ── reading ───────────────────────────────────────────────────────────────────────

    def config_values(self) -> dict[str, Any]:
        """The config keys this task file sets, each checked by the config's own rules."""
        raw = self.raw
        self._refuse_functions(raw, ())
        unsupported = [key for key in raw if key not in SUPPORTED_KEYS + IGNORED_KEYS]
        if unsupported:
            named = ", ".join(f"{key} (line {self.where(key).rpartition(':')[2]})"
                              if self.where(key) != str(self.path) else key
                              for key in unsupported)
            raise ConfigError(f"{self.path}: keys tui-eval does not support: {named} "
                              "(remove them, or set what they do with tui-eval's own keys)")
        values: dict[str, Any] = {}
        task = self._task()
        values["task"] = task
        values.update(self._splits())
        values.update(self._templates(task))
        values.update(self._fewshot(values))
        values.update(self._generation(task))
        values.update(self._scoring(task))
        for key, value in values.items():
            try:
                values[key] = check_value(key, value)
            except ValueError as exc:
                source = SOURCE_KEYS.get(key, key)
                raise self.fail(source, str(exc)) from None
        return values

    def _refuse_functions(self, value: Any, keys: tuple[str, ...]) -> None:
        if isinstance(value, FunctionRef):
            name = ".".join(keys)
            raise ConfigError(f"{value.where}: {name}: !function {value.name} is "
                              "Python code from lm-eval's task package, which tui-eval does "
                              "not run: write it as a Jinja2 template over the record's fields")
        if isinstance(value, dict):
            for key, item in value.items():
                self._refuse_functions(item, (*keys, str(key)))
        elif isinstance(value, list):
            for number, item in enumerate(value):
                self._refuse_functions(item, (*keys, str(number)))

    def _task(self) -> str:
        output_type = self.raw.get("output_type", "generate_until")
        if output_type not in OUTPUT_TYPES:
            raise self.fail("output_type", f"{output_type!r} is not supported (tui-eval runs "
                            + " and ".join(OUTPUT_TYPES) + ")")
        repeats = self.raw.get("repeats", 1)
        if repeats != 1:
            raise self.fail("repeats", f"{repeats!r}: tui-eval generates once per record")
        return OUTPUT_TYPES[output_type]

    def _split_file(self, split: str) -> Path | None:
        """The local file holding a split, or None."""
        path_name = self.raw.get("dataset_path")
        name = self.raw.get("dataset_name")
        folders: list[Path] = []
        if isinstance(path_name, str):
            if isinstance(name, str):
                folders.append(self.data_dir / path_name / name)
            folders.append(self.data_dir / path_name)
        if isinstance(name, str):
            folders.append(self.data_dir / name)
        folders.append(self.data_dir)
        for folder in folders:
            for suffix in DATA_SUFFIXES:
                candidate = folder / f"{split}{suffix}"
                if candidate.is_file():
                    return candidate
        return None

    def _looked_in(self, split: str) -> str:
        path_name = self.raw.get("dataset_path")
        name = self.raw.get("dataset_name")
        parts = [p for p in (path_name, name) if isinstance(p, str)]
        shown = self.data_dir / "/".join(parts) if parts else self.data_dir
        return (f"no file for split '{split}' under {self.data_dir} (looked for "
                f"{shown}/{split}.jsonl and the like; give the data directory with "
                "--data-dir)")

    def _splits(self) -> dict[str, Any]:
        for key in ("dataset_path", "dataset_name", "test_split", "validation_split",
                    "training_split", "fewshot_split"):
            if key in self.raw and not isinstance(self.raw[key], str):
                raise self.fail(key, f"must be a name, got {self.raw[key]!r}")
        evaluated_key = next((key for key in ("test_split", "validation_split")
                              if key in self.raw), None)
        if evaluated_key is None:
            raise ConfigError(f"{self.path}: no test_split or validation_split: which split "
                              "is evaluated?")
        evaluated = self._split_file(self.raw[evaluated_key])
        if evaluated is None:
            raise self.fail(evaluated_key, self._looked_in(self.raw[evaluated_key]))
        return {"data": str(evaluated)}

    def _template(self, key: str, value: Any, *, field_as_jinja: bool) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(key, f"must be a Jinja2 template or a field's name, got {value!r}")
        if isinstance(value, int):
            raise self.fail(key, "an index (lm-eval's several-inputs tasks) is not supported")
        if is_jinja(value):
            return value
        if FIELD_NAME.fullmatch(value):  # lm-eval reads a bare name as the record's field
            return "{{" + value + "}}" if field_as_jinja else value
        # plain text, the same for every record: a Jinja2 template that is only text
        return "{% raw %}" + value + "{% endraw %}"

    def _templates(self, task: str) -> dict[str, Any]:
        raw = self.raw
        values: dict[str, Any] = {}
        if "doc_to_text" not in raw:
            raise ConfigError(f"{self.path}: no doc_to_text: how does a record read?")
        values["prompt_template"] = self._template("doc_to_text", raw["doc_to_text"],
                                                   field_as_jinja=True)
        if "doc_to_target" not in raw:
            raise ConfigError(f"{self.path}: no doc_to_target: what is the answer?")
        target = raw["doc_to_target"]
        values["target_template"] = (str(target) if isinstance(target, int)
                                     and not isinstance(target, bool)
                                     else self._template("doc_to_target", target,
                                                         field_as_jinja=False))
        choice = raw.get("doc_to_choice")
        if task == "choice":
            if choice is None:
                raise self.fail("output_type", "multiple_choice needs doc_to_choice")
            if isinstance(choice, dict):
                choice = list(choice.values())
            if isinstance(choice, list):
                values["choices_template"] = "{% raw %}" + json.dumps(
                    [str(c) for c in choice], ensure_ascii=False) + "{% endraw %}"
            else:
                values["choices_template"] = self._template("doc_to_choice", choice,
                                                            field_as_jinja=False)
        elif choice is not None:
            raise self.fail("doc_to_choice", "only a multiple_choice task has choices")
        for key in ("target_delimiter", "fewshot_delimiter"):
            if key in raw:
                values[key] = raw[key]
        if values.get("target_delimiter") == " ":
            # lm-eval's default spelled out, which lm-eval drops before a choice under
            # --apply_chat_template: what "auto" does (a space everywhere else)
            values["target_delimiter"] = "auto"
        description = raw.get("description")
        if description:
            if not isinstance(description, str) or is_jinja(description):
                raise self.fail("description", "only plain text is supported (it becomes "
                                "system_prompt), not a template")
            values["system_prompt"] = description
        return values

    def _fewshot(self, values: dict[str, Any]) -> dict[str, Any]:
        raw = self.raw
        out: dict[str, Any] = {"num_fewshot": raw.get("num_fewshot", 0)}
        config = raw.get("fewshot_config") or {}
        if not isinstance(config, dict):
            raise self.fail("fewshot_config", f"must be a mapping, got {config!r}")
        extra = [key for key in config if key != "sampler"]
        if extra:
            raise self.fail("fewshot_config", "not supported: " + ", ".join(extra))
        sampler = config.get("sampler", "default")
        if sampler not in ("default", "first_n"):
            raise self.fail("fewshot_config", f"sampler {sampler!r} is not supported "
                            "(default, first_n)")
        # lm-eval's default sampler draws with its seed; first_n takes the first K
        out["fewshot_seed"] = None if sampler == "first_n" else LM_EVAL_FEWSHOT_SEED
        # lm-eval's rule: fewshot_split, else the training, validation or test split; the
        # evaluated split itself leaves fewshot_file unset (a record is not its own example)
        key = next(key for key in ("fewshot_split", "training_split", "validation_split",
                                   "test_split") if key in raw)
        found = self._split_file(raw[key])
        if found is None and out["num_fewshot"]:
            raise self.fail(key, self._looked_in(raw[key]) + " for the few-shot examples")
        if found is not None and found != Path(values["data"]):
            out["fewshot_file"] = str(found)
        return out

    def _generation(self, task: str) -> dict[str, Any]:
        kwargs = self.raw.get("generation_kwargs")
        if task == "choice":
            if kwargs:
                raise self.fail("generation_kwargs", "a multiple_choice task generates nothing")
            return {}
        kwargs = kwargs or {}
        if not isinstance(kwargs, dict):
            raise self.fail("generation_kwargs", f"must be a mapping, got {kwargs!r}")
        unknown = [key for key in kwargs if key not in GENERATION_KWARGS]
        if unknown:
            raise self.fail("generation_kwargs", "not supported: " + ", ".join(unknown)
                            + " (supported: " + ", ".join(GENERATION_KWARGS) + ")")
        out: dict[str, Any] = {"max_tokens": LM_EVAL_MAX_GEN_TOKS}
        # lm-eval stops at the fewshot delimiter when the task names no stop strings
        out["stop"] = [self.raw.get("fewshot_delimiter", DEFAULTS["fewshot_delimiter"])]
        for key, value in kwargs.items():
            name = GENERATION_KWARGS[key]
            out[name] = [value] if name == "stop" and isinstance(value, str) else value
        return out

    def _scoring(self, task: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        metrics = self.raw.get("metric_list")
        if metrics is not None:
            out.update(self._metrics(task, metrics))
        filters = self.raw.get("filter_list")
        if filters is not None:
            if task == "choice":
                raise self.fail("filter_list", "a multiple_choice task has no output to "
                                "filter")
            out["extract"] = self._extract(filters)
        return out

    def _metrics(self, task: str, metrics: Any) -> dict[str, Any]:
        if not isinstance(metrics, list):
            raise self.fail("metric_list", f"must be a list, got {metrics!r}")
        names: list[str] = []
        for item in metrics:
            if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
                raise self.fail("metric_list", f"each entry names a metric, got {item!r}")
            name = item["metric"]
            known = CHOICE_METRIC_NAMES if task == "choice" else tuple(METRICS)
            if name not in known:
                raise self.fail("metric_list", f"metric {name!r} is not supported here "
                                "(supported: " + ", ".join(known) + ")")
            for option, value in item.items():
                if option != "metric" and METRIC_OPTIONS.get(option, object()) != value:
                    raise self.fail("metric_list", f"{name}: {option}: {value!r} is not "
                                    "supported (exact_match compares the text character for "
                                    "character, as lm-eval's defaults do)")
            if task != "choice":
                names.append(METRICS[name])
        return {"metrics": names} if task != "choice" else {}

    def _extract(self, filters: Any) -> str | None:
        if not isinstance(filters, list):
            raise self.fail("filter_list", f"must be a list, got {filters!r}")
        if len(filters) != 1:
            shown = ", ".join(str(f.get("name")) if isinstance(f, dict) else "?"
                              for f in filters)
            raise self.fail("filter_list", f"{len(filters)} pipelines ({shown}): tui-eval "
                            "applies one; keep the one to score by")
        pipeline = filters[0]
        steps = pipeline.get("filter") if isinstance(pipeline, dict) else None
        if not isinstance(steps, list):
            raise self.fail("filter_list", "a pipeline is {name, filter: [steps]}")
        pattern: str | None = None
        for step in steps:
            function = step.get("function") if isinstance(step, dict) else None
            if function == "take_first":
                continue
            if function not in ("regex", "remove_whitespace") or pattern is not None:
                raise self.fail("filter_list", f"filter {function!r} is not supported (one "
                                "regex or remove_whitespace, then take_first)")
            pattern = self._regex_step(step) if function == "regex" else STRIP_PATTERN
        return pattern

    def _regex_step(self, step: dict[str, Any]) -> str:
        extra = [key for key in step if key not in ("function", "regex_pattern",
                                                    "group_select", "fallback")]
        if extra:
            raise self.fail("filter_list", "regex: not supported: " + ", ".join(extra))
        pattern = step.get("regex_pattern", r"#### (\-?[0-9\.\,]+)")  # lm-eval's default
        fallback = step.get("fallback", LM_EVAL_REGEX_FALLBACK)
        if fallback != LM_EVAL_REGEX_FALLBACK:
            raise self.fail("filter_list", f"regex fallback {fallback!r}: no match scores 0 "
                            "here, as lm-eval's '[invalid]' does")
        try:
            groups = re.compile(pattern).groups
        except (re.error, TypeError) as exc:
            raise self.fail("filter_list", f"bad regex {pattern!r}: {exc}") from None
        if groups != 1:
            raise self.fail("filter_list", f"regex {pattern!r} has {groups} capture groups; "
                            "extract takes exactly one")
        select = step.get("group_select", 0)
        if select == -1:  # the last match: what extract takes
            return pattern
        if select == 0:  # the first match: anchored, so that it is the only one
            anchored = "(?s)^.*?(?:" + pattern + ")"
            try:
                re.compile(anchored)
            except re.error as exc:
                raise self.fail("filter_list", f"regex {pattern!r} cannot be anchored to its "
                                f"first match: {exc}") from None
            return anchored
        raise self.fail("filter_list", f"group_select {select!r} is not supported (0, the "
                        "first match, or -1, the last)")


def task_file_values(path: Path, data_dir: Path | None = None) -> dict[str, Any]:
    """The config values an lm-eval task file sets; ConfigError (exit 2) names the file,
    the line and the key for anything it cannot honour."""
    return TaskFile(path, data_dir).config_values()
