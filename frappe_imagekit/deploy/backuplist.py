"""``imagekit backups``: the backups deploys copied into the target's state folder
(``backups/<deploy id>/<site>/``, see ``backups``), each with a short name
``<site>@<deploy id>`` that ``sandbox --backup`` takes (``<site>@latest``: that site's newest).

What exists is read from the state folder; the version and time of each deploy from its record
in ``deploys/``. Both are untrusted (the state folder is remote, ``deploys/`` is repository
content): every folder name, file name, size and record field is checked, and what fails a
check is left out and counted, never used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frappe_imagekit import bounded, validate
from frappe_imagekit.deploy import place
from frappe_imagekit.deploy.place import Places, daemon_id
from frappe_imagekit.errors import ImagekitError, NotFoundError, UsageError
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

_DEPLOY_ID = re.compile(r"\d{8}T\d{6}Z")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHORT = re.compile(r"(?P<site>[^@\s]+)@(?P<id>\d{8}T\d{6}Z|latest)")
# every file of every backup folder, with its size: "<bytes> <path>" a line
_LIST = r'for f in "$1"/*/*/*; do [ -f "$f" ] && printf "%s %s\n" "$(wc -c < "$f")" "$f"; done; true'


@dataclass(frozen=True)
class Backup:
    """One site's backup taken by one deploy, as kept in the state folder."""

    name: str  # <site>@<deploy id>
    site: str
    deploy_id: str
    version: str | None  # the deploy that took it (None: no record of it in deploys/)
    when: str  # ISO time the deploy started (from the deploy id without a record)
    database: str  # path on the target
    public_files: str | None = None
    private_files: str | None = None
    others: tuple[str, ...] = ()  # site config backup and anything else in the folder
    size: int = 0  # bytes of every file together
    sha256: str | None = None  # of the database file, as the deploy recorded it
    data_of: str | None = None  # the version that ran when it was taken (the deploy before)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["others"] = list(self.others)
        return data


@dataclass
class BackupListing:
    backups: list[Backup] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what could not be used, and why

    def to_dict(self) -> dict[str, Any]:
        return {"backups": [b.to_dict() for b in self.backups], "skipped": self.skipped}


@dataclass(frozen=True)
class DeployInfo:
    version: str
    when: str
    sha256: Mapping[str, str]  # file name -> sha256, per site: "site/name"
    succeeded: bool = False
    previous: str | None = None  # the version of the last successful deploy before this one


def list_backups(runner: Runner, ws: Workspace, state_root: str, project: str) -> BackupListing:
    """Every backup in ``<state_root>/backups`` (the project's state folder), newest first."""
    root = f"{state_root.rstrip('/')}/backups"
    done = runner.run(["sh", "-c", _LIST, "list", root], timeout=120)
    listing = BackupListing()
    files = parse_listing(done.stdout, root, listing.skipped)
    records = deploy_records(ws, project, runner.host, lambda: place.daemon_of(runner))
    listing.backups = group(files, records, listing.skipped, root)
    return listing


def parse_listing(text: str, root: str, skipped: list[str]) -> dict[tuple[str, str], dict[str, int]]:
    """(deploy id, site) -> {file name: size} from ``_LIST`` output; bad lines go to ``skipped``."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for line in text.splitlines():
        size, _, path = line.strip().partition(" ")
        parts = path.removeprefix(root + "/").split("/")
        if not size.isdigit() or not path.startswith(root + "/") or len(parts) != 3:
            skipped.append(f"{path[:80] or line[:80]!r}: not a file of a backup folder")
            continue
        deploy_id, site, name = parts
        if not (_DEPLOY_ID.fullmatch(deploy_id) and _FILE.fullmatch(name) and _site_ok(site)):
            skipped.append(f"{path[:120]!r}: a folder or file name imagekit did not write")
            continue
        found.setdefault((deploy_id, site), {})[name] = int(size)
    return found


def _site_ok(site: object) -> bool:
    try:
        validate.site_name(site)
    except ImagekitError:
        return False
    return True


def group(
    files: Mapping[tuple[str, str], Mapping[str, int]],
    records: Mapping[str, DeployInfo],
    skipped: list[str],
    root: str,
) -> list[Backup]:
    """One ``Backup`` per (deploy id, site) folder that holds a database dump; newest first."""
    backups = []
    for (deploy_id, site), names in sorted(files.items(), reverse=True):
        database = _ending(names, "-database.sql.gz", "-database.sql")
        if database is None:
            skipped.append(f"{deploy_id}/{site}: no database dump in the folder")
            continue
        folder = f"{root}/{deploy_id}/{site}"
        backups.append(_backup(deploy_id, site, names, database, records.get(deploy_id), folder))
    return backups


def _backup(
    deploy_id: str,
    site: str,
    names: Mapping[str, int],
    database: str,
    info: DeployInfo | None,
    folder: str,
) -> Backup:
    private = _ending(names, "-private-files.tar", "-private-files.tgz")
    public = _ending({n: s for n, s in names.items() if n != private}, "-files.tar", "-files.tgz")
    used = {database, public, private}
    return Backup(
        name=f"{site}@{deploy_id}",
        site=site,
        deploy_id=deploy_id,
        version=info.version if info else None,
        when=info.when if info else _id_time(deploy_id),
        database=f"{folder}/{database}",
        public_files=f"{folder}/{public}" if public else None,
        private_files=f"{folder}/{private}" if private else None,
        others=tuple(f"{folder}/{n}" for n in sorted(names) if n not in used),
        size=sum(names.values()),
        sha256=info.sha256.get(f"{site}/{database}") if info else None,
        data_of=info.previous if info else None,
    )


def _ending(names: Iterable[str], *endings: str) -> str | None:
    return next((n for n in sorted(names) if n.endswith(endings)), None)


def _id_time(deploy_id: str) -> str:
    return datetime.strptime(deploy_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat(timespec="seconds")


def deploy_id(started: str) -> str:
    """The id a deploy's backups are kept under: its start time, ``YYYYmmddTHHMMSSZ`` (UTC)."""
    return datetime.fromisoformat(started).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


