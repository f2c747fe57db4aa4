"""The app's keys and words at the sizes people use: every key in the footer, r brings the
results (the whole tune table) into view, the demo's real max tokens in its field, errors
that name the fields, not the flags."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import METRICS, PROBES, make_app, tap, wait_for
from tui_eval.config import DEFAULTS, EvalConfig
from tui_eval.engine.preparation import DEMO_MAX_TOKENS
from tui_eval.events import LogLine, RunFinished, TuneFinished
from tui_eval.ui.wording import field_words

pytestmark = pytest.mark.slow  # Pilot tests: the full suite runs them

EVERY_KEY = ["s", "a", "t", "l", "r", "p", "g", "v", "q"]


def footer_keys(app) -> list[tuple[str, int]]:
    """The keys the footer shows, each with the column its label ends at."""
    return [(key.key, key.region.right) for key in app.screen.query("FooterKey")
            if key.region.width]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_the_footer_shows_every_key_and_fits(size: tuple[int, int]) -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: len(footer_keys(app)) > 0)
            await pilot.pause()
            shown = footer_keys(app)
            assert [key for key, _ in shown if key != "ctrl+p"] == EVERY_KEY
            assert all(right <= size[0] for _, right in shown)  # nothing cut

    asyncio.run(scenario())


def test_r_brings_the_whole_tune_table_into_view_at_80x24() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            for number in range(12):
                app.apply_event(LogLine(level="INFO", message=f"line {number}"))
            app.apply_event(RunFinished(metrics=METRICS))
            app.apply_event(TuneFinished(chosen_batch_size=8, mode="power", probes=PROBES))
            await wait_for(pilot, lambda: app.results_pane.tune_cells() != [])
            await pilot.pause()
            pane = app.results_pane
            assert pane.max_scroll_y > 0  # beside the log, the tables do not fit
            await pilot.press("r")
            await wait_for(pilot, lambda: pane.has_focus
                           and pane.size.height >= pane.tune_table.size.height + 2)
            table = pane.tune_table
            pane.scroll_to_widget(table, animate=False)
            await pilot.pause()
            # every probe row is inside the pane's view
            assert table.region.height == table.virtual_size.height
            assert pane.region.contains_region(table.region)
            await pilot.press("escape")  # back to the log: the log has its rows again
            await wait_for(pilot, lambda: app.log_pane.has_focus
                           and app.log_pane.size.height >= 8)

    asyncio.run(scenario())


def test_a_wide_table_row_in_the_log_leaves_no_scrollbar_mark() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.apply_event(LogLine(level="INFO", message="| " + "8 | ok | 1.23 | " * 8 + "|"))
            await pilot.pause()
            log = app.log_pane
            assert log.virtual_size.width > log.size.width  # wider than the pane
            assert log.scrollbar_size_horizontal == 0  # scrolled by keys, no bar drawn

    asyncio.run(scenario())


def test_the_demo_shows_the_max_tokens_it_runs_with(tmp_path: Path) -> None:
    app = make_app(EvalConfig(), config_path=tmp_path / "eval.toml")

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            pane = app.config_pane
            assert pane.values()["max_tokens"] == DEMO_MAX_TOKENS
            pane.set_value("limit", 5)  # the user's own change
            await pilot.press("ctrl+s")  # the demo's value is not the user's: not saved
            await wait_for(pilot, lambda: (tmp_path / "eval.toml").exists())
            saved = (tmp_path / "eval.toml").read_text(encoding="utf-8")
            assert "limit = 5" in saved and "max_tokens" not in saved
            pane.set_value("model", "some/model")  # a model of one's own: the default again
            await wait_for(pilot, lambda: pane.values()["max_tokens"] == DEFAULTS["max_tokens"])

    asyncio.run(scenario())


def test_an_engine_error_names_the_field_not_the_flag(tmp_path: Path, qa_jsonl: Path) -> None:
    app = make_app(EvalConfig(model=str(tmp_path / "m"), output_dir=str(tmp_path / "run")))

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.activity is None and any(
                "run failed" in line for line in app.log_pane.plain_lines()))
            failure = next(line for line in app.log_pane.plain_lines() if "run failed" in line)
            assert "fill in the data field" in failure and "-d" not in failure

    asyncio.run(scenario())


@pytest.mark.parametrize(("cli", "app"), [
    ("--device cuda: torch sees no CUDA GPU", "device cuda: torch sees no CUDA GPU"),
    ("--max-tokens 8 leaves no room", "max tokens 8 leaves no room"),
    ("small); --max-tokens chooses another", 'small); the "max tokens" field chooses another'),
    ("tuned 12:00; --retune probes again", 'tuned 12:00; the "retune" field probes again'),
    ("use --overwrite to replace it", "use --overwrite to replace it"),  # no such field
])
def test_flags_in_a_message_become_the_fields(cli: str, app: str) -> None:
    assert field_words(cli) == app
