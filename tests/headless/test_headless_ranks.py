"""A run of several processes in plain text: the printer's live line and log lines, and the
plain watcher, show the totals and each rank's share; a run of one looks as before."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from tui_eval.events import Progress, RankProgress, RunStarted
from tui_eval.headless.printer import HeadlessPrinter, progress_line, ranks_text
from tui_eval.headless.watcher import PlainWatcher
from tui_eval.results import EVENTS_FILE


def shares(count: int = 2, finished: int = -1) -> list[RankProgress]:
    return [RankProgress(rank=rank, done=120 - 2 * rank, total=250,
                         samples_per_s=12.1 - 0.3 * rank, tokens_per_s=380.0, batch_size=32,
                         fallbacks=1 if rank == 1 else 0, device=f"cuda:{rank}",
                         finished=rank == finished)
            for rank in range(count)]


def progress(ranks: list[RankProgress]) -> Progress:
    return Progress(done=238, total=500, samples_per_s=23.9, tokens_per_s=760.0,
                    eta_s=11.0, batch_size=32, fallbacks=1, errors=0, ranks=ranks)


SINGLE_LINE = ("progress: 238/500 samples | 23.90 samples/s | 760 tok/s | ETA 00:11 | "
               "batch 32 | fallbacks 1\n")


def printed(event: Progress, interactive: bool, width: int = 200) -> str:
    out = io.StringIO()
    HeadlessPrinter(out, interactive=interactive, width=width)(event)
    return out.getvalue()


# ── not a TTY ────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("ranks", [[], shares(1)])
def test_a_run_of_one_prints_the_same_plain_line_as_before(ranks: list[RankProgress]) -> None:
    event = progress(ranks)
    assert printed(event, interactive=False) == SINGLE_LINE


def test_a_run_of_several_prints_each_ranks_share_on_a_second_line() -> None:
    lines = printed(progress(shares(2)), interactive=False).splitlines()
    assert lines == [
        "progress: 238/500 samples | 23.90 samples/s | 760 tok/s | ETA 00:11 | batch 32 | "
        "fallbacks 1",
        "ranks: 0 120/250 12.1/s bs 32 · 1 118/250 11.8/s bs 32 fb 1",
    ]


def test_the_ranks_line_marks_finished_ranks_and_errors_and_stays_one_line() -> None:
    ranks = shares(8, finished=3)
    ranks[5].errors = 2
    text = ranks_text(progress(ranks))
    assert "\n" not in text
    assert text.count(" · ") == 7
    assert "3 114/250 11.2/s bs 32 done" in text
    assert "5 110/250 10.6/s bs 32 err 2" in text


# ── on a TTY ─────────────────────────────────────────────────────────────────────────

def test_the_live_line_of_a_run_of_one_is_unchanged() -> None:
    event = progress([])
    assert printed(event, interactive=True) == f"\r\033[K{progress_line(event, 200)}"
    assert progress_line(event, 200) == (
        "███████████░░░░░░░░░░░░░ 238/500 samples | 23.90 samples/s | 760 tok/s | ETA 00:11 "
        "| batch 32 | fallbacks 1")
    assert progress_line(progress(shares(1)), 200) == progress_line(progress([]), 200)


def test_the_live_line_adds_each_ranks_rate_where_it_fits() -> None:
    line = progress_line(progress(shares(2)), 200)
    assert line.endswith("| fallbacks 1 | r0 12.1/s r1 11.8/s")
    assert line.startswith("█")  # the bar stays


@pytest.mark.parametrize("width", [200, 160, 120, 100, 80, 60, 40, 24, 10])
@pytest.mark.parametrize("count", [2, 4, 8])
def test_the_live_line_always_fits_the_terminal(width: int, count: int) -> None:
    line = progress_line(progress(shares(count)), width)
    assert 0 < len(line) < width
    assert "\n" not in line


def test_the_rank_rates_are_dropped_first_on_a_narrow_terminal() -> None:
    event = progress(shares(4))
    full = progress_line(event, 300)
    assert "r3 11.2/s" in full
    narrow = progress_line(event, 120)
    assert "r0 " not in narrow
    # what is left is exactly a run of one's line at that width: the bar and full text
    assert narrow == progress_line(progress([]), 120)
    assert "fallbacks 1" in narrow and narrow.startswith("█")


# ── the plain watcher ────────────────────────────────────────────────────────────────

def write_events(run_dir: Path, *events: object) -> None:
    (run_dir / EVENTS_FILE).write_text(
        "".join(json.dumps(event.to_dict()) + "\n" for event in events),  # type: ignore[attr-defined]
        encoding="utf-8")


def test_the_plain_watcher_shows_the_ranks_as_the_printer_does(tmp_path: Path) -> None:
    event = progress(shares(4, finished=0))
    started = RunStarted(run_dir=str(tmp_path), total=500, batch_size=32, model="tiny",
                         device="cuda:0", dtype="bfloat16", pid=os.getpid(), world_size=4)
    write_events(tmp_path, started, event)
    out = io.StringIO()
    assert PlainWatcher(tmp_path, stream=out).run(once=True) == 0
    lines = out.getvalue().splitlines()
    assert any(line.startswith("run: 500 samples, batch 32, tiny on cuda:0 (bfloat16), "
                               "4 processes, pid ") for line in lines)
    printer_lines = printed(event, interactive=False).splitlines()
    assert len(printer_lines) == 2
    start = lines.index(printer_lines[0])
    assert lines[start + 1] == printer_lines[1]
    assert lines[start + 1].startswith("ranks: 0 120/250 12.1/s bs 32 done · 1 ")


def test_the_plain_watcher_of_a_run_of_one_prints_no_ranks_line(tmp_path: Path) -> None:
    started = RunStarted(run_dir=str(tmp_path), total=500, batch_size=32, model="tiny",
                         device="cpu", dtype="float32", pid=os.getpid())
    event = progress([])
    write_events(tmp_path, started, event)
    out = io.StringIO()
    PlainWatcher(tmp_path, stream=out).run(once=True)
    text = out.getvalue()
    assert SINGLE_LINE in text
    assert "ranks:" not in text and "processes" not in text


def test_a_failure_of_another_rank_names_it() -> None:
    import io

    from tui_eval.events import RunFailed
    from tui_eval.headless.printer import HeadlessPrinter

    stream = io.StringIO()
    printer = HeadlessPrinter(stream, interactive=False)
    printer(RunFailed(error="RuntimeError: CUDA error", rank=3))
    printer(RunFailed(error="OSError: disk full"))
    assert stream.getvalue().splitlines() == ["run failed: rank 3: RuntimeError: CUDA error",
                                              "run failed: OSError: disk full"]
