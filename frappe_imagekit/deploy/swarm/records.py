"""The swarm deploy record (``swarm-deploys/ID.json`` in the state folder, and its copy in the
workspace's ``deploys/swarm/``) as a typed value: the one reader of what a swarm deploy wrote.

Records are files others can edit, so every field the code uses is checked (through
``validate``) before it reaches docker or a path; a record that cannot be used is a
``ValueError`` naming the first field (never repeating its value). Rollback reads the newest
record of the state folder, the next deploy the version the running image was deployed as, and
``imagekit history`` the workspace copies, each as a ``DeployRecord`` with ``engine`` "swarm".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from frappe_imagekit import bounded, validate
from frappe_imagekit.deploy.record import DEPLOY, ROLLBACK, SUCCEEDED, DeployRecord, stamp
from frappe_imagekit.deploy.swarm.stack import Pin, pin
from frappe_imagekit.errors import DeployError, ImagekitError, NotFoundError
from frappe_imagekit.manifest import BrokenManifest
from frappe_imagekit.runner import Runner

ENGINE = "swarm"
RECORDS = "swarm-deploys"  # in the project's state folder: one JSON report per deploy
WORKSPACE_FOLDER = "swarm"  # under the workspace's deploys/: the copies history reads
INTERRUPTED = 130


@dataclass(frozen=True)
class SiteBackup:
    site: str
    volume_path: str  # sites/SITE/private/backups/NAME-database.sql.gz
    sha256: str


@dataclass(frozen=True)
class SiteState:
    site: str
    result: str  # ok | a migrate_parse result | not-migrated | interrupted
    maintenance: str  # on | off | unknown


@dataclass(frozen=True)
class SwarmRecord:
    """One swarm deploy (or rollback) as recorded; every field checked."""

    stack: str
    version: str
    pin: Pin | None  # what it deployed, by digest
    exit_code: int
    kind: str = DEPLOY
    deploy_id: str | None = None
    host: str = "local"
    started: str | None = None
    finished: str | None = None
    previous: Pin | None = None  # what ran before
    previous_version: str | None = None
    rolled_out: bool = False  # the stack was deployed with ``pin``: it served this version
    rollback_of: str | None = None  # rollback: the deploy id it undid
    error: str | None = None
    sites: tuple[SiteState, ...] = ()
    backups: tuple[SiteBackup, ...] = ()  # the database dumps, in the sites volume

    @property
    def result(self) -> str:
        """``succeeded``, ``interrupted``, the first failed site's result, else ``failed``."""
        if self.exit_code == 0:
            return SUCCEEDED
        if self.exit_code == INTERRUPTED:
            return "interrupted"
        failed = [s.result for s in self.sites if s.result not in ("ok", "not-migrated")]
        return failed[0] if failed else "failed"

    def as_deploy_record(self) -> DeployRecord:
        """The record as ``imagekit history`` joins compose's (``engine`` "swarm")."""
        return DeployRecord(
            version=self.version, project=self.stack, host=self.host, started=self.started,
            finished=self.finished, result=self.result, error=self.error, kind=self.kind,
            previous_version=self.previous_version, served=self.rolled_out,
            stack_changed=self.rolled_out, rollback_of=self.rollback_of,
            rolled_back_from=self.previous_version if self.kind == ROLLBACK else None,
            engine=ENGINE, image_digest=self.pin.digest if self.pin else None,
        )  # fmt: skip


def parse_record(data: object) -> SwarmRecord:
    """The record in ``data`` (JSON of any shape), checked; ``ValueError`` names the first field
    that cannot be used."""
    if not isinstance(data, dict) or data.get("engine") != ENGINE:
        raise ValueError("not a swarm deploy record (engine is not swarm)")
    exit_code = data.get("exit_code")
    if not isinstance(exit_code, int) or isinstance(exit_code, bool) or not 0 <= exit_code < 256:
        raise ValueError("exit_code is not an exit status")
    kind = data.get("kind", DEPLOY)
    if kind not in (DEPLOY, ROLLBACK):
        raise ValueError("kind is neither deploy nor rollback")
    return SwarmRecord(
        stack=_checked(validate.project_name, data.get("stack"), "stack"),
        version=_checked(validate.image_tag, data.get("version"), "version"),
        pin=_pin(data.get("ref"), "ref"),
        exit_code=exit_code,
        kind=kind,
        deploy_id=_optional(validate.deploy_id, data.get("deploy_id"), "deploy_id"),
        host=_text(data.get("host"), "host") or "local",
        started=_time(data.get("started"), "started"),
        finished=_time(data.get("finished"), "finished"),
        previous=_pin(data.get("previous_image"), "previous_image"),
        previous_version=_optional(validate.image_tag, data.get("previous_version"), "previous_version"),
        rolled_out=_rolled_out(data, exit_code),
        rollback_of=_optional(validate.deploy_id, data.get("rollback_of"), "rollback_of"),
        error=_text(data.get("error"), "error"),
        sites=tuple(_site(s, f"sites[{i}]") for i, s in enumerate(_list(data.get("sites"), "sites"))),
        backups=tuple(_backup(b) for b in _list(data.get("backups"), "backups") if _is_dump(b)),
    )


