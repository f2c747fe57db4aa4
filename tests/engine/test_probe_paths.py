"""The batch-size probes name their path in each generate call (``static=``): nothing on the
backend is switched for them, so the run's calls after a tune take the run's own path, on
the run's own shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PROMPTS, Collect
from tui_eval.batching.tuner import BatchSizeTuner
from tui_eval.config import EvalConfig
from tui_eval.engine.device_hooks import DEVICE_HOOKS
from tui_eval.engine.evaluation import Evaluation
from tui_eval.model.backend import Generation, HFBackend

TEXTS = sorted((question for _, question, _ in PROMPTS), key=len, reverse=True)


class Calls:
    """Every generate call of a backend: the ``static`` it named, the backend's own
    ``compile`` at that moment, and the shape the call ran at."""

    def __init__(self, backend: HFBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[bool | None, bool, Any]] = []
        real = backend.generate

        def generate(texts: list[str], **options: Any) -> Generation:
            compile_then = backend.compile
            generation = real(texts, **options)
            self.seen.append((options.get("static"), compile_then, generation.shape))
            return generation

        monkeypatch.setattr(backend, "generate", generate)


@pytest.mark.parametrize("static_cache", [True, False])
def test_probes_leave_the_backend_as_the_run_set_it(static: HFBackend, static_cache: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    announced: list[object] = []
    static.on_new_shape = announced.append
    planner = static.shapes
    calls = Calls(static, monkeypatch)
    result = BatchSizeTuner(static, TEXTS, max_tokens=4, hooks=DEVICE_HOOKS,
                            static_cache=static_cache, budget_share=None).run()
    assert result.static_cache is static_cache and calls.seen
    # every probe named its path; the backend's stayed the run's the whole time
    assert all(named is static_cache and compile_then for named, compile_then, _ in calls.seen)
    assert all((shape is not None) is static_cache for _, _, shape in calls.seen)
    assert (static.compile, static.compile_decode) == (True, False)
    assert static.shapes is planner and not planner.compiled  # the run's shapes: none yet
    assert announced == [] and static.on_new_shape is not None
    # the run's next call takes its own path, and is the first on its planner
    after = static.generate(TEXTS[:3], max_new_tokens=4)
    assert after.shape is not None and static.compiled_shapes == [after.shape.key]
    assert len(announced) == 1


def test_a_static_probe_runs_at_its_own_rows(static: HFBackend) -> None:
    """A probe after a larger one is not padded up to it (the run's planner would)."""
    big = static.generate(TEXTS[:6], max_new_tokens=4, force_length=True, static=True)
    small = static.generate(TEXTS[:3], max_new_tokens=4, force_length=True, static=True)
    assert big.shape is not None and small.shape is not None
    assert (big.shape.rows, small.shape.rows) == (6, 3)
    assert small.texts == static.generate(TEXTS[:3], max_new_tokens=4, force_length=True,
                                          static=False).texts


def test_a_run_after_its_tune_keeps_compile_on(static: HFBackend, tiny_model: Path,
                                               qa_jsonl: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(static, monkeypatch)
    out = tmp_path / "run"
    config = EvalConfig(model=str(tiny_model), data=str(qa_jsonl), max_tokens=4, device="cpu",
                        torch_dtype="float32", lang="en", batch_size="auto", compile="on",
                        output_dir=str(out))
    metrics = Evaluation(config, Collect(), backend=static).run()
    probes = [call for call in calls.seen if call[0] is not None]
    batches = [call for call in calls.seen if call[0] is None]
    assert probes and all(named is True for named, _, _ in probes)
    # the run's batches: the backend on the static path, at the run's one shape
    assert batches and all(compile_then and shape is not None
                           for _, compile_then, shape in batches)
    assert len({shape.key for _, _, shape in batches}) == 1
    assert metrics.compile == "on" and metrics.requested_compile == "on"
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["compile"] == "on" and saved["compiled"] is True
    assert json.loads((out / "tune.json").read_text(encoding="utf-8"))["static_cache"] is True

