"""Edge cases for every metric, each checked twice: against the expected value in the table
and against reference definitions written out below, independently of tui_eval.metrics.

The reference definitions start from a literal copy of SQuAD v1.1's ``normalize_answer`` and
``f1_score`` and change only what tui-eval's rules change: text is folded first (NFKC, U+2212
read as '-'), a number keeps its sign and decimal point, punctuation includes Unicode
punctuation and currency symbols, and each CJK character is a token. Numbers are read by a
hand-written scanner rather than a regular expression.
"""

from __future__ import annotations

import random
import re
import string
import unicodedata
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tui_eval.data import load_dataset
from tui_eval.metrics import (
    METRIC_FUNCTIONS,
    contains,
    exact_match,
    last_number,
    numeric,
    score,
    token_f1,
)

# ── Reference definitions ────────────────────────────────────────────────────────────────────


def squad_normalize_answer(s: str) -> str:
    """SQuAD v1.1 evaluate-v1.1.py, verbatim apart from names: kept to show what changes."""
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F)


def spaced_alnum(ch: str) -> bool:
    """A letter or digit of a script that puts spaces between words."""
    return ch.isalnum() and not is_cjk(ch)


def is_currency(ch: str) -> bool:
    return unicodedata.category(ch) == "Sc"


def is_ascii_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def fold(s: str) -> str:
    return unicodedata.normalize("NFKC", s).replace("\u2212", "-")


def is_sign(text: str, i: int) -> bool:
    """text[i] == '-' is a sign: then [currency] [.] digit, and no spaced letter/digit before."""
    if i > 0 and spaced_alnum(text[i - 1]):
        return False
    j = i + 1
    if j < len(text) and is_currency(text[j]):
        j += 1
    if j < len(text) and text[j] == ".":
        j += 1
    return j < len(text) and is_ascii_digit(text[j])


def is_decimal_point(text: str, i: int) -> bool:
    """text[i] == '.' is kept: a digit follows, and a digit or no spaced letter comes before."""
    if i + 1 >= len(text) or not is_ascii_digit(text[i + 1]):
        return False
    return i == 0 or is_ascii_digit(text[i - 1]) or not spaced_alnum(text[i - 1])


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalize_answer adapted to tui-eval's rules."""
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        kept = []
        for i, ch in enumerate(text):
            if ch == "-" and is_sign(text, i) or ch == "." and is_decimal_point(text, i):
                kept.append(ch)
            elif (ch in string.punctuation or unicodedata.category(ch).startswith("P")
                  or is_currency(ch)):
                continue
            else:
                kept.append(ch)
        return "".join(kept)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(fold(s)))))


def get_tokens(s: str) -> list[str]:
    spaced = "".join(f" {ch} " if is_cjk(ch) else ch for ch in normalize_answer(s))
    return spaced.split()


def ref_exact_match(prediction: str | None, reference: str | None) -> float:
    if prediction is None or reference is None:
        return 0.0
    return float(get_tokens(prediction) == get_tokens(reference))


def ref_token_f1(prediction: str | None, reference: str | None) -> float:
    """SQuAD's f1_score, with SQuAD v2.0's rule for empty token lists."""
    if prediction is None or reference is None:
        return 0.0
    prediction_tokens, ground_truth_tokens = get_tokens(prediction), get_tokens(reference)
    if not prediction_tokens or not ground_truth_tokens:
        return float(prediction_tokens == ground_truth_tokens)
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def ref_contains(prediction: str | None, reference: str | None) -> float:
    if prediction is None or reference is None:
        return 0.0
    ref = get_tokens(reference)
    if not ref:
        return 0.0
    # Tokens never contain NUL, so a NUL-delimited substring test is a whole-token test.
    return float("\0" + "\0".join(ref) + "\0" in "\0" + "\0".join(get_tokens(prediction)) + "\0")


