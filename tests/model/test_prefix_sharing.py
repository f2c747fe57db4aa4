"""Contexts run once with the KV cache and their choices against copies of it: the same
log-likelihoods as feeding every (context, choice) row whole, at the context boundary too,
and only where that feeds fewer tokens."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import SharedForwards
from tui_eval.data import ChoiceSample
from tui_eval.model import prefix_sharing
from tui_eval.model.loglikelihood import ChoiceScorer, PairScore
from tui_eval.model.prefix_sharing import (
    FORWARD_SLOTS,
    common_length,
    pays,
    plan_sharing,
    supports_sharing,
)

LONG = ("What is the capital of France? Add 12 and 30. Name a colour of the sky. How many "
        "legs does a spider have? Translate to French: cat. Write the number after 99.")
CHOICES = ["Paris", "The sum of 12 and 30 is 42.", "Blue.", "A spider has eight legs."]


def scorers(tiny: tuple[Any, Any], **options: Any) -> tuple[ChoiceScorer, ChoiceScorer]:
    model, tokenizer = tiny
    return (ChoiceScorer(model, tokenizer, "cpu", share_prefix="never", **options),
            ChoiceScorer(model, tokenizer, "cpu", share_prefix="always", **options))


def assert_same(scores: list[PairScore], expected: list[PairScore]) -> None:
    assert [s.logprob for s in scores] == pytest.approx([s.logprob for s in expected], abs=1e-4)
    assert [s.is_greedy for s in scores] == [s.is_greedy for s in expected]


def sample(index: int, prompt: str, choices: list[str]) -> ChoiceSample:
    return ChoiceSample(index=index, id=str(index), prompt=prompt, choices=choices, gold=0)


def test_shared_contexts_score_as_whole_rows(tiny: tuple[Any, Any],
                                             shared_forwards: SharedForwards) -> None:
    unshared, shared = scorers(tiny)
    samples = [sample(0, LONG, CHOICES), sample(1, "Hi", ["A", "B", "C", "hello there"]),
               sample(2, "Add 12 and 30. The sum of 12 and 30 is", ["42", "42.", "12", "Blue."]),
               sample(3, LONG[:60], CHOICES[::-1])]
    pairs = unshared.encode_samples(samples)
    expected = unshared.score(pairs, batch_size=1)
    for batch_size in (None, 3, 5):
        shared_forwards.ran = 0
        assert_same(shared.score(pairs, batch_size=batch_size), expected)
        assert shared_forwards.ran >= 1
    # a model whose forward returns every position's logits takes the same plan
    shared.__dict__["_keeps_logits"] = False
    assert_same(shared.score(pairs), expected)


def test_a_choice_merging_with_the_context_shares_only_common_tokens(
        tiny: tuple[Any, Any], shared_forwards: SharedForwards) -> None:
    model, tokenizer = tiny
    unshared, shared = scorers(tiny, target_delimiter="")
    # "3" + "0" merge into one token " 30" in the whole text; "3" + "1" and "3" + " legs" do not
    merged = sample(0, "The sum of 12 and 3", ["0 is the", "0 is 42", "1 and 30", " legs"])
    pairs = unshared.encode_sample(merged)
    context = tokenizer.encode("The sum of 12 and 3")
    assert tokenizer.encode("The sum of 12 and 30 is the")[:len(context)] != context
    rows = [unshared.model_input(p) for p in pairs]
    firsts = [len(r) - len(p.continuation) for r, p in zip(rows, pairs, strict=True)]
    plan = plan_sharing(rows, firsts, [p.context for p in pairs])
    assert plan is not None
    # every continuation keeps its predecessor's logits in the second forward
    assert plan.shared == [min(common_length(rows), *firsts)] * 4
    assert all(n < len(context) + 1 for n in plan.shared)
    assert_same(shared.score(pairs), unshared.score(pairs, batch_size=1))
    assert shared_forwards.ran == 1


def test_empty_contexts_share_nothing_in_a_shared_batch(
        tiny: tuple[Any, Any], shared_forwards: SharedForwards) -> None:
    _, tokenizer = tiny
    unshared, shared = scorers(tiny)
    empty = [sample(0, "", ["France", "Paris is the capital.", "Blue."]),
             sample(1, "  ", ["hello", "The number after 99 is 100."])]
    pairs = unshared.encode_samples([*empty, sample(2, LONG, CHOICES)])
    bos = (tokenizer.bos_token_id,)
    assert [p.context for p in pairs[:5]] == [bos] * 5
    rows = [unshared.model_input(p) for p in pairs]
    plan = plan_sharing(rows, [len(r) - len(p.continuation) for r, p in zip(rows, pairs,
                                                                              strict=True)],
                        [p.context for p in pairs])
    # BOS's logits score the first token of each choice: it stays in the second forward
    assert plan is not None and plan.shared[:5] == [0] * 5 and min(plan.shared[5:]) > 0
    assert_same(shared.score(pairs), unshared.score(pairs, batch_size=1))
    assert shared_forwards.ran == 1
    shared_forwards.ran = 0
    assert_same(shared.score(pairs[:5]), unshared.score(pairs[:5], batch_size=1))
    assert shared_forwards.ran == 0  # empty contexts alone: nothing to share


def test_rows_cut_from_the_left_share_only_what_they_have_in_common(
        tiny: tuple[Any, Any], shared_forwards: SharedForwards) -> None:
    unshared, shared = scorers(tiny, max_length=12)
    pairs = unshared.encode_sample(sample(0, LONG, ["eight legs.", "Paris", "The sum is 42."]))
    rows = [unshared.model_input(p) for p in pairs]
    assert common_length(rows) == 0  # each row was cut at its own place
    assert_same(shared.score(pairs), unshared.score(pairs, batch_size=1))
    assert shared_forwards.ran == 0


def test_the_plan_groups_by_key_and_stops_before_the_scored_tokens() -> None:
    assert common_length([(1, 2, 3), (1, 2), (1, 2, 4)]) == 2
    assert common_length([(5, 6)]) == 2 and common_length([(1,), (2,)]) == 0
    rows = [(1, 2, 3, 4), (1, 2, 3, 5), (1, 2, 9), (1, 7), (7, 8, 9), (6, 8)]
    plan = plan_sharing(rows, firsts=[3, 2, 2, 0, 1, 1], keys=["a", "a", "a", "a", "b", "b"])
    assert plan is not None
    # group "a" has (1,) in common; the fourth row wants the logits of position 0, so it
    # reads none of it. Group "b" has no token in common and shares nothing
    assert plan.prefixes == [(1,)]
    assert (plan.group, plan.shared) == ([0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0])
    assert plan.suffix(2, rows[2]) == (2, 9) and plan.suffix(4, rows[4]) == (7, 8, 9)
    assert plan.cost(rows) == 1 * 1 + 6 * 3
    # up to the first wanted position: (1, 2, 3) for one row, (1, 2) for the other
    two = plan_sharing(rows[:3], firsts=[3, 2, 2], keys=["a"] * 3)
    assert two is not None and (two.prefixes, two.shared) == ([(1, 2)], [2, 2, 2])
    three = plan_sharing(rows[:2], firsts=[3, 2], keys=["a"] * 2)
    assert three is not None and (three.prefixes, three.shared) == ([(1, 2, 3)], [3, 2])
    assert plan_sharing([(1, 2), (3, 4)], [0, 0], ["a", "b"]) is None


def test_sharing_pays_for_long_contexts_with_several_choices() -> None:
    context = tuple(range(100))
    rows = [context + (200 + i, 300 + i) for i in range(4)]
    plan = plan_sharing(rows, [100] * 4, ["q"] * 4)
    assert plan is not None and pays(plan, rows)  # 100 + 4 × 2 slots + one forward < 4 × 102
    short = [(1, 2, 200 + i, 300 + i) for i in range(4)]
    small = plan_sharing(short, [2] * 4, ["q"] * 4)
    assert small is not None and not pays(small, short)
    alone = plan_sharing(rows[:1], [100], ["q"])
    assert alone is not None and not pays(alone, rows[:1])  # one row: nothing to share
    assert plan.cost(rows) + FORWARD_SLOTS < 4 * 102


def test_auto_shares_where_it_pays_only(tiny: tuple[Any, Any],
                                        shared_forwards: SharedForwards) -> None:
    model, tokenizer = tiny
    auto = ChoiceScorer(model, tokenizer, "cpu")
    unshared, _ = scorers(tiny)
    long_pairs = auto.encode_samples([sample(0, LONG, CHOICES), sample(1, LONG[:90], CHOICES)])
    assert_same(auto.score(long_pairs), unshared.score(long_pairs, batch_size=1))
    assert shared_forwards.ran == 1
    short_pairs = auto.encode_samples([sample(0, "Hi", CHOICES)])
    assert_same(auto.score(short_pairs), unshared.score(short_pairs, batch_size=1))
    auto.score(long_pairs, batch_size=1)  # one row a forward: nothing to share
    assert shared_forwards.ran == 1
    with pytest.raises(ValueError, match="share_prefix is one of auto, always, never"):
        ChoiceScorer(model, tokenizer, share_prefix="sometimes")  # type: ignore[arg-type]


def test_a_cache_that_cannot_be_copied_falls_back_to_whole_rows(
        tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    unshared, shared = scorers(tiny)
    monkeypatch.setattr(prefix_sharing, "_copyable", lambda cache: False)
    pairs = shared.encode_sample(sample(0, LONG, CHOICES))
    assert_same(shared.score(pairs), unshared.score(pairs, batch_size=1))
    assert shared._can_share is False  # not asked again


def test_only_full_attention_with_a_padding_mask_shares(tiny: tuple[Any, Any]) -> None:
    from types import SimpleNamespace

    model, _ = tiny
    assert supports_sharing(model)

    def with_config(**config: Any) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(**config))

    assert supports_sharing(with_config(_attn_implementation="eager"))
    assert not supports_sharing(with_config(_attn_implementation="flash_attention_2"))
    assert not supports_sharing(with_config(_attn_implementation="sdpa", sliding_window=4096))
    assert supports_sharing(with_config(_attn_implementation="sdpa", sliding_window=4096,
                                        use_sliding_window=False))
    assert not supports_sharing(with_config(
        _attn_implementation="sdpa", layer_types=["full_attention", "sliding_attention"]))
    assert not supports_sharing(None)


def test_a_failed_shared_batch_scores_the_same_in_smaller_parts(tiny: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = tiny
    scorer = ChoiceScorer(model, tokenizer, simulate_oom_above=2, share_prefix="always")
    pairs = scorer.encode_samples([sample(0, LONG, CHOICES), sample(1, LONG[:70], CHOICES)])
    with pytest.raises(torch.OutOfMemoryError):
        scorer.score(pairs)
    halves: list[PairScore] = []
    for start in range(0, len(pairs), 2):  # what a bisecting OOM policy does
        halves.extend(scorer.score(pairs[start:start + 2]))
    assert_same(halves, ChoiceScorer(model, tokenizer, share_prefix="never").score(pairs, 1))
