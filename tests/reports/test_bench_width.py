"""The bench table on a terminal: at 80 columns its widest rows (compile columns, pairs/s,
'auto: graph', an OOM marker) fit with short headers and compact cells, in en and zh;
without a width (bench.md, a pipe) it is the full table, byte for byte; ``tui-eval bench``
on a terminal wraps its closing lines, in a pipe keeps them whole."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import tui_eval.engine
from tui_eval.cli import main
from tui_eval.headless.printer import columns
from tui_eval.reports.bench import bench_table, compact_figure, compact_seconds
from tui_eval.results import BenchResult, BenchRow, RunDir

GIB = 2**30


def widest_rows() -> list[BenchRow]:
    """Every column at once, each cell as wide as a long bench on a big GPU makes it."""
    return [
        BenchRow(batch_size=1, seconds=0.5, speedup=1.0, samples_per_s=8.0, tokens_per_s=1.0,
                 peak_memory_bytes=355 * 2**20, gpu_util_percent=None, pairs_per_s=24.0,
                 compile="off", requested_compile="off"),
        BenchRow(batch_size=1024, seconds=1234.5, speedup=123.4, samples_per_s=12345.67,
                 tokens_per_s=1.0, peak_memory_bytes=int(139.5 * GIB), gpu_util_percent=100.0,
                 fallbacks=3, final_batch_size=256, pairs_per_s=98765.4, compile="graph",
                 requested_compile="auto", compile_seconds=345.6),
        BenchRow(batch_size=512, seconds=12.3, speedup=45.6, samples_per_s=999.99,
                 tokens_per_s=1.0, peak_memory_bytes=int(80.1 * GIB), gpu_util_percent=99.0,
                 pairs_per_s=4000.0, compile="on", requested_compile="auto",
                 compile_seconds=41.5)]


def widest(text: str) -> int:
    return max(columns(line) for line in text.splitlines())


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_widest_table_fits_80_columns_with_short_headers(lang: str) -> None:
    rows = widest_rows()
    assert widest(bench_table(rows, lang)) > 80  # what a terminal would have wrapped
    text = bench_table(rows, lang, width=80)
    assert widest(text) <= 79  # a column to spare, as the printer's lines
    lines = text.splitlines()
    short = {"en": ["bs", "compile", "time", "speed", "smp/s", "pair/s", "mem", "GPU",
                    "c.time"],
             "zh": ["bs", "编译", "时间", "提升", "样本/s", "选项/s", "内存", "GPU", "编译时"]}
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == short[lang]
    cells = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert cells == ["1024*", "a:graph", "1234s", "123x", "12346", "98765", "139.5G", "100%",
                     "346s"]
    # the OOM note and what 'a:' means, under the table
    assert lines[-2].startswith("* bs 1024")
    assert lines[-1].startswith("a:MODE")


def test_a_narrow_width_for_the_plain_seed_table() -> None:
    rows = [BenchRow(batch_size=8, seconds=0.25, speedup=1.0, samples_per_s=32.0,
                     tokens_per_s=1.0, peak_memory_bytes=GIB, gpu_util_percent=None)]
    # the seed's table fits 80 columns as it is: kept, its column names with it
    assert bench_table(rows, "en", width=80) == bench_table(rows, "en")
    # narrower than it: compact, the note about 'auto' only where a row asked for auto
    text = bench_table(rows, "en", width=50)
    assert text.splitlines()[0].startswith("| bs ") and "a:MODE" not in text
    assert widest(text) <= 49


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_without_a_width_the_table_is_the_full_one(lang: str) -> None:
    """bench.md's table, as it was before a width existed: a changed byte fails."""
    expected = {
        "en": [
            "| batch_size | compile     | time     | speedup | samples/s | pairs/s | "
            "peak memory | GPU util | compile time |",
            "|------------|-------------|----------|---------|-----------|---------|"
            "-------------|----------|--------------|",
            "| 1          | off         | 0.500s   | 1.00x   | 8.00      | 24.0    | "
            "355.0 MiB   | N/A      | -            |",
            "| 1024*      | auto: graph | 1234.50s | 123.40x | 12345.67  | 98765.4 | "
            "139.5 GiB   | 100%     | 345.60s      |",
            "| 512        | auto: on    | 12.30s   | 45.60x  | 999.99    | 4000.0  | "
            "80.1 GiB    | 99%      | 41.50s       |",
            "",
            "* batch_size=1024 ran out of memory: 3 fallback(s), finished at batch size 256"],
        "zh": [
            "| batch_size | 编译        | 时间     | 提升    | 样本/秒  | 选项/秒 | 峰值内存  "
            "| GPU利用率 | 编译用时 |"],
    }
    text = bench_table(widest_rows(), lang)
    assert text == bench_table(widest_rows(), lang, width=None)
    assert text.splitlines()[:len(expected[lang])] == expected[lang]


class FakeBench:
    """The engine's bench, its rows given: the command's printing without a model."""

    def __init__(self, rows: list[BenchRow]) -> None:
        self.rows = rows

    def __call__(self, config: Any, sizes: list[int], printer: Any, **options: Any
                 ) -> tuple[BenchResult, RunDir]:
        bench_dir = RunDir.of(config.output_dir, "bench").prepare()
        return BenchResult(rows=self.rows, context={"model": "m"}), bench_dir


def run_bench_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                      tmp_path: Path, terminal: bool) -> tuple[str, str, Path]:
    """``tui-eval bench`` into its default folder (eval_results/bench-<time>: the
    'Written:' line is then over 100 columns)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tui_eval.engine, "bench", FakeBench(widest_rows()), raising=False)
    if terminal:
        monkeypatch.setenv("COLUMNS", "80")
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["bench", "-b", "1,2"]) == 0
    [out] = (tmp_path / "eval_results").iterdir()
    out = out.relative_to(tmp_path)
    return capsys.readouterr().out, (out / "bench.md").read_text(encoding="utf-8"), out


def test_on_a_terminal_every_line_the_command_prints_fits(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    printed, markdown, out = run_bench_command(monkeypatch, capsys, tmp_path, terminal=True)
    assert widest(printed) <= 79
    assert "| bs " in printed
    # the paths stay whole, wrapped between words
    assert str(out / "bench.json") in printed and str(out / "bench.md") in printed
    # bench.md keeps the full table and the seed's column names
    assert bench_table(widest_rows()) in markdown and "| batch_size |" in markdown


def test_in_a_pipe_the_command_prints_whole_lines(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    printed, _, out = run_bench_command(monkeypatch, capsys, tmp_path, terminal=False)
    assert bench_table(widest_rows()) in printed
    written = f"Written: {out / 'bench.json'} and {out / 'bench.md'}"
    assert written in printed.splitlines() and columns(written) > 80


def test_compact_cells_keep_small_figures_and_stay_narrow() -> None:
    # a small model's batches take milliseconds; a rounded figure never gains a column
    assert [compact_seconds(s) for s in (0.0052, 0.00999, 0.057, 0.9996, 9.996, 99.96, 1234.5)
            ] == ["5.2ms", "10ms", "57ms", "1.00s", "10.0s", "100s", "1234s"]
    assert [compact_figure(v) for v in (8.0, 9.996, 24.46, 99.96, 2880.36, 98765.4)
            ] == ["8.00", "10.0", "24.5", "100", "2880", "98765"]