def read_numbers(s: str) -> list[Decimal]:
    """Every number, scanning left to right: [-][currency](digits with ,ddd groups | digits)
    [.digits], or [-][currency].digits; a '-' is a sign only after no spaced letter/digit."""
    text = fold(s)
    numbers: list[Decimal] = []
    i = 0
    while i < len(text):
        ch = text[i]
        leading_dot = (ch == "." and i + 1 < len(text) and is_ascii_digit(text[i + 1])
                       and (i == 0 or (text[i - 1] != "." and not spaced_alnum(text[i - 1]))))
        if not (is_ascii_digit(ch) or leading_dot):
            i += 1
            continue
        start, j = i, i
        if not leading_dot:
            while j < len(text) and is_ascii_digit(text[j]):
                j += 1
            if j - start <= 3:  # thousands groups: ",ddd" repeated, not followed by a digit
                ends = []
                k = j
                while (k + 4 <= len(text) and text[k] == ","
                       and all(is_ascii_digit(c) for c in text[k + 1:k + 4])):
                    k += 4
                    ends.append(k)
                while ends and ends[-1] < len(text) and is_ascii_digit(text[ends[-1]]):
                    ends.pop()
                if ends:
                    j = ends[-1]
        if j + 1 < len(text) and text[j] == "." and is_ascii_digit(text[j + 1]):
            j += 1
            while j < len(text) and is_ascii_digit(text[j]):
                j += 1
        body = text[start:j].replace(",", "")
        before = start - 1
        if before >= 0 and is_currency(text[before]):
            before -= 1
        negative = (before >= 0 and text[before] == "-"
                    and (before == 0 or not spaced_alnum(text[before - 1])))
        numbers.append(Decimal(("-" if negative else "") + body))
        i = j
    return numbers


def ref_numeric(prediction: str | None, reference: str | None) -> float:
    if prediction is None or reference is None:
        return 0.0
    got, expected = read_numbers(prediction), read_numbers(reference)
    return float(bool(got) and bool(expected) and got[-1] == expected[-1])


REFERENCE_DEFINITIONS = {"exact_match": ref_exact_match, "contains": ref_contains,
                         "numeric": ref_numeric, "token_f1": ref_token_f1}


def test_squad_copy_is_the_starting_point() -> None:
    # On ASCII text without signed or decimal numbers the adapted normaliser is SQuAD's.
    for text in ("The Cat, sat!", "U.S. army", "an apple a day", "1,234 items", "it's"):
        assert normalize_answer(text) == squad_normalize_answer(text)
    assert squad_normalize_answer("-1,234.50") == "123450"
    assert normalize_answer("-1,234.50") == "-1234.50"


# ── Tables: (prediction, reference, expected) ─────────────────────────────────────────────────

EXACT_MATCH = [
    ("5", "-5", 0.0),  # the sign is kept
    ("-5", "5", 0.0),
    ("-5", "-5", 1.0),
    ("\u22125", "-5", 1.0),  # U+2212 minus
    ("1,234", "1234", 1.0),  # thousands separator dropped
    ("-1,234.50", "-1234.50", 1.0),
    ("\u22121,234.50", "-1234.50", 1.0),
    ("1234.50", "1234.5", 0.0),  # text, not value: numeric compares values
    ("U.S.", "US", 1.0),  # punctuation removed, not turned into a space
    ("Paris.", "paris", 1.0),
    ("The Eiffel Tower", "eiffel tower", 1.0),
    ("Paris, France", "Paris", 0.0),
    ("", "x", 0.0),
    (None, "x", 0.0),  # a failed sample
    ("x", None, 0.0),
    ("", "", 1.0),  # SQuAD: both empty after normalisation
    ("   ", "", 1.0),
    ("the", "", 1.0),
    ("３", "3", 1.0),  # full-width digit
    ("－５", "-5", 1.0),  # full-width minus
    ("５，０００", "5000", 1.0),
    ("ｐａｒｉｓ", "Paris", 1.0),
    ("50%", "50", 1.0),
    ("$1,234", "1234", 1.0),
    ("€5", "5", 1.0),
    ("-$5", "-5", 1.0),
    ("$-5", "-5", 1.0),
    ("3.5", "35", 0.0),  # the decimal point is kept
    ("3.5.", "3.5", 1.0),  # a full stop after a number is punctuation
    (".5", "0.5", 0.0),
    ("x-5", "x5", 1.0),  # a hyphen after a letter is punctuation, as in SQuAD
    ("5-3", "53", 1.0),
    ("5 - 3", "5 3", 1.0),
    ("北京", "北京", 1.0),
    ("北 京", "北京", 1.0),  # spaces between CJK characters do not count
    ("北京。", "北京", 1.0),  # Chinese punctuation
    ("答案是-5", "答案是5", 0.0),  # a sign after a CJK character is a sign
    ("答案是\u22125", "答案是-5", 1.0),
    ("An apple", "apple", 1.0),
    ("A. B.", "b", 1.0),
    ("3", "3.0", 0.0),
    ("1e21", "1000000000000000000000", 0.0),
    ("«Paris»", "Paris", 1.0),
    ("it's", "its", 1.0),
    ("-0", "0", 0.0),
    ("1,2,3", "123", 1.0),  # SQuAD drops every comma
    ("the answer is 42", "42", 0.0),
]

