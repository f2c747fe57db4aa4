"""The tune chart's bars: scaled to the largest figure, to an eighth of a cell."""

from __future__ import annotations

from rich.style import Style

from tui_eval.results import TuneProbe
from tui_eval.ui.chart import bar, chart_lines, memory_rows, speed_rows

GIB = 1024**3
PROBES = [TuneProbe(1, "ok", 0.5, 2.0, 64.0, 2 * GIB, None),
          TuneProbe(2, "ok", 0.5, 4.0, 128.0, 3 * GIB, None),
          TuneProbe(4, "oom", 0.1, 0.0, 0.0, None, None)]
STYLES = {"bar": Style(), "chosen": Style(bold=True), "figure": Style()}


def test_a_bar_is_as_long_as_its_fraction_to_an_eighth() -> None:
    assert bar(1.0, 4) == "████"
    assert bar(0.5, 4) == "██  "
    assert bar(0.5 + 1 / 32, 4) == "██▏ "  # an eighth of a cell more
    assert bar(0.0, 3) == "   " and bar(2.0, 2) == "██"


def test_the_chart_scales_to_the_largest_figure_and_marks_the_choice() -> None:
    speed = chart_lines(speed_rows(PROBES, chosen=2), 40, STYLES).plain.splitlines()
    assert speed == ["   bs 1 █████████▌          2.0 /s",  # half of the fastest
                     "▶  bs 2 ███████████████████ 4.0 /s",
                     "   bs 4                     OOM"]
    memory = chart_lines(memory_rows(PROBES, chosen=2), 40, STYLES).plain.splitlines()
    assert memory == ["   bs 1 ████████████▋       2.0 GiB",  # two thirds of the largest
                      "▶  bs 2 ███████████████████ 3.0 GiB",
                      "   bs 4                     N/A OOM"]
