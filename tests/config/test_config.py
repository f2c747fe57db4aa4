"""Config precedence (defaults ◄ eval.toml ◄ flags) and every kind of config error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tui_eval.config import EvalConfig, check_value, load_config_file, resolve_config, rules
from tui_eval.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eval.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_seed_guide() -> None:
    config = EvalConfig()
    assert config.batch_size == 4
    assert config.torch_dtype == "auto"
    assert config.device == "auto"


def test_file_overrides_defaults_and_flags_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'batch_size = 8\nmax_tokens = 64\ndevice = "cpu"\n')
    config = resolve_config(path, {"batch_size": 2, "max_tokens": None})
    assert config.batch_size == 2  # flag wins
    assert config.max_tokens == 64  # file wins over the default
    assert config.device == "cpu"
    assert config.torch_dtype == "auto"  # default


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("batch_size = 0\n", r"eval\.toml:1: key 'batch_size' must be an integer ≥ 1, got 0"),
        ('batch_size = "8"\n', r"eval\.toml:1: key 'batch_size' must be an integer"),
        ("\n\nbatch_sise = 8\n", r"eval\.toml:3: unknown key 'batch_sise' \(did you mean "
                                 r"'batch_size'\?\)"),
        ('torch_dtype = "float8"\n', r"key 'torch_dtype' must be one of auto, float16"),
        ('device = "gpu"\n', r"key 'device' must be auto .*got 'gpu'"),
        ("max_tokens = -1\n", r"key 'max_tokens' must be an integer ≥ 1"),
        ("top_p = 1.5\n", r"key 'top_p' must be a number from 0 to 1"),
        ('chat_template = "yes"\n', r"key 'chat_template' must be true or false"),
        ('metrics = ["exact_match", "bleu"]\n', r"key 'metrics' must be a list of one of .*'bleu'"),
        ('on_bad_line = "ignore"\n', r"key 'on_bad_line' must be one of error, skip"),
        ("batch_size = \n", r"eval\.toml:1: invalid TOML: Invalid value \(column 14\)$"),
        ("batch_size = 4\nmax_tokens = = 3\n",
         r"eval\.toml:2: invalid TOML: Invalid value \(column 14\)$"),
        ('batch_size = 4\n\nmodel = "x\n', r"eval\.toml:3: invalid TOML: Illegal character"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path: Path, text: str, pattern: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_bytes(b'\xef\xbb\xbfbatch_size = 4\nmax_tokens = 9\n')
    assert load_config_file(path) == {"batch_size": 4, "max_tokens": 9}


def test_a_config_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_bytes(b'batch_size = 4\nmodel = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"eval\.toml:2: not UTF-8 text$"):
        load_config_file(path)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^-b/--batch-size: must be an integer ≥ 1, got 0$"):
        resolve_config(None, {"batch_size": 0})
    with pytest.raises(ConfigError, match=r"^--device: .*got 'cuda:x'"):
        resolve_config(None, {"device": "cuda:x"})


def test_check_value_accepts_good_values() -> None:
    assert check_value("device", "cuda:1") == "cuda:1"
    assert check_value("temperature", 1) == 1.0
    assert check_value("limit", None) is None
    with pytest.raises(ValueError):
        check_value("batch_size", True)  # a bool is not an integer


def test_repo_eval_toml_is_valid_and_documents_every_key() -> None:
    path = REPO / "eval.toml"
    load_config_file(path)  # must not raise
    text = path.read_text(encoding="utf-8")
    for key in rules():
        assert re.search(rf"^#?\s*{key}\s*=", text, re.MULTILINE), f"eval.toml lacks {key}"


def test_every_key_has_help() -> None:
    assert all(rule.help for rule in rules().values())


def test_readme_documents_every_key() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [key for key in rules() if f"`{key}`" not in text]
    assert missing == []
