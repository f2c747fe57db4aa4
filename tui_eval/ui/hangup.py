"""The app's SIGHUP (the SSH session or the tmux pane went away): the run stops after the
batch in flight, which writes partial metrics, and the app exits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType

from tui_eval.terminal import silence_hung_up, tty_streams


def install_app_hangup(on_hangup: Callable[[], None],
                       at_once: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """For an asyncio app (the Textual app): on SIGHUP, point a dead terminal at /dev/null so
    the app's last writes cannot fail, call ``at_once`` in the handler itself (it may only
    set flags or start a thread: the event loop may be blocked, e.g. on a writer that a
    dead terminal never drains), then ``on_hangup`` on the event loop (the app stops its
    run after the batch in flight, which writes partial metrics, and exits).
    Call it from inside the running loop, e.g. in ``on_mount``, in the main thread. Returns
    the undo (the previous handler back), or None where SIGHUP does not exist or was
    ignored at start (nohup)."""
    hup = getattr(signal, "SIGHUP", None)
    if hup is None or threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(hup)
    if previous is signal.SIG_IGN:
        return None
    was_tty = tty_streams()
    loop = asyncio.get_running_loop()

    # A Python-level handler, not loop.add_signal_handler: it runs in the main thread even
    # while that thread waits on a lock, where the loop's own handler would wait for the
    # loop.
    def hung_up(signum: int, frame: FrameType | None) -> None:
        silence_hung_up(was_tty)
        if at_once is not None:
            at_once()
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
            loop.call_soon_threadsafe(on_hangup)

    signal.signal(hup, hung_up)

    def undo() -> None:
        if signal.getsignal(hup) is hung_up:
            signal.signal(hup, previous)

    return undo
