"""The bench table (the seed guide's columns: batch_size | time | speedup | …) with its en/zh
headers, printed by ``tui-eval bench`` and written to bench.md."""

from __future__ import annotations

from typing import Any

from tui_eval.formatting import format_bytes, format_percent, format_seconds, markdown_table
from tui_eval.i18n import message
from tui_eval.results import BenchRow

HEADERS = {
    "en": ("batch_size", "time", "speedup", "samples/s", "peak memory", "GPU util"),
    "zh": ("batch_size", "时间", "提升", "样本/秒", "峰值内存", "GPU利用率"),
}
# A choice task's batch unit is the (context, choice) pair: its rate follows samples/s.
PAIRS_HEADER = {"en": "pairs/s", "zh": "选项/秒"}
COMPILE_HEADERS = {"en": ("compile", "compile time"), "zh": ("编译", "编译用时")}


def shows_compile(rows: list[BenchRow]) -> bool:
    """The compile columns: when any row compiled or the rows compare settings."""
    return (any(r.compile in ("on", "graph") for r in rows)
            or len({r.requested_compile for r in rows}) > 1)


def bench_table(rows: list[BenchRow], lang: str = "en") -> str:
    """The seed's columns; a choice task's adds pairs/s after samples/s; with compile, a
    compile column after batch_size and the compile time last."""
    pairs = any(row.pairs_per_s is not None for row in rows)
    compile_columns = shows_compile(rows)
    cells = []
    for row in rows:
        lowered = row.final_batch_size is not None and row.final_batch_size != row.batch_size
        marker = "*" if row.fallbacks or lowered else ""
        cell = [f"{row.batch_size}{marker}", format_seconds(row.seconds),
                f"{row.speedup:.2f}x", f"{row.samples_per_s:.2f}",
                *([f"{row.pairs_per_s or 0.0:.1f}"] if pairs else []),
                format_bytes(row.peak_memory_bytes), format_percent(row.gpu_util_percent)]
        if compile_columns:
            mode = row.compile if row.requested_compile != "auto" else f"auto: {row.compile}"
            cell[1:1] = [mode]
            cell.append(format_seconds(row.compile_seconds) if row.compile != "off" else "-")
        cells.append(cell)
    headers = list(HEADERS.get(lang, HEADERS["en"]))
    if pairs:
        headers.insert(4, PAIRS_HEADER.get(lang, PAIRS_HEADER["en"]))
    if compile_columns:
        compile_name, compile_time = COMPILE_HEADERS.get(lang, COMPILE_HEADERS["en"])
        headers[1:1] = [compile_name]
        headers.append(compile_time)
    table = markdown_table(headers, cells)
    notes = [message("bench_oom_note", lang, batch_size=r.batch_size, fallbacks=r.fallbacks,
                     final=r.final_batch_size)
             for r in rows if r.fallbacks or (r.final_batch_size not in (None, r.batch_size))]
    return "\n".join([table, "", *notes]) if notes else table


def bench_markdown(rows: list[BenchRow], context: dict[str, Any], lang: str = "en") -> str:
    about = ", ".join(f"{key}: {value}" for key, value in context.items())
    return f"# tui-eval bench\n\n{about}\n\n{bench_table(rows, lang)}\n"
