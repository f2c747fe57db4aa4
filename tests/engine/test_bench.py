"""`tui-eval bench`: one run per batch size (and compile setting), the seed's table,
bench.json and bench.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_eval.cli import main
from tui_eval.commands.bench import parse_batch_sizes, parse_compile_modes
from tui_eval.engine.benching import BenchRow, with_speedups
from tui_eval.errors import UsageError
from tui_eval.reports.bench import bench_table
from tui_eval.results import BenchResult

ROW_KEYS = {"batch_size", "seconds", "speedup", "samples_per_s", "tokens_per_s",
            "peak_memory_bytes", "gpu_util_percent"}
COLUMNS = ["batch_size", "time", "speedup", "samples/s", "peak memory", "GPU util"]


def columns(table_line: str) -> list[str]:
    return [cell.strip() for cell in table_line.strip().strip("|").split("|")]


def test_batch_size_list() -> None:
    assert parse_batch_sizes("1,2,4,8,16") == [1, 2, 4, 8, 16]
    assert parse_batch_sizes(" 8, 2 ,1") == [8, 2, 1]
    # a repeat would silently run once: refused in one line
    with pytest.raises(UsageError, match=r"^-b/--batch-sizes: 2 is given twice in '2,2'"):
        parse_batch_sizes("2,2")
    for bad in ("", "1,,2", "0,1", "auto", "1.5"):
        with pytest.raises(UsageError, match=r"^-b/--batch-sizes: expected comma-separated"):
            parse_batch_sizes(bad)


def row(size: int, seconds: float, **extra: object) -> BenchRow:
    return BenchRow(batch_size=size, seconds=seconds, speedup=0.0, samples_per_s=100 / seconds,
                    tokens_per_s=800 / seconds, peak_memory_bytes=3 * 2**30,
                    gpu_util_percent=None, **extra)  # type: ignore[arg-type]


def test_table_has_the_seed_columns_and_speedup_over_the_first_size() -> None:
    rows = with_speedups([row(1, 120.0), row(2, 70.0), row(4, 45.0), row(8, 35.0)])
    assert [round(r.speedup, 1) for r in rows] == [1.0, 1.7, 2.7, 3.4]  # the seed's figures
    lines = bench_table(rows).splitlines()
    assert columns(lines[0]) == COLUMNS
    assert columns(lines[2]) == ["1", "120.00s", "1.00x", "0.83", "3.0 GiB", "N/A"]
    assert columns(lines[5])[2] == "3.43x"
    zh = bench_table(rows, "zh").splitlines()[0]
    assert columns(zh) == ["batch_size", "时间", "提升", "样本/秒", "峰值内存", "GPU利用率"]


def test_table_marks_a_size_that_ran_out_of_memory() -> None:
    rows = with_speedups([row(8, 10.0), row(16, 8.0, fallbacks=1, final_batch_size=8)])
    text = bench_table(rows)
    assert columns(text.splitlines()[3])[0] == "16*"
    assert text.splitlines()[-1] == ("* batch_size=16 ran out of memory: 1 fallback(s), "
                                     "finished at batch size 8")


def test_bench_command(tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "-b", "1,2,4", "-m", str(tiny_model), "-d", str(qa_jsonl),
               "--limit", "6", "--max-tokens", "4", "--device", "cpu", "--lang", "en",
               "-o", str(out)])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert [r["batch_size"] for r in report["rows"]] == [1, 2, 4]
    assert all(set(r) >= ROW_KEYS for r in report["rows"])
    assert report["rows"][0]["speedup"] == 1.0
    assert all(r["seconds"] > 0 and r["samples_per_s"] > 0 for r in report["rows"])
    assert all(r["gpu_util_percent"] is None for r in report["rows"])
    markdown = (out / "bench.md").read_text(encoding="utf-8")
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert columns(table[0]) == COLUMNS and len(table) == 2 + 3
    printed = capsys.readouterr().out
    assert any(line.startswith("| batch_size") for line in printed.splitlines())
    assert printed.splitlines()[-1] == f"As a chart: tui-eval watch {out}"
    # the chart's reader reads what the bench wrote
    assert [r.to_dict() for r in BenchResult.read(out).rows] == report["rows"]
    # each size is a full run of the same samples, and greedy output does not depend on it
    predictions = []
    for size in (1, 2, 4):
        rows = [json.loads(line) for line in
                (out / f"bs_{size}" / "predictions.jsonl").read_text().splitlines()]
        metrics = json.loads((out / f"bs_{size}" / "metrics.json").read_text())
        assert metrics["batch_size"] == size and metrics["n"] == 6
        predictions.append([(r["id"], r["prediction"]) for r in rows])
    assert predictions[0] == predictions[1] == predictions[2]


def test_a_second_bench_into_the_same_directory_is_refused_then_overwritten(
        tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"
    args = ["bench", "-b", "1,2", "-m", str(tiny_model), "-d", str(qa_jsonl), "--limit", "4",
            "--max-tokens", "2", "--device", "cpu", "--lang", "en", "-o", str(out)]
    assert main(args) == 0
    first = (out / "bench.json").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tui-eval: error: {out}: holds a bench already") and "\n" not in err
    assert (out / "bench.json").read_bytes() == first  # nothing measured, nothing written
    assert main([*args, "--overwrite"]) == 0
    rows = json.loads((out / "bench.json").read_text(encoding="utf-8"))["rows"]
    assert all(r["seconds"] > 0 and r["samples_per_s"] > 0 for r in rows)  # never a zero row


def test_bench_rejects_a_bad_size_list(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "-b", "1,two"]) == 2
    assert "-b/--batch-sizes: expected comma-separated integers" in capsys.readouterr().err


def test_compile_list() -> None:
    assert parse_compile_modes("on,off") == ["on", "off"]
    assert parse_compile_modes(" off , on") == ["off", "on"]
    with pytest.raises(UsageError, match=r"^--compile: off is given twice"):
        parse_compile_modes("off,on,off")
    for bad in ("", "on,,off", "yes", "on;off"):
        with pytest.raises(UsageError, match=r"^--compile: expected comma-separated values of "
                                             r"auto, graph, on, off"):
            parse_compile_modes(bad)


def test_table_with_compile_has_a_column_for_it_and_the_compile_time() -> None:
    rows = with_speedups([
        row(64, 2.0, compile="on", compile_seconds=41.5, requested_compile="on"),
        row(64, 20.0, compile="off", requested_compile="off"),
        row(128, 12.0, compile="off", requested_compile="auto")])
    lines = bench_table(rows).splitlines()
    assert columns(lines[0]) == ["batch_size", "compile", *COLUMNS[1:], "compile time"]
    assert columns(lines[2]) == ["64", "on", "2.00s", "1.00x", "50.00", "3.0 GiB", "N/A",
                                 "41.50s"]
    assert columns(lines[3])[:3] == ["64", "off", "20.00s"] and columns(lines[3])[-1] == "-"
    assert columns(lines[4])[1] == "auto: off"
    zh = bench_table(rows, "zh").splitlines()[0]
    assert columns(zh)[1] == "编译" and columns(zh)[-1] == "编译用时"
    # one setting, nothing compiled: the seed's table as it was
    plain = bench_table([row(8, 1.0, compile="off", requested_compile="auto")]).splitlines()
    assert columns(plain[0]) == COLUMNS


def test_compile_flag_errors_before_the_engine(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--compile", "on,maybe"]) == 2
    assert "--compile: expected comma-separated values" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_compares_compile_on_and_off(tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    """torch.compile for real on the CPU: one shape (4 rows), compiled once."""
    import torch

    torch._dynamo.reset()
    out = tmp_path / "bench"
    rc = main(["bench", "-b", "4", "--compile", "on,off", "-m", str(tiny_model),
               "-d", str(qa_jsonl), "--limit", "8", "--max-tokens", "4", "--device", "cpu",
               "--lang", "en", "-o", str(out)])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert [(r["batch_size"], r["compile"]) for r in report["rows"]] == [(4, "on"), (4, "off")]
    on, off = report["rows"]
    assert on["compile_seconds"] > 0 and off["compile_seconds"] == 0
    assert report["compile"] == "on,off"
    table = [line for line in (out / "bench.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("|")]
    assert columns(table[0])[:2] == ["batch_size", "compile"] and len(table) == 2 + 2
    runs = [out / "bs_4-compile_on", out / "bs_4-compile_off"]
    on_rows, off_rows = ([json.loads(line)["prediction"] for line in
                          (run / "predictions.jsonl").read_text().splitlines()] for run in runs)
    assert on_rows == off_rows
    assert "compile time" in capsys.readouterr().out
