"""Multiple-choice scoring: log-likelihoods against a plain forward pass, the token split at
the context boundary, batching, OOM retries, acc and acc_norm, and the shipped demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tui_eval.data import ChoiceSample, load_choice_dataset
from tui_eval.metrics import first_argmax
from tui_eval.model.loglikelihood import (
    ChoiceScorer,
    Pair,
    PairScore,
    ScoringError,
    accuracy,
    choice_result,
    resolve_max_length,
    resolve_target_delimiter,
)

DEMO_DIR = Path(__file__).resolve().parents[2] / "tui_eval" / "demo"


@pytest.fixture()
def scorer(tiny: tuple[Any, Any]) -> ChoiceScorer:
    model, tokenizer = tiny
    return ChoiceScorer(model, tokenizer, "cpu")


def reference_logprob(model: Any, context_ids: list[int], continuation_ids: list[int]) -> float:
    """The continuation's log-probability from one unbatched forward over all its tokens."""
    import torch

    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    start = len(context_ids) - 1  # the logits at position t predict token t + 1
    return sum(logprobs[start + j, token].item() for j, token in enumerate(continuation_ids))


def test_scores_match_a_plain_forward_pass(tiny: tuple[Any, Any], scorer: ChoiceScorer) -> None:
    model, tokenizer = tiny
    context = "What is the capital of France?"
    choices = ["Paris", "Blue", "The number after 99 is 100.", "chat"]
    scores = scorer.score_pairs([(context, " " + c) for c in choices])
    context_ids = tokenizer.encode(context)
    for choice, score in zip(choices, scores, strict=True):
        continuation_ids = tokenizer.encode(" " + choice)
        assert tokenizer.encode(context + " " + choice) == context_ids + continuation_ids
        expected = reference_logprob(model, context_ids, continuation_ids)
        assert score.logprob == pytest.approx(expected, abs=1e-4)


def test_acc_and_acc_norm_from_hand_computed_logprobs(tiny: tuple[Any, Any],
                                                      scorer: ChoiceScorer) -> None:
    model, tokenizer = tiny
    context = "Add 12 and 30."
    choices = ["42", "The sum is 42.", "forty-two", "12"]
    context_ids = tokenizer.encode(context)
    expected = [reference_logprob(model, context_ids,
                                  tokenizer.encode(context + " " + c)[len(context_ids):])
                for c in choices]
    pred = max(range(4), key=lambda i: (expected[i], -i))
    pred_norm = max(range(4), key=lambda i: (expected[i] / len(choices[i]), -i))
    for gold in range(4):
        sample = ChoiceSample(index=0, id="s", prompt=context, choices=choices, gold=gold)
        (result,) = scorer.score_samples([sample])
        assert result.logprobs == pytest.approx(expected, abs=1e-4)
        assert (result.pred, result.pred_norm) == (pred, pred_norm)
        assert (result.acc, result.acc_norm) == (float(gold == pred), float(gold == pred_norm))


def test_acc_norm_divides_by_the_choice_length_without_the_delimiter() -> None:
    sample = ChoiceSample(index=0, id="s", prompt="q", choices=["a", "bcd"], gold=1)
    result = choice_result(sample, [PairScore(-2.0, False), PairScore(-5.0, False)])
    # acc: -2 beats -5. acc_norm: -5/3 beats -2/1; counting the " " before each choice
    # (-5/4 against -2/2) would pick the first choice instead
    assert (result.pred, result.pred_norm, result.acc, result.acc_norm) == (0, 1, 0.0, 1.0)
    tie = choice_result(ChoiceSample(0, "t", "q", ["a", "bb"], 0),
                        [PairScore(-1.0, True), PairScore(-2.0, False)])
    assert tie.pred_norm == 0  # -1 against -1 goes to the first choice, as numpy's argmax
    assert first_argmax([1.0, 3.0, 3.0]) == 1
    assert accuracy([result, tie]) == {"acc": 0.5, "acc_norm": 1.0}
    assert accuracy([]) == {"acc": 0.0, "acc_norm": 0.0}


def test_batched_equals_one_at_a_time(scorer: ChoiceScorer) -> None:
    contexts = ["What is the capital of France?", "Hi", "Add 12 and 30. The sum of 12 and 30 is",
                "Name a colour of the sky on a clear day.", "How many legs does a spider have?"]
    choices = ["Paris", "42", "Blue", "eight legs", "A spider has eight legs.", "chat", "x"]
    pairs = [(c, " " + x) for c in contexts for x in choices]
    single = scorer.score_pairs(pairs, batch_size=1)
    for batch_size in (None, 3, 8):
        batched = scorer.score_pairs(pairs, batch_size=batch_size)
        assert [s.logprob for s in batched] == pytest.approx([s.logprob for s in single],
                                                             abs=1e-4)
        assert [s.is_greedy for s in batched] == [s.is_greedy for s in single]


