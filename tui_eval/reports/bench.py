"""The bench table (the seed guide's columns: batch_size | time | speedup | …) with its en/zh
headers, printed by ``tui-eval bench`` and written to bench.md; on a narrow terminal, the
same columns with short headers and compact cells."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tui_eval.formatting import (
    GIB,
    NOT_AVAILABLE,
    display_width,
    format_bytes,
    format_percent,
    format_seconds,
    markdown_table,
)
from tui_eval.i18n import message
from tui_eval.results import BenchRow

HEADERS = {
    "en": ("batch_size", "time", "speedup", "samples/s", "peak memory", "GPU util"),
    "zh": ("batch_size", "时间", "提升", "样本/秒", "峰值内存", "GPU利用率"),
}
# A choice task's batch unit is the (context, choice) pair: its rate follows samples/s.
PAIRS_HEADER = {"en": "pairs/s", "zh": "选项/秒"}
COMPILE_HEADERS = {"en": ("compile", "compile time"), "zh": ("编译", "编译用时")}
# The same columns for a terminal too narrow for the full table: every column at once
# (compile, pairs/s, 'a:graph', '1024*') fits 80 columns.
SHORT_HEADERS = {
    "en": ("bs", "time", "speed", "smp/s", "mem", "GPU"),
    "zh": ("bs", "时间", "提升", "样本/s", "内存", "GPU"),
}
SHORT_PAIRS_HEADER = {"en": "pair/s", "zh": "选项/s"}
SHORT_COMPILE_HEADERS = {"en": ("compile", "c.time"), "zh": ("编译", "编译时")}
# 'auto: graph' in a compact cell: what compile = auto chose, explained under the table
SHORT_AUTO = "a:"


def shows_compile(rows: list[BenchRow]) -> bool:
    """The compile columns: when any row compiled or the rows compare settings."""
    return (any(r.compile in ("on", "graph") for r in rows)
            or len({r.requested_compile for r in rows}) > 1)


def compact_figure(value: float) -> str:
    """About three significant figures in at most five columns up to 99999: '8.00', '24.5',
    '2880' (the rounded figure decides, so 9.996 is '10.0', not '10.00')."""
    for digits, limit in ((2, 10), (1, 100)):
        if round(value, digits) < limit:
            return f"{value:.{digits}f}"
    return f"{value:.0f}"


def compact_seconds(value: float) -> str:
    """'5.2ms', '57ms', '1.25s', '12.3s', '123s' (a small model's batches take
    milliseconds: '0.06s' would hide them)."""
    ms = value * 1000
    if round(ms) >= 1000:
        return f"{compact_figure(value)}s"
    return f"{ms:.1f}ms" if round(ms, 1) < 10 else f"{ms:.0f}ms"


def compact_speedup(value: float) -> str:
    return f"{compact_figure(value)}x"


def compact_bytes(value: int | None) -> str:
    """'356M', '1.0G', '139.5G': a peak memory in at most six columns."""
    if value is None:
        return NOT_AVAILABLE
    if value >= GIB:
        return f"{value / GIB:.1f}G"
    return f"{value / 2**20:.0f}M"


def bench_table(rows: list[BenchRow], lang: str = "en", width: int | None = None) -> str:
    """The seed's columns; a choice task's adds pairs/s after samples/s; with compile, a
    compile column after batch_size and the compile time last. With a terminal's ``width``
    the table fits it (a column to spare, as the printer's lines): when the full table is
    wider, short headers and compact cells. Without one (bench.md, a pipe), the full table."""
    full = _table(rows, lang, compact=False)
    if width is None or max(display_width(line) for line in full.splitlines()) < width:
        return full
    return _table(rows, lang, compact=True)


def _table(rows: list[BenchRow], lang: str, compact: bool) -> str:
    pairs = any(row.pairs_per_s is not None for row in rows)
    compile_columns = shows_compile(rows)
    seconds: Callable[[float], str] = compact_seconds if compact else format_seconds
    rate: Callable[[float], str] = compact_figure if compact else "{:.2f}".format
    cells = []
    for row in rows:
        lowered = row.final_batch_size is not None and row.final_batch_size != row.batch_size
        marker = "*" if row.fallbacks or lowered else ""
        pairs_cell = (compact_figure(row.pairs_per_s or 0.0) if compact
                      else f"{row.pairs_per_s or 0.0:.1f}")
        cell = [f"{row.batch_size}{marker}", seconds(row.seconds),
                compact_speedup(row.speedup) if compact else f"{row.speedup:.2f}x",
                rate(row.samples_per_s),
                *([pairs_cell] if pairs else []),
                (compact_bytes if compact else format_bytes)(row.peak_memory_bytes),
                format_percent(row.gpu_util_percent)]
        if compile_columns:
            auto = SHORT_AUTO if compact else "auto: "
            mode = row.compile if row.requested_compile != "auto" else f"{auto}{row.compile}"
            cell[1:1] = [mode]
            cell.append(seconds(row.compile_seconds) if row.compile != "off" else "-")
        cells.append(cell)
    names = SHORT_HEADERS if compact else HEADERS
    headers = list(names.get(lang, names["en"]))
    if pairs:
        pairs_names = SHORT_PAIRS_HEADER if compact else PAIRS_HEADER
        headers.insert(4, pairs_names.get(lang, pairs_names["en"]))
    if compile_columns:
        compile_names = SHORT_COMPILE_HEADERS if compact else COMPILE_HEADERS
        compile_name, compile_time = compile_names.get(lang, compile_names["en"])
        headers[1:1] = [compile_name]
        headers.append(compile_time)
    table = markdown_table(headers, cells)
    note = "bench_oom_note_short" if compact else "bench_oom_note"
    notes = [message(note, lang, batch_size=r.batch_size, fallbacks=r.fallbacks,
                     final=r.final_batch_size)
             for r in rows if r.fallbacks or (r.final_batch_size not in (None, r.batch_size))]
    if compact and compile_columns and any(r.requested_compile == "auto" for r in rows):
        notes.append(message("bench_auto_note", lang))
    return "\n".join([table, "", *notes]) if notes else table


def bench_markdown(rows: list[BenchRow], context: dict[str, Any], lang: str = "en") -> str:
    about = ", ".join(f"{key}: {value}" for key, value in context.items())
    return f"# tui-eval bench\n\n{about}\n\n{bench_table(rows, lang)}\n"
