"""Build manifests: one versioned JSON file per build in ``builds/``, written atomically.

See docs/DESIGN.md for the fields. Manifests never hold a secret: ``write_manifest`` refuses
one that contains any form the redactor knows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frappe_imagekit.errors import ImagekitError
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace, write_json_atomic

SCHEMA_VERSION = 1


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


def list_manifests(ws: Workspace) -> tuple[list[dict[str, Any]], list[BrokenManifest]]:
    """Every readable manifest (any status) and the ones that could not be read."""
    good: list[dict[str, Any]] = []
    broken: list[BrokenManifest] = []
    if not ws.builds_dir.is_dir():
        return good, broken
    for path in sorted(ws.builds_dir.glob("*.json")):
        try:
            good.append(load_manifest(path))
        except ValueError as exc:
            broken.append(BrokenManifest(path, str(exc)))
    return good, broken


def succeeded_versions(ws: Workspace) -> set[str]:
    """Versions with a successful build: these are taken and cannot be built again."""
    manifests, _ = list_manifests(ws)
    return {m["version"] for m in manifests if m.get("status") == "succeeded"}
