"""The progress pane: samples done/total as a bar, then the run's rates and batch figures;
in a run of several processes, a row for each one's share below them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll

from tui_eval.events import Progress, RunStarted
from tui_eval.formatting import format_duration
from tui_eval.reports.summary import batch_size_text
from tui_eval.results import RunMetrics
from tui_eval.ui.widgets.line import Line
from tui_eval.ui.widgets.meter import Meter
from tui_eval.ui.widgets.ranks import RankRows


def rates_line(samples_per_s: float, tokens_per_s: float, eta_s: float | None) -> str:
    return (f"{samples_per_s:.2f} samples/s · {tokens_per_s:.0f} tok/s · "
            f"ETA {format_duration(eta_s)}")


def batch_line(batch_size: int | str, fallbacks: int, errors: int) -> str:
    return f"batch size {batch_size} · fallbacks {fallbacks} · errors {errors}"


class ProgressPane(Vertical):
    def __init__(self, idle_text: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.idle_text = idle_text
        self.bar = Meter("", label_width=0, warn_above=2.0, id="progress-bar")
        self.rates = Line(idle_text, id="progress-rates")
        self.batch_text = Line("", id="progress-batch")
        self.rank_rows = RankRows(id="progress-rank-rows")
        # hidden in a run of one, so that it looks as it always has; scrolls past a few ranks
        self.ranks = VerticalScroll(self.rank_rows, id="progress-ranks")
        self.ranks.display = False
        self.ranks.can_focus = False
        self.last: Progress | None = None

    def compose(self) -> ComposeResult:
        yield self.bar
        yield self.rates
        yield self.batch_text
        yield self.ranks

    def _show_ranks(self, event: Progress | None) -> None:
        several = event is not None and len(event.ranks) >= 2
        if several:
            assert event is not None
            self.rank_rows.show(event.ranks)
        if self.ranks.display != several:
            self.ranks.display = several

    def reset(self, text: str | None = None) -> None:
        self.last = None
        self.bar.show(None, "")
        self.rates.set(text or self.idle_text)
        self.batch_text.set("")
        self._show_ranks(None)

    def show_started(self, event: RunStarted) -> None:
        self.bar.show(0.0, f"0/{event.total}")
        processes = f" · {event.world_size} processes" if event.world_size > 1 else ""
        self.rates.set(f"{event.model} on {event.device} ({event.dtype}){processes}")
        self.batch_text.set(batch_line(event.batch_size, 0, 0))

    def show_progress(self, event: Progress) -> None:
        self.last = event
        self.bar.show(event.done / max(event.total, 1), f"{event.done}/{event.total}")
        self.rates.set(rates_line(event.samples_per_s, event.tokens_per_s, event.eta_s))
        self.batch_text.set(batch_line(event.batch_size, event.fallbacks, event.errors))
        self._show_ranks(event)

    def show_finished(self, metrics: RunMetrics) -> None:
        done, total = metrics.n, metrics.n_total
        self.bar.show(done / max(total, 1), f"{done}/{total}")
        state = "cancelled" if metrics.partial else "done"
        self.rates.set(f"{state} in {format_duration(metrics.wall_seconds)} · "
                       f"{metrics.samples_per_s:.2f} samples/s · "
                       f"{metrics.tokens_per_s:.0f} tok/s")
        self.batch_text.set(batch_line(batch_size_text(metrics), metrics.fallback_count,
                                  metrics.n_errors))
