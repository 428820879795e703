"""The deploy record (``deploys/<deploy id>-<project>.json``) as a typed value.

``DeployRecord.from_dict`` is the one reader: records are repository content others edit, so
every field the code uses is checked (through ``validate``) before it can reach docker, compose,
ssh or a path on the target; anything else is kept as written in ``extra``. Schema 1 records
(before rollback) are upgraded on read: ``kind`` "deploy", ``served`` from the result.
``read`` reads one file. ``to_dict`` writes schema 2. docs/DESIGN.md, "Deploy record", has the fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frappe_imagekit import bounded, validate
from frappe_imagekit.deploy.engine import DEFAULT_ENGINE, engine_name
from frappe_imagekit.deploy.place import Places, daemon_id
from frappe_imagekit.errors import ConfigError, ImagekitError
from frappe_imagekit.manifest import BrokenManifest, each_json, readable
from frappe_imagekit.workspace import Workspace

SCHEMA_VERSION = 2
DEPLOY = "deploy"
ROLLBACK = "rollback"
SUCCEEDED = "succeeded"  # a record's result when everything went through
REHEARSAL = "rehearsal"  # imagekit rehearse (deploy/rehearse.py): nothing served
KINDS = (DEPLOY, ROLLBACK, REHEARSAL)
# a schema 1 record with one of these results had its version up and serving (migrate runs after up)
SERVED_RESULTS = (SUCCEEDED, "patch-failed", "migrate-failed")

_TOP_TEXT = ("host", "user", "started", "finished", "result", "error", "next_step")
_SITE_TEXT = ("status", "failure", "failed_patch", "backup", "restored")


@dataclass(frozen=True)
class BackupCopy:
    """One file of a site's backup, copied into the target's state folder."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def is_database(self) -> bool:
        return self.name.endswith(("-database.sql.gz", "-database.sql"))

    @property
    def is_private_files(self) -> bool:
        """bench backup --with-files: ``<stamp>-<site>-private-files.tar`` (31-backup-with-files)."""
        return self.name.endswith("-private-files.tar")

    @property
    def is_public_files(self) -> bool:
        """bench backup --with-files: ``<stamp>-<site>-files.tar`` (31-backup-with-files)."""
        return self.name.endswith("-files.tar") and not self.is_private_files


@dataclass
class SiteEntry:
    site: str
    status: str | None = None
    failure: str | None = None
    failed_patch: str | None = None
    backup: str | None = None  # as bench printed it (in the sites volume)
    restored: str | None = None  # rollback: ok | failed | skipped (--no-restore)
    backup_files: list[BackupCopy] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def database_copy(self) -> BackupCopy | None:
        return next((f for f in self.backup_files if f.is_database), None)

    def files_copies(self) -> tuple[BackupCopy | None, BackupCopy | None]:
        """The public and private files archives the deploy took (``--backup-files``), if any."""
        public = next((f for f in self.backup_files if f.is_public_files), None)
        return public, next((f for f in self.backup_files if f.is_private_files), None)

    def to_dict(self) -> dict[str, Any]:
        data = {**self.extra, "site": self.site}
        data.update({key: getattr(self, key) for key in _SITE_TEXT})
        data["backup_files"] = [f.to_dict() for f in self.backup_files]
        return data


