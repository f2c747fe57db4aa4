"""Compare with another run in the app: the dialog, its one-line refusals, the screen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import SAMPLES, make_app, wait_for, write_run
from tui_eval.config import EvalConfig
from tui_eval.ui.compare import CompareAskScreen, CompareScreen
from tui_eval.ui.watch_app import WatchApp

pytestmark = pytest.mark.slow  # Pilot tests: the full suite runs them


async def ask(pilot, path: str) -> CompareAskScreen:
    await pilot.press("v")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareAskScreen))
    screen = pilot.app.screen
    screen.input.value = path
    await pilot.press("enter")
    await pilot.pause()
    return screen


def test_compare_the_run_with_another_and_go_back(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"q1": "2", "q2": "5", "q3": "6", "q4": "8"})
    b = write_run(tmp_path / "b", {"q1": "2", "q2": "4", "q3": None, "q4": "8"},
                  batch_size=8, samples_per_s=40.0)
    app = make_app(EvalConfig())
    app.run_dir = a

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await ask(pilot, str(b))
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            screen = app.screen
            assert ("exact_match", "0.7500", "0.7500", "+0.0000") in screen.metric_cells()
            assert ("samples/s", "10.00", "40.00", "+30.00") in screen.metric_cells()
            assert [row[:3] for row in screen.changed_cells()] == [
                ("q2", "✗", "✓"), ("q3", "✓", "✗")]
            await pilot.press("escape")
            await wait_for(pilot, lambda: len(app.screen_stack) == 1)

    asyncio.run(scenario())


def test_runs_that_cannot_be_compared_say_why_in_one_line(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"q1": "2", "q2": "4", "q3": "6", "q4": "8"})
    other = write_run(tmp_path / "other", {"q1": "2"}, samples=SAMPLES[:1])
    app = make_app(EvalConfig())
    app.run_dir = a

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = await ask(pilot, str(tmp_path / "missing"))
            assert str(screen.problem.render()) == f"{tmp_path / 'missing'}: not a directory"
            screen.input.value = str(other)
            await pilot.press("enter")
            await pilot.pause()
            problem = str(screen.problem.render())
            assert problem.startswith("the runs cover different samples (4 and 1)")
            assert "\n" not in problem
            assert app.screen is screen  # still asking
            await pilot.press("escape")
            await wait_for(pilot, lambda: len(app.screen_stack) == 1)

    asyncio.run(scenario())


def test_compare_before_any_run_is_a_notification() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("v")
            await pilot.pause()
            assert len(app.screen_stack) == 1
            assert any("No run to compare yet" in n.message for n in app._notifications)

    asyncio.run(scenario())


def test_the_palette_offers_it_and_the_watcher_compares_the_watched_run(tmp_path: Path
                                                                         ) -> None:
    a = write_run(tmp_path / "a", {"q1": "2", "q2": "5", "q3": "6", "q4": "8"})
    b = write_run(tmp_path / "b", {"q1": "2", "q2": "4", "q3": "6", "q4": "8"})
    app = WatchApp(a, interval=0.05)
    app.sampler = make_app(EvalConfig()).sampler

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert "Compare with another run…" in [
                command.title for command in app.get_system_commands(app.screen)]
            await ask(pilot, str(b))
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            assert app.screen.comparison.a.run_dir == a
            assert [row[0] for row in app.screen.changed_cells()] == ["q2"]

    asyncio.run(scenario())