def test_full_logits_path_matches_the_kept_logits_path(scorer: ChoiceScorer) -> None:
    pairs = [("Hi", " hello there"), ("What is the capital of France?", " Paris")]
    kept = scorer.score_pairs(pairs)
    scorer.__dict__["_keeps_logits"] = False  # a model whose forward has no logits_to_keep
    full = scorer.score_pairs(pairs)
    assert [s.logprob for s in kept] == pytest.approx([s.logprob for s in full], abs=1e-5)


def test_is_greedy_follows_the_models_argmax(tiny: tuple[Any, Any],
                                             scorer: ChoiceScorer) -> None:
    import torch

    model, tokenizer = tiny
    context_ids = tokenizer.encode("Hi")
    ids = list(context_ids)
    for _ in range(3):  # the model's own greedy continuation
        with torch.no_grad():
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    greedy = Pair(tuple(context_ids), tuple(ids[len(context_ids):]))
    last = greedy.continuation[-1]
    other = Pair(greedy.context, greedy.continuation[:-1] + ((last + 1) % len(tokenizer),))
    hit, miss = scorer.score([greedy, other])
    assert hit.is_greedy and not miss.is_greedy
    assert hit.logprob > miss.logprob


def test_a_choice_that_merges_with_the_context_keeps_lm_evals_split(
        tiny: tuple[Any, Any], scorer: ChoiceScorer) -> None:
    model, tokenizer = tiny
    context, continuation = "The sum of 12 and 3", "0 is the"
    context_ids = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    # "3" + "0" become one token " 30": the whole text has as many tokens up to " is" as the
    # context alone, so the continuation is what follows them, " the"
    assert whole[:len(context_ids)] != context_ids
    continuation_ids = whole[len(context_ids):]
    assert continuation_ids == tokenizer.encode(" the")
    pair = scorer.encode_pair(context, continuation)
    assert (list(pair.context), list(pair.continuation)) == (context_ids, continuation_ids)
    (score,) = scorer.score([pair])
    assert score.logprob == pytest.approx(
        reference_logprob(model, context_ids, continuation_ids), abs=1e-4)
    with pytest.raises(ScoringError, match="adds no tokens"):
        scorer.encode_pair("capital of Fr", "ance")  # " France" is one token: nothing is left


def test_empty_context_conditions_on_bos(tiny: tuple[Any, Any], scorer: ChoiceScorer) -> None:
    model, tokenizer = tiny
    bos = tokenizer.bos_token_id
    pair = scorer.encode_pair("", " France")
    assert pair.context == (bos,)
    assert list(pair.continuation) == tokenizer.encode(" France", add_special_tokens=False)
    (score,) = scorer.score([pair])
    assert score.logprob == pytest.approx(
        reference_logprob(model, [bos], list(pair.continuation)), abs=1e-4)
    # a continuation that starts with BOS itself gives it up as the context
    assert scorer.encode_pair("", "<s>France") == scorer.encode_pair("<s>", "France")
    assert scorer.encode_pair("", "<s>France").context == (bos,)
    sample = ChoiceSample(index=0, id="e", prompt="", choices=["France", "Paris"], gold=0)
    assert [p.context for p in scorer.encode_sample(sample)] == [(bos,), (bos,)]


def test_trailing_space_in_the_context_moves_to_the_continuation(scorer: ChoiceScorer) -> None:
    assert scorer.encode_pair("Paris is the ", "capital") == scorer.encode_pair(
        "Paris is the", " capital")
    spaced = ChoiceSample(index=0, id="a", prompt="Paris is the ", choices=["capital"] * 2, gold=0)
    plain = ChoiceSample(index=0, id="a", prompt="Paris is the", choices=["capital"] * 2, gold=0)
    with_delimiter = ChoiceScorer(scorer.model, scorer.tokenizer, target_delimiter="")
    without = ChoiceScorer(scorer.model, scorer.tokenizer, target_delimiter=" ")
    assert with_delimiter.encode_sample(spaced) == without.encode_sample(plain)


def test_a_tokenizer_that_adds_bos(tiny: tuple[Any, Any], tiny_model: Path) -> None:
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    model, _ = tiny
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)])
    assert tokenizer.encode("Hi")[0] == bos
    scorer = ChoiceScorer(model, tokenizer)
    pair = scorer.encode_pair("Hi", " hello")
    assert pair.context == (bos, *tokenizer.encode("Hi", add_special_tokens=False))
    assert list(pair.continuation) == tokenizer.encode(" hello", add_special_tokens=False)
    # a context that already starts with BOS does not get a second one
    assert scorer.encode_pair("<s>Hi", " hello") == pair
    # the empty context: BOS, then the continuation without special tokens
    assert scorer.encode_pair("", " hello") == Pair((bos,), pair.continuation)
    # whitespace alone is an empty context whose whitespace moved to the continuation
    assert scorer.encode_pair("  ", "hello") == scorer.encode_pair("", "  hello")
    forced = ChoiceScorer(model, tokenizer, add_special_tokens=True)
    assert forced.encode_pair("<s>Hi", " hello") == pair
    plain = ChoiceScorer(model, tokenizer, add_special_tokens=False)
    assert plain.encode_pair("Hi", " hello").context == tuple(
        tokenizer.encode("Hi", add_special_tokens=False))


