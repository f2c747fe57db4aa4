"""Headless output at the terminal's width: progress, log lines, table rows and --help fit
80 columns; a file or a pipe (no terminal) keeps its lines whole."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tui_eval.batching.table import fixed_width_row, headers, log_row
from tui_eval.cli import main
from tui_eval.events import LogLine, Progress, RankProgress, format_log_line
from tui_eval.headless.printer import HeadlessPrinter, columns, fit_log_line
from tui_eval.headless.watcher import PlainWatcher
from tui_eval.results import TuneProbe

WIDTH = 80
PROGRESS = Progress(done=200, total=200, samples_per_s=385.88, tokens_per_s=1437.0,
                    eta_s=0.0, batch_size=8, fallbacks=0, errors=0)
LONG = LogLine(level="INFO", message="Tuning the batch size (power): short probes on the "
               "longest prompts, figures predicted for 16 new tokens, sizes up to 200, at "
               "most a tenth of the estimated run")
PATH = "/a/rather/long/path/to/some/dataset/directory/that/goes/on/and/on/data.jsonl"
ROW = LogLine(level="INFO", message="| 1          | ok     | 0.026s   | 38.0      | 609       "
              "| 360.5 MiB   | N/A      | 4 tok    |")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def printed(*events: object, columns: int | None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The printer's plain lines, on a terminal of ``columns`` or (None) into a file."""
    monkeypatch.setenv("COLUMNS", str(columns or 80))  # what a terminal's size reads
    out = Terminal() if columns else io.StringIO()
    printer = HeadlessPrinter(out, interactive=False)
    for event in events:
        printer(event)  # type: ignore[arg-type]
    return out.getvalue().splitlines()


def test_every_plain_line_fits_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = printed(LONG, PROGRESS, ROW, columns=WIDTH, monkeypatch=monkeypatch)
    assert max(len(line) for line in lines) < WIDTH
    assert "progress: 200/200 | 385.9 samples/s | 1437 tok/s | ETA 00:00 | bs 8" in lines
    assert lines[1].startswith("    ")  # a wrapped line is indented under its start
    assert lines[-1].startswith("| 1 ")  # a table row without its time stamp


def test_a_file_or_pipe_keeps_each_line_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = printed(LONG, PROGRESS, columns=None, monkeypatch=monkeypatch)
    assert len(lines) == 2 and lines[0].endswith("at most a tenth of the estimated run")
    assert lines[1] == ("progress: 200/200 samples | 385.88 samples/s | 1437 tok/s | "
                        "ETA 00:00 | batch 8 | fallbacks 0")


def test_a_path_is_not_cut_in_the_middle() -> None:
    lines = fit_log_line(f"[INFO] 2026-12-04 15:51:43 - Loaded 200 samples from {PATH}", WIDTH)
    assert lines[-1].strip() == PATH


def test_the_plain_watcher_fits_a_terminal(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    out = Terminal()
    watcher = PlainWatcher(tmp_path, stream=out)
    watcher.say(format_log_line(LONG))
    watcher._show_progress(PROGRESS, force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) > 2 and max(len(line) for line in lines) < WIDTH


def test_the_ranks_line_is_cut_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    ranks = [RankProgress(rank=rank, done=10, total=25, samples_per_s=12.0, batch_size=32)
             for rank in range(8)]
    event = Progress(done=80, total=200, samples_per_s=96.0, tokens_per_s=960.0, eta_s=1.0,
                     batch_size=32, fallbacks=0, errors=0, ranks=ranks)
    lines = printed(event, columns=WIDTH, monkeypatch=monkeypatch)
    assert len(lines) == 2 and lines[1].endswith("…")
    assert max(len(line) for line in lines) < WIDTH


def test_the_help_description_is_wrapped(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert any(line.startswith("Evaluate a Hugging Face causal LM") for line in lines)


def test_chinese_lines_wrap_by_the_columns_they_take() -> None:
    text = ("[INFO] 2026-12-04 15:56:48 - 示例每个答案最多生成 16 个新 token（其模型很小）；"
            "可用 --max-tokens 另选。这是一个很长的中文句子，用于检查换行")
    lines = fit_log_line(text, WIDTH)
    assert len(lines) >= 2
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing lost
    assert max(columns(line) for line in lines) < WIDTH  # a Chinese character takes two


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("unit", ["samples", "pairs"])
def test_the_tune_table_rows_fit_80_columns_with_their_padding(lang: str, unit: str) -> None:
    wide = [TuneProbe(batch_size=1024, status=status, seconds=123.45, samples_per_s=12345.6,
                      tokens_per_s=123456.0, peak_memory_bytes=int(140.5 * 2**30),
                      gpu_util_percent=100.0, new_tokens=128)
            for status in ("ok", "oom", "predicted")]
    rows = [fixed_width_row(headers(lang, unit)), *(log_row(probe) for probe in wide)]
    assert "pred." in rows[-1]  # "predicted", in a word that fits the column
    for row in rows:
        # the time-stamped line is too wide, so the row goes alone and whole, still padded
        logged = format_log_line(LogLine(level="INFO", message=row))
        assert fit_log_line(logged, WIDTH) == [row]
        assert columns(row) < WIDTH
    bars = {tuple(i for i in range(len(row)) if row[i] == "|") for row in rows[1:]}
    assert len(bars) == 1  # the columns line up
    assert columns(rows[0]) == columns(rows[1])  # the header too, Chinese included


def test_a_long_error_is_wrapped_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["--no-ui", "--max-memory", "abc"]) == 2
    lines = err.getvalue().splitlines()
    assert max(columns(line) for line in lines) < WIDTH
    assert lines[0].startswith("tui-eval: error: --max-memory: must be a fraction above 0")
    assert " ".join(line.strip() for line in lines).endswith(
        "sizes per device (0=70GiB,cpu=200GiB), got 'abc'")
