"""Fixed shapes for compiled generation: how many rows a batch is padded to, how long its
prompts are padded to, and how long the static KV cache is.

A compiled decode step is specialised to the shapes it sees: the rows of the batch and the
length of the static cache (the prompt and new-token counts only matter through it). Each
new pair costs a compilation (tens of seconds on a GPU), so the planner keeps the set small:

* rows: a batch is padded up to the smallest row count that already ran, so a short last
  batch reuses the run's shape; a row count that failed (an OOM) is never padded up to
  again, so a smaller batch after an OOM becomes a new, smaller shape;
* cache length: it only grows, from prompt buckets, so after the first (longest) batch of a
  length-sorted run every later batch reuses it.

Pure Python: nothing here imports torch.
"""

from __future__ import annotations

from typing import NamedTuple

MIN_PROMPT_BUCKET = 16


class StaticShape(NamedTuple):
    rows: int  # batch rows, dummy rows included
    prompt_tokens: int  # prompts are left-padded to this length
    cache_tokens: int  # static KV cache length: what, with rows, the compiled step sees

    @property
    def key(self) -> tuple[int, int]:
        """What a compiled decode step is specialised to."""
        return (self.rows, self.cache_tokens)

    def describe(self) -> str:
        return (f"{self.rows} rows × {self.prompt_tokens} prompt tokens "
                f"(cache {self.cache_tokens})")


def prompt_bucket(tokens: int) -> int:
    """The padded prompt length: the next of 16, 24, 32, 48, 64, 96, 128, 192, … (powers of
    two and the halfway points between them).

    Geometric steps keep the number of buckets logarithmic in the longest prompt (about
    twelve up to 2,048 tokens), so even an unsorted run stays under torch's recompile limit
    (8 per function by default), while the padding wasted in the prefill stays under a
    third of the padded length. A fixed step (multiples of 32) wastes less on long prompts
    but gives dozens of buckets over a run's range of lengths.
    """
    if tokens <= MIN_PROMPT_BUCKET:
        return MIN_PROMPT_BUCKET
    power = 1 << (tokens - 1).bit_length()  # the next power of two at or above
    halfway = power * 3 // 4
    return halfway if tokens <= halfway else power


class ShapePlanner:
    """Chooses each batch's static shape and remembers which shapes ran, for one model."""

    def __init__(self) -> None:
        self.good_rows: set[int] = set()  # row counts whose batches completed
        self.cache_tokens = 0  # never shrinks: a longer cache serves shorter prompts
        self.compiled: set[tuple[int, int]] = set()  # shape keys whose calls completed
        self.reserved_rows: int | None = None

    def reserve(self, rows: int, prompt_tokens: int, max_new_tokens: int) -> None:
        """Declare a run's batch size and longest prompt before its first batch, so that
        neither a short first batch nor a later longer prompt brings a new shape."""
        self.reserved_rows = rows
        self.cache_tokens = max(self.cache_tokens,
                                cache_length(prompt_bucket(prompt_tokens), max_new_tokens))

    def plan(self, rows: int, longest_prompt: int, max_new_tokens: int,
             *, model_cache_tokens: int = 0) -> StaticShape:
        """The shape for a batch of ``rows`` prompts, the longest ``longest_prompt`` tokens.
        ``model_cache_tokens``: the cache length the model already uses (it never shrinks
        either), so that the planned length is the one the model will really allocate."""
        candidates = [r for r in self.good_rows if r >= rows]
        if self.reserved_rows is not None and self.reserved_rows >= rows:
            candidates.append(self.reserved_rows)
        padded_rows = min(candidates, default=rows)
        prompt_tokens = prompt_bucket(longest_prompt)
        self.cache_tokens = max(self.cache_tokens, model_cache_tokens,
                                cache_length(prompt_tokens, max_new_tokens))
        return StaticShape(padded_rows, prompt_tokens, self.cache_tokens)

    def is_new(self, shape: StaticShape) -> bool:
        return shape.key not in self.compiled

    def succeeded(self, shape: StaticShape) -> None:
        self.good_rows.add(shape.rows)
        self.compiled.add(shape.key)

    def failed(self, shape: StaticShape) -> None:
        """A shape whose call failed (an OOM, most likely) is not padded up to again: the
        smaller parts the OOM policy retries with get their own shape."""
        self.good_rows.discard(shape.rows)
        self.compiled.discard(shape.key)
        if self.reserved_rows is not None and self.reserved_rows >= shape.rows:
            self.reserved_rows = None


def cache_length(prompt_tokens: int, max_new_tokens: int) -> int:
    """The cache transformers sizes for a call: prompt plus new tokens, less the last token,
    which is never fed back."""
    return prompt_tokens + max(max_new_tokens, 1) - 1
