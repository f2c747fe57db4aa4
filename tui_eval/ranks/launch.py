"""``tui-eval --no-ui --gpus N``: start the run's processes with torch's own launcher (what
``torchrun --standalone --nproc-per-node N -m tui_eval --no-ui …`` does), and say in one
line which rank ended the run when one dies."""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from typing import Any

from tui_eval.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, UsageError
from tui_eval.events import LogLine, Progress, RunFailed, TryStarted
from tui_eval.events.follow import EventFollower
from tui_eval.results.run_dir import RunDir

# Set for the ranks this launcher starts: a SIGTERM then comes from the launcher, which says
# itself why the run ended (rank 0 stays quiet about it).
LAUNCHED_ENV = "TUI_EVAL_LAUNCHED"


def gpu_count(requested: str) -> int:
    """How many processes ``--gpus`` asks for: a number, or ``all`` the GPUs torch sees."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        raise UsageError("--gpus: torch sees no CUDA GPU on this machine; run without "
                         "--gpus (or, for several CPU processes, torchrun --nproc-per-node N "
                         "-m tui_eval --no-ui --device cpu …)")
    if requested == "all":
        return available
    count = int(requested)
    if count > available:
        raise UsageError(f"--gpus {count}: torch sees only {available} CUDA GPU(s)")
    return count


def launch_ranks(argv: list[str], processes: int, run_dir: RunDir) -> int:
    """Run ``tui-eval`` with ``argv`` (which names ``-o run_dir``) in ``processes`` processes
    on this machine; the exit code is the run's."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # the launcher's own progress notes would bury the run's lines
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun does: N processes share the cores
    os.environ[LAUNCHED_ENV] = "1"
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
        monitor_interval=0.1, start_method="spawn",
        # The ranks run in sessions of their own, out of the terminal's reach: the launcher
        # passes Ctrl+C (or SIGTERM) on to them, and each stops after its batch in flight.
        signals_to_handle="SIGTERM,SIGINT,SIGQUIT")
    hangup = getattr(signal, "SIGHUP", None)
    previous = signal.signal(hangup, signal.SIG_IGN) if hangup is not None else None
    try:
        elastic_launch(config, sys.executable)("-m", "tui_eval", *argv)
    except ChildFailedError as failed:
        return _report_failure(failed.failures, run_dir)
    except SignalException as stopped:
        if stopped.sigval != signal.SIGINT:  # rank 0 says where a Ctrl+C left the run
            print(f"tui-eval: stopped ({stopped.sigval.name}); finished batches are kept in "
                  f"{run_dir}; resume with: {run_dir.resume_command()}", file=sys.stderr,
                  flush=True)
        return EXIT_INTERRUPTED
    finally:
        if hangup is not None:
            signal.signal(hangup, previous)
    return EXIT_OK


def _report_failure(failures: dict[int, Any], run_dir: RunDir) -> int:
    """The exit code of a run some rank did not finish, and one line for the rank that ended
    it (the first to fail), unless rank 0 said it itself: a bad input (exit 2). A rank that
    fails first makes torchrun stop the others, rank 0 writing partial metrics."""
    if failures.get(0) is not None and failures[0].exitcode == EXIT_USAGE:
        return EXIT_USAGE
    first_rank, first = min(failures.items(), key=lambda item: item[1].timestamp)
    how = (f"was killed by {signal.Signals(-first.exitcode).name}" if first.exitcode < 0
           else f"exited with code {first.exitcode}")
    last = last_rank_line(run_dir, first_rank)
    said = f"; its last report: {last}" if last else ""
    print(f"tui-eval: rank {first_rank} {how}{said}; finished batches are kept in {run_dir}; "
          f"complete the run with: {run_dir.resume_command()}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED if first.exitcode == EXIT_INTERRUPTED else EXIT_RUN_FAILED


def last_rank_line(run_dir: RunDir, rank: int) -> str:
    """What events.jsonl last holds from ``rank``: its last log line or failure (rank 0's own
    lines outside its batches carry no rank), else how far its share had come."""
    events = EventFollower(run_dir.events_path).poll()
    ranks = (rank, None) if rank == 0 else (rank,)
    share = ""
    for event in reversed(events):
        if isinstance(event, Progress) and not share:
            share = next((f"{r.done}/{r.total} of its samples done"
                          for r in event.ranks if r.rank == rank), "")
        if event.rank not in ranks:
            continue
        if isinstance(event, LogLine):
            return event.message
        if isinstance(event, RunFailed):
            return f"run failed: {event.error}"
        if isinstance(event, TryStarted):
            break
    return share
