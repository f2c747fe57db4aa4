"""``tui-eval tune --retune``: tune always probes and never reads the tune cache, so the flag
would promise a choice it does not have; it is refused with one line."""

from __future__ import annotations

import pytest

from tui_eval.cli import main


def test_tune_refuses_retune_with_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["tune", "--retune", "-m", "no/such/model"]) == 2  # before the model is read
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "usage:" not in err
    assert "--retune: tui-eval tune always probes again" in err
    assert "--retune is for -b auto in a run" in err

