"""The app with a run of several processes and a machine of many GPUs, driven with Pilot:
a row per rank under the progress totals, and the GPU gauges a line each where their
cards do not fit; a run of one and a machine of one or two GPUs look as they always have."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import HOST, gpu, make_app, rank_shares, wait_for
from tui_eval.config import EvalConfig
from tui_eval.device.monitor import FixedGpuSource, FixedHostSource, Sampler
from tui_eval.events import Progress, RankProgress, RunStarted, TryStarted

pytestmark = pytest.mark.slow  # Pilot tests: the full suite runs them


def progress(ranks: list[RankProgress]) -> Progress:
    return Progress(done=sum(rank.done for rank in ranks), total=1000, samples_per_s=35.5,
                    tokens_per_s=1136.0, eta_s=6.3, batch_size=16, fallbacks=1, errors=0,
                    ranks=ranks)


def sampler(gpus: int) -> Sampler:
    return Sampler(FixedGpuSource([gpu(index, 10 + 7 * index) for index in range(gpus)]),
                   FixedHostSource(HOST), clock=lambda: 0.0)


async def first_snapshot(pilot: Any) -> None:
    await wait_for(pilot, lambda: pilot.app.gauges_pane.snapshots_shown >= 1)
    await pilot.pause()


@pytest.mark.parametrize("ranks", [[], rank_shares()[:1]])
def test_a_run_of_one_shows_no_rank_rows(ranks: list[RankProgress]) -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            pane = app.progress_pane
            height = pane.size.height
            app.apply_event(progress(ranks))
            await pilot.pause()
            assert pane.last is not None and pane.last.ranks == ranks
            assert not pane.ranks.display
            assert pane.size.height == height  # the bar, the rates, the batch line

    asyncio.run(scenario())


def test_four_ranks_get_a_row_each_below_the_totals_until_the_next_try() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            pane = app.progress_pane
            app.apply_event(RunStarted(run_dir="run", total=1000, batch_size=32, model="m",
                                       device="cuda:0", dtype="bfloat16", world_size=4))
            assert pane.rates.text == "m on cuda:0 (bfloat16) · 4 processes"
            app.apply_event(progress(rank_shares()))
            await pilot.pause()
            assert pane.ranks.display
            rows = pane.rank_rows.plain_rows()
            assert rows == [
                "r0 cuda:0 ████████ 250/250 12.4/s bs 32 fb 0 ✓",
                "r1 cuda:1 ██████░░ 183/250 12.1/s bs 32 fb 0  ",
                "r2 cuda:2 ██████░░ 176/250 11.8/s bs 16 fb 1  ",
                "r3 cuda:3 █████░░░ 169/250 11.6/s bs 32 fb 0  ",
            ]
            assert pane.ranks.size.height == 4
            assert pane.bar.figure == "778/1000"  # the totals stay on top
            # each rank's row follows its share
            shares = rank_shares()
            shares[3].done, shares[3].finished = 250, True
            app.apply_event(progress(shares))
            await pilot.pause()
            assert pane.rank_rows.plain_rows()[3].endswith("250/250 11.6/s bs 32 fb 0 ✓")
            app.apply_event(TryStarted(run_dir="run", pid=1, world_size=4))
            await pilot.pause()
            assert not pane.ranks.display

    asyncio.run(scenario())


def test_many_ranks_scroll_and_leave_the_log_its_rows_at_80x24() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            shares = [RankProgress(rank=rank, done=100, total=250, samples_per_s=10.0,
                                   batch_size=32, device=f"cuda:{rank}") for rank in range(16)]
            app.apply_event(progress(shares))
            await pilot.pause()
            ranks = app.progress_pane.ranks
            assert ranks.size.height == 8  # eight in view
            assert ranks.max_scroll_y == 8  # the rest a scroll away
            assert app.log_pane.size.height >= 4

    asyncio.run(scenario())


@pytest.mark.parametrize(("size", "gpus", "rows"), [
    ((80, 24), 2, False),  # today's cards, whatever the height
    ((80, 24), 3, True),
    ((80, 24), 8, True),
    ((120, 40), 3, False),  # three cards fit a taller pane
    ((120, 40), 8, True),
])
def test_gpus_are_drawn_a_line_each_when_their_cards_do_not_fit(
        size: tuple[int, int], gpus: int, rows: bool) -> None:
    app = make_app(EvalConfig(), sampler=sampler(gpus))

    async def scenario() -> None:
        async with app.run_test(size=size) as pilot:
            await first_snapshot(pilot)
            pane = app.gauges_pane
            assert pane.compact is rows
            assert pane.rows.display is rows and pane.cards.display is not rows
            if rows:
                shown = pane.rows.plain_rows()
                assert [row.split()[0] for row in shown] == [str(i) for i in range(gpus)]
                assert all(row.endswith("W") for row in shown)
                assert pane.max_scroll_y == 0  # every GPU in view, no scrolling
            else:
                assert len(pane.cards.children) == gpus

    asyncio.run(scenario())


def test_a_taller_terminal_brings_the_cards_back_with_their_history() -> None:
    app = make_app(EvalConfig(gpu_poll_seconds=0.1), sampler=sampler(3))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.gauges_pane.snapshots_shown >= 3)
            pane = app.gauges_pane
            assert pane.compact
            await pilot.resize_terminal(120, 40)
            await wait_for(pilot, lambda: not pane.compact)
            card = app.query_one("#gpu-2")
            assert card.display and len(card.util_spark.values) >= 3
            await pilot.resize_terminal(80, 24)
            await wait_for(pilot, lambda: pane.compact)

    asyncio.run(scenario())


def test_a_backlog_read_at_once_keeps_the_progress_made_after_the_start() -> None:
    """A watcher attaching to a run hands the start and the newest progress to the app
    together; the start must not cover the progress."""
    app = make_app(EvalConfig())

    def started(at: float) -> RunStarted:
        return RunStarted(run_dir="run", total=1000, batch_size=32, model="m",
                          device="cuda:0", dtype="bfloat16", world_size=4, time=at)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            pane = app.progress_pane
            later = progress(rank_shares())
            app.bridge(started(later.time - 1.0))
            app.bridge(later)
            await wait_for(pilot, lambda: pane.last is not None)
            await pilot.pause()
            assert pane.bar.figure == "778/1000"
            assert pane.rank_rows.plain_rows()[0].startswith("r0 cuda:0")
            # an older try's progress, then a new start: the start is what stays
            app.bridge(progress(rank_shares()))
            app.bridge(started(later.time + 1.0))
            await wait_for(pilot, lambda: pane.bar.figure == "0/1000")
            await wait_for(pilot, lambda: not app._progress_draw_pending)  # no draw to come
            assert pane.bar.figure == "0/1000"

    asyncio.run(scenario())
