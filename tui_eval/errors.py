"""Exceptions that map to the CLI's exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad flags, config, model path or data: exit code 2, one line, no traceback."""


class ConfigError(UsageError):
    """A config key or flag with a wrong type or an impossible value."""


class DataError(UsageError):
    """A dataset file that cannot be read; the message names the file and line."""


class ModelLoadError(UsageError):
    """A model or tokenizer that cannot be loaded; the message names the path."""


class QuietExit(Exception):
    """End the process with ``code`` and print nothing: another process of the same run
    (rank 0 of a run of several) has said why."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
