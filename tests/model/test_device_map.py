"""A model spread over devices (device_map, max_memory per device): the keys, loading
through accelerate, and memory read over every device the model spans."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import rows_of
from tui_eval.batching.tuner import BatchSizeTuner
from tui_eval.cancel import CancelToken
from tui_eval.cli import main
from tui_eval.config import EvalConfig, check_value, load_config_file, resolve_config
from tui_eval.device import memcap, meter, nvml
from tui_eval.device.memcap import memory_capacity, parse_device_budgets, usable_memory
from tui_eval.device.meter import ResourceMeter
from tui_eval.engine.device_hooks import DEVICE_HOOKS
from tui_eval.engine.evaluation import Evaluation
from tui_eval.engine.resume import config_differences
from tui_eval.errors import ConfigError, UsageError
from tui_eval.events import Event, Progress
from tui_eval.model.backend import HFBackend
from tui_eval.results import RunConfig

GIB = 2**30


def predictions_by_id(run_dir: Path) -> list[dict]:
    """Each sample's id and prediction, in dataset order."""
    return sorted(({"id": r["id"], "prediction": r["prediction"]} for r in rows_of(run_dir)),
                  key=lambda r: str(r["id"]))


@pytest.fixture()
def base(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> EvalConfig:
    return EvalConfig(model=str(tiny_model), data=str(qa_jsonl), max_tokens=4,
                      torch_dtype="float32", lang="en", batch_size=4,
                      output_dir=str(tmp_path / "plain"))


# ── the keys ─────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize(("typed", "kept"), [
    ("0=70GiB,1=70GiB,cpu=200GiB", "0=70GiB,1=70GiB,cpu=200GiB"),
    (" 0 = 70GiB , cpu=200GB ", "0=70GiB,cpu=200GB"),
    ({0: "70GiB", "cpu": "200GiB"}, "0=70GiB,cpu=200GiB"),  # a TOML table's keys
    ({"1": "40GiB", "disk": "1TiB"}, "1=40GiB,disk=1TiB"),
])
def test_max_memory_per_device_is_kept_as_its_text(typed: Any, kept: str) -> None:
    assert check_value("max_memory", typed) == kept


def test_max_memory_per_device_becomes_the_loaders_dict() -> None:
    assert parse_device_budgets("0=70GiB,1=512MiB,cpu=200GB") == {
        0: 70 * GIB, 1: 512 * 2**20, "cpu": 200 * 10**9}


