"""The tuner's probes as a table: logged row by row as they finish (fixed widths), and as
one Markdown table with the chosen size marked."""

from __future__ import annotations

from tui_eval.formatting import (
    format_bytes,
    format_percent,
    format_seconds,
    markdown_table,
    pad_cell,
)
from tui_eval.results import TuneProbe, TuneResult

HEADERS = {
    "en": ("batch_size", "status", "time", "samples/s", "tokens/s", "peak memory", "GPU util",
           "probe"),
    "zh": ("batch_size", "状态", "时间", "样本/秒", "tokens/秒", "峰值内存", "GPU利用率", "探测"),
}
# What a probe's rate counts, as the rate column names it: samples generated, or
# (context, choice) pairs scored.
RATE_HEADERS = {"samples": {"en": "samples/s", "zh": "样本/秒"},
                "pairs": {"en": "pairs/s", "zh": "选项/秒"}}
# Rows are logged one by one as the probes finish, so the columns have fixed widths.
COLUMN_WIDTHS = (10, 6, 8, 9, 9, 11, 8, 8)


def probe_cell(probe: TuneProbe) -> str:
    """How much the probe generated: 'full', or the tokens per row it stopped after."""
    if probe.status == "predicted":
        return "none"
    if probe.status != "ok":
        return "-"
    return "full" if probe.full_length else f"{probe.new_tokens} tok"


def table_row(probe: TuneProbe) -> list[str]:
    ok = probe.has_rate
    return [str(probe.batch_size), probe.status, format_seconds(probe.seconds),
            f"{probe.samples_per_s:.1f}" if ok else "-",
            f"{probe.tokens_per_s:.0f}" if ok else "-",
            format_bytes(probe.peak_memory_bytes), format_percent(probe.gpu_util_percent),
            probe_cell(probe)]


def fixed_width_row(cells: list[str] | tuple[str, ...]) -> str:
    padded = (pad_cell(c, w) for c, w in zip(cells, COLUMN_WIDTHS, strict=True))
    return "| " + " | ".join(padded) + " |"


def headers(lang: str = "en", unit: str = "samples") -> tuple[str, ...]:
    """The table's column names; ``unit`` says what the rate column counts."""
    names = list(HEADERS.get(lang, HEADERS["en"]))
    rate = RATE_HEADERS.get(unit, RATE_HEADERS["samples"])
    names[3] = rate.get(lang, rate["en"])  # the rate column
    return tuple(names)


def tune_table(result: TuneResult, lang: str = "en") -> str:
    """The probes as a Markdown table, the chosen size marked."""
    rows = []
    for probe in result.probes:
        row = table_row(probe)
        if probe.batch_size == result.chosen_batch_size and probe.has_rate:
            row[0] += " ◀"
        rows.append(row)
    return markdown_table(headers(lang, result.unit), rows)
