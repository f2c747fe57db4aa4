"""A terminal that hung up (SIGHUP: the SSH session or the tmux pane went away): standard
output and error pointed at /dev/null, so that the last writes of a run or the app cannot
fail. The headless run's handlers and the app's both do this."""

from __future__ import annotations

import os

STREAMS = (1, 2)  # standard output and error


def tty_streams() -> dict[int, bool]:
    """Which streams are a terminal now (read at start: a hung-up one no longer says)."""
    return {fd: os.isatty(fd) for fd in STREAMS}


def silence_hung_up(was_tty: dict[int, bool]) -> None:
    """Point each stream that was a terminal and no longer answers at /dev/null."""
    for fd, tty in was_tty.items():
        if tty and not os.isatty(fd):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
