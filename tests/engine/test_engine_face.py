"""The engine's face (tui_eval.engine): every name it lists resolves, and a front end that
asks for rescore or compare loads no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tui_eval.engine as engine

REPO = Path(__file__).resolve().parents[2]


def test_every_name_on_the_face_resolves_to_its_module_s_object() -> None:
    from tui_eval.engine import benching, comparison, evaluation, rescoring, tuning

    assert engine.evaluate is evaluation.evaluate
    assert engine.tune is tuning.run_tuning
    assert engine.bench is benching.run_bench
    assert engine.rescore is rescoring.rescore_run
    assert engine.compare is comparison.compare_runs
    # a submodule imported after the face answered leaves the face's names as they were
    from tui_eval.engine import bench, compare, rescore
    assert (bench, compare, rescore) == (benching.run_bench, comparison.compare_runs,
                                         rescoring.rescore_run)
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    with pytest.raises(AttributeError):
        engine.run_bench  # noqa: B018 - only the face's names


@pytest.mark.slow
def test_rescore_and_compare_from_the_face_load_no_torch() -> None:
    code = ("import sys; from tui_eval.engine import compare, rescore; "
            "from tui_eval.reports.compare import comparison_report; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
