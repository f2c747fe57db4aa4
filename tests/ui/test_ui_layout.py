"""The app at the sizes people use: the log keeps following and keeps its rows, the config
column grows, tables fit their pane, notifications stay off the results, and a theme
picked anywhere is applied everywhere."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.helpers import METRICS, PROBES, make_app, wait_for
from tui_eval.batching.table import fixed_width_row, table_row
from tui_eval.config import EvalConfig, load_config_file
from tui_eval.events import LogLine, RunFinished, TuneFinished

pytestmark = pytest.mark.slow  # Pilot tests: the full suite runs them


def fill_log(app, lines: int = 6) -> None:
    for number in range(lines):
        app.apply_event(LogLine(level="INFO", message=f"line {number} " + "word " * 8))


def at_end(log) -> bool:
    return log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y


def test_the_log_keeps_following_when_the_results_shrink_it_at_80x24() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            log = app.log_pane
            fill_log(app)
            app.apply_event(LogLine(level="INFO", message="Done: 200 samples in 0.5s"))
            await pilot.pause()
            app.apply_event(RunFinished(metrics=METRICS))  # the Results pane appears
            await wait_for(pilot, lambda: not app.results_pane.has_class("-empty")
                           and at_end(log))
            assert log.size.height >= 8  # the log keeps 8 rows beside the results
            # the reader scrolls up: new lines no longer move the view
            log.focus()
            await pilot.press("home")
            app.apply_event(LogLine(level="INFO", message="one more"))
            await wait_for(pilot, lambda: "one more" in log.plain_lines()[-1])
            await pilot.wait_for_scheduled_animations()
            assert log.scroll_y == 0
            await pilot.press("end")  # back at the end: following again
            app.apply_event(LogLine(level="INFO", message="and another"))
            await wait_for(pilot, lambda: at_end(log))

    asyncio.run(scenario())


def test_a_line_arriving_as_the_reader_scrolls_up_leaves_the_view_where_they_went() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            log = app.log_pane
            fill_log(app, lines=12)
            await wait_for(pilot, lambda: at_end(log))
            log.scroll_home(immediate=True)  # animated: the view has not moved yet
            assert not log.following  # so a line drawn before it moves cannot snap it back
            app.apply_event(LogLine(level="INFO", message="one more"))
            await pilot.wait_for_scheduled_animations()
            assert log.scroll_y == 0
            assert not log.following

    asyncio.run(scenario())


@pytest.mark.parametrize(("width", "side"), [(80, 30), (120, 43), (200, 72)])
def test_the_config_column_grows_with_the_terminal(width: int, side: int) -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(width, 40)) as pilot:
            await pilot.pause()
            assert app.query_one("#side").outer_size.width == side

    asyncio.run(scenario())


@pytest.mark.parametrize(("size", "with_metrics", "columns"), [
    ((80, 24), False, ("", "batch", "status", "samples/s", "peak GiB")),
    ((160, 48), False, ("", "batch", "status", "seconds", "samples/s", "tok/s", "peak GiB",
                        "GPU util")),
    # from 140 columns the metrics block sits beside the tune table and takes part of
    # its room: tok/s goes first rather than the last column being cut
    ((160, 48), True, ("", "batch", "status", "seconds", "samples/s", "peak GiB",
                       "GPU util")),
])
def test_the_tune_table_shows_the_columns_that_fit(size: tuple[int, int], with_metrics: bool,
                                                   columns: tuple[str, ...]) -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=size) as pilot:
            app.apply_event(TuneFinished(chosen_batch_size=8, mode="power", probes=PROBES))
            if with_metrics:
                await pilot.pause()
                app.apply_event(RunFinished(metrics=METRICS))
            await wait_for(pilot, lambda: app.results_pane.tune_columns == columns)
            await pilot.pause()
            pane = app.results_pane
            table = pane.tune_table
            assert table.virtual_size.width <= pane.tune_room()
            # the whole table is inside the pane: nothing cut at its right edge
            assert table.region.right <= pane.scrollable_content_region.right
            assert table.size.width >= table.virtual_size.width
            assert [row[0] for row in pane.tune_cells()].count("▶") == 1

    asyncio.run(scenario())


def test_table_rows_in_the_log_are_drawn_whole_on_one_line() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            before = len(app.log_pane.lines)
            rows = [fixed_width_row(table_row(probe)) for probe in PROBES]
            for row in rows:
                app.apply_event(LogLine(level="INFO", message=row))
            await pilot.pause()
            assert len(app.log_pane.lines) == before + len(rows)  # not one wrapped
            assert app.log_pane.shown_lines()[-len(rows):] == rows  # without the time stamp
            assert all(row in line for row, line in
                       zip(rows, app.log_pane.plain_lines()[-len(rows):], strict=True))

    asyncio.run(scenario())


def test_notifications_do_not_cover_the_results_at_80x24() -> None:
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            fill_log(app)
            app.apply_event(TuneFinished(chosen_batch_size=8, mode="power", probes=PROBES))
            app.apply_event(RunFinished(metrics=METRICS))  # notifies "Run finished"
            await wait_for(pilot, lambda: len(app.screen.query("Toast")) > 0 and all(
                toast.region.area for toast in app.screen.query("Toast")))
            results = app.results_pane.region
            for toast in app.screen.query("Toast"):
                assert not toast.region.overlaps(results), (toast.region, results)

    asyncio.run(scenario())


def warning_colour(app) -> object:
    """The colour the log drew its last (warning) line in."""
    strip = app.log_pane.lines[-1]
    return next(segment.style.color for segment in strip if segment.text.strip())


def highlighted_command(app) -> str:
    """The command palette's highlighted choice, once its search has answered."""
    from textual.command import CommandList

    found = app.screen.query(CommandList)
    option = found.first().highlighted_option if found else None
    return str(option.prompt) if option is not None else ""