CONTAINS = [
    ("-5", "5", 0.0),  # a sign error does not count
    ("5", "-5", 0.0),
    ("x = -5", "-5", 1.0),
    ("3.5", "5", 0.0),  # a number matches only a whole number
    ("3.5", "3", 0.0),
    ("1,234", "234", 0.0),
    ("1,234", "1234", 1.0),
    ("1234", "1,234", 1.0),
    ("答案是北京", "北京", 1.0),  # Chinese: substring
    ("北京市", "北京", 1.0),
    ("北京", "北京市", 0.0),
    ("答案是-5", "5", 0.0),
    ("答案是-5", "-5", 1.0),
    ("答案是15个", "5个", 0.0),  # still a whole number inside Chinese text
    ("答案是5个", "5个", 1.0),
    ("東京タワーです", "タワー", 1.0),  # Japanese
    ("It is Paris, France.", "paris", 1.0),
    ("Parisian food", "paris", 0.0),  # whole words
    ("The answer is 42.", "42", 1.0),
    ("The answer is 420.", "42", 0.0),
    ("The answer is 4.2", "42", 0.0),
    ("\u22125 degrees", "-5", 1.0),
    ("－５", "-5", 1.0),
    ("ｔｈｅ ａｎｓｗｅｒ ｉｓ ４２", "42", 1.0),
    ("costs $1,234 in total", "1234", 1.0),
    ("costs $1,234 in total", "$1,234", 1.0),
    ("-$5 loss", "-5", 1.0),
    ("50% of it", "50", 1.0),
    ("", "x", 0.0),
    (None, "x", 0.0),
    ("x", None, 0.0),
    ("anything", "", 0.0),  # nothing to look for
    ("anything", "the", 0.0),
    ("", "", 0.0),
    ("new york city", "new york", 1.0),
    ("york new", "new york", 0.0),
    ("New-York", "new york", 0.0),  # SQuAD joins hyphenated words
    ("U.S. army", "US", 1.0),
    ("x-5", "5", 0.0),
    ("5-3", "3", 0.0),
    ("3 - 5", "5", 1.0),
    ("-5.5", "5.5", 0.0),
    ("5.5", "5", 0.0),
    ("it is 3.50", "3.5", 0.0),  # text, not value
    ("1,2,3", "2", 0.0),
    ("apples: 1, 2, 3", "2", 1.0),
    ("the answer is B.", "b", 1.0),
]

NUMERIC = [
    ("1000001", "1000000", 0.0),  # no relative tolerance
    ("12345678", "12345670", 0.0),
    ("12345678", "12345678", 1.0),
    ("-5", "5", 0.0),
    ("5", "-5", 0.0),
    ("\u22125", "-5", 1.0),  # U+2212 minus
    ("－５", "-5", 1.0),  # full width
    ("１２３４５６７８", "12345678", 1.0),
    ("3.50", "3.5", 1.0),  # decimals compare by value
    ("3", "3.0", 1.0),
    ("0.1", "0.10", 1.0),
    ("100", "100.000", 1.0),
    ("1,234", "1234", 1.0),
    ("so the answer is 1,234.", "1234", 1.0),
    ("1,234,567", "1234567", 1.0),
    ("The total is 1,000,000.00 dollars", "1000000", 1.0),
    ("$1,234", "1234", 1.0),  # currency ignored
    ("€ 5", "5", 1.0),
    ("-$5", "-5", 1.0),
    ("$-5", "-5", 1.0),
    ("-€5", "-5", 1.0),
    ("50%", "50", 1.0),  # percent sign ignored: 50% reads 50
    ("50%", "0.5", 0.0),
    ("3 apples then 5", "5", 1.0),  # the last number
    ("3 apples then 5", "3", 0.0),
    ("#### 42", "The answer is 42", 1.0),
    ("none", "4", 0.0),
    ("4", "none", 0.0),
    ("", "4", 0.0),
    (None, "4", 0.0),
    ("4", None, 0.0),
    ("x", "", 0.0),
    ("-0", "0", 1.0),
    (".5", "0.5", 1.0),
    ("-.5", "-0.5", 1.0),
    ("x-5", "5", 1.0),  # a hyphen after a letter
    ("5-3", "3", 1.0),
    ("5-3", "-3", 0.0),
    ("- 5", "-5", 0.0),  # a sign must touch its number
    ("答案是-5", "-5", 1.0),
    ("答案是５", "5", 1.0),
    ("1,2345", "2345", 1.0),  # not a thousands group: two numbers
    ("12,34", "34", 1.0),
    ("2024-01-05", "5", 1.0),
    ("3.5.2", "2", 1.0),
    ("v.2", "2", 1.0),
    ("1.5e3", "1500", 0.0),  # no scientific notation: reads 1.5 then 3
    ("0.1 + 0.2 = 0.3", "0.3", 1.0),
    ("0.30000000000000004", "0.3", 0.0),
]