@dataclass
class DeployRecord:
    """A deploy or a rollback, as recorded; ``version`` is the version it brought up."""

    version: str
    project: str
    image: str | None = None  # name:tag
    host: str | None = "local"
    user: str | None = None
    started: str | None = None
    finished: str | None = None
    result: str | None = None
    error: str | None = None
    kind: str = DEPLOY
    previous_version: str | None = None  # what ran before (what a rollback goes back to)
    served: bool = False  # the version's containers came up and ran its image
    stack_changed: bool = False  # it began replacing containers (down or up): something to undo
    rolled_back_from: str | None = None  # rollback: the version it left
    rollback_of: str | None = None  # rollback: the deploy id it undid
    progress: list[str] = field(default_factory=list)  # rollback: the steps done, in order
    next_step: str | None = None  # set when it stopped before the end
    engine: str = DEFAULT_ENGINE  # what ran the stack (deploy/engine.py); older records: compose
    image_digest: str | None = None  # the registry digest the target pulled the image by
    sites: list[SiteEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deploy_id(self) -> str | None:
        """The UTC start stamp (``20261201T165500Z``): names the record and the backup folder."""
        try:
            return stamp(self.started or "")
        except ValueError:
            return None

    @property
    def where(self) -> str:
        return f"{self.project}@{self.host or 'local'}"

    @property
    def daemon(self) -> str | None:
        """The target daemon's ID the record names (``daemon_id``), when it has that shape."""
        return daemon_id(self.extra.get("daemon_id"))

    def site(self, name: str) -> SiteEntry | None:
        return next((s for s in self.sites if s.site == name), None)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **self.extra}
        for key in ("version", "project", "image", *_TOP_TEXT, "kind", "previous_version", "served",
                    "stack_changed", "rolled_back_from", "rollback_of", "progress", "engine",
                    "image_digest"):  # fmt: skip
            data[key] = getattr(self, key)
        data["sites"] = [s.to_dict() for s in self.sites]
        data["failed_patches"] = [s.failed_patch for s in self.sites if s.failed_patch]
        data["backups"] = [s.backup for s in self.sites if s.backup]
        return data

    @classmethod
    def read(cls, path: Path) -> DeployRecord:
        """The record in the file ``path`` (``deploys/*.json``), checked as ``from_dict`` checks
        it; ``ValueError`` names why it cannot be used (unreadable, not JSON, a field)."""
        return cls.from_dict(bounded.read_json(path, "a deploy record"))

    @classmethod
    def from_dict(cls, data: object) -> DeployRecord:
        """The record in ``data`` (JSON of any shape), checked; ``ValueError`` names the first
        field that cannot be used (never repeating its value)."""
        if not isinstance(data, dict) or "version" not in data or "project" not in data:
            raise ValueError("not an imagekit deploy record (no version or project field)")
        schema = data.get("schema_version", 1)
        if not isinstance(schema, int) or isinstance(schema, bool) or schema > SCHEMA_VERSION:
            raise ValueError("written by a newer imagekit or not a deploy record (schema_version)")
        record = cls(
            version=_checked(validate.image_tag, data["version"], "version"),
            project=_checked(validate.project_name, data["project"], "project"),
            image=_optional(_image_ref, data.get("image"), "image"),
            kind=_kind(data.get("kind", DEPLOY)),
            previous_version=_optional(validate.image_tag, data.get("previous_version"), "previous_version"),
            rolled_back_from=_optional(validate.image_tag, data.get("rolled_back_from"), "rolled_back_from"),
            rollback_of=_optional(validate.deploy_id, data.get("rollback_of"), "rollback_of"),
            progress=_strings(data.get("progress") or [], "progress"),
            engine=_checked(engine_name, data.get("engine"), "engine"),
            image_digest=_optional(validate.image_digest, data.get("image_digest"), "image_digest"),
            extra=_extra(data, _KNOWN_TOP),
        )
        for key in _TOP_TEXT:
            setattr(record, key, _text(data.get(key), key))
        record.host = record.host or "local"
        record.served = _served(data, record.result)
        record.stack_changed = _stack_changed(data, record)
        sites = _list(data.get("sites"), "sites")
        record.sites = [_site(item, f"sites[{i}]") for i, item in enumerate(sites)]
        return record


