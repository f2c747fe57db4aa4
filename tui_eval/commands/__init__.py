"""The sub-commands, one module each: its parser and its ``main(argv) -> exit code``.

``run`` is the default command (``tui-eval [--no-ui] …``); the others are named first on
the command line. Each module is imported only when its command runs, so start-up stays
fast: the engine and the app are imported inside ``main`` when they are needed.
"""

from __future__ import annotations

# name → (module, one line for `tui-eval --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "tune": ("tui_eval.commands.tune", "find the fastest batch size that fits (tune.json)"),
    "bench": ("tui_eval.commands.bench", "evaluate at several batch sizes: the speed table"),
    "watch": ("tui_eval.commands.watch", "follow a run from its results directory"),
    "rescore": ("tui_eval.commands.rescore", "score a finished run again (metrics, extract)"),
    "compare": ("tui_eval.commands.compare", "two runs of the same samples side by side"),
}
DEFAULT_COMMAND = "tui_eval.commands.run"
