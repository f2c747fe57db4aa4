"""RunView: a run's events folded into the one state every front end draws from."""

from __future__ import annotations

import json

from tui_eval.events import (
    Event,
    Fallback,
    LogLine,
    Progress,
    RankFinished,
    RankProgress,
    RankStarted,
    ResumeDecided,
    ResumeWords,
    RunFailed,
    RunFinished,
    RunStarted,
    TryStarted,
    TuneFinished,
    TuneStep,
    event_from_dict,
)
from tui_eval.events.view import KEEP_LOG_LINES, Change, RunView, changes_phase
from tui_eval.results import RunMetrics, TuneProbe


def started(pid: int = 7, total: int = 10, batch_size: int = 2) -> RunStarted:
    return RunStarted(run_dir="out", total=total, batch_size=batch_size, model="tiny",
                      device="cpu", dtype="float32", pid=pid, time=100.0)


def progress(done: int, total: int = 10, ranks: list[RankProgress] | None = None,
             fallbacks: int = 0) -> Progress:
    return Progress(done=done, total=total, samples_per_s=2.5, tokens_per_s=50.0,
                    eta_s=(total - done) / 2.5, batch_size=4, fallbacks=fallbacks, errors=0,
                    ranks=ranks or [])


def metrics(n: int = 10, partial: bool = False) -> RunMetrics:
    return RunMetrics(metrics={"exact_match": 0.5}, n=n, n_total=10, partial=partial)


def probe(size: int, status: str = "ok") -> TuneProbe:
    return TuneProbe(batch_size=size, status=status, seconds=1.0, samples_per_s=float(size),
                     tokens_per_s=10.0 * size, peak_memory_bytes=size << 20,
                     gpu_util_percent=None)


def fold(events: list[Event]) -> tuple[RunView, list[Change | None]]:
    view = RunView()
    return view, [view.apply(event) for event in events]


def test_a_run_of_one_from_its_try_to_its_metrics() -> None:
    view, changes = fold([
        TryStarted(run_dir="out", pid=7, done_before=0, total=10, time=99.0),
        LogLine(level="INFO", message="Loading model"),
        started(),
        progress(4),
        Fallback(batch_size=4, error="CUDA out of memory"),
        progress(10, fallbacks=1),
        RunFinished(metrics=metrics(), time=200.0),
    ])
    assert changes == [Change.TRY, Change.LOG, Change.STARTED, Change.PROGRESS,
                       Change.FALLBACK, Change.PROGRESS, Change.FINISHED]
    assert (view.done, view.total, view.samples_per_s, view.batch_size) == (10, 10, 2.5, 4)
    assert view.tries == 1 and view.pid == 7 and not view.loading
    assert view.fallbacks == 1
    assert view.ended and view.metrics == metrics() and view.failure is None
    assert not view.partial and view.last_event_at == 200.0
    assert [line.message for line in view.logs] == ["Loading model"]
    assert view.ranks == []


def test_before_progress_the_counts_come_from_the_try_and_the_start() -> None:
    view, _ = fold([TryStarted(run_dir="out", pid=7, done_before=4, total=10)])
    assert (view.done, view.total, view.batch_size) == (4, 10, None)
    assert view.loading and not view.ended
    view.apply(started(batch_size=8))
    assert (view.done, view.total, view.batch_size) == (4, 10, 8)


def test_a_failure_ends_the_try_and_is_kept_with_its_rank() -> None:
    view, changes = fold([started(), progress(3),
                          RunFailed(error="OSError: disk full", rank=1)])
    assert changes[-1] is Change.FAILED
    assert view.ended and view.metrics is None and not view.partial
    assert view.failure is not None and view.failure.error == "OSError: disk full"
    assert view.failure.rank == 1
    assert view.done == 3  # the progress made stays to be shown


