"""Whether every prompt leaves room for max_tokens new tokens in the model's context.

Checked before the model loads and before anything is written to the results directory,
so that a rerun with a smaller --max-tokens starts afresh. A prompt that does not fit
stops the run with one line (truncate = "none"), or is cut from the left to fit
(truncate = "left", as lm-evaluation-harness does) and counted in metrics.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tui_eval.config import EvalConfig
from tui_eval.data import Sample
from tui_eval.errors import UsageError
from tui_eval.i18n import LogFn
from tui_eval.model.backend import ContextLimit, HFBackend


@dataclass
class PromptFit:
    """Each prompt's length in tokens as the model will see it (in the order given), and
    the dataset indexes of the prompts that were cut to fit, with the tokens cut off each."""

    lengths: list[int]
    truncated: dict[int, int] = field(default_factory=dict)


def fit_prompts(backend: HFBackend, config: EvalConfig, samples: Sequence[Sample],
                texts: Sequence[str], log: LogFn) -> PromptFit:
    """Measure the rendered prompts ``texts`` (one per sample) against the model's context:
    raise UsageError naming the longest one, or with truncate = "left" set the backend to
    cut them. A backend reused from an earlier run is measured afresh."""
    backend.prompt_token_limit = None
    lengths = backend.token_counts(list(texts)) if texts else []
    limit = backend.context_limit()
    if limit is None:
        return PromptFit(lengths)
    room = limit.tokens - config.max_tokens
    over = [(length, sample) for length, sample in zip(lengths, samples, strict=True)
            if length > room]
    if not over:
        return PromptFit(lengths)
    if config.truncate != "left":
        raise UsageError(_too_long_message(over, config.max_tokens, limit))
    if room < 1:
        raise UsageError(f"--max-tokens {config.max_tokens} leaves no room for a prompt in "
                         f"the model's {limit.tokens} positions ({limit.source}); use "
                         f"--max-tokens {limit.tokens - 1} or less")
    backend.prompt_token_limit = room
    log("WARNING", "prompts_truncated", n=len(over), room=room, limit=limit.tokens,
        max_tokens=config.max_tokens)
    return PromptFit([min(length, room) for length in lengths],
                     {sample.index: length - room for length, sample in over})


def _too_long_message(over: list[tuple[int, Sample]], max_tokens: int,
                      limit: ContextLimit) -> str:
    length, sample = max(over, key=lambda pair: pair[0])
    others = len(over) - 1
    also = f", as for {others} other{'s' if others > 1 else ''}" if others else ""
    where = f"the model's {limit.tokens} positions ({limit.source})"
    fits = limit.tokens - length
    if fits < 1:
        return (f"sample {sample.id!r}: {length} prompt tokens, more than {where}{also}; "
                "shorten it, or use --truncate left")
    return (f"sample {sample.id!r}: {length} prompt tokens + --max-tokens {max_tokens} > "
            f"{where}{also}; use --max-tokens {fits} or --truncate left")
