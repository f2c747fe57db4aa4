"""Multiple-choice scoring by log-likelihood: the summed log-probability of each choice after
its context, computed in batched forward passes, and the acc and acc_norm that follow.

The token split, the empty-context prefix, the left truncation and both metrics follow
lm-evaluation-harness 0.4 (``output_type: multiple_choice``), so figures are comparable:

* the continuation is ``target_delimiter + choice``; trailing whitespace of the context
  moves to the front of the continuation;
* context tokens are ``tokenize(context)``, continuation tokens are
  ``tokenize(context + continuation)[len(context tokens):]``;
* an empty context is replaced by the BOS token (EOS when there is none); so is one of
  whitespace only, once its whitespace has moved (lm-eval stops on that case);
* the model sees ``(context + continuation)[-(max_length + 1):][:-1]``;
* ``acc`` picks the highest sum, ``acc_norm`` the highest sum divided by the choice's length
  in characters (the choice alone, without the delimiter).

Rows of one context can share it: its tokens run once with the KV cache and each choice
runs against a copy (model/prefix_sharing.py), where that feeds fewer tokens.

Scoring holds no state between calls, so a batch that fails (an OOM) can simply be scored
again in smaller parts.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tui_eval.data import ChoiceSample
from tui_eval.metrics import choice_picks
from tui_eval.model.prefix_sharing import (
    SHARE_MODES,
    ShareMode,
    forward_shared,
    pays,
    plan_sharing,
    supports_sharing,
    worth_grouping,
)

DEFAULT_TARGET_DELIMITER = " "
AUTO = "auto"


def resolve_target_delimiter(setting: str, chat_template: bool) -> str:
    """The delimiter a run scores with: the one set, or for "auto" a space without a chat
    template and nothing with one, where the choice follows the assistant header (as
    lm-eval does with --apply_chat_template)."""
    if setting != AUTO:
        return setting
    return "" if chat_template else DEFAULT_TARGET_DELIMITER
DEFAULT_MAX_LENGTH = 2048  # when neither the model config nor the tokenizer names one
_TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' "no limit" marker
_LENGTH_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")


class ScoringError(ValueError):
    """A pair that cannot be scored: its continuation has no tokens or does not fit."""


@dataclass(frozen=True)
class Pair:
    """One (context, continuation) pair as token ids. ``sample`` and ``choice`` say where
    it came from: the sample's position in the list given to ``encode_samples`` and the
    choice's index in that sample."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]
    sample: int = 0
    choice: int = 0


@dataclass(frozen=True)
class PairScore:
    logprob: float  # summed log-probability of the continuation tokens
    is_greedy: bool  # whether greedy decoding would produce exactly these tokens


@dataclass
class ChoiceResult:
    sample: ChoiceSample
    logprobs: list[float]
    is_greedy: list[bool]
    pred: int  # the choice with the highest summed log-probability
    pred_norm: int  # the highest sum per character of the choice

    @property
    def acc(self) -> float:
        return 1.0 if self.pred == self.sample.gold else 0.0

    @property
    def acc_norm(self) -> float:
        return 1.0 if self.pred_norm == self.sample.gold else 0.0


def choice_result(sample: ChoiceSample, scores: Sequence[PairScore]) -> ChoiceResult:
    if len(scores) != len(sample.choices):
        raise ValueError(f"sample {sample.id}: {len(scores)} scores for "
                         f"{len(sample.choices)} choices")
    logprobs = [s.logprob for s in scores]
    pred, pred_norm = choice_picks(sample.choices, logprobs)
    return ChoiceResult(sample=sample, logprobs=logprobs, is_greedy=[s.is_greedy for s in scores],
                        pred=pred, pred_norm=pred_norm)


def collect_results(samples: Sequence[ChoiceSample], pairs: Sequence[Pair],
                    scores: Sequence[PairScore]) -> list[ChoiceResult]:
    """Group pair scores back into one result per sample, in the samples' order."""
    per_sample: list[list[PairScore | None]] = [[None] * len(s.choices) for s in samples]
    for pair, score in zip(pairs, scores, strict=True):
        per_sample[pair.sample][pair.choice] = score
    results = []
    for sample, found in zip(samples, per_sample, strict=True):
        if any(score is None for score in found):
            raise ValueError(f"sample {sample.id}: some choices were not scored")
        results.append(choice_result(sample, found))  # type: ignore[arg-type]
    return results


