"""Formatting figures and Markdown tables for the tune and bench reports."""

from __future__ import annotations

from collections.abc import Sequence

NOT_AVAILABLE = "N/A"


def format_bytes(value: int | None) -> str:
    if value is None:
        return NOT_AVAILABLE
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - the loop always returns


def format_seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 1 else f"{value:.2f}s"


def format_percent(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.0f}%"


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
