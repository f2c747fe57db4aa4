"""What -m may name: a model directory, a GGUF file or a directory holding one, or a hub id
found in the local Hugging Face cache; anything else is one line, exit 2, and nothing
reaches the network."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest

from tui_eval.cli import main
from tui_eval.errors import ModelLoadError
from tui_eval.model.backend import check_model_path


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup fails the test: loading must stay on this machine."""
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a network lookup: {args[:1]}")

    monkeypatch.setattr(socket, "getaddrinfo", refused)


def test_a_hub_id_not_in_the_cache_is_one_line_with_the_way_out(
        qa_jsonl: Path, tmp_path: Path, no_network: None,
        capsys: pytest.CaptureFixture) -> None:
    from huggingface_hub import constants

    rc = main(["--no-ui", "-m", "someorg/some-model", "-d", str(qa_jsonl),
               "-o", str(tmp_path / "out")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "tui-eval: error: someorg/some-model: not a local directory and not in the Hugging "
        f"Face cache ({constants.HF_HUB_CACHE}): download it first or pass a path")
    assert not (tmp_path / "out").exists()


def test_a_hub_id_in_the_cache_is_taken(tmp_path: Path, no_network: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    snapshot = tmp_path / "models--someorg--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "models--someorg--cached" / "refs").mkdir()
    (tmp_path / "models--someorg--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert check_model_path("someorg/cached") == "someorg/cached"
    with pytest.raises(ModelLoadError, match="someorg/other: not a local directory"):
        check_model_path("someorg/other")


def test_a_directory_without_tokenizer_files_names_them(
        tiny_model: Path, qa_jsonl: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / "no-tokenizer"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model / name, model / name)
    assert main(["--no-ui", "-m", str(model), "-d", str(qa_jsonl), "-o",
                 str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tui-eval: error: {model}: no tokenizer in the model directory (none of "
        "tokenizer.json, tokenizer.model, vocab.json, tokenizer_config.json)")


def test_a_gguf_file_or_a_directory_of_one_is_the_model(tmp_path: Path) -> None:
    gguf = tmp_path / "model.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    assert check_model_path(str(gguf)) == str(gguf)
    assert check_model_path(str(tmp_path)) == str(gguf)
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"holds 2 GGUF files and no config\.json: pass "
                                             r"one of them"):
        check_model_path(str(tmp_path))
    with pytest.raises(ModelLoadError, match="model path not found"):
        check_model_path("missing.gguf")


def test_a_gguf_file_without_the_extra_names_it(
        qa_jsonl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf raises ImportError
    assert main(["--no-ui", "-m", str(gguf), "-d", str(qa_jsonl), "-o",
                 str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tui-eval: error: {gguf}: loading a GGUF file needs the gguf package: "
        "pip install 'tui-eval[gguf]'")