# ---------------------------------------------------------------- deploy records


def deploy_records(
    ws: Workspace, project: str, host: str = "local", daemon: Callable[[], str | None] = lambda: None
) -> dict[str, DeployInfo]:
    """Deploy id -> version, time and backup hashes, from the project's records in ``deploys/``
    of this place (``host``, or the daemon ``daemon()`` names: another host's deploys of the same
    project name hold other data). Records are repository content: one or a field that fails a
    check is left out."""
    folder = ws.deploys_dir
    paths = sorted(folder.glob(f"*-{project}.json")) if folder.is_dir() else []
    read = [i for i in map(lambda p: _record_info(p, project), paths) if i]
    places = Places((project, where, daemon_id) for _, _, where, daemon_id in read)
    asked = daemon() if any(d for *_, d in read) else None
    here = places.key(project, host, asked)
    mine = [(deploy, info) for deploy, info, where, d in read if places.key(project, where, d) == here]
    found: dict[str, DeployInfo] = {}
    previous = None
    for deploy, info in sorted(mine, key=lambda item: item[1].when):
        found[deploy] = replace(info, previous=previous)
        previous = info.version if info.succeeded else previous
    return found


def _record_info(path: Path, project: str) -> tuple[str, DeployInfo, str, str | None] | None:
    """What ``imagekit backups`` needs of one deploy record (the record as written on main:
    ``version``, ``project``, ``host``, ``daemon_id``, ``started``,
    ``sites[].backup_files[].path/sha256``)."""
    try:
        record = json.loads(bounded.json_text(path))
        if not isinstance(record, dict) or record.get("project") != project:
            return None
        version = validate.image_tag(record.get("version"))
        started = str(record.get("started"))
        succeeded = record.get("result") == "succeeded"
        host = record.get("host") or "local"
        if not isinstance(host, str):
            return None
        info = DeployInfo(version, started, _hashes(record.get("sites")), succeeded)
        return deploy_id(started), info, host, daemon_id(record.get("daemon_id"))
    except (OSError, ValueError, TypeError, RecursionError, ImagekitError):
        return None


def _hashes(sites: object) -> dict[str, str]:
    """ "site/file name" -> sha256 of each backup copy a record lists, where the site name, the
    file name and the hash each pass their check (others are left out)."""
    found = {}
    for site in sites if isinstance(sites, list) else []:
        name = site.get("site") if isinstance(site, dict) else None
        files = site.get("backup_files") if isinstance(site, dict) and _site_ok(name) else None
        for item in files if isinstance(files, list) else []:
            if not isinstance(item, dict) or not _SHA256.fullmatch(str(item.get("sha256"))):
                continue
            file = str(item.get("path")).rsplit("/", 1)[-1]
            if _FILE.fullmatch(file):
                found[f"{name}/{file}"] = str(item["sha256"])
    return found


# ---------------------------------------------------------------- short names


def is_short_name(value: str) -> bool:
    """``<site>@<deploy id>`` or ``<site>@latest`` (anything else is a file path)."""
    return _SHORT.fullmatch(value) is not None


def find(backups: Iterable[Backup], name: str) -> Backup:
    """The backup ``name`` (``site@id`` or ``site@latest``); ``NotFoundError`` naming the known ones."""
    match = _SHORT.fullmatch(name)
    if match is None:
        raise UsageError(f"{name[:80]!r} is not a backup name: use <site>@<deploy id> (imagekit backups).")
    listed = list(backups)
    chosen = [b for b in listed if b.site == match["site"] and match["id"] in (b.deploy_id, "latest")]
    if chosen:
        return chosen[0]  # newest first
    known = ", ".join(b.name for b in listed[:10]) or "none"
    raise NotFoundError(
        f"no backup named {name} in the state folder (known: {known}); `imagekit backups` lists them."
    )
