"""The tuner's probes as the rows it logs: fixed-width cells, headers in the run's
language and named by what the rate counts."""

from __future__ import annotations

import pytest

from tui_eval.batching.table import fixed_width_row, headers, log_row
from tui_eval.results import TuneProbe

GIB = 2**30
PROBES = [
    TuneProbe(batch_size=1, status="ok", seconds=0.5, samples_per_s=2.0, tokens_per_s=64.0,
              peak_memory_bytes=GIB, gpu_util_percent=40.0, full_length=True),
    TuneProbe(batch_size=2, status="ok", seconds=0.6, samples_per_s=3.5, tokens_per_s=112.0,
              peak_memory_bytes=2 * GIB, gpu_util_percent=None, new_tokens=8),
    TuneProbe(batch_size=4, status="oom", seconds=0.1, samples_per_s=0.0, tokens_per_s=0.0,
              peak_memory_bytes=None, gpu_util_percent=None),
    TuneProbe(batch_size=8, status="predicted", seconds=1.2, samples_per_s=6.5,
              tokens_per_s=208.0, peak_memory_bytes=None, gpu_util_percent=None)]


def test_each_probe_is_one_fixed_width_row_a_prediction_with_its_figures() -> None:
    assert [log_row(probe) for probe in PROBES] == [
        "| 1     | ok     | 0.500s  | 2.0       | 64     | 1.0 GiB   | 40%  | full    |",
        "| 2     | ok     | 0.600s  | 3.5       | 112    | 2.0 GiB   | N/A  | 8 tok   |",
        "| 4     | oom    | 0.100s  | -         | -      | N/A       | N/A  | -       |",
        "| 8     | pred.  | 1.20s   | 6.5       | 208    | N/A       | N/A  | none    |"]


EN = "| batch | status | time    | {rate} | tok/s  | peak mem  | GPU% | probe   |"
ZH = "| batch | 状态   | 时间    | {rate} | tok/秒 | 峰值内存  | GPU% | 探测    |"


@pytest.mark.parametrize(("unit", "lang", "header"), [
    ("samples", "en", EN.format(rate="samples/s")),
    ("samples", "zh", ZH.format(rate="样本/秒  ")),
    ("pairs", "en", EN.format(rate="pairs/s  ")),
    ("pairs", "zh", ZH.format(rate="选项/秒  ")),
    ("samples", "fr", EN.format(rate="samples/s"))])  # no headers of its own: English
def test_the_headers_follow_the_language_and_the_rate_unit(
        unit: str, lang: str, header: str) -> None:
    assert fixed_width_row(headers(lang, unit)) == header