TOKEN_F1 = [
    ("The answer is 1,234.", "1234", 0.5),  # answer, is, 1234 against 1234
    ("1,234", "1234", 1.0),
    ("-5", "5", 0.0),
    ("the cat sat mat", "The cat sat on the mat", 6 / 7),
    ("北京", "北京市", 0.8),  # each CJK character is a token
    ("答案是北京", "北京", 4 / 7),
    ("北京。", "北 京", 1.0),
    ("東京タワー", "タワー", 0.75),
    ("答案是-5", "-5", 0.4),
    ("答案是-5", "5", 0.0),
    ("", "", 1.0),  # SQuAD v2.0: both empty
    ("the", "the", 1.0),
    ("the", "a", 1.0),
    ("The The the", "", 1.0),
    ("", "x", 0.0),
    ("x", "", 0.0),
    ("the", "x", 0.0),
    (None, "x", 0.0),
    ("x", None, 0.0),
    ("3.5", "3 5", 0.0),
    ("3.5 5", "5", 2 / 3),
    ("3.50", "3.5", 0.0),
    ("U.S. army", "US Army", 1.0),
    ("\u22125 degrees", "-5", 2 / 3),
    ("－５ degrees", "-5 degrees", 1.0),
    ("$1,234", "1234", 1.0),
    ("50%", "50", 1.0),
    ("£3 and €3", "3 3", 0.8),
    ("a b c", "b c d", 0.8),  # "a" is an article
    ("paris paris", "paris", 2 / 3),
    ("paris", "paris paris", 2 / 3),
    ("Paris, France", "Paris", 2 / 3),
    ("New-York", "new york", 0.0),
    ("x-5", "x 5", 0.0),
    ("5 - 3", "5 3", 1.0),
    ("5-3", "53", 1.0),
    ("1 2 3 4", "4 3 2 1", 1.0),
    ("1 2", "1 2 3 4", 2 / 3),
    ("ｔｅｓｔ", "test", 1.0),
    ("it's 5.", "its 5", 1.0),
    ("-1,234.50", "-1234.50", 1.0),
    ("-1,234.50", "-1234.5", 0.0),
    ("hello world", "world hello", 1.0),
    ("cat", "dog", 0.0),
]

TABLES = {"exact_match": EXACT_MATCH, "contains": CONTAINS, "numeric": NUMERIC,
          "token_f1": TOKEN_F1}
CASES = [pytest.param(name, *case, id=f"{name}-{index}")
         for name, table in TABLES.items() for index, case in enumerate(table)]


def test_each_metric_has_at_least_40_cases() -> None:
    assert {name: len(table) >= 40 for name, table in TABLES.items()} == dict.fromkeys(TABLES,
                                                                                     True)


@pytest.mark.parametrize(("name", "prediction", "reference", "expected"), CASES)
def test_case(name: str, prediction: str | None, reference: str | None,
              expected: float) -> None:
    got = METRIC_FUNCTIONS[name](prediction, reference)
    assert got == pytest.approx(expected)
    assert REFERENCE_DEFINITIONS[name](prediction, reference) == pytest.approx(expected)


# Characters that meet every rule: signs, separators, currency, percent, full width, CJK.
FUZZ_PIECES = [*"0123456789-.,$€%x a北", "\u2212", "５", "－", "．", "，", "the ", "U.S."]


def test_random_text_agrees_with_the_definitions() -> None:
    rng = random.Random(9)

    def text() -> str:
        return "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(0, 10)))

    for _ in range(3000):
        prediction = text()
        start = rng.randint(0, len(prediction))
        # A slice of the prediction, often with a piece added, so that matches are common.
        reference = rng.choice([prediction[start:start + rng.randint(0, 6)],
                                rng.choice(FUZZ_PIECES) + prediction[start:], text()])
        for name, definition in REFERENCE_DEFINITIONS.items():
            assert METRIC_FUNCTIONS[name](prediction, reference) == pytest.approx(
                definition(prediction, reference)), (name, prediction, reference)


# ── Several references through score() ───────────────────────────────────────────────────────

ALL = ["exact_match", "contains", "numeric", "token_f1"]

