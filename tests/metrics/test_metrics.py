"""Metrics on hand-checked cases, answer extraction and standard errors.

The table of edge cases per metric is in test_metric_cases.py.
"""

from __future__ import annotations

import math

import pytest

from tui_eval.extraction import EXTRACT_PRESETS, check_extract_spec, extract_answer
from tui_eval.metrics import (
    DEFAULT_METRICS,
    METRIC_FUNCTIONS,
    contains,
    exact_match,
    exact_match_strict,
    last_number,
    mean_and_stderr,
    mean_scores,
    normalize,
    numeric,
    score,
    standard_errors,
    token_f1,
)


def test_normalize() -> None:
    assert normalize("  The Cat, sat!  ") == "cat sat"
    assert normalize("An apple.") == "apple"


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [("Paris.", "paris", 1.0), ("The Eiffel tower", "eiffel tower", 1.0),
     ("Paris, France", "Paris", 0.0), ("", "x", 0.0)],
)
def test_exact_match(prediction: str, reference: str, expected: float) -> None:
    assert exact_match(prediction, reference) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [("Paris", "Paris", 1.0), ("Paris.", "Paris", 0.0), ("paris", "Paris", 0.0),
     (" Paris", "Paris", 0.0), ("The answer", "answer", 0.0), ("１", "1", 0.0),
     ("", "", 1.0), (None, "x", 0.0)],
)
def test_exact_match_strict_is_lm_eval_default(prediction: str | None, reference: str,
                                                expected: float) -> None:
    # lm-evaluation-harness's exact_match without ignore_case, ignore_punctuation or
    # regexes_to_ignore: plain string equality.
    assert exact_match_strict(prediction, reference) == expected


def test_strict_is_registered_but_not_a_default() -> None:
    assert METRIC_FUNCTIONS["exact_match_strict"] is exact_match_strict
    assert "exact_match_strict" not in DEFAULT_METRICS
    assert score("Paris.", ["Paris"], ["exact_match", "exact_match_strict"]) == {
        "exact_match": 1.0, "exact_match_strict": 0.0}


def test_contains_matches_whole_words() -> None:
    assert contains("It is Paris, France.", "paris") == 1.0
    assert contains("Parisian food", "paris") == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [("so the answer is 1,234.", "1234", 1.0), ("3 apples then 5", "5", 1.0),
     ("3 apples then 5", "3", 0.0), ("-7", "-7.0", 1.0), ("none", "4", 0.0),
     ("#### 42", "The answer is 42", 1.0)],
)
def test_numeric_uses_the_last_number(prediction: str, reference: str, expected: float) -> None:
    assert numeric(prediction, reference) == expected


def test_last_number() -> None:
    assert last_number("between 2 and 3.5 units") == 3.5
    assert last_number("no digits") is None


def test_token_f1_hand_computed() -> None:
    # prediction tokens: cat sat mat (3); reference: cat sat on mat (after articles: cat sat on
    # mat, 4); common 3 → precision 1, recall 3/4, F1 = 6/7
    assert token_f1("the cat sat mat", "The cat sat on the mat") == pytest.approx(6 / 7)
    assert token_f1("北京", "北京市") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_several_references_score_their_best() -> None:
    scores = score("Paris", ["London", "paris"], ["exact_match", "token_f1"])
    assert scores == {"exact_match": 1.0, "token_f1": 1.0}


def test_mean_scores() -> None:
    rows = [{"exact_match": 1.0}, {"exact_match": 0.0}, {"exact_match": 1.0}, {"exact_match": 0.0}]
    assert mean_scores(rows, ["exact_match"]) == {"exact_match": 0.5}


def test_normalize_keeps_signs_and_decimals() -> None:
    assert normalize("The answer is \u22121,234.50.") == "answer is -1234.50"
    assert normalize("U.S. x-5 5-3 $-5 50%") == "us x5 53 -5 50"
    assert normalize("答案是－５。") == "答案是-5"


def test_last_number_is_exact() -> None:
    assert last_number("\u22125") == -5
    assert str(last_number("total: $1,234.50")) == "1234.50"
    assert last_number("12345678") != last_number("12345670")