def accuracy(results: Sequence[ChoiceResult]) -> dict[str, float]:
    """Mean acc and acc_norm over the results."""
    n = len(results)
    if n == 0:
        return {"acc": 0.0, "acc_norm": 0.0}
    return {"acc": sum(r.acc for r in results) / n,
            "acc_norm": sum(r.acc_norm for r in results) / n}


def resolve_max_length(config: Any, tokenizer: Any) -> int:
    """The longest input the model takes: its config's position limit, else the tokenizer's
    model_max_length when it is set, else 2048."""
    config = getattr(config, "text_config", None) or config
    for attr in _LENGTH_ATTRS:
        value = getattr(config, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != _TOKENIZER_INFINITY:
        return int(limit)
    return DEFAULT_MAX_LENGTH


def _split_trailing_space(context: str) -> tuple[str, str]:
    """The context without its trailing whitespace, and that whitespace: it belongs to the
    continuation so that a word and its leading space stay one token."""
    stripped = context.rstrip()
    return stripped, context[len(stripped):]


class ChoiceScorer:
    """Scores (context, continuation) pairs with a causal LM. Per batch an engine calls
    ``score(pairs)``; ``score_samples`` does the whole pipeline for a list of samples."""

    def __init__(self, model: Any, tokenizer: Any, device: str | None = None, *,
                 target_delimiter: str = DEFAULT_TARGET_DELIMITER,
                 max_length: int | None = None, add_special_tokens: bool | None = None,
                 prefix_token_id: int | None = None,
                 simulate_oom_above: int | None = None,
                 share_prefix: ShareMode = "auto") -> None:
        if share_prefix not in SHARE_MODES:
            raise ValueError(f"share_prefix is one of {', '.join(SHARE_MODES)}, "
                             f"not {share_prefix!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.device = device if device is not None else str(next(model.parameters()).device)
        self.target_delimiter = target_delimiter
        self.max_length = max_length or resolve_max_length(model.config, tokenizer)
        # None: the tokenizer's own default (BOS for most), as lm-eval encodes
        self.add_special_tokens = add_special_tokens
        if prefix_token_id is None:
            prefix_token_id = (tokenizer.bos_token_id if tokenizer.bos_token_id is not None
                               else tokenizer.eos_token_id)
        if prefix_token_id is None:
            raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition an "
                             "empty context on; pass prefix_token_id")
        self.prefix_token_id: int = prefix_token_id
        self.simulate_oom_above = simulate_oom_above
        # "auto": a batch's rows share their context where that feeds fewer tokens
        self.share_prefix: ShareMode = share_prefix

    @classmethod
    def from_backend(cls, backend: Any, **options: Any) -> ChoiceScorer:
        """A scorer over a loaded ``HFBackend``'s model, tokenizer and device. With a chat
        template the contexts must be rendered by ``backend.render`` and already hold BOS."""
        if backend.model is None:
            raise ValueError("load the model first")
        if getattr(backend, "use_chat_template", False):
            options.setdefault("add_special_tokens", False)
        return cls(backend.model, backend.tokenizer, backend.device, **options)

    # ── tokens ──────────────────────────────────────────────────────────────────────────

    @cached_property
    def _prefix_text(self) -> str:
        return self.tokenizer.decode([self.prefix_token_id])

    def _encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        if add_special_tokens is None:
            if self._prefix_text and text.startswith(self._prefix_text):
                add_special_tokens = False  # the text already carries its BOS
            else:
                add_special_tokens = self.add_special_tokens
        kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return list(self.tokenizer.encode(text, **kwargs))

    def _check(self, pair: Pair) -> Pair:
        if not pair.continuation:
            raise ScoringError("the continuation adds no tokens after the context")
        if len(pair.continuation) > self.max_length:
            raise ScoringError(f"the continuation has {len(pair.continuation)} tokens, more "
                               f"than the model's {self.max_length} positions")
        return pair

    def _encode_after_empty(self, continuation: str, sample: int, choice: int) -> Pair:
        tokens = self._encode(continuation, add_special_tokens=False)
        if tokens and tokens[0] == self.prefix_token_id:  # it already starts with the prefix
            return self._check(Pair(tuple(tokens[:1]), tuple(tokens[1:]), sample, choice))
        return self._check(Pair((self.prefix_token_id,), tuple(tokens), sample, choice))

    def encode_pair(self, context: str, continuation: str, *, sample: int = 0,
                    choice: int = 0) -> Pair:
        """Token ids for one pair; ``continuation`` already holds its delimiter."""
        context, space = _split_trailing_space(context)
        continuation = space + continuation
        if context == "":
            return self._encode_after_empty(continuation, sample, choice)
        context_ids = self._encode(context)
        whole = self._encode(context + continuation)
        return self._check(Pair(tuple(context_ids), tuple(whole[len(context_ids):]),
                                sample, choice))

    def continuation(self, choice: str) -> str:
        return self.target_delimiter + choice

    def encode_sample(self, sample: ChoiceSample, position: int = 0) -> list[Pair]:
        """One pair per choice; the context is tokenized once for all of them."""
        context, space = _split_trailing_space(sample.prompt)
        if context == "":
            return [self._encode_after_empty(space + self.continuation(choice), position, i)
                    for i, choice in enumerate(sample.choices)]
        context_ids = tuple(self._encode(context))
        pairs = []
        for i, choice in enumerate(sample.choices):
            whole = self._encode(context + space + self.continuation(choice))
            pairs.append(self._check(Pair(context_ids, tuple(whole[len(context_ids):]),
                                          position, i)))
        return pairs

    def encode_samples(self, samples: Sequence[ChoiceSample]) -> list[Pair]:
        """Every choice of every sample as a pair; ``Pair.sample`` is the position in
        ``samples``. Raises ScoringError naming the sample when a choice cannot be scored."""
        pairs: list[Pair] = []
        for position, sample in enumerate(samples):
            try:
                pairs.extend(self.encode_sample(sample, position))
            except ScoringError as exc:
                raise ScoringError(f"sample {sample.id}: {exc}") from None
        return pairs

    def model_input(self, pair: Pair) -> tuple[int, ...]:
        """What the model reads for a pair: context and continuation without the last token,
        cut from the left to the model's length."""
        return (pair.context + pair.continuation)[-(self.max_length + 1):][:-1]

    # ── scoring ─────────────────────────────────────────────────────────────────────────

    def score_pairs(self, pairs: Sequence[tuple[str, str]],
                    batch_size: int | None = None) -> list[PairScore]:
        """Scores for (context, continuation) strings, in their order."""
        return self.score([self.encode_pair(c, x) for c, x in pairs], batch_size)

    def score_samples(self, samples: Sequence[ChoiceSample],
                      batch_size: int | None = None) -> list[ChoiceResult]:
        pairs = self.encode_samples(samples)
        return collect_results(samples, pairs, self.score(pairs, batch_size))

    def score(self, pairs: Sequence[Pair], batch_size: int | None = None) -> list[PairScore]:
        """Scores for encoded pairs, in their order: the unit an engine batches and an OOM
        policy retries. Pairs with the same model input (choices that differ only in their
        last token) share one row. Rows run longest first, ``batch_size`` rows per forward
        (all of them in one when None); where rows of one context can share it, the rows of
        a context stay together."""
        if not pairs:
            return []
        row_of: dict[tuple[int, ...], int] = {}
        rows: list[tuple[int, ...]] = []
        members: list[list[int]] = []  # pair positions per row
        for position, pair in enumerate(pairs):
            tokens = self.model_input(pair)
            row = row_of.setdefault(tokens, len(rows))
            if row == len(rows):
                rows.append(tokens)
                members.append([])
            members[row].append(position)
        keys = [pairs[positions[0]].context for positions in members]
        order = self._order(rows, keys, [self._first(rows[r], pairs, members[r])
                                         for r in range(len(rows))])
        size = batch_size or len(order)
        scores: list[PairScore | None] = [None] * len(pairs)
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            self._score_rows([rows[r] for r in chunk],
                             [[(p, pairs[p].continuation) for p in members[r]] for r in chunk],
                             scores, [keys[r] for r in chunk])
        return scores  # type: ignore[return-value]

    @staticmethod
    def _first(row: tuple[int, ...], pairs: Sequence[Pair], positions: list[int]) -> int:
        """The first position of ``row`` whose logits score one of its pairs."""
        return len(row) - max(len(pairs[p].continuation) for p in positions)

    def _order(self, rows: list[tuple[int, ...]], keys: list[tuple[int, ...]],
               firsts: list[int]) -> list[int]:
        """Rows longest first, which keeps padding small and brings an OOM on the first
        batch; a context's rows together when sharing contexts would feed fewer tokens."""
        longest = sorted(range(len(rows)), key=lambda r: (-len(rows[r]), rows[r]))
        if not self._can_share:
            return longest
        plan = plan_sharing(rows, firsts, keys)
        if plan is None:
            return longest
        if self.share_prefix == "auto" and not worth_grouping(plan, rows):
            return longest
        by_key: dict[tuple[int, ...], list[int]] = {}
        for r in longest:
            by_key.setdefault(keys[r], []).append(r)
        return [r for group in by_key.values() for r in group]  # a group's longest row first

    @cached_property
    def _keeps_logits(self) -> bool:
        """Whether the model can return logits for the last positions only: with a large
        vocabulary the full logits dominate memory, and scoring needs a few positions."""
        try:
            return "logits_to_keep" in inspect.signature(self.model.forward).parameters
        except (TypeError, ValueError):
            return False

    @cached_property
    def _can_share(self) -> bool:
        return self.share_prefix != "never" and supports_sharing(self.model)

    def _score_rows(self, rows: list[tuple[int, ...]],
                    wanted: list[list[tuple[int, tuple[int, ...]]]],
                    scores: list[PairScore | None], keys: list[tuple[int, ...]]) -> None:
        """Fills ``scores`` for the pairs of each row: one forward over right-padded rows, or
        two where the rows share their contexts."""
        import torch

        if self.simulate_oom_above is not None and len(rows) > self.simulate_oom_above:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate a batch of {len(rows)} rows "
                f"(simulated: --simulate-oom-above {self.simulate_oom_above})")
        firsts = [len(row) - max(len(cont) for _, cont in ps)
                  for row, ps in zip(rows, wanted, strict=True)]
        found = self._forward_shared(rows, firsts, keys) if self._can_share else None
        if found is None:
            found = self._forward(rows, min(firsts))
        logits, starts = found
        with torch.inference_mode():
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            greedy = logits.argmax(dim=-1)
            row_index: list[int] = []
            positions: list[int] = []
            targets: list[int] = []
            spans: list[tuple[int, int, int]] = []  # (pair position, start, end) in the flat list
            for i, (row, pair_list) in enumerate(zip(rows, wanted, strict=True)):
                for position, cont in pair_list:
                    start = len(targets)
                    row_index.extend([i] * len(cont))
                    positions.extend(range(len(row) - len(cont) - starts[i],
                                           len(row) - starts[i]))
                    targets.extend(cont)
                    spans.append((position, start, len(targets)))
            index = torch.tensor(row_index, device=logits.device)
            where = torch.tensor(positions, device=logits.device)
            target = torch.tensor(targets, device=logits.device)
            values = logprobs[index, where, target].tolist()
            hits = (greedy[index, where] == target).tolist()
        for position, start, end in spans:
            scores[position] = PairScore(logprob=sum(values[start:end]),
                                         is_greedy=all(hits[start:end]))

    def _forward_shared(self, rows: list[tuple[int, ...]], firsts: list[int],
                        keys: list[tuple[int, ...]]) -> tuple[Any, list[int]] | None:
        """The shared plan's logits and each row's first logits position, or None where it
        does not pay (or the model's cache cannot be copied across rows)."""
        plan = plan_sharing(rows, firsts, keys)
        if plan is None or (self.share_prefix == "auto" and not pays(plan, rows)):
            return None
        found = forward_shared(self.model, rows, firsts, plan, self.device, self._keeps_logits)
        if found is None:
            self.__dict__["_can_share"] = False  # ask once: the model's cache will not change
        return found

    def _forward(self, rows: list[tuple[int, ...]], first: int) -> tuple[Any, list[int]]:
        """Logits of one forward over right-padded rows, from position ``first`` where the
        model can keep only those."""
        import torch

        width = max(len(r) for r in rows)
        batch = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        # right padding: causal attention keeps the padding out of every real position
        options: dict[str, Any] = {}
        offset = 0
        if self._keeps_logits:
            options["logits_to_keep"] = width - first
            offset = first
        with torch.inference_mode():
            logits = self.model(input_ids=batch.to(self.device), **options).logits
        return logits, [offset] * len(rows)
