"""The build log: list, show and diff build manifests, joined with deploy records.

Core functions return data; ``cli/history_cmd.py`` renders it. A manifest that cannot be read
(corrupt, half-written, newer schema) never stops a listing: it is returned in ``broken``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from frappe_imagekit import gitremote, validate
from frappe_imagekit.appsjson import parse_apps_text, public_url, repo_identity, token_vars
from frappe_imagekit.build.records import BuildManifest, ManifestPin
from frappe_imagekit.deploy.place import Places
from frappe_imagekit.deploy.record import REHEARSAL, ROLLBACK, DeployRecord, read_deploys
from frappe_imagekit.deploy.swarm import records as swarm_records
from frappe_imagekit.envfile import parse_env_text, read_text
from frappe_imagekit.errors import ImagekitError
from frappe_imagekit.manifest import (
    BrokenManifest,
    find_manifest,
    iter_manifests,
    read_manifest,
    readable,
    version_sort_key,
)
from frappe_imagekit.pins import Pin
from frappe_imagekit.workspace import Workspace

# Build args whose change is worth a line of its own in a diff, in display order.
TOOLCHAIN_ARGS = ("PYTHON_VERSION", "NODE_VERSION", "FRAPPE_PATH", "FRAPPE_BRANCH")
# Derived from the SHAs: it changes whenever a SHA does, so it adds nothing to a diff.
_DERIVED_ARGS = frozenset({"CACHE_BUST"})


class DeployRun(TypedDict):
    """One time a version ran on a target, as history shows it (and prints it with ``--json``)."""

    where: str  # the place (deploy/place.py), named as its newest record names it
    target: str  # project@host as this record names it
    finished: str | None
    image: str | None
    result: str | None
    kind: str  # deploy | rollback | rehearsal
    migrate_only: bool
    rolled_back_to: str | None  # the version a later rollback of this deploy went back to
    rolled_back_from: str | None  # a rollback: the version it left
    digest: str | None  # the registry digest the target pulled the image by
    engine: str  # compose | swarm


@dataclass
class HistoryRow:
    """One build (or rebuild) as ``imagekit history`` shows it."""

    version: str
    kind: str
    status: str
    created: str
    file: str
    image_ref: str | None
    image_id: str | None
    frappe: ManifestPin | None
    apps: list[ManifestPin]
    rebuild_of: str | None = None
    error: str | None = None
    deployed_to: list[str] = field(default_factory=list)  # project@host running it now
    deploys: list[DeployRun] = field(default_factory=list)  # every successful deploy
    rebuilds: list[HistoryRow] = field(default_factory=list)

    @property
    def short_image_id(self) -> str:
        return short_id(self.image_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "rebuild_of": self.rebuild_of,
            "status": self.status,
            "created": self.created,
            "file": self.file,
            "image": {"ref": self.image_ref, "id": self.image_id},
            "frappe": _pin_summary(self.frappe) if self.frappe else None,
            "apps": [_pin_summary(app) for app in self.apps],
            "error": self.error,
            "deployed_to": list(self.deployed_to),
            "deploys": list(self.deploys),
            "rebuilds": [r.to_dict() for r in self.rebuilds],
        }


@dataclass
class HistoryListing:
    rows: list[HistoryRow]
    broken: list[BrokenManifest]
    total: int  # top-level rows before --limit
    broken_deploys: list[BrokenManifest] = field(default_factory=list)  # deploys/*.json skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "builds": [row.to_dict() for row in self.rows],
            "total": self.total,
            "broken": [_broken_dict(b) for b in self.broken],
            "broken_deploys": [_broken_dict(b) for b in self.broken_deploys],
        }


@dataclass
class PinChange:
    """A ref and/or SHA that differs between two builds (Frappe or one app)."""

    name: str
    old_ref: str | None
    new_ref: str | None
    old_sha: str | None
    new_sha: str | None
    commits: int | None = None  # commits from old to new; negative: new is behind old
    commits_note: str | None = None  # why ``commits`` is unknown

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Diff:
    old: str
    new: str
    apps_added: list[ManifestPin]
    apps_removed: list[ManifestPin]
    changes: list[PinChange]  # frappe first, then apps in the newer build's order
    args_changed: dict[str, tuple[str | None, str | None]]
    containerfile_changed: bool | None  # None: one of the manifests has no sha256
    containerfile_sha256: tuple[str | None, str | None]
    image_ids: tuple[str | None, str | None]

    @property
    def identical(self) -> bool:
        return not (
            self.apps_added
            or self.apps_removed
            or self.changes
            or self.args_changed
            or self.containerfile_changed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "identical": self.identical,
            "apps_added": [_pin_summary(a) for a in self.apps_added],
            "apps_removed": [_pin_summary(a) for a in self.apps_removed],
            "changes": [c.to_dict() for c in self.changes],
            "args_changed": {k: {"old": o, "new": n} for k, (o, n) in self.args_changed.items()},
            "containerfile": {
                "changed": self.containerfile_changed,
                "old_sha256": self.containerfile_sha256[0],
                "new_sha256": self.containerfile_sha256[1],
            },
            "image_ids": {"old": self.image_ids[0], "new": self.image_ids[1]},
        }


# -- listing -----------------------------------------------------------------------------


def list_builds(ws: Workspace, limit: int | None = None) -> HistoryListing:
    """Every build, newest first, rebuilds nested under their original, deploys joined."""
    manifests, broken = readable(iter_manifests(ws))
    rows = [row_from_manifest(manifest, path) for path, manifest in manifests]
    deploys = read_deploys(ws)
    swarm, broken_swarm = swarm_records.read_workspace(ws.deploys_dir)
    records = [*deploys.records, *(r.as_deploy_record() for r in swarm)]
    records.sort(key=lambda r: str(r.finished or r.started or ""))  # oldest first, both engines
    _join_deploys(rows, records)
    top = _nest_rebuilds(rows)
    top.sort(key=_newest_first_key, reverse=True)
    total = len(top)
    if limit is not None and limit >= 0:
        top = top[:limit]
    return HistoryListing(
        rows=top, broken=broken, total=total, broken_deploys=[*deploys.broken, *broken_swarm]
    )


def row_from_manifest(manifest: BuildManifest, path: Path) -> HistoryRow:
    image = manifest.get("image") or {}
    return HistoryRow(
        version=manifest["version"],
        kind=manifest.get("kind") or "build",
        status=manifest.get("status") or "unknown",
        created=manifest.get("created") or "",
        file=path.name,
        image_ref=image.get("ref"),
        image_id=image.get("id"),
        frappe=manifest.get("frappe"),
        apps=list(manifest.get("apps") or []),
        rebuild_of=manifest.get("rebuild_of"),
        error=manifest.get("error"),
    )


def _nest_rebuilds(rows: list[HistoryRow]) -> list[HistoryRow]:
    """Put each rebuild under the successful build it reproduces; orphans stay top-level."""
    originals = {
        r.version: r
        for r in rows
        if r.kind != "rebuild" and r.status == "succeeded" and r.file == f"{r.version}.json"
    }
    top: list[HistoryRow] = []
    for row in rows:
        parent = originals.get(row.rebuild_of or "") if row.kind == "rebuild" else None
        if parent is not None and parent is not row:
            parent.rebuilds.append(row)
        else:
            top.append(row)
    for parent in originals.values():
        parent.rebuilds.sort(key=_newest_first_key)  # oldest rebuild first, under the original
    return top


def _newest_first_key(row: HistoryRow) -> tuple[str, Any, str]:
    return (row.created, _version_key(row.version), row.file)


# -- deploy records ------------------------------------------------------------------------


def load_deploys(ws: Workspace) -> list[DeployRecord]:
    """Readable deploy records (``deploys/*.json``), oldest first; unreadable ones are left out."""
    return read_deploys(ws).records


def _join_deploys(rows: list[HistoryRow], records: list[DeployRecord]) -> None:
    """Fill ``deploys`` (every time a version ran on a target: deploys that came up, a failed
    migrate included, rollbacks, and ``--migrate-only`` deploys that succeeded; with the result
    and what it was rolled back to) and ``deployed_to`` (still running there). A target is a
    place (``deploy.place``): a local and an SSH target on one daemon are one, named as its
    newest record names it."""
    current, by_version = deploy_runs(records)
    for row in rows:
        if row.kind == "rebuild" or row.status != "succeeded":
            continue
        row.deploys = by_version.get(row.version, [])
        row.deployed_to = sorted(w for w, v in current.items() if v == row.version)


def deploy_runs(records: list[DeployRecord]) -> tuple[dict[str, str], dict[str, list[DeployRun]]]:
    """(place -> the version that ran there last, version -> its runs) of ``records`` (oldest
    first): what ``_join_deploys`` puts on the rows."""
    places = Places((r.project, r.host or "local", r.daemon) for r in records)
    keys = [places.key(r.project, r.host, r.daemon) for r in records]
    names = {key: record.where for key, record in zip(keys, records, strict=True)}  # the newest wins
    pairs = list(zip(keys, records, strict=True))
    undone = {(key, r.rollback_of): r.version for key, r in pairs if r.kind == ROLLBACK and r.rollback_of}
    current: dict[str, str] = {}  # place -> version of the latest one that ran
    by_version: dict[str, list[DeployRun]] = {}
    for key, record in pairs:
        migrate_only = is_migrate_only(record)
        if not (record.served or migrate_only or record.kind == REHEARSAL):
            continue  # rehearsals: shown, never current
        if record.served:
            current[names[key]] = record.version
        by_version.setdefault(record.version, []).append(
            DeployRun(where=names[key], target=record.where, finished=record.finished, image=record.image,
                      result=record.result, kind=record.kind, migrate_only=migrate_only,
                      rolled_back_to=undone.get((key, record.deploy_id)) if record.deploy_id else None,
                      rolled_back_from=record.rolled_back_from, digest=record.image_digest,
                      engine=record.engine)
        )  # fmt: skip
    return current, by_version


def is_migrate_only(record: DeployRecord) -> bool:
    """A deploy that succeeded without bringing containers up: ``--migrate-only`` (it migrated
    the version already running, e.g. to complete an interrupted deploy)."""
    return record.kind not in (ROLLBACK, REHEARSAL) and not record.served and record.result == "succeeded"


# -- show ----------------------------------------------------------------------------------


class ShownBuild(TypedDict):
    """One build as ``imagekit history VERSION`` shows it (and prints it with ``--json``)."""

    file: str
    manifest: BuildManifest
    rebuilds: list[dict[str, Any]]  # HistoryRow.to_dict of each
    deploys: list[DeployRun]
    deployed_to: list[str]


def show_build(ws: Workspace, version: str) -> ShownBuild:
    """The manifest of ``version`` plus its rebuilds and deploys.

    Raises ``NotFoundError`` naming the nearest versions when there is no such build.
    """
    path = find_manifest(ws, version, include_failed=True)
    listing = list_builds(ws)
    row = next((r for r in listing.rows if r.file == path.name), None)
    return {
        "file": path.name,
        "manifest": read_manifest(path),
        "rebuilds": [r.to_dict() for r in row.rebuilds] if row else [],
        "deploys": row.deploys if row else [],
        "deployed_to": row.deployed_to if row else [],
    }


# -- diff ----------------------------------------------------------------------------------


def diff_builds(
    ws: Workspace,
    old: str,
    new: str,
    *,
    offline: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Diff:
    """What changed from build ``old`` to build ``new``.

    Commit counts come from the remote (``gitremote.count_commits_between``) unless ``offline``;
    ``env`` supplies the tokens for private remotes (the current ``.env``).
    """

    a = read_manifest(find_manifest(ws, old))
    b = read_manifest(find_manifest(ws, new))
    diff = compare_manifests(a, b)
    known = {} if offline else placeholder_urls(ws, env or {})
    for change in diff.changes:
        if offline:
            change.commits_note = "not counted (--offline)"
        else:
            url = with_placeholders(_url_of(change.name, a, b) or "", known)
            _count_commits(change, url or None, env or {}, timeout)
    return diff


def compare_manifests(a: BuildManifest, b: BuildManifest) -> Diff:
    """Pure comparison of two manifests (no remote access)."""
    old_apps = {app["name"]: app for app in a.get("apps") or []}
    new_apps = {app["name"]: app for app in b.get("apps") or []}
    changes: list[PinChange] = []
    frappe_change = _pin_change("frappe", a.get("frappe"), b.get("frappe"))
    if frappe_change:
        changes.append(frappe_change)
    for name, app in new_apps.items():
        change = _pin_change(name, old_apps.get(name), app) if name in old_apps else None
        if change:
            changes.append(change)
    cf_a = (a.get("containerfile") or {}).get("sha256")
    cf_b = (b.get("containerfile") or {}).get("sha256")
    return Diff(
        old=a["version"],
        new=b["version"],
        apps_added=[app for name, app in new_apps.items() if name not in old_apps],
        apps_removed=[app for name, app in old_apps.items() if name not in new_apps],
        changes=changes,
        args_changed=_args_changed(a.get("build_args") or {}, b.get("build_args") or {}),
        containerfile_changed=None if not (cf_a and cf_b) else cf_a != cf_b,
        containerfile_sha256=(cf_a, cf_b),
        image_ids=((a.get("image") or {}).get("id"), (b.get("image") or {}).get("id")),
    )


def _pin_change(name: str, old_pin: ManifestPin | None, new_pin: ManifestPin | None) -> PinChange | None:
    old: ManifestPin | dict[str, None] = old_pin or {}
    new: ManifestPin | dict[str, None] = new_pin or {}
    if old.get("ref") == new.get("ref") and old.get("sha") == new.get("sha"):
        return None
    return PinChange(name, old.get("ref"), new.get("ref"), old.get("sha"), new.get("sha"))


def _args_changed(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, tuple[str | None, str | None]]:
    keys = [k for k in TOOLCHAIN_ARGS if k in old or k in new]
    keys += sorted((set(old) | set(new)) - set(TOOLCHAIN_ARGS) - _DERIVED_ARGS)
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def _url_of(name: str, a: BuildManifest, b: BuildManifest) -> str | None:
    """The newer build's URL for ``name`` (it is the one most likely to still work)."""
    for manifest in (b, a):
        frappe = manifest.get("frappe")
        pins = ([frappe] if frappe else []) if name == "frappe" else manifest.get("apps") or []
        for pin in pins:
            url = pin.get("url")
            if pin.get("name", "frappe") == name and url:
                return url
    return None


def _count_commits(change: PinChange, url: str | None, env: Mapping[str, str], timeout: float) -> None:
    if not (change.old_sha and change.new_sha) or change.old_sha == change.new_sha:
        return
    if not url:
        change.commits_note = "no URL recorded"
        return
    try:
        old = validate.commit_sha(change.old_sha, f"the older {change.name} commit in the manifest")
        new = validate.commit_sha(change.new_sha, f"the newer {change.name} commit in the manifest")
        change.commits = gitremote.count_commits_between(url, env, _token_var(url), old, new, timeout)
    except ImagekitError as exc:
        change.commits_note = exc.message
        return
    if change.commits is None:
        change.commits_note = "histories diverged or a commit is gone from the remote"


def placeholder_urls(ws: Workspace, env: Mapping[str, str]) -> dict[str, str]:
    """repo identity -> URL with its ``${VAR}`` from the current apps.json and FRAPPE_PATH.

    Manifests keep URLs with a ``${VAR}@`` part, but a manifest is repository content anyone
    can edit: which token a repository gets is read only from the workspace as it is today,
    and only for URLs that pass the URL rules (``validate.repo_url_problems``).
    """
    urls = [env["FRAPPE_PATH"]] if env.get("FRAPPE_PATH") else []
    if ws.apps_file.is_file():
        entries, _issues = parse_apps_text(read_text(ws.apps_file, "apps.json", ws.root))
        urls += [entry.url for entry in entries]
    return {
        repo_identity(url): url
        for url in urls
        if "${" in url and not validate.repo_url_problems(url, "the URL")
    }


def with_placeholders(url: str, known: Mapping[str, str]) -> str:
    """The URL to ask for a repository a manifest names: the current workspace's URL for it
    (with its ``${VAR}@`` part) when it has one, else the recorded URL without any user part.
    A ``${VAR}`` written into a manifest never chooses a token."""
    if not url:
        return url
    public = public_url(url)
    return known.get(repo_identity(public), public)


def _token_var(url: str) -> str | None:
    names = token_vars(url)
    return names[0] if names else None


# -- helpers -------------------------------------------------------------------------------


def short_id(image_id: str | None) -> str:
    if not image_id:
        return "-"
    return image_id.split(":", 1)[-1][:12]


def short_sha(sha: str | None) -> str:
    return sha[:7] if sha else "-"


def pin_label(pin: ManifestPin | None) -> str:
    """``v15.17.0@abc1234`` (ref and short SHA)."""
    return Pin.from_record(pin).label if pin else "-"


def _pin_summary(pin: ManifestPin) -> dict[str, Any]:
    keys = ("name", "url", "ref", "ref_kind", "sha")
    return {k: pin.get(k) for k in keys if k in pin or k in ("name", "ref", "sha")}


def _broken_dict(broken: BrokenManifest) -> dict[str, str]:
    return {"file": broken.path.name, "reason": broken.reason}


def _version_key(version: str) -> Any:
    return version_sort_key(version)


def workspace_env(ws: Workspace) -> dict[str, str]:
    """The current ``.env`` values (tokens included: never print them); empty if there is none."""
    if not ws.env_file.is_file():
        return {}
    return parse_env_text(read_text(ws.env_file, ".env")).values