@pytest.mark.parametrize(("typed", "reason"), [
    ("0=lots", "0=lots: 'lots' is not a size such as 70GiB"),
    ("gpu0=70GiB", "'gpu0' is not a GPU index or one of cpu, mps, disk"),
    ("0=70GiB,0=60GiB", "'0' is given twice"),
    ("0=70GiB,", "'' is not DEVICE=SIZE"),
    ("0=0GiB", "the size must be above zero"),
])
def test_bad_max_memory_per_device_is_one_line_naming_the_flag(
        base: EvalConfig, typed: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(None, {"max_memory": typed, "device_map": "auto"})
    message = str(caught.value)
    assert message.startswith("--max-memory: must be sizes per device such as 0=70GiB")
    assert message.endswith(reason) and "\n" not in message


def test_a_bad_table_in_eval_toml_names_the_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_text('device_map = "auto"\nmax_memory = {0 = "70GiB", gpu = "1GiB"}\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:2: key 'max_memory' must be sizes per "
                                          r"device .*'gpu' is not a GPU index"):
        load_config_file(path)


def test_eval_toml_takes_a_table_and_the_device_map(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_text('device_map = "balanced"\nmax_memory = {0 = "70GiB", cpu = "200GiB"}\n',
                    encoding="utf-8")
    config = resolve_config(path, {})
    assert (config.device_map, config.max_memory) == ("balanced", "0=70GiB,cpu=200GiB")


def test_a_bad_device_map_names_the_flag_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"^--device-map: must be one of auto, balanced, "
                                          r"balanced_low_0, sequential, got 'everywhere'$"):
        resolve_config(None, {"device_map": "everywhere"})


def test_max_memory_per_device_without_device_map_names_both(capsys: Any) -> None:
    assert main(["--no-ui", "--max-memory", "0=70GiB,1=70GiB"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--max-memory 0=70GiB,1=70GiB: a size per device needs --device-map" in err
    assert "\n" not in err and "Traceback" not in err


def test_a_single_cap_with_device_map_asks_for_sizes_per_device() -> None:
    with pytest.raises(ConfigError, match=r"^--max-memory 0.5: with --device-map give a size "
                                          r"per device, such as 0=70GiB"):
        resolve_config(None, {"max_memory": "0.5", "device_map": "auto"})
    # without device_map the cap keeps its meaning
    assert resolve_config(None, {"max_memory": "0.5"}).max_memory == 0.5


def test_the_app_form_is_checked_before_loading(base: EvalConfig) -> None:
    config = replace(base, max_memory="0=70GiB")  # as the form builds it: no resolve_config
    with pytest.raises(ConfigError, match="needs --device-map"):
        Evaluation(config, lambda event: None).run()


# ── loading ──────────────────────────────────────────────────────────────────────────

def test_device_map_auto_predicts_what_a_single_device_does(base: EvalConfig,
                                                            tmp_path: Path) -> None:
    Evaluation(replace(base, device="cpu"), lambda event: None).run()
    mapped_dir = tmp_path / "mapped"
    mapped = replace(base, device_map="auto", max_memory="cpu=4GiB",
                     output_dir=str(mapped_dir))
    metrics = Evaluation(mapped, lambda event: None).run()
    assert metrics.n == 12 and metrics.device == "cpu"  # accelerate's place with no GPU
    assert predictions_by_id(mapped_dir) == predictions_by_id(tmp_path / "plain")
    saved = RunConfig.read(mapped_dir).config
    assert (saved["device_map"], saved["max_memory"]) == ("auto", "cpu=4GiB")


def test_the_backend_reports_where_the_weights_are(tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model), dtype="float32", device_map="sequential",
                        max_memory="cpu=4GiB")
    assert backend.max_memory == {"cpu": 4 * GIB}
    backend.load_model()
    assert backend.device == "cpu" and backend.devices == ("cpu",)
    generation = backend.generate(["Hi"], max_new_tokens=2)
    assert len(generation.texts) == 1


def test_without_accelerate_device_map_says_which_extra(tiny_model: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate: ImportError

    def no_tokenizer(self: HFBackend) -> None:
        raise AssertionError("the tokenizer loaded before accelerate was checked")

    monkeypatch.setattr(HFBackend, "_load_tokenizer", no_tokenizer)
    with pytest.raises(UsageError) as caught:
        HFBackend(str(tiny_model), device_map="auto")
    assert str(caught.value) == ("--device-map needs accelerate: "
                                 "pip install 'tui-eval[multi-gpu]'")


def test_without_accelerate_the_run_exits_2_with_one_line(
        tiny_model: Path, qa_jsonl: Path, tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)
    out = tmp_path / "run"
    assert main(["--no-ui", "-m", str(tiny_model), "-d", str(qa_jsonl), "--device-map",
                 "auto", "-o", str(out), "--lang", "en"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'tui-eval[multi-gpu]'" in err and "Traceback" not in err
    assert not (out / "predictions.jsonl").exists()


def test_resume_may_change_the_device_map(base: EvalConfig, tmp_path: Path) -> None:
    assert config_differences(base.to_dict(), replace(base, device_map="auto",
                                                      max_memory="cpu=4GiB")) == []
    out = tmp_path / "plain"
    cancel = CancelToken()

    def stop_after_the_first_batch(event: Event) -> None:
        if isinstance(event, Progress):
            cancel.cancel()

    assert Evaluation(replace(base, batch_size=2), stop_after_the_first_batch,
                      cancel).run().partial
    assert len(rows_of(out)) < 12
    assert main(["--no-ui", "--resume", "-o", str(out), "--device-map", "auto",
                 "--max-memory", "cpu=4GiB"]) == 0
    assert len(rows_of(out)) == 12
    resumed = RunConfig.read(out).config
    assert (resumed["device_map"], resumed["max_memory"]) == ("auto", "cpu=4GiB")


# ── memory over several devices ──────────────────────────────────────────────────────

class FakeCuda:
    """torch.cuda's memory calls, per device, for code that cannot run CUDA here."""

    def __init__(self, peaks: dict[str, int], free: dict[str, int],
                 reserved: dict[str, int], totals: dict[str, int]) -> None:
        self.peaks, self.free, self.reserved, self.totals = peaks, free, reserved, totals
        self.reset: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import torch

        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", self.reset.append)
        monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d: self.peaks[str(d)])
        monkeypatch.setattr(torch.cuda, "mem_get_info",
                            lambda d: (self.free[str(d)], self.totals[str(d)]))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d: self.reserved[str(d)])
        monkeypatch.setattr(memcap, "device_memory_bytes", lambda d: self.totals.get(d))
        # utilisation: each card's handle is its name, reading its index times ten
        monkeypatch.setattr(nvml, "device_handle", lambda device: device)
        monkeypatch.setattr(nvml, "utilization_percent",
                            lambda handle: float(handle.split(":")[1]) * 10 + 10)


@pytest.fixture()
def cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    fake = FakeCuda(peaks={"cuda:0": 30 * GIB, "cuda:1": 50 * GIB, "cuda:2": 40 * GIB},
                    free={"cuda:0": 20 * GIB, "cuda:1": 6 * GIB, "cuda:2": 30 * GIB},
                    reserved={"cuda:0": 10 * GIB, "cuda:1": 4 * GIB, "cuda:2": 0},
                    totals={"cuda:0": 80 * GIB, "cuda:1": 80 * GIB, "cuda:2": 40 * GIB})
    fake.install(monkeypatch)
    return fake


def test_the_meter_reads_the_fullest_card_and_the_mean_utilisation(cuda: FakeCuda) -> None:
    with ResourceMeter("cuda:0", interval_s=60, devices=("cuda:0", "cuda:1", "cuda:2",
                                                         "cpu")) as reading:
        pass
    assert cuda.reset == ["cuda:0", "cuda:1", "cuda:2"]
    assert reading.peak_memory_bytes == 50 * GIB
    assert reading.gpu_util_percent == pytest.approx(20.0)  # 10, 20 and 30 %


def test_the_meter_on_one_card_reads_that_card_alone(cuda: FakeCuda) -> None:
    with ResourceMeter("cuda:2", interval_s=60) as reading:
        pass
    assert cuda.reset == ["cuda:2"]
    assert (reading.peak_memory_bytes, reading.gpu_util_percent) == (40 * GIB, 30.0)


def test_capacity_and_headroom_are_the_smallest_over_the_cards(cuda: FakeCuda) -> None:
    cards = ("cuda:0", "cuda:1", "cuda:2")
    assert memory_capacity(None, "cuda:0", cards) == 40 * GIB
    # sizes per device say where the weights go: each card is still whole
    assert memory_capacity("0=70GiB,1=70GiB", "cuda:0", cards) == 40 * GIB
    assert memory_capacity(None, "cuda:0") == 80 * GIB  # one card: as before
    assert usable_memory("cuda:0", None, cards) == 10 * GIB  # cuda:1: 6 free + 4 held
    assert usable_memory("cuda:0", 8 * GIB, cards) == 8 * GIB
    assert usable_memory("cuda:0", None) == 30 * GIB
    # weights offloaded to the CPU do not bound a CUDA run's batch
    assert usable_memory("cuda:0", None, ("cuda:0", "cpu")) == 30 * GIB


def test_the_tuner_measures_every_device_of_the_model() -> None:
    made: list[tuple[str, tuple[str, ...]]] = []

    def recording_meter(device: str, devices: Sequence[str] = ()) -> Any:
        made.append((device, tuple(devices)))
        return ResourceMeter("cpu")

    class Spread:
        device = "cuda:0"
        devices = ("cuda:0", "cuda:1")

    hooks = replace(DEVICE_HOOKS, meter=recording_meter)
    tuner = BatchSizeTuner(Spread(), ["p"], max_tokens=1, hooks=hooks)
    with tuner.prober.meter(Spread.device):
        pass
    assert made == [("cuda:0", ("cuda:0", "cuda:1"))]
    assert meter.cuda_devices(["cuda:1", "cpu", "cuda:0", "cuda:1"]) == ["cuda:1", "cuda:0"]


def test_a_spread_model_has_tune_results_of_its_own(base: EvalConfig, tiny_model: Path
                                                    ) -> None:
    from tui_eval.engine.tuning import tune_key

    backend = HFBackend(str(tiny_model), device="cpu", dtype="float32")
    whole = tune_key(base, backend, 10, None)
    spread = tune_key(replace(base, device_map="auto", max_memory="cpu=4GiB"), backend, 10,
                      None)
    assert spread.text() != whole.text() and spread.placement == "cpu cpu=4GiB"
    # keys written before placement existed still find their results
    assert "placement" not in json.loads(whole.text())
