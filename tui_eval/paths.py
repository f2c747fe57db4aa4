"""Where tui-eval keeps what outlives a run: the user's cache directory."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tui-eval`` (``~/.cache/tui-eval`` when it is unset)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG spec: a relative path is invalid and must be ignored
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "tui-eval"
