"""Greedy decoding of our own over transformers' StaticCache, its decode step captured once
per shape as a CUDA graph and replayed (``--compile graph``).

torch.compile's CUDA graphs cost ~40 s per shape; capturing the eager decode step with
``torch.cuda.CUDAGraph`` costs a warm-up and one recording (seconds) and removes the same
launch overhead. ``generate`` cannot replay a graph, so the loop is ours; it reproduces
``generate``'s greedy output row by row: the prefill gets the 2-D mask and position ids
``generate`` computes for left padding, each decode step a 4-D mask over the static cache
(the prompt's real tokens and every generated one), rows that ended are fed the pad token,
and the returned ids are laid out as ``generate`` returns them (pad after a row's end,
as long as the longest row). On a CPU (or MPS) the same loop runs without capture.
"""

from __future__ import annotations

import inspect
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Shapes whose static cache and graph are kept: a run uses one, an OOM adds a smaller one.
KEPT_SHAPES = 3
# Decode steps between two checks (a device-to-host copy) of whether every row has ended.
DONE_CHECK_EVERY = 4
# Decode steps between two checks of the decoded text for stop strings.
STOP_CHECK_EVERY = 8
# Attention implementations the 4-D decode mask is right for.
MASKED_ATTENTION = ("sdpa", "eager")


@dataclass
class GraphRun:
    ids: list[list[int]]  # new token ids per row, laid out as generate returns them
    setup_seconds: float  # capturing this call's shape (zero when it was captured before)
    new_shape: bool


