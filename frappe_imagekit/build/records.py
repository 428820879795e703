"""The build side's on-disk shapes, typed (what a manifest and apps.lock.json hold).

Plain ``TypedDict`` records, importable without the rest of the build wing: readers take these,
not untyped dicts; the key order of each is the order the files have always had.
"""

from __future__ import annotations

from typing import Required, TypedDict


class TierRecord(TypedDict):
    """A tier as a manifest records it (``base_tier``: the system tier)."""

    ref: str
    key: str
    built: bool | None
    containerfile: str
    build_args: dict[str, str]


class PinRecord(TypedDict):
    """Frappe or an app as a manifest records it (``frappe``, ``apps[]``): the URL token-free
    (a ``${VAR}@`` placeholder kept), ``sha`` None until the ref is resolved."""

    name: str
    url: str
    ref: str
    ref_kind: str | None
    sha: str | None


class LockEntry(TypedDict):
    """One entry of apps.lock.json (``frappe``, ``apps[]``), every value checked on read."""

    name: str
    url: str
    ref: str
    sha: str


class LockFile(TypedDict):
    """apps.lock.json as imagekit writes it."""

    schema_version: int
    frappe: LockEntry
    apps: list[LockEntry]


# -- a build manifest as read from disk -------------------------------------------------------
# What ``manifest.check_manifest`` guarantees of a ``builds/*.json``: each field below has this
# type when present (``None`` where the check allows it). Older records lack some fields, so the
# shapes are not total; a record's fields this imagekit does not know stay in the dict, untyped.


class ManifestPin(TypedDict, total=False):
    """``frappe`` or one of ``apps[]`` as read: ``ref`` always there, ``name`` always for an app."""

    name: str
    url: str | None
    ref: Required[str]
    ref_kind: str | None
    sha: str | None


class ManifestImage(TypedDict, total=False):
    """``image``: the image the build made (``ref`` is ``name:tag``)."""

    name: str | None
    tag: str | None
    ref: str | None
    id: str | None
    repo_digests: list[str] | None
    digest: str | None
    replaced: str | None


class ManifestTier(TypedDict, total=False):
    """``base_tier`` as read (a ``TierRecord`` when written). ``build_args`` is checked where it
    is used, by a rebuild (``rebuild._check_tier``, ``tiers.Tier.from_record``), which names it
    in its own refusal."""

    ref: str | None
    key: str | None
    built: bool | None
    containerfile: str | None
    build_args: object


class ManifestContainerfile(TypedDict, total=False):
    """``containerfile``: where it came from, its sha256 and its text."""

    path: str | None
    sha256: str | None
    content: str | None
    apps_json_mode: str | None


class ManifestWorkspace(TypedDict, total=False):
    """``workspace``: the workspace's git commit at build time and whether it was dirty."""

    git_commit: str | None
    dirty: bool | None


class LeakScanRecord(TypedDict, total=False):
    """``leak_scan``: its status (clean, leak, skipped, unfinished), its findings (each a
    redacted object whose fields the scanner chose) and how long it took."""

    status: str | None
    seconds: float | None
    findings: list[dict[str, object]] | None
    layers_from_cache: int | None


class DriftItem(TypedDict, total=False):
    """One pin of a rebuild's ``drift`` check (``rebuild.PinDrift``)."""

    name: str | None
    ref: str | None
    use_ref: str | None
    status: str | None
    recorded_sha: str | None
    current_sha: str | None
    message: str | None


class BuildManifest(TypedDict, total=False):
    """A ``builds/*.json`` as read and checked (``manifest.load_manifest``); see docs/DESIGN.md."""

    schema_version: int
    kind: str | None
    rebuild_of: str | None
    version: Required[str]
    status: str | None
    error: str | None
    image: ManifestImage | None
    created: str | None
    finished: str | None
    duration_seconds: float | None
    tools: dict[str, str | None] | None
    containerfile: ManifestContainerfile | None
    build_args: dict[str, str] | None
    labels: dict[str, str] | None
    frappe: ManifestPin | None
    apps: list[ManifestPin] | None
    apps_json_sha256: str | None
    fingerprint: str | None
    workspace: ManifestWorkspace | None
    leak_scan: LeakScanRecord | None
    log_file: str | None
    base_tier: ManifestTier | None
    drift: list[DriftItem] | None
