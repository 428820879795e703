"""``imagekit backups``: the backups deploys copied into the target's state folder
(``backups/<deploy id>/<site>/``, see ``backups``), each with a short name
``<site>@<deploy id>`` that ``sandbox --backup`` takes (``<site>@latest``: that site's newest).

What exists is read from the state folder; the version and time of each deploy from its record
in ``deploys/``. Both are untrusted (the state folder is remote, ``deploys/`` is repository
content): every folder name, file name, size and record field is checked, and what fails a
check is left out and counted, never used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import backups, place
from frappe_imagekit.deploy.record import DEPLOY, DeployRecord, place_records, read_deploys
from frappe_imagekit.errors import ImagekitError, NotFoundError, UsageError
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

_DEPLOY_ID = re.compile(r"\d{8}T\d{6}Z")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
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
    previous: str | None = None  # the version whose data its backups hold (backups.data_of)


def list_backups(runner: Runner, ws: Workspace, state_root: str, project: str) -> BackupListing:
    """Every backup in ``<state_root>/backups`` (the project's state folder), newest first."""
    root = f"{state_root.rstrip('/')}/backups"
    audit = runner.read_file(f"{state_root.rstrip('/')}/audit.log") or ""
    done = runner.run(["sh", "-c", _LIST, "list", root], timeout=120)
    listing = BackupListing()
    files = parse_listing(done.stdout, root, listing.skipped)
    records = deploy_records(ws, project, runner.host, lambda: place.daemon_of(runner), audit)
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
    ws: Workspace,
    project: str,
    host: str = "local",
    daemon: Callable[[], str | None] = lambda: None,
    audit: str = "",
) -> dict[str, DeployInfo]:
    """Deploy id -> version, time, backup hashes and the version whose data the backups hold,
    from the project's records of this place (``record.place_records``: ``deploys/`` and the
    target's ``audit`` log, keyed by the daemon ``daemon()`` names; another host's deploys of the
    same project name hold other data). "Data of" is ``backups.data_of``, the pruner's rule.
    Records are repository content, read by ``DeployRecord``: one that fails a check is left out."""
    local = read_deploys(ws).records
    mine = place_records(local, audit, project, host, daemon)
    held = backups.data_of(mine)
    found: dict[str, DeployInfo] = {}
    for record in sorted(mine, key=lambda r: str(r.started)):
        deploy = record.deploy_id
        if deploy is not None and record.kind == DEPLOY:
            hashes = _hashes(record) | (dict(found[deploy].sha256) if deploy in found else {})
            info = DeployInfo(record.version, str(record.started), hashes, record.result == "succeeded")
            found[deploy] = replace(info, previous=held.get(deploy))
    return found


def _hashes(record: DeployRecord) -> dict[str, str]:
    """ "site/file name" -> sha256 of each backup copy the record lists (names imagekit writes)."""
    return {
        f"{site.site}/{copy.name}": copy.sha256
        for site in record.sites
        for copy in site.backup_files
        if _FILE.fullmatch(copy.name)
    }


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
