"""Scoring a prediction against its references, and summarising scores over a run.

Each metric returns a score in [0, 1]; a sample with several references scores its best. A
prediction of None (a failed sample) scores 0 on every metric, and no metric raises.

Normalisation follows SQuAD v1.1's ``normalize_answer`` (lower case, punctuation removed,
articles a/an/the removed, whitespace collapsed) with these changes:

* the text is first folded: NFKC (full-width digits and signs become ASCII) and U+2212 MINUS
  SIGN reads as '-';
* a number keeps its sign and decimal point and loses its thousands separators
  ("-1,234.50" → "-1234.50"). A '-' is a sign when a digit follows (a currency symbol or a
  decimal point may come between) and no letter or digit of a space-separated script comes
  before it: "x-5" and "5-3" lose the hyphen like SQuAD ("x5", "53"), "-5" and "答案是-5" keep it;
* punctuation is ASCII punctuation (as in SQuAD) plus every Unicode punctuation character
  (Chinese "，。「」"…) and every currency symbol ("€5" reads like "$5");
* each Chinese character, hiragana and katakana is a token of its own, since those scripts put
  no spaces between words.
"""

from __future__ import annotations

import functools
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

from tui_eval.extraction import (
    CJK_RANGES,
    WORD_CHAR,
    currency_class,
    extract_answer,
    fold,
    number_value,
)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK_CHAR = re.compile(f"([{CJK_RANGES}])")


@functools.cache
def _number_text() -> re.Pattern[str]:
    """A number as normalisation sees it: any commas between digits are dropped, as SQuAD
    drops every comma; the sign and the decimal points are what it keeps."""
    currency = currency_class()
    return re.compile(
        rf"(?:(?<!{WORD_CHAR})(?P<sign>-)(?={currency}?\.?[0-9]))?{currency}?"
        rf"(?P<body>[0-9]+(?:[.,][0-9]+)*|(?<!{WORD_CHAR})\.[0-9]+(?:[.,][0-9]+)*)"
    )


class _PunctuationTable(dict):
    """str.translate table deleting punctuation, filled one character at a time on first use
    (building it for all of Unicode up front would cost a scan of 1.1 million code points)."""

    def __missing__(self, code: int) -> int | None:
        char = chr(code)
        category = unicodedata.category(char)
        value = None if (char in string.punctuation or category.startswith("P")
                         or category == "Sc") else code
        self[code] = value
        return value


_PUNCTUATION = _PunctuationTable()


def normalize(text: str) -> str:
    """SQuAD v1.1 ``normalize_answer`` with numbers, Unicode and CJK handled as the module
    docstring says: "The answer is −1,234.50." → "answer is -1234.50"."""
    text = fold(text).lower()
    pieces: list[str] = []
    position = 0
    for match in _number_text().finditer(text):
        pieces.append(text[position:match.start()].translate(_PUNCTUATION))
        pieces.append((match["sign"] or "") + match["body"].replace(",", ""))
        position = match.end()
    pieces.append(text[position:].translate(_PUNCTUATION))
    text = _ARTICLES.sub(" ", "".join(pieces))
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    # Chinese and Japanese have no spaces: each of their characters counts as a token.
    return _CJK_CHAR.sub(r" \1 ", normalize(text)).split()


def last_number(text: str) -> Decimal | None:
    """The exact value of the last number in the text ('-1,234.5' reads -1234.5), or None.
    How a number is found: ``tui_eval.extraction.number_pattern``."""
    return number_value(text)


def exact_match(prediction: str | None, reference: str | None) -> float:
    """SQuAD v1.1 exact match (Rajpurkar et al., 2016): 1 when the normalised prediction equals
    the normalised reference. Spaces between CJK characters do not count."""
    if prediction is None or reference is None:
        return 0.0
    return float(_tokens(prediction) == _tokens(reference))


def exact_match_strict(prediction: str | None, reference: str | None) -> float:
    """lm-evaluation-harness's ``exact_match`` with its defaults (no ``ignore_case``, no
    ``ignore_punctuation``, no ``regexes_to_ignore``): 1 when the prediction equals the
    reference character for character, with no normalisation at all."""
    if prediction is None or reference is None:
        return 0.0
    return float(prediction == reference)


def token_f1(prediction: str | None, reference: str | None) -> float:
    """SQuAD token F1 (Rajpurkar et al., 2016): harmonic mean of the precision and recall of
    the normalised tokens shared by prediction and reference; each CJK character is a token.
    When either side has no tokens the score is 1 if both have none, else 0 (SQuAD v2.0)."""
    if prediction is None or reference is None:
        return 0.0
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains(prediction: str | None, reference: str | None) -> float:
    """1 when the normalised reference appears in the normalised prediction as a run of whole
    tokens: a whole-word match for space-separated text, a substring match for Chinese and
    Japanese text. A number matches only a whole number: "3.5", "1,234" and "-5" do not contain
    "5", "234" or "5". A reference with no tokens after normalisation scores 0."""
    if prediction is None or reference is None:
        return 0.0
    pred, ref = _tokens(prediction), _tokens(reference)
    if not ref:
        return 0.0
    width = len(ref)
    return float(any(pred[start:start + width] == ref for start in range(len(pred) - width + 1)))


