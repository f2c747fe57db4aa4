"""Figures as people read them: sizes, durations, rates and percentages, Markdown tables,
and sizes read back from text ('20GiB'). Unknown figures show as N/A everywhere."""

from __future__ import annotations

import re
from collections.abc import Sequence

NOT_AVAILABLE = "N/A"
GIB = 1024**3

_UNITS = {
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)b?\s*$", re.IGNORECASE)


def size_bytes(text: str) -> int:
    """'20GiB' → 21474836480; '24GB' counts in powers of ten. ValueError for anything else."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_bytes(value: int | None) -> str:
    if value is None:
        return NOT_AVAILABLE
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - the loop always returns


def gib(value: int | None) -> str:
    """Bytes as a bare GiB figure ('12.3'), for columns headed 'GiB'."""
    return NOT_AVAILABLE if value is None else f"{value / GIB:.1f}"


def gib_pair(used: int | None, total: int | None) -> str:
    """'12.3/79.6 GiB', or N/A when either side is unknown."""
    if used is None or total is None:
        return NOT_AVAILABLE
    return f"{gib(used)}/{gib(total)} GiB"


def format_seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 1 else f"{value:.2f}s"


def format_duration(seconds: float | None) -> str:
    """'01:05', '1:02:03', or '--:--' when unknown (an ETA before the first batch)."""
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_percent(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.0f}%"


def format_number(value: float | None, unit: str = "", digits: int = 0) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.{digits}f}{unit}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table whose columns line up in a terminal and that renders as Markdown."""
    widths = [max([display_width(h)] + [display_width(r[i]) for r in rows])
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(pad_cell(c, w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), separator, *(line(r) for r in rows)])


def display_width(text: str) -> int:
    """Display width: CJK characters take two terminal columns."""
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1
               for ch in text)


def pad_cell(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))