SCORED = [
    ("Paris", ["London", "paris"], {"exact_match": 1, "contains": 1, "numeric": 0,
                                    "token_f1": 1}),
    ("-5", ["5", "five"], {"exact_match": 0, "contains": 0, "numeric": 0, "token_f1": 0}),
    ("It is 3.5", ["5", "3.50"], {"exact_match": 0, "contains": 0, "numeric": 1,
                                  "token_f1": 0}),
    ("北京市", ["上海", "北京"], {"exact_match": 0, "contains": 1, "numeric": 0,
                             "token_f1": 0.8}),
    ("1,234", ["234", "1234"], {"exact_match": 1, "contains": 1, "numeric": 1,
                                "token_f1": 1}),
    ("x", [], {"exact_match": 0, "contains": 0, "numeric": 0, "token_f1": 0}),
    (None, ["x", "5"], {"exact_match": 0, "contains": 0, "numeric": 0, "token_f1": 0}),
    ("", ["", "x"], {"exact_match": 1, "contains": 0, "numeric": 0, "token_f1": 1}),
]


@pytest.mark.parametrize(("prediction", "references", "expected"), SCORED)
def test_score_takes_the_best_reference(prediction: str | None, references: list[str],
                                        expected: dict[str, float]) -> None:
    assert score(prediction, references, ALL) == pytest.approx(expected)
    by_definition = {name: max((REFERENCE_DEFINITIONS[name](prediction, ref)
                                for ref in references), default=0.0) for name in ALL}
    assert by_definition == pytest.approx(expected)


# ── JSON-number references through data loading ──────────────────────────────────────────────

LOADED = [
    ("3.0", ["3"], "3", {"exact_match": 1, "contains": 1, "numeric": 1, "token_f1": 1}),
    ("2.50", ["2.5"], "2.5", {"exact_match": 1, "contains": 1, "numeric": 1, "token_f1": 1}),
    ("2.50", ["2.5"], "2.50", {"exact_match": 0, "contains": 0, "numeric": 1, "token_f1": 0}),
    ("1e21", ["1000000000000000000000"], "1000000000000000000000",
     {"exact_match": 1, "contains": 1, "numeric": 1, "token_f1": 1}),
    ("1e21", ["1000000000000000000000"], "1e21",
     {"exact_match": 0, "contains": 0, "numeric": 0, "token_f1": 0}),
    ("-0.0", ["0"], "0", {"exact_match": 1, "contains": 1, "numeric": 1, "token_f1": 1}),
    ("-5", ["-5"], "5", {"exact_match": 0, "contains": 0, "numeric": 0, "token_f1": 0}),
    ("-5", ["-5"], "\u22125", {"exact_match": 1, "contains": 1, "numeric": 1, "token_f1": 1}),
    ("1234", ["1234"], "1,234", {"exact_match": 1, "contains": 1, "numeric": 1,
                                 "token_f1": 1}),
    ("0.1", ["0.1"], "0.10", {"exact_match": 0, "contains": 0, "numeric": 1, "token_f1": 0}),
    ('["x", 3.0]', ["x", "3"], "3", {"exact_match": 1, "contains": 1, "numeric": 1,
                                     "token_f1": 1}),
]


@pytest.mark.parametrize(("answer", "references", "prediction", "expected"), LOADED)
def test_json_number_references(tmp_path: Path, answer: str, references: list[str],
                                prediction: str, expected: dict[str, float]) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(f'{{"prompt": "p", "answer": {answer}}}\n', encoding="utf-8")
    loaded = load_dataset(path).samples[0].references
    assert loaded == references
    assert score(prediction, loaded, ALL) == pytest.approx(expected)
    by_definition = {name: max(REFERENCE_DEFINITIONS[name](prediction, ref) for ref in loaded)
                     for name in ALL}
    assert by_definition == pytest.approx(expected)


# ── The cases reported wrong before, named one by one ─────────────────────────────────────────


def test_cases_that_were_wrong() -> None:
    assert exact_match("5", "-5") == 0.0
    assert contains("-5", "5") == 0.0
    assert numeric("1000001", "1000000") == 0.0
    assert numeric("12345678", "12345670") == 0.0
    assert exact_match("1,234", "1234") == 1.0
    assert exact_match("U.S.", "US") == 1.0
    assert token_f1("The answer is 1,234.", "1234") == pytest.approx(0.5)
    assert contains("3.5", "5") == contains("3.5", "3") == contains("1,234", "234") == 0.0
    assert contains("答案是北京", "北京") == 1.0
    assert last_number("\u22125") == -5
    assert score("x", [], ALL) == dict.fromkeys(ALL, 0.0)
    assert exact_match(None, "x") == 0.0
