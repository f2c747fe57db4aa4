"""The row text of the progress pane's per-rank rows and of the compact GPU gauges, at the
widths the app gives them (no Pilot: the quick loop runs these)."""

from __future__ import annotations

import pytest

from tui_eval.device.monitor import GpuReading
from tui_eval.events import RankProgress
from tui_eval.formatting import GIB
from tui_eval.ui.widgets.gauges import use_rows
from tui_eval.ui.widgets.gpu_rows import MAX_BAR, gpu_row_cells, short_gpu_name
from tui_eval.ui.widgets.ranks import rank_cells


def shares(count: int) -> list[RankProgress]:
    return [RankProgress(rank=rank, done=250 if rank == 0 else 183 - rank, total=250,
                         samples_per_s=12.1, batch_size=32, fallbacks=int(rank == 2),
                         device=f"cuda:{rank}", finished=rank == 0)
            for rank in range(count)]


def rank_rows(ranks: list[RankProgress], width: int) -> list[str]:
    return [cells.plain() for cells in rank_cells(ranks, width)]


def test_rank_rows_at_the_80_column_progress_pane() -> None:
    assert rank_rows(shares(3), 46) == [
        "r0 cuda:0 ████████ 250/250 12.1/s bs 32 fb 0 ✓",
        "r1 cuda:1 ██████░░ 182/250 12.1/s bs 32 fb 0  ",
        "r2 cuda:2 ██████░░ 181/250 12.1/s bs 32 fb 1  ",
    ]


@pytest.mark.parametrize("width", [32, 36, 46, 60, 120])
def test_rank_rows_line_up_and_fit_by_leaving_out_the_device_then_the_bar(width: int) -> None:
    rows = rank_rows(shares(12), width)
    assert len(rows) == 12
    assert len({len(row) for row in rows}) == 1  # the columns line up
    assert all(len(row) <= width for row in rows)
    assert rows[0].startswith("r0 ") and rows[11].startswith("r11")
    assert all("/250 12.1/s bs 32 fb " in row for row in rows)
    assert ("cuda:" in rows[0]) == (width >= 46)
    assert ("█" in rows[0]) == (width >= 36)


def test_rank_rows_show_errors_only_when_a_rank_has_some() -> None:
    ranks = shares(2)
    assert "err" not in rank_rows(ranks, 80)[0]
    ranks[1].errors = 3
    rows = rank_rows(ranks, 80)
    assert rows[0].endswith("err 0 ✓") and rows[1].endswith("err 3  ")


def reading(index: int, used_gib: int = 49) -> GpuReading:
    return GpuReading(index=index, name="NVIDIA H100 80GB HBM3",
                      memory_used_bytes=used_gib * GIB, memory_total_bytes=80 * GIB,
                      util_percent=45.0, temperature_c=55.0, power_w=329.0,
                      power_limit_w=700.0)


@pytest.mark.parametrize(("name", "short"), [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA GeForce RTX 4090", "4090"), ("Tesla V100-SXM2-16GB", "V100"),
    ("NVIDIA RTX A6000", "A6000"), ("GPU 3", "3"), ("Radeon", "Radeon")])
def test_short_gpu_names(name: str, short: str) -> None:
    assert short_gpu_name(name) == short


def gpu_rows(readings: list[GpuReading], width: int) -> list[str]:
    return [cells.plain() for cells in gpu_row_cells(readings, width)]


def test_gpu_rows_at_80_columns_keep_the_figures_and_leave_out_the_name() -> None:
    rows = gpu_rows([reading(index, 10 * index) for index in range(8)], 26)
    assert rows[0] == "0 ░░░░  0/80G 45% 55° 329W"
    assert rows[7] == "7 ████ 70/80G 45% 55° 329W"
    assert all(len(row) <= 26 for row in rows)


def test_gpu_rows_on_a_roomier_pane_name_the_gpu_and_grow_the_bar() -> None:
    rows = gpu_rows([reading(index) for index in range(8)], 39)
    assert rows[0].startswith("0 H100 ")
    assert rows[0].endswith(" 49/80G 45% 55° 329W")
    assert len(rows[0]) == 39
    widest = gpu_rows([reading(0)], 80)[0]
    assert widest.endswith(" 49.0/80.0 GiB util 45% 55°C 329/700 W")
    assert widest.count("█") + widest.count("░") == MAX_BAR


def test_a_gpu_that_does_not_answer_says_so_on_its_row() -> None:
    rows = gpu_rows([reading(0), GpuReading(1, "NVIDIA H100 80GB HBM3", responding=False)], 39)
    assert rows[1] == "1 H100 N/A: not responding"
    partial = GpuReading(2, "H100", memory_used_bytes=GIB, memory_total_bytes=80 * GIB)
    assert gpu_rows([partial], 26)[0].endswith("1/80G N/A N/A N/A")


@pytest.mark.parametrize(("gpus", "room", "rows"), [
    (1, 5, False), (2, 11, False),  # one or two GPUs always get their cards
    (3, 20, False), (3, 19, True), (8, 11, True), (8, 50, False)])
def test_many_gpus_become_rows_when_their_cards_do_not_fit(gpus: int, room: int,
                                                           rows: bool) -> None:
    assert use_rows(gpus, room) is rows