def supports(model: Any) -> str | None:
    """Why the loop cannot stand in for ``generate`` with this model, or None when it can:
    its greedy output must equal generate's, so nothing generate would add may be set."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    attention = getattr(config, "_attn_implementation", None) or "eager"
    if attention not in MASKED_ATTENTION:
        return f"attention implementation {attention}"
    generation = getattr(model, "generation_config", None)
    for name, neutral in (("repetition_penalty", 1.0), ("no_repeat_ngram_size", 0),
                          ("bad_words_ids", None), ("forced_bos_token_id", None),
                          ("forced_eos_token_id", None), ("suppress_tokens", None),
                          ("begin_suppress_tokens", None), ("sequence_bias", None),
                          ("min_new_tokens", None), ("min_length", 0)):
        value = getattr(generation, name, neutral)
        if value not in (neutral, None, [], 0):
            return f"generation_config.{name} = {value!r}"
    return None


_FORWARD_PARAMETERS: dict[type, frozenset[str]] = {}  # by model class: read once


def _forward_parameters(model_type: type) -> frozenset[str]:
    if model_type not in _FORWARD_PARAMETERS:
        forward = getattr(model_type, "forward")  # noqa: B009 - a model class's, untyped
        _FORWARD_PARAMETERS[model_type] = frozenset(inspect.signature(forward).parameters)
    return _FORWARD_PARAMETERS[model_type]


def make_static_cache(model: Any, rows: int, cache_tokens: int) -> Any:
    """A StaticCache for ``rows`` × ``cache_tokens``: transformers 5 sizes its layers from
    the first update; older versions take the batch size, device and dtype up front."""
    from transformers import StaticCache

    parameters = inspect.signature(StaticCache.__init__).parameters
    options: dict[str, Any] = {"config": model.config, "max_cache_len": cache_tokens}
    if "max_batch_size" in parameters:
        options["max_batch_size"] = rows
    if "device" in parameters:
        options["device"] = model.device
    if "dtype" in parameters:
        options["dtype"] = model.dtype
    return StaticCache(**options)


def _set_cache_length(cache: Any, tokens: int) -> None:
    """Where the cache counts its own length (transformers ≥ 5.2x: a tensor per layer that
    each update advances), set it: the warm-up steps before a capture advanced it."""
    for layer in getattr(cache, "layers", ()):
        length = getattr(layer, "cumulative_length", None)
        if length is not None and hasattr(length, "fill_"):
            length.fill_(tokens)


class ShapeRunner:
    """One shape's static cache, input buffers and (on CUDA) captured decode step."""

    def __init__(self, model: Any, rows: int, cache_tokens: int, *, capture: bool) -> None:
        import torch

        self.model = model
        self.rows, self.cache_tokens = rows, cache_tokens
        self.capture = capture
        device = model.device
        self.cache = make_static_cache(model, rows, cache_tokens)
        self.ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.position_ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.cache_position = torch.zeros((1,), dtype=torch.long, device=device)
        eager = getattr(model.config, "_attn_implementation", None) == "eager"
        # eager attention adds its mask; sdpa takes a boolean one (True: attend)
        self.mask_dtype = model.dtype if eager else torch.bool
        self.mask = torch.zeros((rows, 1, 1, cache_tokens), dtype=self.mask_dtype,
                                device=device)
        self.graph: Any = None
        self.logits: Any = None
        self.pool: Any = None
        self.takes = _forward_parameters(type(model))
        # transformers 5.2x renamed past_key_values to cache
        self.cache_name = "cache" if "cache" in self.takes else "past_key_values"

    def _attend(self, allowed: Any) -> Any:
        import torch

        if self.mask_dtype == torch.bool:
            return allowed
        blocked = torch.finfo(self.mask_dtype).min
        return torch.zeros_like(allowed, dtype=self.mask_dtype).masked_fill(~allowed, blocked)

    def _step(self) -> Any:
        options: dict[str, Any] = {self.cache_name: self.cache}
        if "cache_position" in self.takes:
            options["cache_position"] = self.cache_position
        return self.model(input_ids=self.ids, attention_mask=self.mask,
                          position_ids=self.position_ids, use_cache=True, **options).logits

    def prefill(self, input_ids: Any, attention_mask: Any) -> Any:
        """Run the prompts into the cache; the first new token's logits, as generate's
        prefill computes them."""
        import torch

        self.cache.reset()
        prompt_tokens = input_ids.shape[1]
        position_ids = attention_mask.long().cumsum(-1) - 1
        position_ids = position_ids.masked_fill(attention_mask == 0, 0)
        options: dict[str, Any] = {self.cache_name: self.cache}
        if "cache_position" in self.takes:
            options["cache_position"] = torch.arange(prompt_tokens, device=input_ids.device)
        if "logits_to_keep" in self.takes:
            options["logits_to_keep"] = 1
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, use_cache=True, **options).logits
        allowed = torch.zeros((self.rows, 1, 1, self.cache_tokens), dtype=torch.bool,
                              device=input_ids.device)
        allowed[:, 0, 0, :prompt_tokens] = attention_mask.bool()
        self.mask.copy_(self._attend(allowed))
        self.real_tokens = attention_mask.long().sum(-1, keepdim=True)
        return logits[:, -1, :]

    def decode(self, tokens: Any, at: int, step: int) -> tuple[Any, float]:
        """Feed ``tokens`` (rows,) at cache position ``at`` (decode step ``step``): the next
        logits, and the seconds spent capturing (on the first step of a new graph)."""
        import torch

        self.ids.copy_(tokens.view(-1, 1))
        self.cache_position.fill_(at)
        self.position_ids.copy_(self.real_tokens + step)
        self.mask[:, 0, 0, at] = True if self.mask_dtype == torch.bool else 0
        if not self.capture:
            return self._step()[:, -1, :], 0.0
        seconds = 0.0
        if self.graph is None:
            seconds = self._record(at)
        self.graph.replay()
        return self.logits[:, -1, :], seconds

    def _record(self, at: int) -> float:
        """Warm the step up twice on a side stream (lazy allocations, library handles), then
        record it; the cache's own length is put back after the warm-ups advanced it."""
        import torch

        with torch.cuda.device(self.ids.device):  # the model's card, not the current one
            return self._record_here(at)

    def _record_here(self, at: int) -> float:
        import torch

        torch.cuda.synchronize()
        started = time.perf_counter()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                _set_cache_length(self.cache, at)
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        _set_cache_length(self.cache, at)
        graph = torch.cuda.CUDAGraph()
        self.pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self._step()
        _set_cache_length(self.cache, at)  # recording runs nothing, but be sure
        torch.cuda.synchronize()
        self.graph, self.logits = graph, logits
        return time.perf_counter() - started


