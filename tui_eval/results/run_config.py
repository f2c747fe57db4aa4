"""config.json: the resolved config of a run and what it ran on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_eval.errors import UsageError
from tui_eval.results.json_io import read_json_object, write_json_atomic
from tui_eval.results.names import CONFIG_FILE


@dataclass
class RunConfig:
    """config.json: the resolved config (key → value, as ``EvalConfig.to_dict`` gives it)
    and what the run ran on."""

    config: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    device_name: str | None = None
    dtype: str | None = None
    host: str | None = None  # lets a watcher tell whether it can see the run's pid

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / CONFIG_FILE, dataclasses.asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunConfig:
        """UsageError naming the file when it is missing or not a run's config."""
        path = run_dir / CONFIG_FILE
        data = read_json_object(path)
        if not isinstance(data.get("config"), dict):
            raise UsageError(f"{path}: no 'config' object")
        host = data.get("host")
        return cls(config=data["config"], versions=dict(data.get("versions") or {}),
                   device=data.get("device"), device_name=data.get("device_name"),
                   dtype=data.get("dtype"), host=host if isinstance(host, str) else None)
