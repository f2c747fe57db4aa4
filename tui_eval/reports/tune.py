"""The tuner's probes as one Markdown table, the chosen size marked. Its cells and en/zh
headers are those of the rows the tuner logs as it runs (tui_eval.batching.table): the
engine writes those to run.log itself, so they stay with the tuner."""

from __future__ import annotations

from tui_eval.batching.table import headers, table_row
from tui_eval.formatting import markdown_table
from tui_eval.results import TuneResult

CHOSEN_MARK = " ◀"


def tune_table(result: TuneResult, lang: str = "en") -> str:
    """The probes as a Markdown table, the chosen size marked."""
    rows = []
    for probe in result.probes:
        row = table_row(probe)
        if probe.batch_size == result.chosen_batch_size and probe.has_rate:
            row[0] += CHOSEN_MARK
        rows.append(row)
    return markdown_table(headers(lang, result.unit), rows)