class GraphDecoder:
    """The runners of one model, by shape (rows, cache tokens); the oldest is dropped past
    ``KEPT_SHAPES``."""

    def __init__(self, model: Any, *, capture: bool) -> None:
        self.model = model
        self.capture = capture
        self.runners: OrderedDict[tuple[int, int], ShapeRunner] = OrderedDict()

    def has(self, key: tuple[int, int]) -> bool:
        return key in self.runners

    def clear(self) -> None:
        self.runners.clear()

    def _runner(self, rows: int, cache_tokens: int) -> tuple[ShapeRunner, bool]:
        key = (rows, cache_tokens)
        runner = self.runners.get(key)
        if runner is not None:
            self.runners.move_to_end(key)
            return runner, False
        while len(self.runners) >= KEPT_SHAPES:
            self.runners.popitem(last=False)
        runner = ShapeRunner(self.model, rows, cache_tokens, capture=self.capture)
        self.runners[key] = runner
        return runner, True

    def generate(self, input_ids: Any, attention_mask: Any, *, cache_tokens: int,
                 max_new_tokens: int, eos_ids: list[int], pad_id: int,
                 stop_check: Callable[[list[list[int]]], list[bool]] | None = None,
                 ) -> GraphRun:
        """Greedy continuations of the left-padded batch. ``stop_check`` says, for the ids
        generated so far, which rows hold a stop string: when all do, decoding ends early
        (the caller cuts each text at its stop string)."""
        import torch

        rows, prompt_tokens = input_ids.shape
        if prompt_tokens + max_new_tokens - 1 > cache_tokens:
            raise ValueError(f"cache of {cache_tokens} tokens too short for "
                             f"{prompt_tokens} + {max_new_tokens}")
        runner, new = self._runner(rows, cache_tokens)
        try:
            with torch.inference_mode():
                ids, setup = self._loop(runner, input_ids, attention_mask, max_new_tokens,
                                        eos_ids, pad_id, stop_check)
        except BaseException:
            # a half-recorded graph, or an OOM: the kept shapes' caches go too, so that the
            # smaller batch the OOM policy tries next has their memory
            self.clear()
            raise
        return GraphRun(ids=ids, setup_seconds=setup, new_shape=new)

    def _loop(self, runner: ShapeRunner, input_ids: Any, attention_mask: Any,
              max_new_tokens: int, eos_ids: list[int], pad_id: int,
              stop_check: Callable[[list[list[int]]], list[bool]] | None,
              ) -> tuple[list[list[int]], float]:
        import torch

        rows, prompt_tokens = input_ids.shape
        device = input_ids.device
        eos = torch.tensor(eos_ids or [pad_id], dtype=torch.long, device=device)
        out = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
        ended = torch.zeros(rows, dtype=torch.bool, device=device)
        logits = runner.prefill(input_ids, attention_mask)
        setup = 0.0
        made = 0
        for step in range(max_new_tokens):
            # generate takes the argmax in float32; the order is the same in bf16
            chosen = logits.argmax(-1)
            chosen = torch.where(ended, torch.full_like(chosen, pad_id), chosen)
            out[:, step] = chosen
            ended |= torch.isin(chosen, eos)
            made = step + 1
            if made == max_new_tokens:
                break
            if made % DONE_CHECK_EVERY == 0 and bool(ended.all()):
                break
            if stop_check is not None and made % STOP_CHECK_EVERY == 0:
                holds = stop_check(out[:, :made].tolist())
                if all(holds[row] or done for row, done in enumerate(ended.tolist())):
                    break
            logits, seconds = runner.decode(chosen, prompt_tokens + step, step)
            setup += seconds
        return out[:, :made].tolist(), setup


def as_generate_lays_out(ids: list[list[int]], eos_ids: list[int], pad_id: int,
                         stop_at: Callable[[list[int]], int | None] | None = None,
                         ) -> list[list[int]]:
    """The rows as ``generate`` returns them: each row ends at its first end token (or, with
    ``stop_at``, after the token that completes a stop string), pad after it, and the batch
    as long as its longest row."""
    ends: list[int] = []
    for row in ids:
        end = next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
        if stop_at is not None:
            stop = stop_at(row[:end])
            if stop is not None:
                end = min(end, stop)
        ends.append(end)
    width = max(ends, default=0)
    return [row[:end] + [pad_id] * (width - end) for row, end in zip(ids, ends, strict=True)]
