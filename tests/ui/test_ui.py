"""The app driven with Textual's Pilot: runs, cancel, auto-tune, validation, gauges, themes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.helpers import (
    PROMPTS,
    SIZE,
    cpu_only_sampler,
    make_app,
    run_config,
    tap,
    wait_for,
    write_jsonl,
)
from tui_eval.config import EvalConfig
from tui_eval.device.monitor import (
    FixedHostSource,
    GpuReading,
    HostReading,
    Sampler,
)
from tui_eval.events import LogLine, Progress, RunFinished, TuneFinished, TuneStep
from tui_eval.formatting import GIB
from tui_eval.results import RunMetrics
from tui_eval.ui.app import EvalApp
from tui_eval.ui.screens import ConfirmScreen

pytestmark = pytest.mark.slow  # Pilot and signal tests: the full suite runs them


@pytest.fixture()
def long_jsonl(tmp_path: Path) -> Path:
    """Enough samples that a run at batch size 1 is still going when the test acts."""

    rows = [{"id": f"{i}-{n}", "question": q, "answer": a}
            for n in range(20) for i, q, a in PROMPTS]
    return write_jsonl(tmp_path / "long.jsonl", rows)


def test_run_to_the_end_shows_the_numbers_of_metrics_json(tiny_model, qa_jsonl, tmp_path):
    out = tmp_path / "run"
    app = make_app(run_config(tiny_model, qa_jsonl, out))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.activity is None
                           and app.results_pane.metrics is not None)
            await pilot.pause()
            metrics = json.loads((out / "metrics.json").read_text())
            cells = app.results_pane.metric_cells()
            for name, value in metrics["metrics"].items():  # the mean ± its standard error
                assert cells[name] == f"{value:.4f} ± {metrics['stderr'][name]:.4f}"
            assert cells["samples"] == str(metrics["n"]) == "12"
            assert cells["errors"] == str(metrics["n_errors"])
            assert cells["fallbacks"] == str(metrics["fallback_count"])
            assert cells["batch size"] == str(metrics["batch_size"])
            assert cells["samples/s"] == f"{metrics['samples_per_s']:.2f}"
            shown = app.log_pane.plain_lines()
            for line in (out / "run.log").read_text().splitlines():
                assert line in shown
            assert app.progress_pane.bar.figure == "12/12"
            assert not app.results_pane.has_class("-empty")

    asyncio.run(scenario())


def test_fallback_lines_reach_the_log_pane(tiny_model, qa_jsonl, tmp_path):
    out = tmp_path / "run"
    app = make_app(run_config(tiny_model, qa_jsonl, out, simulate_oom_above=2))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.activity is None
                           and app.results_pane.metrics is not None)
            lines = app.log_pane.plain_lines()
            assert any(line.startswith("⚠️ Batch generation failed: CUDA out of memory")
                       for line in lines)
            assert any("Falling back to single-sample generation" in line for line in lines)
            assert app.results_pane.metric_cells()["fallbacks"] != "0"

    asyncio.run(scenario())


def test_cancel_mid_run_keeps_finished_batches_and_partial_metrics(tiny_model, long_jsonl,
                                                                   tmp_path):
    out = tmp_path / "run"
    app = make_app(run_config(tiny_model, long_jsonl, out, batch_size=1, max_tokens=24))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: (app.progress_pane.last is not None
                                           and app.progress_pane.last.done >= 1))
            await tap(pilot, "c")
            await wait_for(pilot, lambda: app.activity is None)
            await pilot.pause()
            metrics = json.loads((out / "metrics.json").read_text())
            assert metrics["partial"] is True
            rows = (out / "predictions.jsonl").read_text().splitlines()
            assert 1 <= len(rows) == metrics["n"] < 240
            assert all(json.loads(row)["prediction"] is not None for row in rows)
            assert "Cancelled after" in (out / "run.log").read_text()
            assert app.results_pane.metric_cells()["samples"].endswith("(partial)")
            assert str(out) in "\n".join(app.log_pane.plain_lines())
            # the app stays usable: a new run can start (and is refused only while busy)
            assert app.check_action("start", ()) is True

    asyncio.run(scenario())


def test_second_start_while_running_is_refused(tiny_model, long_jsonl, tmp_path):
    app = make_app(run_config(tiny_model, long_jsonl, tmp_path / "run", batch_size=1,
                              max_tokens=24))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.activity == "run")
            await tap(pilot, "s")
            await wait_for(pilot, lambda: any("already going" in n.message
                                              for n in app._notifications))
            assert app.activity == "run"
            assert len([w for w in app.workers if w.group == "engine"]) == 1
            await tap(pilot, "c")
            await wait_for(pilot, lambda: app.activity is None)

    asyncio.run(scenario())


def test_invalid_field_shows_the_cli_message_and_start_refuses(tmp_path):
    app = make_app(EvalConfig(output_dir=str(tmp_path / "run")))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            field = app.query_one("#edit-batch_size")
            field.focus()
            await pilot.press("ctrl+a", "ctrl+k", "0")
            await pilot.pause()
            error = app.query_one("#error-batch_size")
            assert error.display
            assert "batch_size: must be an integer ≥ 1" in str(error.render())
            await pilot.press("escape", "s")
            await pilot.pause()
            assert app.activity is None
            assert not (tmp_path / "run").exists()
            assert any("batch_size: must be an integer ≥ 1" in n.message
                       for n in app._notifications)
            # fixing it clears the error
            field.focus()
            await pilot.press("backspace", "8")
            await pilot.pause()
            assert not error.display
            assert app.config_pane.values()["batch_size"] == 8

    asyncio.run(scenario())


def test_engine_usage_error_is_shown_and_the_app_stays_up(tmp_path, qa_jsonl):
    app = make_app(EvalConfig(model=str(tmp_path / "no-such-model"), data=str(qa_jsonl),
                              output_dir=str(tmp_path / "run")))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.activity is None
                           and any("run failed" in line
                                   for line in app.log_pane.plain_lines()))
            assert any("model path not found" in line for line in app.log_pane.plain_lines())
            assert any(n.severity == "error" for n in app._notifications)
            assert app.is_running

    asyncio.run(scenario())


def test_auto_tune_with_simulated_oom_shows_table_and_offers_the_size(tiny_model, qa_jsonl,
                                                                      tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tuner writes eval_results/tune-<time> here
    app = make_app(run_config(tiny_model, qa_jsonl, tmp_path / "run", simulate_oom_above=2))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "a")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            results = app.results_pane
            rows = results.tune_cells()
            # the table shows the columns that fit the pane; the probes hold every figure
            assert [row[1] for row in rows] == [str(p.batch_size) for p in results.probes]
            statuses = [(p.batch_size, p.status) for p in results.probes]
            # the seed's action: doubling from 1 to the OOM, no budget
            assert statuses == [(1, "ok"), (2, "ok"), (4, "oom")]
            chosen = [row for row in rows if row[0] == "▶"]
            assert len(chosen) == 1 and chosen[0][1] == str(results.chosen_batch_size)
            assert results.chosen_batch_size in (1, 2)
            await pilot.press("y")
            await wait_for(pilot, lambda: app.activity is None)
            assert app.config_pane.values()["batch_size"] == results.chosen_batch_size
            tune_files = list((tmp_path / "eval_results").glob("tune-*/tune.json"))
            assert len(tune_files) == 1
            saved = json.loads(tune_files[0].read_text())
            assert saved["chosen_batch_size"] == results.chosen_batch_size

    asyncio.run(scenario())


def test_no_gpu_shows_one_line_and_cpu_gauges():
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.gauges_pane.snapshots_shown >= 1)
            note = app.query_one("#gpu-note")
            assert note.display
            assert str(note.render()) == "no NVIDIA driver: CPU/RAM only"
            assert not app.query(".gpu-card")
            assert app.query_one("#host-cpu").figure == "12%"
            assert app.query_one("#host-ram").figure == "2.0/8.0 GiB"

    asyncio.run(scenario())


class SteppingGpuSource:
    """Deterministic readings that change on every poll; GPU 1 stops answering at poll 3."""

    def __init__(self) -> None:
        self.polls = 0

    def read(self) -> list[GpuReading]:
        self.polls += 1
        step = self.polls
        lost = step >= 3
        return [
            GpuReading(0, "Fake GPU A", step * GIB, 10 * GIB, 10.0 * step, 50.0, 100.0, 300.0),
            GpuReading(1, "Fake GPU B", responding=False) if lost else
            GpuReading(1, "Fake GPU B", GIB, 20 * GIB, 5.0, 40.0, 50.0, None),
        ]


def test_injected_fake_gpu_source_drives_the_gauges():
    source = SteppingGpuSource()
    ticks = iter(range(1000))
    sampler = Sampler(source, FixedHostSource(HostReading(50.0, GIB, 4 * GIB)),
                      clock=lambda: float(next(ticks)))
    app = make_app(EvalConfig(gpu_poll_seconds=0.2), sampler=sampler)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.gauges_pane.snapshots_shown >= 3)
            assert not app.query_one("#gpu-note").display
            card_a = app.query_one("#gpu-0")
            card_b = app.query_one("#gpu-1")
            assert "Fake GPU A" in str(card_a.name_line.render())
            shown = app.gauges_pane.snapshots_shown
            assert card_a.memory_meter.figure == f"{shown}.0/10.0 GiB"
            assert f"util {shown * 10}%" in str(card_a.figures_line.render())
            assert "300 W" in str(card_a.figures_line.render())
            assert card_a.util_spark.values[-3:] == (
                10.0 * (shown - 2), 10.0 * (shown - 1), 10.0 * shown)
            assert card_b.has_class("-not-responding")
            assert str(card_b.figures_line.render()) == "N/A: not responding"
            assert card_b.memory_meter.figure == "N/A"

    asyncio.run(scenario())


def test_a_source_that_raises_never_crashes_the_gauges():
    class Broken:
        def read(self) -> list[GpuReading]:
            raise RuntimeError("driver fell over")

    app = make_app(EvalConfig(), sampler=Sampler(Broken(), FixedHostSource(HostReading())))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.gauges_pane.snapshots_shown >= 1)
            assert "driver fell over" in str(app.query_one("#gpu-note").render())
            assert app.query_one("#host-cpu").figure == "N/A"

    asyncio.run(scenario())


def test_progress_events_are_coalesced():
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            for done in range(1, 2001):
                app.bridge(Progress(done=done, total=2000, samples_per_s=1.0,
                                    tokens_per_s=1.0, eta_s=None, batch_size=4,
                                    fallbacks=0, errors=0))
            await wait_for(pilot, lambda: app.progress_pane.last is not None
                           and app.progress_pane.last.done == 2000)
            assert app.bridge.progress_received == 2000
            assert app.progress_draws <= 3  # one message per redraw, not one per event

    asyncio.run(scenario())


def test_read_only_mode_is_fed_by_events_and_hides_run_actions():
    app = make_app(EvalConfig(model="some/model", data="d.jsonl"), read_only=True)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            for action in ("start", "cancel", "tune", "save_config"):
                assert app.check_action(action, ()) is False
            assert app.query_one("#edit-batch_size").disabled
            app.bridge(LogLine(level="WARNING", message="Batch generation failed: x"))
            app.bridge(TuneStep(batch_size=1, status="ok", seconds=1.0, samples_per_s=1.0,
                                tokens_per_s=8.0, peak_memory_bytes=None,
                                gpu_util_percent=None))
            app.bridge(TuneFinished(chosen_batch_size=1, mode="power", probes=[]))
            app.bridge(RunFinished(metrics=RunMetrics.from_dict({
                "metrics": {"exact_match": 0.5}, "n": 2, "n_total": 2, "n_errors": 0,
                "batch_size": 1, "fallback_count": 0, "samples_per_s": 1.0,
                "tokens_per_s": 2.0, "wall_seconds": 3.0})))
            await pilot.pause()
            assert app.log_pane.plain_lines()[-1] == "⚠️ Batch generation failed: x"
            assert app.results_pane.metric_cells()["exact_match"] == "0.5000"
            assert app.results_pane.tune_cells()[0][0] == "▶"
            assert not isinstance(app.screen, ConfirmScreen)  # no offer in read-only mode
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0

    asyncio.run(scenario())


def test_quit_while_running_asks_then_stops_cleanly(tiny_model, long_jsonl, tmp_path):
    out = tmp_path / "run"
    app = make_app(run_config(tiny_model, long_jsonl, out, batch_size=1, max_tokens=24))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.progress_pane.last is not None)
            await tap(pilot, "q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await tap(pilot, "n")
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert app.activity == "run"
            await tap(pilot, "q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await tap(pilot, "y")
            await wait_for(pilot, lambda: not app.is_running)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["partial"] is True
        assert len((out / "predictions.jsonl").read_text().splitlines()) == metrics["n"]

    asyncio.run(scenario())


def test_ctrl_s_saves_the_fields_to_the_config_file(tmp_path):
    path = tmp_path / "eval.toml"
    path.write_text("# mine\nbatch_size = 4   # keep this comment\n", encoding="utf-8")
    app = make_app(EvalConfig(), config_path=path)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            field = app.query_one("#edit-batch_size")
            field.focus()
            await pilot.press("ctrl+a", "ctrl+k", "1", "6", "ctrl+s")
            await pilot.pause()

    asyncio.run(scenario())
    text = path.read_text(encoding="utf-8")
    assert "batch_size = 16  # keep this comment" in text  # the comment keeps its column
    assert text.startswith("# mine\n")
    from tui_eval.config import load_config_file

    assert load_config_file(path)["batch_size"] == 16


def test_t_cycles_themes_and_the_theme_field_follows(tmp_path):
    app = make_app(EvalConfig(theme="textual-dark"))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("t")
            await wait_for(pilot, lambda: app.theme == "textual-light")
            assert app.config_pane.values()["theme"] == "textual-light"
            await pilot.press("t")
            await wait_for(pilot, lambda: app.theme == "textual-dark")

    asyncio.run(scenario())


def test_queued_theme_presses_make_one_switch_to_where_the_last_leads(tmp_path):
    themes = tmp_path / "themes"
    themes.mkdir()
    for name in ("one", "two"):
        (themes / f"{name}.toml").write_text(f'name = "{name}"\nprimary = "#336699"\n')
    app = make_app(EvalConfig(theme="textual-dark"), theme_directories=[themes])

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            app.theme_settle_s = 3600.0  # a loaded machine may handle presses far apart
            for _ in range(6):
                app.simulate_key("t")
            # the cycle: textual-dark, textual-light, one, two; six presses lead to "one"
            await wait_for(pilot, lambda: app.pending_theme == "one")
            assert app.theme == "textual-dark" and app.theme_switches == 0
            app.apply_pending_theme()  # what the settle timer does once the keys pause
            await pilot.pause()
            assert app.theme == "one" and app.theme_switches == 1
            assert app.pending_theme is None
            assert app.config_pane.values()["theme"] == "one"

    asyncio.run(scenario())


def test_bad_theme_file_is_reported_by_file_and_key_and_skipped(tmp_path):
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "good.toml").write_text('name = "good"\nprimary = "#336699"\n')
    (themes / "bad.toml").write_text('name = "bad"\nprimary = "not-a-colour"\n')
    app = make_app(EvalConfig(theme="good"), theme_directories=[themes])

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            messages = [n.message for n in app._notifications]
            assert any(str(themes / "bad.toml") in m and "'primary'" in m for m in messages)
            assert app.theme == "good"
            assert "bad" not in app.available_themes

    asyncio.run(scenario())


@pytest.mark.parametrize("term", ["screen", "linux"])
def test_sixteen_colour_terminals_get_the_ansi_theme(monkeypatch, term):
    monkeypatch.setenv("TERM", term)
    monkeypatch.delenv("COLORTERM", raising=False)
    app = EvalApp(EvalConfig(), sampler=cpu_only_sampler())
    assert app.theme == "ansi-16"


def test_every_action_is_in_the_command_palette_and_l_focuses_the_log():
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            titles = {command.title for command in app.get_system_commands(app.screen)}
            assert {"Start evaluation", "Cancel run", "Auto-tune batch size", "Save config",
                    "Next theme", "Focus log", "Quit"} <= titles
            app.query_one("#edit-model").focus()
            await pilot.press("escape")
            assert app.focused is app.log_pane
            app.query_one("#edit-model").focus()
            await pilot.press("l")  # typed into the field, not a shortcut there
            assert app.focused is not app.log_pane
            await pilot.press("escape", "l")
            assert app.focused is app.log_pane

    asyncio.run(scenario())


def test_the_app_names_its_own_way_to_start_over(tiny_model, qa_jsonl, tmp_path):
    """The CLI's hint (--overwrite) is a flag the app does not have."""
    from tui_eval.cancel import CancelToken
    from tui_eval.engine.evaluation import Evaluation

    out = tmp_path / "run"
    config = run_config(tiny_model, qa_jsonl, out)
    stopped = CancelToken()
    stopped.cancel()  # an earlier try, stopped before its first batch
    Evaluation(config, lambda event: None, cancel=stopped).run()
    app = make_app(config)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.activity is None
                           and app.results_pane.metrics is not None)
            await tap(pilot, "s")  # the run is complete now
            await wait_for(pilot, lambda: any("already holds a complete run" in line
                                              for line in app.log_pane.plain_lines()))
            await wait_for(pilot, lambda: app.activity is None)
            lines = "\n".join(app.log_pane.plain_lines())
            assert "resuming it (0/12 samples already done); to start over, choose another " \
                   "output directory" in lines
            assert "--overwrite" not in lines

    asyncio.run(scenario())
