"""Scoring a prediction against its references.

Each metric returns a score in [0, 1]; a sample with several references scores its best.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_CJK = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")


def normalize(text: str) -> str:
    """Lower case, drop punctuation and English articles, collapse whitespace (SQuAD-style)."""
    text = text.lower()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    # Chinese has no spaces: each CJK character counts as a token.
    return _CJK.sub(r" \1 ", normalize(text)).split()


def _parse_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def last_number(text: str) -> float | None:
    """The last number written in the text, commas allowed ('1,234.5')."""
    matches = _NUMBER.findall(text)
    return _parse_number(matches[-1]) if matches else None


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def contains(prediction: str, reference: str) -> float:
    ref = normalize(reference)
    return float(bool(ref) and re.search(rf"(?:^| ){re.escape(ref)}(?: |$)",
                                         normalize(prediction)) is not None)


def numeric(prediction: str, reference: str) -> float:
    """GSM8K-style: the last number in the prediction equals the reference number."""
    expected = last_number(reference)
    got = last_number(prediction)
    if expected is None or got is None:
        return 0.0
    return float(abs(expected - got) <= 1e-6 * max(1.0, abs(expected)))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


METRIC_FUNCTIONS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "contains": contains,
    "numeric": numeric,
    "token_f1": token_f1,
}


def score(prediction: str, references: Iterable[str], names: Iterable[str]) -> dict[str, float]:
    refs = list(references)
    return {name: max(METRIC_FUNCTIONS[name](prediction, ref) for ref in refs) for name in names}


def mean_scores(rows: Iterable[dict[str, float]], names: Iterable[str]) -> dict[str, float]:
    rows = list(rows)
    if not rows:
        return {name: 0.0 for name in names}
    return {name: sum(row.get(name, 0.0) for row in rows) / len(rows) for name in names}
