"""A workspace: the folder holding .env, de-example.env, apps.json and the build history."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_FILE = ".env"
EXAMPLE_FILE = "de-example.env"
APPS_FILE = "apps.json"
BUILDS_DIR = "builds"
DEPLOYS_DIR = "deploys"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        return cls(Path(path or ".").resolve())

    @property
    def env_file(self) -> Path:
        return self.root / ENV_FILE

    @property
    def example_file(self) -> Path:
        return self.root / EXAMPLE_FILE

    @property
    def apps_file(self) -> Path:
        return self.root / APPS_FILE

    @property
    def builds_dir(self) -> Path:
        """One manifest per build (``v1.1.5.json``) plus its redacted log (``v1.1.5.log``)."""
        return self.root / BUILDS_DIR

    @property
    def deploys_dir(self) -> Path:
        """One record per deploy, read by ``imagekit history``."""
        return self.root / DEPLOYS_DIR


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file in the same folder and ``os.replace`` it into place."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
