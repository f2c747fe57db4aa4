"""One forward pass over the tokens that several model inputs share, then one over what each
adds: the shared prefix runs once with the KV cache, the cache is copied to every row that
starts with it, and only each row's remaining tokens are fed.

Rows are grouped (by the caller: the pairs of one context); a group shares the longest
common token prefix of its rows, each row's share cut before the first position whose
logits it wants, so every scored token still gets its logits from the second pass. Only
tokens that really are common are shared, whatever the tokenizer did at the boundary; an
empty context (BOS alone) has nothing to share. Whether sharing pays is decided per batch
from the padded token counts of both plans and the fixed cost of a forward.

Prefixes are right-padded; the second pass masks each row's padding slots and numbers its
positions from its own prefix length, so each row sees exactly its tokens at their
positions.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ShareMode = Literal["auto", "always", "never"]
SHARE_MODES: tuple[ShareMode, ...] = ("auto", "always", "never")
# keep a context's rows together when sharing would feed under this share of their tokens:
# grouping them costs padding in the batches where sharing then does not pay
SHARED_TOKENS_BELOW = 0.8
# the fixed cost of the extra forward (module dispatch, mask, cache copy) in token slots:
# about 1.5 ms against 5 µs a slot for the CPU test model; a GPU's launches are alike
FORWARD_SLOTS = 256
# the attention implementations whose masks follow a 2D padding mask over cache slots
_MASKED_ATTENTION = ("eager", "sdpa")


@dataclass(frozen=True)
class SharingPlan:
    """``prefixes``: the tokens each sharing group runs once. Per row: ``group``, the index
    of its prefix (0 for a row that shares nothing), and ``shared``, how many of its first
    tokens the start of that prefix stands for (0: none)."""

    prefixes: list[tuple[int, ...]]
    group: list[int]
    shared: list[int]

    def suffix(self, row_index: int, row: tuple[int, ...]) -> tuple[int, ...]:
        return row[self.shared[row_index]:]

    def cost(self, rows: Sequence[tuple[int, ...]]) -> int:
        """Token slots both forwards feed, padding included."""
        width = max(len(self.suffix(i, row)) for i, row in enumerate(rows))
        return len(self.prefixes) * max(map(len, self.prefixes)) + len(rows) * width


def common_length(rows: Sequence[tuple[int, ...]]) -> int:
    """The length of the longest token prefix common to all ``rows``: that of the first and
    last in lexicographic order, which bound every other."""
    low, high = min(rows), max(rows)
    for position, (a, b) in enumerate(zip(low, high, strict=False)):
        if a != b:
            return position
    return len(low)  # the lowest is a prefix of the highest


def plan_sharing(rows: Sequence[tuple[int, ...]], firsts: Sequence[int],
                 keys: Sequence[Hashable]) -> SharingPlan | None:
    """Rows with the same key share their common prefix, each row up to the first position
    whose logits it wants (``firsts``): a row wanting them earlier reads fewer of the
    group's cached tokens. None when no row shares a token."""
    members: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    prefixes: list[tuple[int, ...]] = []
    group = [0] * len(rows)
    shared = [0] * len(rows)
    for indices in members.values():
        common = common_length([rows[i] for i in indices])
        lengths = [min(common, firsts[i]) for i in indices]
        if max(lengths) == 0:
            continue
        for i, length in zip(indices, lengths, strict=True):
            group[i], shared[i] = len(prefixes), length
        prefixes.append(rows[indices[0]][:max(lengths)])
    return SharingPlan(prefixes, group, shared) if prefixes else None


def padded_cost(rows: Sequence[tuple[int, ...]]) -> int:
    """Token slots one right-padded forward over ``rows`` feeds."""
    return len(rows) * max(map(len, rows))


def pays(plan: SharingPlan, rows: Sequence[tuple[int, ...]]) -> bool:
    """Whether the two forwards of the plan cost less than one over the whole rows."""
    return plan.cost(rows) + FORWARD_SLOTS < padded_cost(rows)


def worth_grouping(plan: SharingPlan, rows: Sequence[tuple[int, ...]]) -> bool:
    """Whether sharing would spare enough of the rows' tokens to keep each group's rows
    in the same batches."""
    fed = sum(map(len, rows))
    return sum(map(len, plan.prefixes)) + fed - sum(plan.shared) < SHARED_TOKENS_BELOW * fed


def supports_sharing(model: Any) -> bool:
    """Whether the model's attention takes a padding mask over cached slots as this module
    builds it: full attention in every layer (a sliding window counts slots, padding
    included) and an eager or SDPA kernel."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    config = getattr(config, "text_config", None) or config
    if getattr(config, "_attn_implementation", None) not in _MASKED_ATTENTION:
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(kind == "full_attention" for kind in layer_types)
    return (getattr(config, "sliding_window", None) is None
            or getattr(config, "use_sliding_window", True) is False)


def _cache_argument(model: Any) -> str:
    """The forward's name for the KV cache: ``cache`` from transformers 5, else
    ``past_key_values``."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def _copyable(cache: Any) -> bool:
    """A cache whose rows can be picked per batch row, none of them a sliding window."""
    if cache is None or not hasattr(cache, "batch_select_indices"):
        return False
    return not any(getattr(layer, "is_sliding", False) for layer in getattr(cache, "layers", ()))


def forward_shared(model: Any, rows: Sequence[tuple[int, ...]], firsts: Sequence[int],
                   plan: SharingPlan, device: str,
                   keeps_logits: bool) -> tuple[Any, list[int]] | None:
    """The logits of ``rows`` by the plan, and per row the row position of the logits'
    first column. None when the model's cache cannot be copied across rows (nothing is
    lost: the caller runs the rows unshared)."""
    import torch

    cache_name = _cache_argument(model)
    width = max(map(len, plan.prefixes))
    prefix = torch.tensor([list(p) + [0] * (width - len(p)) for p in plan.prefixes],
                          dtype=torch.long)
    suffixes = [plan.suffix(i, row) for i, row in enumerate(rows)]
    suffix_width = max(map(len, suffixes))
    ids = torch.tensor([list(x) + [0] * (suffix_width - len(x)) for x in suffixes],
                       dtype=torch.long)
    # each row sees its group's prefix (not that prefix's padding), then its own tokens
    mask = torch.tensor([[1] * n + [0] * (width - n) + [1] * len(x) + [0] * (suffix_width - len(x))
                         for n, x in zip(plan.shared, suffixes, strict=True)], dtype=torch.long)
    positions = (torch.tensor(plan.shared, dtype=torch.long)[:, None]
                 + torch.arange(suffix_width, dtype=torch.long))
    # the first suffix column whose logits some row wants
    first = min(f - plan.shared[i] for i, f in enumerate(firsts))
    with torch.inference_mode():
        # right padding: causal attention keeps it out of every real prefix position
        out = model(input_ids=prefix.to(device), use_cache=True,
                    **({"logits_to_keep": 1} if keeps_logits else {}))
        cache = getattr(out, "cache", None)
        if cache is None:  # transformers 4 names it past_key_values
            cache = getattr(out, "past_key_values", None)
        if cache is None or not _copyable(cache):
            return None
        cache.batch_select_indices(torch.tensor(plan.group, dtype=torch.long, device=device))
        options: dict[str, Any] = {cache_name: cache}
        if keeps_logits:
            options["logits_to_keep"] = suffix_width - first
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), use_cache=True, **options).logits
    offset = first if keeps_logits else 0
    return logits, [plan.shared[i] + offset for i in range(len(rows))]
