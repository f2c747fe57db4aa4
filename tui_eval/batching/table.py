"""The tuner's probes as rows of its log (run.log, events.jsonl), one as each finishes:
fixed widths, headers in the run's language (en/zh), as every line the engine logs. The
app's results pane shows the same cells (tui_eval.ui.widgets.results)."""

from __future__ import annotations

from tui_eval.formatting import (
    format_bytes,
    format_percent,
    format_seconds,
    pad_cell,
)
from tui_eval.results.tune import TuneProbe

HEADERS = {
    "en": ("batch", "status", "time", "samples/s", "tok/s", "peak mem", "GPU%", "probe"),
    "zh": ("batch", "状态", "时间", "样本/秒", "tok/秒", "峰值内存", "GPU%", "探测"),
}
# What a probe's rate counts, as the rate column names it: samples generated, or
# (context, choice) pairs scored.
RATE_HEADERS = {"samples": {"en": "samples/s", "zh": "样本/秒"},
                "pairs": {"en": "pairs/s", "zh": "选项/秒"}}
# Rows are logged one by one as the probes finish, so the columns have fixed widths; a
# row without its time stamp fits an 80-column terminal (78 columns).
COLUMN_WIDTHS = (5, 6, 7, 9, 6, 9, 4, 7)
# A status too long for its column in a logged row, in a word that fits.
SHORT_STATUS = {"predicted": "pred."}


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


def log_row(probe: TuneProbe) -> str:
    """The probe as a logged row: fixed widths, a long status shortened."""
    cells = table_row(probe)
    cells[1] = SHORT_STATUS.get(cells[1], cells[1])
    return fixed_width_row(cells)


def headers(lang: str = "en", unit: str = "samples") -> tuple[str, ...]:
    """The table's column names; ``unit`` says what the rate column counts."""
    names = list(HEADERS.get(lang, HEADERS["en"]))
    rate = RATE_HEADERS.get(unit, RATE_HEADERS["samples"])
    names[3] = rate.get(lang, rate["en"])  # the rate column
    return tuple(names)
