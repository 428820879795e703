"""Named deploy targets: ``imagekit.toml`` in the workspace.

Every deploy of a stack repeats a dozen options, and the users' own rule is that the project
name and the compose files of a stack never change (``down`` must use what ``up`` used). A
target holds them once::

    [targets.production]
    project = "erp"
    compose = ["compose.yaml", "overrides/compose.mariadb.yaml"]
    host = "deploy@erp.example.com"
    env_file = "/home/deploy/gitops/erp.env"
    sites = ["erp.example.com"]

``imagekit deploy production`` uses it; other options given on the command line override the
target's, but a ``--project`` or ``--compose`` that differs from the target's is refused: a
target's project and compose files are its identity. The file is repository content: every
value is checked here, before anything reads it.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from frappe_imagekit import bounded, validate
from frappe_imagekit.errors import ConfigError, NotFoundError, UsageError

TARGETS_FILE = "imagekit.toml"


@dataclass(frozen=True)
class Target:
    """One named target: where a stack runs and how it is deployed."""

    name: str
    project: str
    compose: tuple[str, ...]
    host: str | None = None
    env_file: str | None = None
    sites: tuple[str, ...] | None = None  # None: every site of the stack
    docker_host: str | None = None
    state_dir: str | None = None
    known_hosts: str | None = None
    identity: str | None = None
    ssh_config: str | None = None
    backend_service: str | None = None
    up_timeout: float | None = None
    engine: str | None = None  # compose (None) or swarm
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["compose"] = list(self.compose)
        data["sites"] = list(self.sites) if self.sites is not None else "all"
        return data


_KEYS = {f.name for f in fields(Target)} - {"name"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_PATHS = ("env_file", "docker_host", "state_dir", "known_hosts", "identity", "ssh_config")


def load_targets(root: Path) -> dict[str, Target]:
    """Every target of ``root/imagekit.toml`` (none when the file does not exist)."""
    path = root / TARGETS_FILE
    if not path.is_file():
        return {}
    data = _read_toml(path)
    table = data.get("targets", {})
    unknown = sorted(set(data) - {"targets"})
    if unknown:
        raise ConfigError(
            f"{TARGETS_FILE} has unknown table {unknown[0]!r}: only [targets.NAME] tables exist."
        )
    if not isinstance(table, dict):
        raise ConfigError(f"{TARGETS_FILE}: 'targets' must be tables like [targets.production].")
    return {name: _target(name, value) for name, value in table.items()}


def get_target(root: Path, name: str) -> Target:
    """The target called ``name``; an unknown name lists the known ones."""
    known = load_targets(root)
    if name in known:
        return known[name]
    if not known:
        raise NotFoundError(
            f"there is no target {name!r}: {root / TARGETS_FILE} defines none; add a "
            f"[targets.{name}] table there, or pass --project and --compose."
        )
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    names = ", ".join(sorted(known))
    raise NotFoundError(f"there is no target {name!r}{hint}; {TARGETS_FILE} defines {names}.")


def check_identity(target: Target, project: str | None, compose: list[str] | None) -> None:
    """Refuse a ``--project``/``--compose`` that would deploy the target's stack under another
    identity (``down`` would then miss the running containers)."""
    if project is not None and project != target.project:
        raise UsageError(
            f"target {target.name} is project {target.project!r}, not {project!r}: a stack keeps "
            f"its project name; drop --project, or change it in {TARGETS_FILE} on purpose."
        )
    if compose and tuple(compose) != target.compose:
        raise UsageError(
            f"target {target.name} uses compose file(s) {', '.join(target.compose)}: a stack keeps "
            f"its compose files; drop --compose, or change them in {TARGETS_FILE} on purpose."
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(bounded.check_toml(bounded.read_text(path)))
    except ValueError as exc:  # not TOML; or too large, too deeply nested, not UTF-8
        if isinstance(exc, tomllib.TOMLDecodeError):
            raise ConfigError(f"{path.name} is not valid TOML ({exc}): fix that line.") from None
        raise ConfigError(
            f"{path.name} cannot be used ({exc}): a target is a table of a few settings."
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path.name} cannot be read ({exc.strerror}): fix its permissions.") from None


def _target(name: object, value: object) -> Target:
    where = f"{TARGETS_FILE} [targets.{name}]"
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of settings (project = ..., compose = ...).")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{TARGETS_FILE}: a target name is letters, digits, '-' and '_'; rename {where}.")
    for key in value:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, sorted(_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            keys = ", ".join(sorted(_KEYS))
            raise ConfigError(f"{where} has unknown key {key!r}{hint}; known keys: {keys}.")
    if "project" not in value or "compose" not in value:
        raise ConfigError(f"{where} needs project and compose: they are what keeps a stack the same.")
    settings: dict[str, Any] = {
        "project": validate.project_name(value["project"], f"{where} project"),
        "compose": _compose(value["compose"], where),
        "sites": _sites(value.get("sites"), where),
        "up_timeout": _seconds(value.get("up_timeout"), where),
        "description": _optional_text(value.get("description"), f"{where} description") or "",
        "engine": _engine(value.get("engine"), where),
    }
    for key in (*_PATHS, "host", "backend_service"):
        settings[key] = _optional_text(value.get(key), f"{where} {key}")
    if settings["host"] is not None:
        validate.host_spec(settings["host"], f"{where} host")
    if settings["backend_service"] is not None:
        validate.service_name(settings["backend_service"], f"{where} backend_service")
    return Target(name=str(name), **settings)


def _optional_text(value: object, what: str) -> str | None:
    return None if value is None else validate.not_an_option(value, what)


def _compose(value: object, where: str) -> tuple[str, ...]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not files:
        raise ConfigError(f"{where} compose must be a file name or a list of them.")
    return tuple(validate.not_an_option(f, f"{where} compose") for f in files)


def _sites(value: object, where: str) -> tuple[str, ...] | None:
    if value is None or value == "all":
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f'{where} sites must be "all" or a list of site names.')
    return tuple(validate.site_name(s, f"{where} sites") for s in value)


ENGINES = ("compose", "swarm")


def _engine(value: object, where: str) -> str | None:
    if value is None or value in ENGINES:
        return None if value is None else str(value)
    raise ConfigError(f"{where} engine must be one of {', '.join(ENGINES)}.")


def _seconds(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{where} up_timeout must be a positive number of seconds.")
    return float(value)
