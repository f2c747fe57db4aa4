"""Metrics on hand-checked cases."""

from __future__ import annotations

import pytest

from tui_eval.metrics import (
    contains,
    exact_match,
    last_number,
    mean_scores,
    normalize,
    numeric,
    score,
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