# ── Answer extraction ─────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "spec", "expected"),
    [
        ("3 apples, then the answer is \u22121,234.50.", "last_number", "-1234.50"),
        ("3 apples, then 4", "first_number", "3"),
        ("$-5 or 50%", "first_number", "-5"),
        ("no digits", "last_number", ""),
        ("no digits", "first_number", ""),
        ("\n\n  42 \nmore\n", "first_line", "42"),
        ("", "first_line", ""),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}.", "boxed", "\\frac{1}{2}"),
        ("\\boxed {5}", "boxed", "5"),
        ("\\boxed{}", "boxed", ""),
        ("\\boxed{1} \\boxed{\\frac{1}{2}", "boxed", ""),  # the last one is cut off
        ("no box", "boxed", ""),
        ("The answer is 5. Wait. The answer is 7.", r"The answer is (\S+)", "7."),
        ("The answer is 5. Wait. The answer is 7.", r"(?s)^.*?The answer is (\d+)", "5"),
        ("x=1 y", r"(?:x=(\d+)|y)", "1"),  # the last match whose group took part
        ("Answer:   B  ", r"Answer:(.*)", "B"),
        ("nothing here", r"answer is (\d+)", ""),
        ("unchanged  ", None, "unchanged  "),
    ],
)
def test_extract_answer(text: str, spec: str | None, expected: str) -> None:
    assert extract_answer(text, spec) == expected


def test_extracted_answers_score() -> None:
    prediction = "She pays 3 * $1,000 = $3,000.\nThe answer is \u22123,000.00."
    answer = extract_answer(prediction, "last_number")
    assert (answer, numeric(answer, "-3000"), exact_match(answer, "-3000.00")) == (
        "-3000.00", 1.0, 1.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lastnumber", "unknown extraction preset 'lastnumber': use last_number, "),
        ("answer", "unknown extraction preset 'answer'"),
        ("", "empty extraction spec"),
        ("The answer is (", "bad extraction regex 'The answer is (': missing )"),
        (r"\d+", "extraction regex '\\d+' needs exactly one capture group, has 0"),
        (r"(\d+)-(\d+)", "needs exactly one capture group, has 2"),
    ],
)
def test_bad_extract_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_extract_spec(spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError):
        extract_answer("text", spec)


def test_good_extract_specs_and_presets() -> None:
    for spec in ("last_number", "first_number", "first_line", "boxed", r"#### (\S+)",
                 r"(?P<answer>\d+)"):
        assert check_extract_spec(spec) == spec
    assert list(EXTRACT_PRESETS) == ["last_number", "first_number", "first_line", "boxed"]
    assert all(preset.help for preset in EXTRACT_PRESETS.values())


# ── Standard error of the mean ────────────────────────────────────────────────────────────────


def test_stderr_by_hand() -> None:
    rows = [{"exact_match": 1.0, "token_f1": 1.0}, {"exact_match": 0.0, "token_f1": 0.5},
            {"exact_match": 1.0, "token_f1": 0.0}, {"exact_match": 0.0}]
    # exact_match 1,0,1,0: mean 0.5, squared deviations 4 * 0.25 = 1, sample variance 1/3,
    # stderr sqrt(1/3 / 4) = sqrt(1/12). token_f1 1, .5, 0, 0 (missing counts 0): mean 0.375,
    # squared deviations .390625 + .015625 + .140625 + .140625 = .6875, variance .6875/3.
    means, errors = mean_and_stderr(rows, ["exact_match", "token_f1"])
    assert means == pytest.approx({"exact_match": 0.5, "token_f1": 0.375})
    assert errors == pytest.approx({"exact_match": math.sqrt(1 / 12),
                                    "token_f1": math.sqrt(0.6875 / 3 / 4)})


def test_stderr_edge_cases() -> None:
    assert standard_errors([], ["numeric"]) == {"numeric": None}  # lm-eval: "N/A"
    assert standard_errors([{"numeric": 1.0}], ["numeric"]) == {"numeric": None}
    assert standard_errors([{"numeric": 1.0}] * 5, ["numeric"]) == {"numeric": 0.0}
    # Two rows 0 and 1: sample standard deviation sqrt(0.5), over sqrt(2): 0.5.
    assert standard_errors([{"numeric": 0.0}, {"numeric": 1.0}],
                           ["numeric"]) == {"numeric": pytest.approx(0.5)}
