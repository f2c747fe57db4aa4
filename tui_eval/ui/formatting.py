"""Plain-text figures shared by the panes: sizes, rates, durations, N/A for unknowns."""

from __future__ import annotations

from tui_eval.headless import format_duration

NA = "N/A"
GIB = 1024**3

__all__ = ["NA", "format_duration", "gib", "gib_pair", "percent", "number"]


def gib(value: int | None) -> str:
    return NA if value is None else f"{value / GIB:.1f}"


def gib_pair(used: int | None, total: int | None) -> str:
    """'12.3/79.6 GiB', or N/A when either side is unknown."""
    if used is None or total is None:
        return NA
    return f"{gib(used)}/{gib(total)} GiB"


def percent(value: float | None) -> str:
    return NA if value is None else f"{value:.0f}%"


def number(value: float | None, unit: str = "", digits: int = 0) -> str:
    return NA if value is None else f"{value:.{digits}f}{unit}"
