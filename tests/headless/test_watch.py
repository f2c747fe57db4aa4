"""Following a run: the events.jsonl follower, the plain watcher and the app's watch mode."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import (
    PROMPTS,
    hangup_at_default,
    headless,
    long_rows,
    wait_for,
    wait_until,
    watch_app,
    write_jsonl,
)
from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.engine.evaluation import Evaluation
from tui_eval.events import Event, LogLine, Progress, RunFinished, RunStarted, TryStarted
from tui_eval.events.follow import EventFollower, RunState, condense, liveness
from tui_eval.headless.watcher import PlainWatcher
from tui_eval.results import EVENTS_FILE, RunMetrics, TuneProbe


def line(event: Event) -> bytes:
    return (json.dumps(event.to_dict()) + "\n").encode()


def started(pid: int, total: int = 10) -> RunStarted:
    return RunStarted(run_dir="x", total=total, batch_size=2, model="tiny", device="cpu",
                      dtype="float32", pid=pid)


def progress(done: int, total: int = 10) -> Progress:
    return Progress(done=done, total=total, samples_per_s=2.0, tokens_per_s=50.0,
                    eta_s=(total - done) / 2.0, batch_size=2, fallbacks=0, errors=0)


def finished(n: int = 10, partial: bool = False) -> RunFinished:
    return RunFinished(metrics=RunMetrics.from_dict({
        "metrics": {"exact_match": 0.5}, "n": n, "n_total": 10, "n_errors": 0,
        "partial": partial, "batch_size": 2, "fallback_count": 0, "samples_per_s": 2.0,
        "tokens_per_s": 50.0, "wall_seconds": 5.0}))


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


# ── the follower ─────────────────────────────────────────────────────────────────────

def test_follower_reads_appended_bytes_only_and_waits_for_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    follower = EventFollower(path)
    assert follower.poll() == [] and not follower.exists  # no file yet: nothing, no error
    append(path, line(started(1)))
    assert [type(e) for e in follower.poll()] == [RunStarted]
    offset = follower.offset
    half = line(progress(3))
    append(path, half[:20])  # the writer is in the middle of a line
    assert follower.poll() == []
    append(path, half[20:])
    events = follower.poll()
    assert isinstance(events[0], Progress) and events[0].done == 3
    assert follower.offset == offset + len(half)  # nothing before it was read again


def test_follower_skips_garbage_and_starts_over_when_the_file_is_replaced(
        tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    path.write_bytes(line(started(1)) + b'{"event": "prog\n' + line(progress(2)))
    follower = EventFollower(path)
    assert [type(e) for e in follower.poll()] == [RunStarted, Progress]
    assert follower.bad_lines == 1
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(line(started(2)))
    os.replace(replacement, path)  # what --overwrite amounts to for a reader
    events = follower.poll()
    assert follower.restarted
    assert [e.pid for e in events if isinstance(e, RunStarted)] == [2]


def test_a_long_backlog_is_condensed_to_what_a_reader_needs() -> None:
    lines = [line(started(1))] + [
        line(LogLine(level="INFO", message=f"log {i}")) if i % 10 == 0 else line(progress(i))
        for i in range(1, 5001)] + [line(finished())]
    kept = condense(lines, keep_logs=5)
    kinds = [json.loads(k)["event"] for k in kept]
    assert kinds == ["started", "log", "log", "log", "log", "progress", "log", "finished"]
    assert json.loads(kept[5])["done"] == 4999  # the latest progress, in its place
    assert [json.loads(k)["message"] for k in kept if b'"log"' in k][-1] == "log 5000"


def test_a_big_file_is_read_once_then_only_its_growth(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    path.write_bytes(line(started(1)) + line(progress(1)) * 50_000)  # about 10 MB
    follower = EventFollower(path)
    state = RunState()
    for event in follower.poll():
        state.apply(event)
    assert state.started is not None and state.progress is not None
    size = path.stat().st_size
    assert follower.offset == size
    append(path, line(progress(7)))
    events = follower.poll()
    assert [e.done for e in events if isinstance(e, Progress)] == [7]
    assert follower.offset == path.stat().st_size


# ── the plain watcher ────────────────────────────────────────────────────────────────

def test_plain_watcher_follows_a_file_that_grows_while_the_run_writes(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE

    out = io.StringIO()

    def writer() -> None:  # each line once the watcher has shown the one before
        append(path, line(started(os.getpid())))  # this process: alive throughout
        for done in range(2, 11, 2):
            wait_until(lambda: "run: 10 samples" in out.getvalue(), what="the start shown")
            append(path, line(LogLine(level="INFO", message=f"batch ending at {done}")))
            append(path, line(progress(done)))
            wait_until(lambda: f"batch ending at {done}" in out.getvalue(),  # noqa: B023
                       what="the batch shown")
        append(path, line(finished()))

    thread = threading.Thread(target=writer)
    thread.start()
    code = PlainWatcher(tmp_path, stream=out, interval=0.01, progress_every=0.0).run()
    thread.join()
    text = out.getvalue()
    assert code == 0
    assert "run: 10 samples, batch 2, tiny on cpu (float32)" in text
    assert text.index("batch ending at 2") < text.index("batch ending at 10")
    assert "progress: 10/10 samples" in text
    assert "exact_match  0.5000" in text
    assert f"finished: results in {tmp_path}" in text


def test_plain_watcher_says_stopped_when_the_process_is_gone(tmp_path: Path) -> None:
    pid = dead_pid()
    (tmp_path / EVENTS_FILE).write_bytes(line(started(pid)) + line(progress(4)))
    out = io.StringIO()
    code = PlainWatcher(tmp_path, stream=out, interval=0.01).run()
    assert code == 1
    assert "progress: 4/10 samples" in out.getvalue()
    assert (f"stopped — no final event (pid {pid} is gone); resume with: "
            f"tui-eval --no-ui --resume -o {tmp_path}") in out.getvalue()


def test_plain_watcher_reports_an_interrupted_run_with_the_resume_command(
        tmp_path: Path) -> None:
    (tmp_path / EVENTS_FILE).write_bytes(line(started(1)) + line(finished(4, partial=True)))
    out = io.StringIO()
    began = time.monotonic()
    assert PlainWatcher(tmp_path, stream=out, interval=0.01, resume_grace=0.3).run() == 130
    assert time.monotonic() - began >= 0.3  # it gave a resume the time to announce itself
    assert "interrupted after 4/10 samples; waiting 0.3s for a resumed try…" in out.getvalue()
    assert f"interrupted after 4/10 samples; resume with: tui-eval --no-ui --resume -o " \
           f"{tmp_path}" in out.getvalue()


def try_started(pid: int, done_before: int = 4) -> TryStarted:
    return TryStarted(run_dir="x", pid=pid, done_before=done_before, total=10)


def test_a_new_try_forgets_the_old_ending_and_is_followed_by_its_pid(tmp_path: Path) -> None:
    state = RunState()
    for event in (started(dead_pid()), finished(4, partial=True)):
        state.apply(event)
    assert state.partial and liveness(tmp_path, state).alive is False
    state.apply(try_started(os.getpid()))
    assert not state.ended and state.loading and state.tries == 2
    assert liveness(tmp_path, state).alive is True  # this process, while it loads its model
    state.apply(started(os.getpid()))
    assert not state.loading and state.tries == 2  # the same try, now generating
    state.apply(started(os.getpid()))  # an older version's file: every started is a try
    assert state.tries == 3


def test_plain_watcher_attached_to_an_interrupted_run_follows_its_resume(
        tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    path.write_bytes(line(started(dead_pid())) + line(finished(4, partial=True)))

    out = io.StringIO()

    def resume() -> None:
        # the resume is still reading its data when the watcher attaches
        wait_until(lambda: "waiting 30s for a resumed try" in out.getvalue(),
                   what="the watcher to wait")
        append(path, line(try_started(os.getpid())) + line(started(os.getpid())))
        wait_until(lambda: "a new try began" in out.getvalue(), what="the new try shown")
        append(path, line(progress(8)) + line(finished(10)))

    thread = threading.Thread(target=resume)
    thread.start()
    code = PlainWatcher(tmp_path, stream=out, interval=0.01, progress_every=0.0,
                        resume_grace=30).run()
    thread.join()
    text = out.getvalue()
    assert code == 0, text
    assert "a new try began" in text and "resuming with 4/10 samples already done" in text
    assert "progress: 8/10 samples" in text
    assert f"finished: results in {tmp_path}" in text


def test_watch_once_prints_where_a_live_run_stands_and_exits(tmp_path: Path) -> None:
    (tmp_path / EVENTS_FILE).write_bytes(line(started(os.getpid())) + line(progress(6)))
    out = io.StringIO()
    assert PlainWatcher(tmp_path, stream=out).run(once=True) == 0
    assert "progress: 6/10 samples" in out.getvalue()


def test_watch_gives_up_on_a_directory_with_no_run_after_wait(tmp_path: Path) -> None:
    out = io.StringIO()
    code = PlainWatcher(tmp_path / "not-yet", stream=out, interval=0.01, wait=0.2).run()
    assert code == 1
    assert "waiting for a run in" in out.getvalue()
    assert "no run started in" in out.getvalue()
    assert not (tmp_path / "not-yet").exists()  # waiting creates nothing


def test_watch_waits_for_a_run_that_starts_later(tmp_path: Path) -> None:
    run_dir = tmp_path / "later"

    out = io.StringIO()

    def start_later() -> None:
        wait_until(lambda: "waiting for a run" in out.getvalue(), what="the watcher to wait")
        run_dir.mkdir()
        append(run_dir / EVENTS_FILE, line(LogLine(level="INFO", message="Loading model")))
        wait_until(lambda: "Loading model" in out.getvalue(), what="the first line shown")
        append(run_dir / EVENTS_FILE, line(started(os.getpid())) + line(finished()))

    thread = threading.Thread(target=start_later)
    thread.start()
    code = PlainWatcher(run_dir, stream=out, interval=0.01, wait=60).run()
    thread.join()
    assert code == 0
    assert out.getvalue().index("waiting for a run") < out.getvalue().index("Loading model")


def test_watch_cli_rejects_a_file_as_run_dir(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    from tui_eval.cli import main

    (tmp_path / "f").write_text("x")
    assert main(["watch", "--no-ui", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err


# ── on a real finished run ───────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def finished_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:

    base = tmp_path_factory.mktemp("finished")
    data = write_jsonl(base / "qa.jsonl",
                       [{"id": i, "question": q, "answer": a} for i, q, a in PROMPTS])
    out = base / "run"
    Evaluation(EvalConfig(model=str(tiny_model), data=str(data), output_dir=str(out),
                          max_tokens=4, device="cpu", lang="en"), lambda event: None).run()
    return out


@pytest.mark.slow
def test_watch_on_a_finished_run_prints_the_summary_and_changes_nothing(
        finished_run: Path) -> None:
    before = snapshot(finished_run)
    script = (
        "import sys\n"
        "from tui_eval.cli import main\n"
        f"code = main(['watch', '--no-ui', {str(finished_run)!r}])\n"
        "heavy = [m for m in ('textual', 'torch', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "raise SystemExit(code)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exact_match" in result.stdout and "samples      12" in result.stdout
    assert f"finished: results in {finished_run}" in result.stdout
    assert "HEAVY []" in result.stdout  # a quick check starts fast: no Textual, no torch
    assert snapshot(finished_run) == before  # read-only


def test_liveness_of_a_finished_run_is_settled(finished_run: Path) -> None:
    state = RunState()
    for event in EventFollower(finished_run / EVENTS_FILE).poll():
        state.apply(event)
    assert state.ended and not state.partial
    assert liveness(finished_run, state).alive is False


# ── the app's watch mode ─────────────────────────────────────────────────────────────

@pytest.mark.slow
def test_watch_app_shows_a_finished_run_read_only(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    before = snapshot(finished_run)
    app = watch_app(finished_run)

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_for(pilot, lambda: app.results_pane.metrics is not None)
            cells = app.results_pane.metric_cells()
            for name, value in metrics["metrics"].items():  # the mean ± its standard error
                assert cells[name] == f"{value:.4f} ± {metrics['stderr'][name]:.4f}"
            assert app.check_action("start", ()) is False  # read-only: no run actions
            assert app.config_pane.values()["model"] == metrics["model"]
            await pilot.press("q")

    asyncio.run(scenario())
    assert snapshot(finished_run) == before


@pytest.mark.slow
def test_watch_app_follows_growth_and_shows_a_stopped_run(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    app = watch_app(tmp_path)
    pid = dead_pid()

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            # the follower has looked at the empty directory before the run appears
            await wait_for(pilot, lambda: app.follower_polls >= 1)
            append(path, line(started(os.getpid())) + line(progress(3)))
            await wait_for(pilot, lambda: app.progress_pane.last is not None
                         and app.progress_pane.last.done == 3)
            append(path, line(started(pid)) + line(progress(5)))  # a try that then died
            await wait_for(pilot, lambda: any("stopped — no final event" in text
                                            for text in app.log_pane.plain_lines()))
            assert any("tui-eval --no-ui --resume -o" in text
                       for text in app.log_pane.plain_lines())
            await pilot.press("q")

    asyncio.run(scenario())


@pytest.mark.slow
def test_watch_app_exits_cleanly_on_sighup(finished_run: Path) -> None:
    app = watch_app(finished_run)

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_for(pilot, lambda: app.results_pane.metrics is not None)
            os.kill(os.getpid(), signal.SIGHUP)  # handled on the app's event loop
            await wait_for(pilot, lambda: app._exit)

    with hangup_at_default():
        asyncio.run(scenario())
    assert app.return_code == 0


def test_plain_watcher_shows_the_tuned_batch_size(tmp_path: Path) -> None:
    from tui_eval.events import TuneFinished

    tune = TuneFinished(chosen_batch_size=8, mode="power",
                        probes=[TuneProbe(size, "ok", 1.0, size, size * 8.0, None, None)
                                for size in (4, 8, 16)])
    (tmp_path / EVENTS_FILE).write_bytes(line(tune) + line(started(1)) + line(finished()))
    out = io.StringIO()
    assert PlainWatcher(tmp_path, stream=out).run() == 0
    assert "auto-tune (power): chose batch size 8 after 3 probes" in out.getvalue()


@pytest.mark.slow
def test_watch_started_just_before_a_resume_follows_it_to_the_end(
        tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "long.jsonl", long_rows())
    out = tmp_path / "run"
    config = EvalConfig(model=str(tiny_model), data=str(data), output_dir=str(out),
                        max_tokens=4, device="cpu", lang="en", batch_size=4)
    cancel = CancelToken()
    cancel.cancel()  # stopped before its first batch: an interrupted run, 0 of 48 done
    assert Evaluation(config, lambda event: None, cancel=cancel).run().partial
    watcher = headless("watch", "--no-ui", "--grace", "60", "--interval", "0.1", str(out),
                       cwd=tmp_path)
    resume = headless("--no-ui", "--resume", "-o", str(out), cwd=tmp_path)
    assert resume.wait(timeout=300) == 0, resume.stderr.read() if resume.stderr else ""
    stdout, stderr = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, stdout + stderr
    assert "waiting 60s for a resumed try" in stdout
    assert "a new try began" in stdout
    assert f"finished: results in {out}" in stdout


@pytest.mark.slow
def test_watch_app_shows_the_config_of_a_resumed_try(tmp_path: Path) -> None:
    from tui_eval.results import RunConfig

    RunConfig(config=EvalConfig(model="m", data="d.jsonl", batch_size=2).to_dict()).write(
        tmp_path)
    path = tmp_path / EVENTS_FILE
    path.write_bytes(line(started(dead_pid())) + line(finished(4, partial=True)))
    app = watch_app(tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_for(pilot, lambda: app.results_pane.metrics is not None)
            assert app.config_pane.values()["batch_size"] == 2
            # `--resume -b 8`: the new try writes its config.json, then starts
            RunConfig(config=EvalConfig(model="m", data="d.jsonl", batch_size=8).to_dict()
                      ).write(tmp_path)
            append(path, line(try_started(os.getpid())) + line(started(os.getpid())))
            await wait_for(pilot, lambda: app.config_pane.values()["batch_size"] == 8)
            assert app.results_pane.metrics is None  # the old try's partial metrics went
            await pilot.press("q")

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_watch_apps_chart_does_not_offer_a_key_it_lacks(finished_run: Path) -> None:
    from tui_eval.ui.chart import ChartScreen

    app = watch_app(finished_run)

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_for(pilot, lambda: app.results_pane.metrics is not None)
            await pilot.press("g")
            await wait_for(pilot, lambda: isinstance(app.screen, ChartScreen))
            await pilot.pause()
            note = str(app.screen.query_one("#tune-note").render())
            assert "press a" not in note and "no auto-tune in this run" in note

    asyncio.run(scenario())