def test_a_theme_chosen_in_the_command_palette_is_applied_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    app = make_app(EvalConfig(theme="textual-dark"), config_path=path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            app.apply_event(LogLine(level="WARNING", message="careful"))
            await pilot.pause()
            old_colour = warning_colour(app)
            app.action_change_theme()  # the palette's "Change theme"
            await pilot.pause()
            await pilot.press(*"nord")
            await wait_for(pilot, lambda: highlighted_command(app).startswith("nord"))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.theme == "nord" and len(app.screen_stack) == 1)
            assert app.config_pane.values()["theme"] == "nord"
            expected = app.log_pane.get_component_rich_style("log--warning").color
            await wait_for(pilot, lambda: warning_colour(app) == expected)
            assert expected != old_colour
            await pilot.press("ctrl+s")
            await pilot.pause()

    asyncio.run(scenario())
    assert load_config_file(path)["theme"] == "nord"


def test_an_unset_theme_field_stays_unset_when_the_default_theme_is_applied(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORTERM", "truecolor")  # the default theme is textual-dark
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("t")
            await wait_for(pilot, lambda: app.config_pane.values()["theme"] == "textual-light")
            app.config_pane.set_value("theme", None)  # "default" chosen in the field
            await wait_for(pilot, lambda: app.theme == "textual-dark")
            await pilot.pause()
            assert app.config_pane.values()["theme"] is None

    asyncio.run(scenario())


def test_a_value_too_long_for_its_field_shows_it_is_cut_at_80x24() -> None:
    model = "/some/very/long/path/to/a/model/directory/that/does/not/fit"
    stop = ["a rather long stop sequence", "and another one"]
    app = make_app(EvalConfig(model=model, stop=stop))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            field = app.query_one("#edit-model", Input)
            room = field.scrollable_content_region.width
            shown = field.render_line(0).text[:room]
            assert shown.startswith("…") and model.endswith(shown[1:])  # the path's end
            stop_field = app.query_one("#edit-stop", Input)
            assert stop_field.render_line(0).text[:room].endswith("…")  # cut at its end
            field.focus()
            await wait_for(pilot, lambda: field.has_focus)
            assert "…" not in field.render_line(0).text  # editing shows the text itself
            await pilot.press("end", "x")
            assert field.value == model + "x"
            assert app.config_pane.values()["model"] == model + "x"
            await pilot.press("escape")
            await wait_for(pilot, lambda: not field.has_focus)
            assert field.render_line(0).text[:room].endswith("/not/fitx")
            assert app.config_pane.values()["model"] == model + "x"  # never the cut text

    asyncio.run(scenario())


def test_every_field_label_leaves_a_gap_before_its_value() -> None:
    """A label as wide as its column runs into the value ("choices tmplchoices field")."""
    from tui_eval.config import KEYS

    sheet = (Path(__file__).parents[2] / "tui_eval" / "ui" / "app.tcss").read_text()
    width = int(re.search(r"\.field-label \{ width: (\d+);", sheet).group(1))
    too_wide = [key.label for key in KEYS.values() if key.label and len(key.label) >= width]
    assert too_wide == []
