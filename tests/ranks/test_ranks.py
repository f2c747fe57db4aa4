"""Data-parallel runs: several processes under torch's launcher (gloo on the CPU), one
results directory, the same predictions as one process; resume across world sizes; a rank
that dies ends the run with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROMPTS, choice_rows, complete_lines, rows_of, wait_until, write_jsonl
from tui_eval.batching.plan import share_by_cost
from tui_eval.cli import main
from tui_eval.errors import UsageError
from tui_eval.events import Progress, RankFinished, RankStarted
from tui_eval.ranks.rank_board import RankBoard
from tui_eval.ranks.world import world_from_env
from tui_eval.results import PredictionRow, rank_predictions_file, write_predictions_atomic
from tui_eval.results.predictions import merge_rank_files

REPO = Path(__file__).resolve().parents[2]


def args_for(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--no-ui", "-m", str(model), "-d", str(data), "--device", "cpu",
            "--torch-dtype", "float32", "--lang", "en", "-o", str(out), *extra]


def environment() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def torchrun(processes: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={processes}", "-m", "tui_eval", *args],
        cwd=cwd, env=environment(), text=True, capture_output=True, timeout=600)


def one_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui_eval", *args], cwd=cwd,
                          env=environment(), text=True, capture_output=True, timeout=600)


def answers(rows: list[dict]) -> list[tuple]:
    return [(r["index"], r["id"], r["prediction"], r["scores"], r.get("logprobs"))
            for r in rows]


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in
            (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]


# ── in one process: the pieces ──────────────────────────────────────────────────────────

def test_shares_balance_tokens_not_counts() -> None:
    costs = [100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    first, second = share_by_cost(list(range(len(costs))), costs, 2)
    assert first == [0]  # the one long sample weighs as much as the ten short ones
    assert sorted(second) == list(range(1, 11))
    assert share_by_cost([1, 2, 3], [5, 5, 5], 2) == share_by_cost([1, 2, 3], [5, 5, 5], 2)


def test_board_sums_the_ranks_and_knows_when_all_are_done() -> None:
    seen: list[object] = []
    board = RankBoard(seen.append, size=2, total=10)
    board(RankStarted(total=6, batch_size=4, device="cuda:0", pid=1, rank=0))
    board(RankStarted(total=4, batch_size=4, device="cuda:1", pid=2, rank=1))
    board(Progress(done=4, total=6, samples_per_s=2.0, tokens_per_s=20.0, eta_s=1.0,
                   batch_size=4, fallbacks=0, errors=0, rank=0))
    board(Progress(done=2, total=4, samples_per_s=1.0, tokens_per_s=10.0, eta_s=2.0,
                   batch_size=2, fallbacks=1, errors=0, rank=1))
    total = [e for e in seen if isinstance(e, Progress)][-1]
    assert (total.done, total.total, total.samples_per_s, total.batch_size,
            total.fallbacks) == (6, 10, 3.0, 2, 1)
    assert total.eta_s == pytest.approx(4 / 3.0)
    assert [(r.rank, r.done, r.total, r.device) for r in total.ranks] == [
        (0, 4, 6, "cuda:0"), (1, 2, 4, "cuda:1")]
    board(RankFinished(done=6, rank=0))
    assert not board.all_finished.is_set()
    board(RankFinished(done=4, rank=1))
    assert board.all_finished.is_set()


def test_the_last_line_shows_the_rate_of_every_rank() -> None:
    # rank 1 finishes first; rank 0's last progress completes the run: the line that says
    # 10/10 carries both ranks' pace, as the summary does, not rank 0's alone
    seen: list[object] = []
    board = RankBoard(seen.append, size=2, total=10)
    board(Progress(done=4, total=4, samples_per_s=155.0, tokens_per_s=1550.0, eta_s=0.0,
                   batch_size=4, fallbacks=0, errors=0, rank=1))
    board(RankFinished(done=4, rank=1))
    board(Progress(done=5, total=6, samples_per_s=150.0, tokens_per_s=1500.0, eta_s=0.1,
                   batch_size=4, fallbacks=0, errors=0, rank=0))
    midway = [e for e in seen if isinstance(e, Progress)][-1]
    assert midway.samples_per_s == 150.0  # only rank 0 still works: the pace left
    board(Progress(done=6, total=6, samples_per_s=156.0, tokens_per_s=1560.0, eta_s=0.0,
                   batch_size=4, fallbacks=0, errors=0, rank=0))
    last = [e for e in seen if isinstance(e, Progress)][-1]
    assert (last.done, last.samples_per_s, last.tokens_per_s) == (10, 311.0, 3110.0)


def test_a_resume_merges_the_ranks_files_without_duplicates(tmp_path: Path) -> None:
    def row(index: int) -> PredictionRow:
        return PredictionRow(index=index, id=str(index), prompt="p", prediction="x",
                             reference="x", scores={"exact_match": 1.0})

    write_predictions_atomic(tmp_path / "predictions.jsonl", [row(0), row(1)])
    write_predictions_atomic(tmp_path / rank_predictions_file(0), [row(1), row(2)])
    (tmp_path / rank_predictions_file(1)).write_text(row(3).to_json() + "\n{\"index\": 4",
                                                     encoding="utf-8")
    torn = merge_rank_files(tmp_path)
    assert torn == len('{"index": 4')
    assert [r["index"] for r in rows_of(tmp_path)] == [0, 1, 2, 3]
    assert not list(tmp_path.glob("predictions.rank-*"))


@pytest.mark.parametrize(("environ", "named"), [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR"),
])
def test_a_bad_torchrun_environment_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        world_from_env(environ)


def test_one_process_is_a_world_of_one() -> None:
    world = world_from_env({})
    assert (world.rank, world.size, world.several, world.is_main) == (0, 1, False, True)


@pytest.mark.parametrize(("flags", "says"), [
    (["--no-ui", "--gpus", "two"], "--gpus 'two': expected a number of GPUs"),
    (["--gpus", "1"], "--gpus runs headless: add --no-ui"),
    (["--no-ui", "--gpus", "2"], "--gpus: torch sees no CUDA GPU on this machine"),
])
def test_gpus_flag_errors_are_one_line(flags: list[str], says: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    assert main([*flags, "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ── several processes (slow: each loads torch and the model) ────────────────────────────

@pytest.mark.slow
def test_two_ranks_give_the_predictions_of_one(tiny_model: Path, long_jsonl: Path,
                                               tmp_path: Path) -> None:
    one = one_process(args_for(tiny_model, long_jsonl, tmp_path / "one", "-b", "4",
                               "--max-tokens", "6"), tmp_path)
    assert one.returncode == 0, one.stderr
    two = torchrun(2, args_for(tiny_model, long_jsonl, tmp_path / "two", "-b", "4",
                               "--max-tokens", "6"), tmp_path)
    assert two.returncode == 0, two.stderr
    assert answers(rows_of(tmp_path / "two")) == answers(rows_of(tmp_path / "one"))
    assert not list((tmp_path / "two").glob("predictions.rank-*"))
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (metrics["n"], metrics["partial"]) == (48, False)
    events = events_of(tmp_path / "two")
    assert {e["rank"] for e in events if e["event"] == "rank_started"} == {0, 1}
    shares = [e for e in events if e["event"] == "rank_started"]
    assert sum(e["total"] for e in shares) == 48
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(len(e["ranks"]) >= 1 for e in progress)
    assert two.stdout.count("exact_match") == 1  # rank 0 prints, the other is silent


@pytest.mark.slow
def test_a_choice_task_under_two_ranks_scores_as_one(tiny_model: Path,
                                                     tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "choice.jsonl", choice_rows())
    flags = ("-b", "3", "--task", "choice")
    one = one_process(args_for(tiny_model, data, tmp_path / "one", *flags), tmp_path)
    two = torchrun(2, args_for(tiny_model, data, tmp_path / "two", *flags), tmp_path)
    assert (one.returncode, two.returncode) == (0, 0), two.stderr
    for a, b in zip(rows_of(tmp_path / "one"), rows_of(tmp_path / "two"), strict=True):
        assert (a["index"], a["pred"], a["pred_norm"]) == (b["index"], b["pred"],
                                                          b["pred_norm"])
        assert b["logprobs"] == pytest.approx(a["logprobs"], abs=1e-4)


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_in_one_line_and_one_process_completes_it(
        tiny_model: Path, tmp_path: Path) -> None:
    rows = [{"id": f"{pid}-{copy}", "question": f"{question} {'Again. ' * (copy % 5)}",
             "answer": answer} for copy in range(20) for pid, question, answer in PROMPTS]
    data = write_jsonl(tmp_path / "many.jsonl", rows)
    out = tmp_path / "run"
    flags = args_for(tiny_model, data, out, "-b", "1", "--max-tokens", "8")
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tui_eval.results import RunDir; "
         "from tui_eval.ranks.launch import launch_ranks; "
         f"sys.exit(launch_ranks({flags!r}, 2, RunDir({str(out)!r})))"],
        cwd=tmp_path, env=environment(), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    part = out / rank_predictions_file(1)

    def rank_1_pid() -> int | None:
        if complete_lines(part) < 2 or not (out / "events.jsonl").exists():
            return None
        return next((e["pid"] for e in events_of(out)
                     if e["event"] == "rank_started" and e["rank"] == 1), None)

    wait_until(lambda: rank_1_pid() is not None or launcher.poll() is not None,
               what="rank 1's first batches")
    assert launcher.poll() is None, launcher.communicate()
    pid = rank_1_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("tui-eval: rank 1 was killed by SIGKILL; its last report: ")
    assert "of its samples done" in lines[0]
    assert f"complete the run with: tui-eval --no-ui --resume -o {out}" in lines[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["partial"] and 0 < metrics["n"] < len(rows)

    resumed = one_process(["--no-ui", "--resume", "-o", str(out)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    done = rows_of(out)
    assert [r["index"] for r in done] == list(range(len(rows)))  # each once, in order
    assert not list(out.glob("predictions.rank-*"))
    reference = one_process(args_for(tiny_model, data, tmp_path / "ref", "-b", "1",
                                     "--max-tokens", "8"), tmp_path)
    assert reference.returncode == 0
    assert answers(done) == answers(rows_of(tmp_path / "ref"))


@pytest.mark.parametrize(("argv", "says"), [
    (["tune"], "tui-eval tune runs in one process"),
    (["bench", "-b", "1,2"], "tui-eval bench runs in one process"),
    ([], "under torchrun tui-eval runs headless: add --no-ui"),
    (["--no-ui", "--gpus", "2"], "--gpus starts the processes itself"),
])
def test_commands_that_cannot_run_per_rank_say_so(argv: list[str], says: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_input_under_two_ranks_is_one_line_from_rank_0(tiny_model: Path,
                                                           tmp_path: Path) -> None:
    flags = args_for(tiny_model, tmp_path / "missing.jsonl", tmp_path / "run")
    launched = subprocess.run(
        [sys.executable, "-c", "import sys; from tui_eval.results import RunDir; "
         "from tui_eval.ranks.launch import launch_ranks; "
         f"sys.exit(launch_ranks({flags!r}, 2, RunDir({str(tmp_path / 'run')!r})))"],
        cwd=tmp_path, env=environment(), text=True, capture_output=True, timeout=300)
    assert launched.returncode == 2
    lines = [line for line in launched.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tui-eval: error: ")
    assert "missing.jsonl" in lines[0]


def test_events_of_other_ranks_arrive_in_order_through_the_store() -> None:
    import torch.distributed as dist

    from tui_eval.events import LogLine
    from tui_eval.ranks.world import RankEventCollector, RankEventSender

    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    store = dist.PrefixStore("tui-eval/", server)
    got: list[object] = []
    collector = RankEventCollector(store, 3, got.append)
    senders = {rank: RankEventSender(store, rank) for rank in (1, 2)}
    for number in range(5):
        for rank, send in senders.items():
            send(LogLine(level="INFO", message=f"{rank}-{number}"))
    store.add("events/2/count", 1)  # a slot reserved by a rank that died before filling it
    collector.poll()
    assert [(e.rank, e.message) for e in got if isinstance(e, LogLine)] == [
        (rank, f"{rank}-{number}") for rank in (1, 2) for number in range(5)]
    collector.poll()  # nothing read twice, and the empty slot waits without blocking
    assert len(got) == 10
