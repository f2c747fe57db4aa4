"""The interactive app (Textual). Nothing outside this package imports Textual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tui_eval.config import EvalConfig


def run_app(config: EvalConfig, *, config_path: Path | None = None,
            run_options: dict[str, Any] | None = None) -> int:
    """Open the app on ``config``; returns the exit code."""
    from tui_eval.ui.app import EvalApp  # Textual: loaded when the app opens

    app = EvalApp(config, config_path=config_path, run_options=run_options)
    app.run()
    return app.return_code or 0
