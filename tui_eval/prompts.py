"""Prompt building: templates over a record's fields and few-shot contexts.

Templates follow lm-evaluation-harness so that its task files mean the same here: Jinja2
with undefined names an error and trailing newlines kept, and the few-shot context built
as lm-eval builds it (``ConfigurableTask.fewshot_context``):

    for each example:  text + target_delimiter + target + fewshot_delimiter
    then:              the record's text

With a chat template the examples become alternating user/assistant turns (lm-eval's
``--fewshot_as_multiturn``) after an optional system turn. jinja2 is imported on first use,
never on the ``--help`` path.
"""

from __future__ import annotations

import ast
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# lm-eval's default sampler seed (``fewshot_seed`` of its evaluator)
LM_EVAL_FEWSHOT_SEED = 1234
JINJA_MARKS = ("{{", "{%", "{#")
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(ValueError):
    """A template that does not parse or cannot be filled from a record."""


@lru_cache(maxsize=64)
def is_jinja(template: str) -> bool:
    """A prompt template is Jinja2 when it uses Jinja's marks; else it is the older
    ``{field}`` format, kept so that existing configs mean what they meant."""
    return any(mark in template for mark in JINJA_MARKS)


@lru_cache(maxsize=64)
def _compiled(template: str) -> Any:
    import jinja2  # only once a template is used: not on the --help path

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    environment.filters["regex_replace"] = _regex_replace  # lm-eval's one custom filter
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid Jinja2 template (line {exc.lineno}): {exc.message}") \
            from None


def _regex_replace(text: str, pattern: str, replacement: str, count: int = 0) -> str:
    return re.sub(pattern, replacement, text, count=count)


def check_template(template: str, *, jinja: bool | None = None) -> None:
    """Raise TemplateError when the template does not parse (before any record is read)."""
    if jinja or (jinja is None and is_jinja(template)):
        _compiled(template)
        return
    try:
        list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(str(exc)) from None


def render(template: str, record: dict[str, Any], *, jinja: bool | None = None) -> str:
    """The template filled from the record: Jinja2, or the older ``{field}`` format (when
    ``jinja`` is None, as ``is_jinja`` reads the template)."""
    if jinja or (jinja is None and is_jinja(template)):
        import jinja2

        try:
            return str(_compiled(template).render(**record))
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"uses a missing field ({exc.message})") from None
        except Exception as exc:  # noqa: BLE001 - a filter or an expression that fails
            raise TemplateError(f"cannot be filled: {type(exc).__name__}: {exc}") from None
    return fill_format(template, {key: "" if value is None else value
                                  for key, value in record.items()})


@lru_cache(maxsize=64)
def _format_fields(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def fill_format(template: str, values: dict[str, Any]) -> str:
    """The older ``{field}`` format filled from ``values`` as they are (nulls already
    made empty): the loader's hot path, one call per record."""
    missing = _format_fields(template) - values.keys()
    if missing:
        raise TemplateError(f"uses missing field '{sorted(missing)[0]}'")
    try:
        return template.format_map(values)
    except (IndexError, KeyError, ValueError, AttributeError) as exc:
        raise TemplateError(f"cannot be filled: {exc!r}") from None


def render_value(template: str, record: dict[str, Any]) -> Any:
    """A target or choices template's value, read as lm-eval reads it: a template that
    is just a field's name gives that field's value; otherwise Jinja2, and a rendered
    ``[...]`` is a list."""
    if template in record:
        return record[template]
    if FIELD_NAME.fullmatch(template):  # a field's name, and the record lacks it
        raise TemplateError(f"uses a missing field ('{template}' is undefined)")
    text = render(template, record, jinja=True)
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == "[" and stripped[-1] == "]":
        try:
            value = ast.literal_eval(stripped)
        except (SyntaxError, ValueError):
            return text
        if isinstance(value, list):
            return value
    return text


# ── few-shot contexts ───────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Shot:
    """One few-shot example: its rendered text and its target."""

    text: str
    target: str


@dataclass(frozen=True)
class PromptStyle:
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    system_prompt: str | None = None


def plain_context(shots: Sequence[Shot], text: str, style: PromptStyle) -> str:
    """The prompt as one text: lm-eval's plain-text rendering (the system prompt, when
    given, in front as it is, as lm-eval puts its system instruction)."""
    if not shots and not style.system_prompt:
        return text
    parts = [style.system_prompt or ""]
    for shot in shots:
        parts.append(shot.text + style.target_delimiter + shot.target + style.fewshot_delimiter)
    parts.append(text)
    return "".join(parts)


def chat_turns(shots: Sequence[Shot], text: str,
               style: PromptStyle) -> list[dict[str, str]] | None:
    """The prompt as chat messages: a system turn, then each example as a user turn and
    an assistant turn, then the record as the last user turn. None when that is one user
    turn holding the text (no examples, no system prompt)."""
    if not shots and not style.system_prompt:
        return None
    turns: list[dict[str, str]] = []
    if style.system_prompt:
        turns.append({"role": "system", "content": style.system_prompt})
    for shot in shots:
        turns.append({"role": "user", "content": shot.text})
        turns.append({"role": "assistant", "content": shot.target})
    turns.append({"role": "user", "content": text})
    return turns


class ShotSampler:
    """Which examples each record gets, in record order.

    Without a seed: the first K of the pool for every record (lm-eval's ``first_n``).
    With a seed: lm-eval's default sampler, one ``random.Random(seed)`` drawn from for
    each record in turn, so that seed 1234 picks what lm-eval picks. When the pool is the
    evaluated data itself, the record is never its own example (lm-eval's rule: draw one
    more, drop the record)."""

    def __init__(self, pool: Sequence[tuple[dict[str, Any], Shot]], k: int,
                 seed: int | None, same_data: bool) -> None:
        self.pool = list(pool)
        self.k = k
        self.same_data = same_data
        self.random = random.Random(seed) if seed is not None else None

    def needed(self) -> int:
        return self.k + 1 if self.same_data else self.k

    def shots_for(self, record: dict[str, Any]) -> list[Shot]:
        if self.k == 0:
            return []
        if self.random is None:
            chosen = [item for item in self.pool if not (self.same_data and item[0] == record)]
            return [shot for _, shot in chosen[:self.k]]
        drawn = self.random.sample(self.pool, self.needed())
        if self.same_data:
            drawn = [item for item in drawn if item[0] != record]
        return [shot for _, shot in drawn[:self.k]]
