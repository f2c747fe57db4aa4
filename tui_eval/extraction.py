"""Answer extraction: cut the answer out of a prediction before it is scored.

A spec is either the name of a preset in ``EXTRACT_PRESETS`` or a regular expression with
exactly one capture group. Extraction never raises on a prediction: when nothing is found the
answer is the empty string, which scores 0 on every metric.

This module also holds how a number is found in text, shared with the ``numeric`` metric and the
SQuAD-style normalisation in ``tui_eval.metrics``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

# Scripts written without spaces between words: Chinese characters, hiragana and katakana.
CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# A letter or digit of a script that separates words with spaces. A '-' right after one is a
# hyphen ("x-5", "5-3"), not a sign; after a CJK character it is a sign ("答案是-5").
WORD_CHAR = rf"[^\W_{CJK_RANGES}]"


@functools.cache
def currency_class() -> str:
    """A regex class of the currency symbols (Unicode category Sc) in the Basic Multilingual
    Plane: "$", "€", "¥", "₹"… Built on first use: the scan costs ~10 ms, which `--help`
    should not pay."""
    symbols = "".join(ch for ch in map(chr, range(0x10000)) if unicodedata.category(ch) == "Sc")
    return f"[{re.escape(symbols)}]"


# NFKC leaves U+2212 MINUS SIGN alone; models and typeset sources use it for negatives.
_MINUS = str.maketrans({"\u2212": "-"})

# A number as the numeric metric and the number presets read it: an optional sign, an optional
# currency symbol, digits with optional comma thousands separators in groups of three, and an
# optional decimal part. "50%" reads 50: a percent sign is not part of the number.
@functools.cache
def number_pattern() -> re.Pattern[str]:
    return re.compile(
        rf"(?:(?<!{WORD_CHAR})(?P<sign>-))?{currency_class()}?"
        r"(?P<body>(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?"
        rf"|(?<![.])(?<!{WORD_CHAR})\.[0-9]+)"
    )


def fold(text: str) -> str:
    """NFKC (full-width digits, signs and punctuation become ASCII) and U+2212 read as '-'."""
    return unicodedata.normalize("NFKC", text).translate(_MINUS)


def find_numbers(text: str) -> list[str]:
    """Every number in the text, in order, as plain text: ASCII '-' for a negative, thousands
    separators, currency symbols and percent signs dropped, decimals as written
    ("−$1,234.50" → "-1234.50")."""
    return [(m["sign"] or "") + m["body"].replace(",", "")
            for m in number_pattern().finditer(fold(text))]


def number_value(text: str) -> Decimal | None:
    """The exact value of the last number in the text, or None when it has none."""
    numbers = find_numbers(text)
    return Decimal(numbers[-1]) if numbers else None


def _last_number(text: str) -> str:
    numbers = find_numbers(text)
    return numbers[-1] if numbers else ""


def _first_number(text: str) -> str:
    numbers = find_numbers(text)
    return numbers[0] if numbers else ""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


_BOXED = re.compile(r"\\boxed\s*\{")


def _boxed(text: str) -> str:
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return ""
    depth = 1
    for index in range(starts[-1], len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[starts[-1]:index].strip()
    return ""  # unbalanced braces: the answer was cut off


@dataclass(frozen=True)
class Preset:
    """A named extraction: its one-line help text and the function applying it."""

    help: str
    extract: Callable[[str], str]


EXTRACT_PRESETS: dict[str, Preset] = {
    "last_number": Preset("the last number (GSM8K style), e.g. '-1234.5' from 'is -1,234.5.'",
                          _last_number),
    "first_number": Preset("the first number", _first_number),
    "first_line": Preset("the first line that is not blank, stripped", _first_line),
    "boxed": Preset(r"the contents of the last \boxed{...}, nested braces allowed", _boxed),
}

_NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def check_extract_spec(spec: str) -> str:
    """Return ``spec`` when it names a preset or is a regex with exactly one capture group;
    otherwise raise ValueError with a one-line message."""
    if spec in EXTRACT_PRESETS:
        return spec
    if not spec.strip():
        raise ValueError("empty extraction spec")
    if _NAME_LIKE.fullmatch(spec):
        # A bare word cannot be a regex with a capture group, so it was meant as a preset.
        raise ValueError(f"unknown extraction preset '{spec}': use "
                         f"{', '.join(EXTRACT_PRESETS)} or a regex with one group")
    try:
        pattern = re.compile(spec)
    except re.error as exc:
        raise ValueError(f"bad extraction regex '{spec}': {exc}") from None
    if pattern.groups != 1:
        raise ValueError(f"extraction regex '{spec}' needs exactly one capture group, "
                         f"has {pattern.groups}")
    return spec


def extract_answer(text: str, spec: str | None) -> str:
    """The answer in ``text`` according to ``spec``; ``spec`` None returns the text unchanged.

    A preset name applies that preset. A regex takes the capture group of its LAST match whose
    group took part, stripped of surrounding whitespace (a reasoning model restating or
    correcting its answer ends with the final one); anchor it to pick the first instead,
    e.g. ``(?s)^.*?The answer is (\\S+)``. When nothing is found the result is "".
    Raises ValueError for a spec that ``check_extract_spec`` rejects.
    """
    if spec is None:
        return text
    check_extract_spec(spec)
    preset = EXTRACT_PRESETS.get(spec)
    if preset is not None:
        return preset.extract(text)
    found = [m.group(1) for m in re.finditer(spec, text) if m.group(1) is not None]
    return found[-1].strip() if found else ""