def test_long_inputs_are_cut_from_the_left(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    scorer = ChoiceScorer(model, tokenizer, max_length=10)
    context = "How many legs does a spider have? A spider has"
    continuation = " eight legs."
    pair = scorer.encode_pair(context, continuation)
    window = (list(pair.context) + list(pair.continuation))[-11:]  # max_length + 1 tokens
    (score,) = scorer.score([pair])
    assert len(pair.context) + len(pair.continuation) > len(window)  # something was cut
    cut = len(window) - len(pair.continuation)
    assert score.logprob == pytest.approx(
        reference_logprob(model, window[:cut], window[cut:]), abs=1e-4)
    with pytest.raises(ScoringError, match="more than the model's 10 positions"):
        scorer.encode_pair("Hi", " The number after 99 is 100. The sum of 12 and 30 is 42.")


def test_max_length_comes_from_the_config_then_the_tokenizer(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    assert resolve_max_length(model.config, tokenizer) == 1024

    class Bare:
        model_max_length = 1000000000000000019884624838656

    class Limited:
        model_max_length = 77

    assert resolve_max_length(object(), Bare()) == 2048
    assert resolve_max_length(object(), Limited()) == 77


def test_a_failed_batch_scores_the_same_in_smaller_parts(tiny: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = tiny
    scorer = ChoiceScorer(model, tokenizer, simulate_oom_above=2)
    samples = [ChoiceSample(index=i, id=str(i), prompt=p, choices=["Paris", "blue", "42"], gold=0)
               for i, p in enumerate(["Hi", "Sky?", "Add 1 and 1.", "How many legs?"])]
    pairs = scorer.encode_samples(samples)
    with pytest.raises(torch.OutOfMemoryError):
        scorer.score(pairs)
    halves: list[PairScore] = []
    for start in range(0, len(pairs), 2):  # what a bisecting OOM policy does
        halves.extend(scorer.score(pairs[start:start + 2]))
    reference = ChoiceScorer(model, tokenizer).score(pairs, batch_size=1)
    assert [s.logprob for s in halves] == pytest.approx([s.logprob for s in reference],
                                                        abs=1e-4)
    in_twos = scorer.score(pairs, batch_size=2)  # rows per forward stay within the limit
    assert [s.logprob for s in in_twos] == pytest.approx([s.logprob for s in halves], abs=1e-4)


def test_choices_sharing_their_input_share_a_row(scorer: ChoiceScorer) -> None:
    sample = ChoiceSample(index=0, id="s", prompt="Hi", choices=["A", "B", "C", "D"], gold=0)
    pairs = scorer.encode_sample(sample)
    assert len({scorer.model_input(p) for p in pairs}) == 1  # one token each after "Hi"
    shared = scorer.score(pairs)
    alone = [scorer.score([p])[0] for p in pairs]
    assert [s.logprob for s in shared] == pytest.approx([s.logprob for s in alone], abs=1e-5)


def test_from_backend_and_sample_errors(tiny_model: Path) -> None:
    from tui_eval.model.backend import HFBackend

    backend = HFBackend(str(tiny_model), device="cpu", dtype="float32")
    with pytest.raises(ValueError, match="load the model first"):
        ChoiceScorer.from_backend(backend)
    backend.load_model()
    scorer = ChoiceScorer.from_backend(backend, target_delimiter="")
    bad = ChoiceSample(index=0, id="q7", prompt="capital of Fr", choices=["ance", "x"], gold=0)
    with pytest.raises(ScoringError, match="sample q7: the continuation adds no tokens"):
        scorer.encode_samples([bad])


def test_demo_choice_set_scores_high_on_the_demo_model() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = DEMO_DIR / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = load_choice_dataset(DEMO_DIR / "arithmetic_choice.jsonl")
    assert 100 <= len(dataset.samples) <= 200
    # the demo tokenizer has no space token: "5+8=" is continued by "13" directly
    scorer = ChoiceScorer(model, tokenizer, target_delimiter="")
    figures = accuracy(scorer.score_samples(dataset.samples, batch_size=32))
    assert figures["acc"] >= 0.9
    assert figures["acc_norm"] >= 0.9


def test_auto_target_delimiter_is_a_space_or_nothing_under_a_chat_template() -> None:
    from tui_eval.config import DEFAULTS, resolve_config

    assert DEFAULTS["target_delimiter"] == "auto"
    assert resolve_target_delimiter("auto", chat_template=False) == " "
    assert resolve_target_delimiter("auto", chat_template=True) == ""
    for explicit in (" ", "", "\n"):  # set by the user: kept, chat template or not
        assert resolve_target_delimiter(explicit, chat_template=True) == explicit
        config = resolve_config(None, {"target_delimiter": explicit})
        assert config.target_delimiter == explicit
