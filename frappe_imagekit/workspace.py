"""A workspace: the folder holding .env, de-example.env, apps.json and the build history."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frappe_imagekit.errors import UsageError

ENV_FILE = ".env"
EXAMPLE_FILE = "de-example.env"
APPS_FILE = "apps.json"
LOCK_FILE = "apps.lock.json"
_EXAMPLES = {ENV_FILE: ".env.v16", APPS_FILE: "apps.v16.json"}
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
BUILDS_DIR = "builds"
DEPLOYS_DIR = "deploys"


@dataclass(frozen=True)
class Workspace:
    """``env_name``/``apps_name``: other files of the same folder in their place (``--env-file
    .env.v16 --apps-file apps.v16.json``, what ``imagekit upgrade-plan`` writes beside them)."""

    root: Path
    env_name: str = ENV_FILE
    apps_name: str = APPS_FILE

    @classmethod
    def at(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env_file: str | None = None,
        apps_file: str | None = None,
    ) -> Workspace:
        names = (
            _file_name(env_file, "--env-file", ENV_FILE),
            _file_name(apps_file, "--apps-file", APPS_FILE),
        )
        return cls(Path(path or ".").resolve(), *names)

    @property
    def env_file(self) -> Path:
        return self.root / self.env_name

    @property
    def example_file(self) -> Path:
        return self.root / EXAMPLE_FILE

    @property
    def apps_file(self) -> Path:
        return self.root / self.apps_name

    @property
    def lock_file(self) -> Path:
        """``apps.lock.json`` next to ``apps.json``; ``apps.v16.lock.json`` next to ``apps.v16.json``."""
        return self.root / (
            LOCK_FILE if self.apps_name == APPS_FILE else f"{self.apps_name.removesuffix('.json')}.lock.json"
        )

    @property
    def builds_dir(self) -> Path:
        """One manifest per build (``v1.1.5.json``) plus its redacted log (``v1.1.5.log``)."""
        return self.root / BUILDS_DIR

    @property
    def deploys_dir(self) -> Path:
        """One record per deploy, read by ``imagekit history``."""
        return self.root / DEPLOYS_DIR


def _file_name(name: str | None, option: str, default: str) -> str:
    """A file of the workspace folder given by name (no folder, no option), else ``UsageError``."""
    if name is None:
        return default
    if not _NAME.fullmatch(name) or name.startswith("-") or name in (".", ".."):
        raise UsageError(
            f"{option} {name!r} is not a file name of the workspace: give a name like {_EXAMPLES[default]} "
            "(letters, digits, '.', '_', '-'), in the folder -w names."
        )
    return name


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