def test_a_new_try_forgets_the_old_ending_but_keeps_the_log() -> None:
    view, _ = fold([started(pid=5), LogLine(level="INFO", message="first try"), progress(4),
                    RunFinished(metrics=metrics(4, partial=True))])
    assert view.partial
    view.mark_stopped()
    assert view.apply(TryStarted(run_dir="out", pid=6, done_before=4, total=10)) is Change.TRY
    assert not view.ended and view.progress is None and not view.stopped
    assert view.tries == 2 and view.pid == 6 and view.done == 4
    assert [line.message for line in view.logs] == ["first try"]
    view.apply(started(pid=6))  # the same try, now generating
    assert view.tries == 2 and not view.loading


def test_the_log_tail_is_bounded() -> None:
    view, _ = fold([LogLine(level="INFO", message=f"line {n}")
                    for n in range(KEEP_LOG_LINES + 20)])
    assert len(view.logs) == KEEP_LOG_LINES
    assert view.logs[0].message == "line 20" and view.logs[-1].message == (
        f"line {KEEP_LOG_LINES + 19}")


def test_tune_probes_then_the_choice() -> None:
    view, changes = fold([TuneStep.of(probe(4)), TuneStep.of(probe(8)),
                          TuneStep.of(probe(16, status="oom")),
                          TuneFinished(chosen_batch_size=8, mode="power",
                                       probes=[probe(4), probe(8), probe(16, "oom")])])
    assert changes == [Change.TUNE_STEP] * 3 + [Change.TUNE]
    assert [step.probe() for step in view.tune_steps] == [probe(4), probe(8), probe(16, "oom")]
    assert view.tune is not None and view.tune.chosen_batch_size == 8
    assert view.batch_size == 8  # chosen, before the run starts


def test_the_ranks_shares_from_their_events_and_the_progress() -> None:
    view, changes = fold([
        started(total=20),
        RankStarted(total=10, batch_size=4, device="cuda:0", pid=1, rank=0),
        RankStarted(total=10, batch_size=8, device="cuda:1", pid=2, rank=1),
        progress(9, total=20, ranks=[
            RankProgress(rank=0, done=5, total=10, samples_per_s=1.0, device="cuda:0"),
            RankProgress(rank=1, done=4, total=10, samples_per_s=1.5, device="cuda:1")]),
        RankFinished(done=10, rank=1),
    ])
    assert changes[1:3] == [Change.RANK, Change.RANK] and changes[-1] is Change.RANK
    assert [(r.rank, r.done, r.total, r.device, r.finished) for r in view.ranks] == [
        (0, 5, 10, "cuda:0", False), (1, 10, 10, "cuda:1", True)]
    # the progress as rank 0's board sent it is kept as it was, for the progress line
    assert view.progress is not None and [r.done for r in view.progress.ranks] == [5, 4]
    # a rank's event without a rank (a run of one never sends one) changes nothing
    assert view.apply(RankFinished(done=3)) is None


def test_a_resume_decided_is_kept_and_worded_by_each_front_end() -> None:
    decided = ResumeDecided(run_dir="out", outcome="resume", done=4, total=10, automatic=True)
    view, changes = fold([decided])
    assert changes == [Change.RESUME] and view.resume == decided
    cli = ResumeWords().line(decided, "en").message
    app = ResumeWords(resume_auto="resume_auto_app").line(decided, "en").message
    assert cli == ("out holds a run of the same config: resuming it (4/10 samples already "
                   "done); use --overwrite to start over")
    assert app.endswith("to start over, choose another output directory")
    complete = ResumeDecided(run_dir="out", outcome="complete", done=10, total=10)
    assert ResumeWords().line(complete, "en").message.startswith(
        "out already holds a complete run (10 samples): nothing to do")
    # written to events.jsonl and read back
    assert event_from_dict(json.loads(json.dumps(decided.to_dict()))) == decided


def test_starts_and_ends_change_the_phase() -> None:
    assert changes_phase(started()) and changes_phase(RunFailed(error="x"))
    assert changes_phase(RunFinished(metrics=metrics()))
    assert not changes_phase(progress(1)) and not changes_phase(LogLine(level="INFO",
                                                                        message="x"))
