"""Running an evaluation for a config: preparing it (preparation), deciding what a results
directory already holds (resume), tuning the batch size for it (tuning), the run itself
(evaluation) over its task (tasks: generation, choice), several runs at once for the speed
table (benching), scoring a finished run again (rescoring), two runs side by side
(comparison), and the files of a run stopped at once made whole (stopping). Nothing here
knows about the front ends: they catch the signals, and word the tables
(tui_eval.reports), themselves.

This module is the engine's face: the front ends (tui_eval.ui, tui_eval.headless,
tui_eval.commands) import from here only (a contract in pyproject.toml). Each name is
imported on first use, so ``rescore`` or ``compare`` load no torch and ``--help`` none of
the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui_eval.engine.benching import run_bench as bench
    from tui_eval.engine.comparison import Comparison, VerdictChange
    from tui_eval.engine.comparison import compare_runs as compare
    from tui_eval.engine.evaluation import Evaluation, evaluate
    from tui_eval.engine.preparation import DEMO_MAX_TOKENS, Prepared, prepare, render_prompt
    from tui_eval.engine.rescoring import rescore_run as rescore
    from tui_eval.engine.resume import saved_config_values
    from tui_eval.engine.stopping import StoppableRun, metrics_after_stop
    from tui_eval.engine.tuning import run_tuning as tune
    from tui_eval.ranks.launch import LAUNCHED_ENV, gpu_count, launch_ranks
    from tui_eval.ranks.world import world_from_env

# name on the face: (module, name there)
_FACE: dict[str, tuple[str, str]] = {
    "evaluate": ("tui_eval.engine.evaluation", "evaluate"),
    "Evaluation": ("tui_eval.engine.evaluation", "Evaluation"),
    "prepare": ("tui_eval.engine.preparation", "prepare"),
    "Prepared": ("tui_eval.engine.preparation", "Prepared"),
    "render_prompt": ("tui_eval.engine.preparation", "render_prompt"),
    "DEMO_MAX_TOKENS": ("tui_eval.engine.preparation", "DEMO_MAX_TOKENS"),
    "tune": ("tui_eval.engine.tuning", "run_tuning"),
    "bench": ("tui_eval.engine.benching", "run_bench"),
    "rescore": ("tui_eval.engine.rescoring", "rescore_run"),
    "compare": ("tui_eval.engine.comparison", "compare_runs"),
    "Comparison": ("tui_eval.engine.comparison", "Comparison"),
    "VerdictChange": ("tui_eval.engine.comparison", "VerdictChange"),
    "saved_config_values": ("tui_eval.engine.resume", "saved_config_values"),
    "metrics_after_stop": ("tui_eval.engine.stopping", "metrics_after_stop"),
    "StoppableRun": ("tui_eval.engine.stopping", "StoppableRun"),
    # a run of several processes (tui_eval.ranks)
    "world_from_env": ("tui_eval.ranks.world", "world_from_env"),
    "LAUNCHED_ENV": ("tui_eval.ranks.launch", "LAUNCHED_ENV"),
    "gpu_count": ("tui_eval.ranks.launch", "gpu_count"),
    "launch_ranks": ("tui_eval.ranks.launch", "launch_ranks"),
}

__all__ = [
    "DEMO_MAX_TOKENS", "LAUNCHED_ENV", "Comparison", "Evaluation", "Prepared", "StoppableRun",
    "VerdictChange", "bench", "compare", "evaluate", "gpu_count", "launch_ranks",
    "metrics_after_stop", "prepare", "render_prompt", "rescore", "saved_config_values", "tune",
    "world_from_env",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _FACE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
