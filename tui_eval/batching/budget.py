"""The tuning budget of ``-b auto`` inside a run: no probe starts that would take the time
spent past ``BUDGET_SHARE`` (a tenth) of the estimated run time. The run is estimated at the
fastest size so far, batch by batch over the run's prompt lengths: each batch as long as the
probe's full-length call, its prefill scaled to the batch's longest prompt (without early
stops: an upper bound). A tune the user asked for (``tui-eval tune``, the app's ``a``) has
no budget."""

from __future__ import annotations

from dataclasses import dataclass

from tui_eval.results.tune import TuneProbe

BUDGET_SHARE = 0.1  # of the estimated run time


@dataclass
class Budget:
    """``share`` of the run (None: no limit); ``prompt_tokens``: the run's prompts' token
    counts, longest first (None: each of ``n_samples`` as long as the longest)."""

    share: float | None
    n_samples: int
    prompt_tokens: list[int] | None = None

    def run_seconds(self, probe: TuneProbe) -> float:
        """The run at ``probe``'s size: batch by batch, each the probe's full-length call
        with its prefill scaled to the batch's longest prompt."""
        size = probe.batch_size
        if not self.prompt_tokens or probe.first_token_seconds is None:
            return self.n_samples * probe.seconds / size
        longest = max(1, self.prompt_tokens[0])
        return sum(probe.seconds - probe.first_token_seconds * (1 - tokens / longest)
                   for tokens in self.prompt_tokens[::size])

    def seconds(self, fastest: TuneProbe | None, rate: float = 0.0) -> float | None:
        """``share`` of the run at ``fastest`` (shortened in proportion when ``rate`` is
        faster); None before any rate or without a budget."""
        if self.share is None or fastest is None or fastest.samples_per_s <= 0:
            return None
        run = self.run_seconds(fastest)
        if rate > fastest.samples_per_s:
            run *= fastest.samples_per_s / rate
        return self.share * run
