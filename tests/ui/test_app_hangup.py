"""The app under a pseudo-terminal that closes: SIGHUP saves the run and the process exits,
whatever key presses are still queued."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from tests.helpers import default_signals, hangup_at_default, wait_until
from tui_eval.ui.hangup import install_app_hangup

pytestmark = pytest.mark.slow  # a model run in a subprocess


def take_the_terminal() -> None:
    """In the child: the pty becomes its controlling terminal, with SIGHUP at its default."""
    default_signals()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def start_in_pty(args: list[str], cwd: Path) -> tuple[subprocess.Popen[bytes], int, bytearray]:
    """The app on a fresh 80x24 terminal of its own (its controlling tty, so that closing
    the master hangs it up). A thread drains the screen, as a terminal would."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "tui_eval", *args], cwd=cwd, stdin=slave, stdout=slave,
        stderr=slave, start_new_session=True, env={**os.environ, "TERM": "xterm-256color"},
        preexec_fn=take_the_terminal)
    os.close(slave)
    screen = bytearray()

    def drain() -> None:
        with contextlib.suppress(OSError):  # EIO once the app is gone, EBADF once closed
            while chunk := os.read(master, 65536):
                screen.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    return process, master, screen


def test_closing_the_terminal_with_theme_presses_queued_saves_and_exits(
        tiny_model: Path, long_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process, master, screen = start_in_pty(
        ["-m", str(tiny_model), "-d", str(long_jsonl), "--device", "cpu", "--lang", "en",
         "-b", "1", "--max-tokens", "24", "-o", str(out)], cwd=tmp_path)
    try:
        wait_until(lambda: b"Start" in screen or process.poll() is not None,
                   what="the app's first screen")
        os.write(master, b"s")
        wait_until(lambda: (out / "predictions.jsonl").exists() or process.poll() is not None,
                   what="the run's first batch")
        os.write(master, b"t" * 12)  # each a restyle of every widget, queued
        os.close(master)  # the terminal goes away: SIGHUP
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    rows = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert metrics["n"] == len(rows) >= 1  # the finished batches, whole, and their metrics
    assert metrics["partial"] is (len(rows) < 48)


def test_the_hangup_handler_acts_while_the_event_loop_is_blocked() -> None:
    """The app's writer can block the loop for good on a dead terminal: the handler's first
    part runs in the signal handler itself, not on the loop."""
    acted = threading.Event()
    blocker = threading.Lock()

    async def scenario() -> None:
        undo = install_app_hangup(lambda: None, acted.set)
        assert undo is not None
        try:
            blocker.acquire()
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGHUP)).start()
            threading.Thread(target=lambda: (acted.wait(60), blocker.release())).start()
            assert blocker.acquire(timeout=60)  # the loop is blocked here, as on a writer
            assert acted.is_set()
        finally:
            undo()

    with hangup_at_default():
        previous = signal.getsignal(signal.SIGHUP)
        asyncio.run(scenario())
        assert signal.getsignal(signal.SIGHUP) == previous