def numeric(prediction: str | None, reference: str | None) -> float:
    """GSM8K-style accuracy (Cobbe et al., 2021): 1 when the last number in the prediction
    equals the last number in the reference. Values compare exactly as decimals, so 3.50 equals
    3.5 and 1000001 does not equal 1000000. Thousands separators, currency symbols and percent
    signs are ignored ("$1,234" reads 1234, "50%" reads 50); a side with no number scores 0."""
    if prediction is None or reference is None:
        return 0.0
    expected, got = number_value(reference), number_value(prediction)
    return float(expected is not None and got is not None and expected == got)


# A choice task's scores, per sample: whether the choice with the highest log-likelihood is
# the gold one (acc), and the same per character of the choice (acc_norm).
CHOICE_METRICS = ("acc", "acc_norm")


def first_argmax(values: Sequence[float]) -> int:
    """The first index of the largest value, as numpy's argmax breaks ties."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


def choice_picks(choices: Sequence[str], logprobs: Sequence[float]) -> tuple[int, int]:
    """(pred, pred_norm): the choice with the highest summed log-probability, and the
    highest per character of the choice (lm-evaluation-harness's acc and acc_norm)."""
    per_char = [lp / len(choice) for lp, choice in zip(logprobs, choices, strict=True)]
    return first_argmax(logprobs), first_argmax(per_char)


def choice_scores(pred: int, pred_norm: int, gold: int) -> dict[str, float]:
    return {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)}

METRIC_FUNCTIONS: dict[str, Callable[[str | None, str | None], float]] = {
    "exact_match": exact_match,
    "contains": contains,
    "numeric": numeric,
    "token_f1": token_f1,
    "exact_match_strict": exact_match_strict,
}

# What a run scores when no metrics are named; the strict variant is asked for by name.
DEFAULT_METRICS = ("exact_match", "contains", "numeric", "token_f1")


def score(prediction: str | None, references: Iterable[str],
          names: Iterable[str]) -> dict[str, float]:
    """Each named metric's best score over the references; 0 with no references or a None
    prediction."""
    refs = [ref for ref in references if ref is not None]
    return {name: max((METRIC_FUNCTIONS[name](prediction, ref) for ref in refs), default=0.0)
            for name in names}


def score_prediction(prediction: str | None, references: Iterable[str], names: Iterable[str],
                     extract: str | None = None) -> tuple[str | None, dict[str, float]]:
    """(the extracted answer, its scores): with ``extract`` set the answer is cut out of the
    prediction first (``tui_eval.extraction``) and scored instead of it; without, the
    extracted answer is None and the whole prediction is scored. A run and a rescore both
    score here, so they agree."""
    if extract is None or prediction is None:
        return None, score(prediction, references, names)
    answer = extract_answer(prediction, extract)
    return answer, score(answer, references, names)


def _column(rows: list[dict[str, float]], name: str) -> list[float]:
    # A row without the metric (a failed sample) counts as 0, as in mean_scores.
    return [float(row.get(name, 0.0)) for row in rows]


def mean_scores(rows: Iterable[dict[str, float]], names: Iterable[str]) -> dict[str, float]:
    rows = list(rows)
    if not rows:
        return {name: 0.0 for name in names}
    return {name: math.fsum(_column(rows, name)) / len(rows) for name in names}


def _stderr(values: list[float]) -> float | None:
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    sample_variance = math.fsum((value - mean) ** 2 for value in values) / (n - 1)
    return math.sqrt(sample_variance / n)


def standard_errors(rows: Iterable[dict[str, float]],
                    names: Iterable[str]) -> dict[str, float | None]:
    """Standard error of each metric's mean over the rows, as lm-evaluation-harness reports it
    for mean-aggregated metrics: the sample standard deviation (n - 1 in the denominator)
    divided by sqrt(n). With fewer than two rows it is None, where lm-evaluation-harness
    writes "N/A"."""
    rows = list(rows)
    return {name: _stderr(_column(rows, name)) for name in names}


def mean_and_stderr(rows: Iterable[dict[str, float]], names: Iterable[str]
                    ) -> tuple[dict[str, float], dict[str, float | None]]:
    """``mean_scores`` and ``standard_errors`` in one pass over the rows."""
    rows, names = list(rows), list(names)
    return mean_scores(rows, names), standard_errors(rows, names)