def read_state(runner: Runner, root: str) -> list[tuple[str, SwarmRecord | str]]:
    """Each record of the state folder ``root``, oldest first, by file name: the record, or why
    it cannot be used."""
    done = runner.run(["ls", "-1", f"{root}/{RECORDS}"], timeout=60)
    names = sorted(n for n in done.stdout.split() if n.endswith(".json"))
    return [(name, _parse_text(runner.read_file(f"{root}/{RECORDS}/{name}") or "")) for name in names]


def newest(runner: Runner, root: str) -> SwarmRecord:
    """The newest record of the state folder; ``DeployError`` when it cannot be used."""
    found = read_state(runner, root)
    if not found:
        raise NotFoundError(
            f"no swarm deploy is recorded in {root}/{RECORDS}: there is nothing to roll back."
        )
    name, item = found[-1]
    if isinstance(item, str):
        raise DeployError(f"the swarm deploy record {name} cannot be used ({item}).")
    return item


def version_running(found: Sequence[SwarmRecord], image: str) -> str | None:
    """The version of the newest record (oldest first in ``found``) that rolled ``image`` out:
    the stack ran it from then on, also when that deploy then failed (a failed patch leaves the
    stack on the new image, and a rollback of it rolls back from that version)."""
    return next((r.version for r in reversed(found) if r.rolled_out and r.pin and r.pin.ref == image), None)


def read_workspace(deploys_dir: Path) -> tuple[list[SwarmRecord], list[BrokenManifest]]:
    """The workspace's copies (``deploys/swarm/*.json``) and the ones that cannot be used."""
    folder = deploys_dir / WORKSPACE_FOLDER
    records: list[SwarmRecord] = []
    broken: list[BrokenManifest] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            item = _parse_text(bounded.json_text(path))
        except (OSError, ValueError) as exc:
            item = str(exc)
        if isinstance(item, str):
            broken.append(BrokenManifest(path, item))
        else:
            records.append(item)
    return records, broken


def write_workspace(deploys_dir: Path, deploy_id: str, stack_name: str, data: dict[str, object]) -> Path:
    """The workspace's copy of a record (``deploys/swarm/ID-STACK.json``), read by history."""
    name = validate.project_name(stack_name, "the stack", DeployError)
    stamp_ = validate.deploy_id(deploy_id, "the deploy id", DeployError)
    path = deploys_dir / WORKSPACE_FOLDER / f"{stamp_}-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def _parse_text(text: str) -> SwarmRecord | str:
    try:
        return parse_record(json.loads(bounded.check_json(text)))
    except (ValueError, RecursionError) as exc:
        return str(exc) or "not JSON"


def _checked(check: Callable[..., str], value: object, what: str) -> str:
    try:
        return check(value, what, DeployError)
    except ImagekitError as exc:
        raise ValueError(exc.message.rstrip(".")) from None


def _optional(check: Callable[..., str], value: object, what: str) -> str | None:
    return None if value is None else _checked(check, value, what)


def _text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 4000:
        raise ValueError(f"{what} is not a string (of at most 4000 characters)")
    return value


def _time(value: object, what: str) -> str | None:
    text = _text(value, what)
    if text is not None:
        try:
            stamp(text)
        except ValueError:
            raise ValueError(f"{what} is not a time like 2026-12-01T16:55:00+00:00") from None
    return text


def _pin(value: object, what: str) -> Pin | None:
    if value is None:
        return None
    repo, sep, digest = value.partition("@") if isinstance(value, str) else ("", "", "")
    if not sep:
        raise ValueError(f"{what} is not IMAGE@sha256:DIGEST")
    try:
        return pin(repo, digest)
    except ImagekitError as exc:
        raise ValueError(f"{what}: {exc.message.rstrip('.')}") from None


def _rolled_out(data: dict[str, object], exit_code: int) -> bool:
    """Whether the stack was deployed; a record written before the field: when it succeeded."""
    value = data.get("rolled_out", exit_code == 0)
    if not isinstance(value, bool):
        raise ValueError("rolled_out is not true or false")
    return value


def _list(value: object, what: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _site(item: object, what: str) -> SiteState:
    if not isinstance(item, dict):
        raise ValueError(f"{what} is not an object")
    site = _checked(validate.site_name, item.get("site"), f"{what}.site")
    result = _checked(validate.not_an_option, item.get("result"), f"{what}.result")
    maintenance = item.get("maintenance")
    if maintenance not in ("on", "off", "unknown"):
        raise ValueError(f"{what}.maintenance is not on, off or unknown")
    return SiteState(site, result, str(maintenance))


def _is_dump(entry: object) -> bool:
    return isinstance(entry, dict) and str(entry.get("path", "")).endswith(".sql.gz")


def _backup(entry: object) -> SiteBackup:
    assert isinstance(entry, dict)
    site = _checked(validate.site_name, entry.get("site"), "a backup's site")
    path = _checked(validate.not_an_option, entry.get("volume_path"), "a backup's path")
    if not path.startswith(f"sites/{site}/private/backups/") or ".." in path:
        raise ValueError("a backup path outside the site's backups folder")
    return SiteBackup(site, path, _checked(validate.sha256_hex, entry.get("sha256"), "a backup's sha256"))
