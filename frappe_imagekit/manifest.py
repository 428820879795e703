"""Build manifests: one versioned JSON file per build in ``builds/``, written atomically.

See docs/DESIGN.md for the fields. Manifests never hold a secret: ``write_manifest`` refuses
one that contains any form the redactor knows.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frappe_imagekit.errors import ImagekitError, NotFoundError
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace, write_json_atomic

SCHEMA_VERSION = 1
# Extra records of a version: builds/<version>.<kind>-<UTC>.json (failed build attempts,
# rebuilds, and the record a --force build moved aside). They never name a version of their own.
_ATTEMPT_KINDS = ("failed", "rebuild", "replaced")


@dataclass(frozen=True)
class BrokenManifest:
    path: Path
    reason: str


def manifest_path(ws: Workspace, version: str) -> Path:
    return ws.builds_dir / f"{version}.json"


def write_manifest(ws: Workspace, manifest: dict[str, Any], path: Path, redactor: Redactor) -> Path:
    """Validate and write ``manifest`` atomically to ``path``; refuse if it holds a secret."""
    text = json.dumps(manifest)
    if text in redactor or redactor.redact(text) != text:
        raise ImagekitError(
            f"refusing to write {path.name}: it would contain a secret; this is a bug in imagekit."
        )
    manifest = {**manifest, "schema_version": SCHEMA_VERSION}
    write_json_atomic(path, manifest)
    return path


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older manifest to the current schema (nothing older than 1 exists yet)."""
    return data


def load_manifest(path: Path) -> dict[str, Any]:
    """Read one manifest; raise ``ValueError`` naming why it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}): corrupt or half-written") from None
    except OSError as exc:
        raise ValueError(f"unreadable: {exc.strerror}") from None
    if not isinstance(data, dict) or "version" not in data:
        raise ValueError("not an imagekit manifest (no version field)")
    schema = data.get("schema_version")
    if not isinstance(schema, int):
        raise ValueError("no schema_version")
    if schema > SCHEMA_VERSION:
        raise ValueError(
            f"written by a newer imagekit (schema {schema} > {SCHEMA_VERSION}): upgrade imagekit"
        )
    return upgrade(data)


def iter_manifests(ws: Workspace) -> Iterator[tuple[Path, dict[str, Any] | BrokenManifest]]:
    """Each ``builds/*.json`` in name order: its manifest, or why it cannot be read."""
    if not ws.builds_dir.is_dir():
        return
    for path in sorted(ws.builds_dir.glob("*.json")):
        try:
            yield path, load_manifest(path)
        except ValueError as exc:
            yield path, BrokenManifest(path, str(exc))


def list_manifests(ws: Workspace) -> tuple[list[dict[str, Any]], list[BrokenManifest]]:
    """Every readable manifest (any status) and the ones that could not be read."""
    good: list[dict[str, Any]] = []
    broken: list[BrokenManifest] = []
    for _path, item in iter_manifests(ws):
        if isinstance(item, BrokenManifest):
            broken.append(item)
        else:
            good.append(item)
    return good, broken


def version_sort_key(version: str) -> tuple[int, Any]:
    """Order versions as releases (v1.10.0 after v1.9.2); unparsable names sort first, by text."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def nearest_versions(version: str, known: set[str] | list[str], n: int = 4) -> list[str]:
    """The known versions closest to ``version``: similar spelling and release-order neighbours."""
    ordered = sorted(set(known), key=version_sort_key)
    near = difflib.get_close_matches(version, ordered, n=n, cutoff=0.6)
    key = version_sort_key(version)
    below = [v for v in ordered if version_sort_key(v)[0] == key[0] and version_sort_key(v) < key]
    above = [v for v in ordered if version_sort_key(v)[0] == key[0] and version_sort_key(v) > key]
    for neighbour in below[-1:] + above[:1]:
        if neighbour not in near:
            near.append(neighbour)
    return sorted(near[:n], key=version_sort_key)


def find_manifest(ws: Workspace, version: str, *, include_failed: bool = False) -> Path:
    """The manifest file of the successful build of ``version``.

    With ``include_failed``, the newest failed attempt is returned when no build succeeded.
    Raises ``NotFoundError`` naming the nearest known versions.
    """
    path = manifest_path(ws, version)
    if path.is_file():
        return path
    failed = sorted(ws.builds_dir.glob(f"{version}.failed-*.json")) if ws.builds_dir.is_dir() else []
    if failed and include_failed:
        return failed[-1]
    if failed:
        raise NotFoundError(
            f"{version} has no successful build, only failed attempts ({failed[-1].name}); "
            f"run `imagekit history {version}` to see why."
        )
    known = {p.name[: -len(".json")] for p in ws.builds_dir.glob("*.json")}
    known = {name for name in known if not any(f".{kind}-" in name for kind in _ATTEMPT_KINDS)}
    if not known:
        raise NotFoundError(
            f"unknown version {version}: there are no builds in {ws.builds_dir}; "
            "check --workspace or run `imagekit build` first."
        )
    near = nearest_versions(version, known)
    hint = f"nearest: {', '.join(near)}" if near else f"known: {', '.join(sorted(known)[:5])}"
    raise NotFoundError(f"unknown version {version} ({hint}); run `imagekit history` to list every build.")


def succeeded_versions(ws: Workspace) -> set[str]:
    """Versions with a successful build: these are taken and cannot be built again."""
    manifests, _ = list_manifests(ws)
    return {m["version"] for m in manifests if m.get("status") == "succeeded"}