def now() -> str:
    """The time now as a record writes it: ``2026-12-01T16:55:00+00:00`` (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def stamp(iso: str) -> str:
    """``2026-12-01T16:55:00+00:00`` -> ``20261201T165500Z`` (ValueError when not a time)."""
    return datetime.fromisoformat(iso).strftime("%Y%m%dT%H%M%SZ")


def read_records(items: Iterable[object]) -> list[DeployRecord]:
    """The usable records among ``items`` (dicts as read), oldest first; others left out."""
    records = []
    for item in items:
        try:
            records.append(DeployRecord.from_dict(item))
        except ValueError:
            continue
    records.sort(key=lambda r: str(r.finished or r.started or ""))
    return records


def recorded_digest(records: Iterable[DeployRecord], version: str) -> str | None:
    """The registry digest the latest record of ``version`` holds (checked when it was read):
    rollback and sandbox pull that version by it."""
    found = [r.image_digest for r in records if r.version == version and r.image_digest]
    return found[-1] if found else None


def audit_records(text: str) -> list[DeployRecord]:
    """The usable records of an ``audit.log`` (the target's state folder: one JSON record a
    line, written by every deploy of the project from any workspace), oldest first."""
    items = []
    for line in text.splitlines():
        try:
            items.append(json.loads(line))
        except (ValueError, RecursionError):
            continue
    return read_records(items)


def load_deploy_record(path: Path) -> DeployRecord:
    """Read one ``deploys/*.json``; raise ``ValueError`` naming why it cannot be used.

    Deploy records are repository content like manifests, checked field by field by
    ``DeployRecord.read``; the record is returned upgraded to its schema.
    """
    return DeployRecord.read(path)


def iter_deploy_records(ws: Workspace) -> Iterator[tuple[Path, DeployRecord | BrokenManifest]]:
    """Each ``deploys/*.json`` in name order: its record, or why it cannot be read."""
    return each_json(ws.deploys_dir, load_deploy_record)


@dataclass(frozen=True)
class DeployRecords:
    """The records of ``deploys/``: the usable ones oldest first, and those that are not."""

    records: list[DeployRecord]
    broken: list[BrokenManifest]

    def broken_of(self, project: str) -> list[BrokenManifest]:
        """The broken records whose file name says they are of ``project`` (a deploy's or a
        rollback's, ``<deploy id>-<project>.json``), in name order."""
        return [b for b in self.broken if b.path.name.partition("-")[2] == f"{project}.json"]


def read_deploys(ws: Workspace) -> DeployRecords:
    """Every ``deploys/*.json`` read through ``DeployRecord``: the one reader of the folder for
    history, rollback, sandbox, backups, prune, rehearse and deploy's preflight."""
    good, broken = readable(iter_deploy_records(ws))
    records = sorted((record for _path, record in good), key=lambda r: str(r.finished or r.started or ""))
    return DeployRecords(records, broken)


def rolled_back_versions(records: Iterable[DeployRecord], project: str | None = None) -> dict[str, str]:
    """version -> where, for each version a rollback left (it got as far as ``down``) that was
    not deployed again since (of ``project``, or any project when None). ``deploy`` without
    ``--version`` must not pick one."""
    left: dict[str, str] = {}
    for record in sorted(records, key=lambda r: str(r.started or "")):
        if project is not None and record.project != project:
            continue
        went_back = record.served or "down" in record.progress
        if record.kind == ROLLBACK and record.rolled_back_from and went_back:
            left[record.rolled_back_from] = record.where
        elif record.kind == DEPLOY and record.served:
            left.pop(record.version, None)
    return left


def at_place(
    records: Iterable[DeployRecord], project: str, host: str, daemon: str | None = None
) -> list[DeployRecord]:
    """The records of ``project`` at the place ``host`` is (deploy/place.py ``Places``: a local
    and an SSH target on the same daemon, ``daemon`` or the ID a record of ``host`` names, are
    one place)."""
    listed = [r for r in records if r.project == project]
    places = Places((r.project, r.host or "local", r.daemon) for r in listed)
    here = places.key(project, host, daemon)
    return [r for r in listed if places.key(r.project, r.host, r.daemon) == here]


def place_records(
    local: Iterable[DeployRecord],
    audit: str,
    project: str,
    host: str,
    daemon: Callable[[], str | None] = lambda: None,
) -> list[DeployRecord]:
    """The records of ``project`` at the place of ``host``: those of ``local`` (this workspace's
    ``deploys/``) that ``at_place`` keeps, and every one of the target's ``audit`` log (its
    text: each workspace's deploys of this target, whatever host name they used). ``daemon()``
    (the target's daemon ID) is asked only when a record names one."""
    here = [replace(r, host=host) for r in audit_records(audit) if r.project == project]
    listed = [*(r for r in local if r.project == project), *here]
    asked = daemon() if any(r.daemon for r in listed) else None
    return at_place(listed, project, host, asked)


def maintenance_since(
    records: Iterable[DeployRecord], project: str, host: str, site: str, daemon: str | None = None
) -> DeployRecord | None:
    """The deploy (or rollback) of ``project`` at the place of ``host`` (``at_place``) that left
    ``site`` in maintenance, as the records say: the newest one that ended with the site on, not
    counting those that found it on already and left it so; None when the last record of the
    site ended it (or none says)."""
    since: DeployRecord | None = None
    for record in sorted(at_place(records, project, host, daemon), key=lambda r: str(r.started or "")):
        entry = record.site(site)
        state = _maintenance_end(entry) if entry else None
        if state == "off":
            since = None
        elif state == "on" and (since is None or _maintenance_found(entry) != "on"):
            since = record
    return since


def describe_since(record: DeployRecord | None) -> str:
    """``since deploy 20261207T121639Z of v1.3.0, interrupted`` (for the report)."""
    if record is None:
        return "no deploy in deploys/ left it so"
    return f"since {record.kind} {record.deploy_id} of {record.version}, {record.result or 'unknown result'}"


def _maintenance_end(entry: SiteEntry) -> str | None:
    """on | off: how the record left the site (read back at its end, else its window's state)."""
    now = entry.extra.get("maintenance_now")
    if now in ("on", "off"):
        return str(now)
    window = entry.extra.get("maintenance")
    state = window.get("state") if isinstance(window, dict) else None
    return str(state) if state in ("on", "off") else None


def _maintenance_found(entry: SiteEntry | None) -> str | None:
    window = entry.extra.get("maintenance") if entry else None
    found = window.get("found") if isinstance(window, dict) else None
    return str(found) if found in ("on", "off") else None


# -- checks ----------------------------------------------------------------------------------

_KNOWN_TOP = frozenset(
    {"schema_version", "version", "project", "image", *_TOP_TEXT, "kind", "previous_version", "served",
     "stack_changed", "rolled_back_from", "rollback_of", "progress", "sites", "failed_patches", "backups",
     "engine", "image_digest"}
)  # fmt: skip
_KNOWN_SITE = frozenset({"site", *_SITE_TEXT, "backup_files"})


def _checked(check: Callable[..., str], value: object, what: str) -> str:
    try:
        return check(value, what)
    except ImagekitError as exc:
        raise ValueError(exc.message.rstrip(".")) from None


def _optional(check: Callable[..., str], value: object, what: str) -> str | None:
    return None if value is None else _checked(check, value, what)


def _image_ref(value: object, what: str) -> str:
    text = validate.not_an_option(value, what)
    name, _, tag = text.rpartition(":")
    if "/" in tag or not name:
        raise ConfigError(f"{what} is not name:tag")
    validate.image_name(name, f"{what} (name)")
    validate.image_tag(tag, f"{what} (tag)")
    return text


def _kind(value: object) -> str:
    if value not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    return str(value)


def _text(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list, not {type(value).__name__}")
    return value


def _strings(value: object, what: str) -> list[str]:
    items = _list(value, what)
    for item in items:
        _text(item, f"each entry of {what}")
    return [str(item) for item in items]


def _extra(data: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in known}


def _served(data: Mapping[str, Any], result: str | None) -> bool:
    value = data.get("served")
    if value is None:  # schema 1
        return result in SERVED_RESULTS
    if not isinstance(value, bool):
        raise ValueError("served must be true or false")
    return value


def _stack_changed(data: Mapping[str, Any], record: DeployRecord) -> bool:
    """Whether the deploy began replacing containers. Records before the field: it served, or
    it timed a ``down`` or an ``up`` (a failed ``up`` or crash-loop wait replaced them too)."""
    value = data.get("stack_changed")
    if value is None:
        timings = data.get("timings")
        timed = isinstance(timings, dict) and ("down" in timings or "up" in timings)
        return record.served or (record.kind == DEPLOY and timed)
    if not isinstance(value, bool):
        raise ValueError("stack_changed must be true or false")
    return value or record.served


def _site(value: object, what: str) -> SiteEntry:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, not {type(value).__name__}")
    entry = SiteEntry(_checked(validate.site_name, value.get("site"), f"{what}.site"))
    for key in _SITE_TEXT:
        setattr(entry, key, _text(value.get(key), f"{what}.{key}"))
    files = _list(value.get("backup_files"), f"{what}.backup_files")
    entry.backup_files = [_backup(item, f"{what}.backup_files[{i}]") for i, item in enumerate(files)]
    entry.extra = _extra(value, _KNOWN_SITE)
    return entry


def _backup(value: object, what: str) -> BackupCopy:
    """A backup copy's fields; where it may lie is checked by rollback, which knows the folder."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, not {type(value).__name__}")
    path = _checked(validate.not_an_option, value.get("path"), f"{what}.path")
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"{what}.size must be a number of bytes")
    return BackupCopy(path, size, _checked(validate.sha256_hex, value.get("sha256"), f"{what}.sha256"))
