"""Build manifests: one versioned JSON file per build in ``builds/``, written atomically.

See docs/DESIGN.md for the fields. Manifests never hold a secret: ``write_manifest`` refuses
one that contains any form the redactor knows.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from frappe_imagekit import bounded, validate
from frappe_imagekit.build.records import (
    BuildManifest,
    DriftItem,
    LeakScanRecord,
    ManifestContainerfile,
    ManifestImage,
    ManifestWorkspace,
    PinRecord,
    TierRecord,
)
from frappe_imagekit.errors import ImagekitError, NotFoundError, UsageError
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace, write_json_atomic

SCHEMA_VERSION = 1
T = TypeVar("T")
# Extra records of a version: builds/<version>.<kind>-<UTC>.json (failed build attempts,
# rebuilds, and the record a --force build moved aside). They never name a version of their own.
_ATTEMPT_KINDS = ("failed", "rebuild", "replaced")


@dataclass(frozen=True)
class BrokenManifest:
    path: Path
    reason: str


def manifest_path(ws: Workspace, version: str) -> Path:
    return ws.builds_dir / f"{version}.json"


def write_manifest(ws: Workspace, manifest: Mapping[str, object], path: Path, redactor: Redactor) -> Path:
    """Check and write the manifest object ``manifest`` atomically to ``path`` as it is (a record
    read back and amended, such as the one a ``--force`` build moves aside)."""
    return _write_checked({**manifest, "schema_version": SCHEMA_VERSION}, path, redactor)


def _write_checked(data: dict[str, Any], path: Path, redactor: Redactor) -> Path:
    """Refuse a record that would hold a secret or break a field rule (either is a bug in
    imagekit, never the user's); else write it atomically."""
    text = json.dumps(data)
    if text in redactor or redactor.redact(text) != text:
        raise ImagekitError(
            f"refusing to write {path.name}: it would contain a secret; this is a bug in imagekit."
        )
    try:
        check_manifest(data)
    except ValueError as exc:
        raise ImagekitError(f"refusing to write {path.name} ({exc}); this is a bug in imagekit.") from None
    write_json_atomic(path, data)
    return path


@dataclass
class ImageRecord:
    """The image a build made: ``ref`` is ``name:tag``; ``replaced`` the spare tag of the image
    a ``--force`` build replaced; ``digest`` buildx's containerimage.digest (None without buildx)."""

    name: str
    tag: str
    id: str | None = None
    repo_digests: list[str] = field(default_factory=list)
    digest: str | None = None
    replaced: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    def to_dict(self) -> ManifestImage:
        return {
            "name": self.name,
            "tag": self.tag,
            "ref": self.ref,
            "id": self.id,
            "repo_digests": list(self.repo_digests),
            "digest": self.digest,
            "replaced": self.replaced,
        }


@dataclass
class Manifest:
    """One build record (``builds/*.json``, see docs/DESIGN.md). It knows its schema version,
    converts to and from JSON, upgrades older versions on read (``upgrade``) and is checked
    (``check_manifest``) before it is written. ``image`` is an ``ImageRecord`` when build made
    it. Read back, a record keeps unknown fields in ``extra`` and gains the known ones it lacks,
    empty (``None``, ``{}`` or ``[]``)."""

    version: str
    kind: str = "build"
    rebuild_of: str | None = None
    status: str = "succeeded"
    error: str | None = None
    image: ImageRecord | ManifestImage | None = None
    created: str | None = None
    finished: str | None = None
    duration_seconds: float | None = None
    tools: dict[str, str | None] = field(default_factory=dict)
    containerfile: ManifestContainerfile = field(default_factory=lambda: ManifestContainerfile())
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    frappe: PinRecord | None = None
    apps: list[PinRecord] = field(default_factory=list)
    apps_json_sha256: str | None = None
    fingerprint: str | None = None
    workspace: ManifestWorkspace = field(default_factory=lambda: ManifestWorkspace())
    leak_scan: LeakScanRecord = field(default_factory=lambda: LeakScanRecord())
    log_file: str | None = None
    base_tier: TierRecord | None = None
    drift: list[DriftItem] | None = None  # a rebuild's drift check; absent for a build
    extra: dict[str, Any] = field(default_factory=dict)  # fields this imagekit does not know

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order every manifest has had them."""
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for name in _MANIFEST_KEYS:
            value = getattr(self, name)
            data[name] = value.to_dict() if isinstance(value, ImageRecord) else value
        if self.drift is not None:
            data["drift"] = self.drift
        return data | self.extra

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """A manifest from its JSON object (any supported schema); ``ValueError`` names why not."""
        checked = upgrade(_schema_checked(data))
        check_manifest(checked)
        known = {name: checked[name] for name in (*_MANIFEST_KEYS, "drift") if name in checked}
        extra = {k: v for k, v in checked.items() if k not in known and k != "schema_version"}
        return cls(**known, extra=extra)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls.from_dict(_read_json(path))

    def write(self, path: Path, redactor: Redactor) -> Path:
        """Check, then write atomically (``_write_checked``)."""
        return _write_checked(self.to_dict(), path, redactor)

    def as_read(self) -> BuildManifest:
        """The record as ``load_manifest`` reads it back once written."""
        return check_manifest(self.to_dict())


_MANIFEST_KEYS = (
    "kind", "rebuild_of", "version", "status", "error", "image", "created", "finished",
    "duration_seconds", "tools", "containerfile", "build_args", "labels", "frappe", "apps",
    "apps_json_sha256", "fingerprint", "workspace", "leak_scan", "log_file", "base_tier",
)  # fmt: skip
# schema_version -> the converter that brings a manifest of that version to the next one
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older manifest to the current schema, one version at a time (nothing older
    than 1 exists yet: ``_UPGRADES`` is empty)."""
    schema = int(data.get("schema_version") or SCHEMA_VERSION)
    while schema < SCHEMA_VERSION:
        data = _UPGRADES[schema](data)
        schema += 1
    return data


def _schema_checked(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or "version" not in data:
        raise ValueError("not an imagekit manifest (no version field)")
    schema = data.get("schema_version")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise ValueError("no schema_version")
    if schema > SCHEMA_VERSION:
        raise ValueError(
            f"written by a newer imagekit (schema {schema} > {SCHEMA_VERSION}): upgrade imagekit"
        )
    return data


def load_manifest(path: Path) -> BuildManifest:
    """Read one manifest; raise ``ValueError`` naming why it cannot be used.

    Manifests are repository content (they arrive through pull requests): every field the code
    uses is checked here, in shape and value, so no reader meets a wrong type or a value that
    could reach git or docker as an option.
    """
    return check_manifest(upgrade(_schema_checked(_read_json(path))))


def read_manifest(path: Path) -> BuildManifest:
    """``load_manifest`` for a manifest that was asked for by name: one that cannot be used is
    a ``NotFoundError`` naming the file and why (listings skip such files instead)."""
    try:
        return load_manifest(path)
    except ValueError as exc:
        raise NotFoundError(
            f"{path.name} cannot be used ({exc}): restore it from git (git checkout -- "
            f"builds/{path.name}) or a backup."
        ) from None


def _read_json(path: Path) -> Any:
    return bounded.read_json(path, "a manifest")


# -- shape and values ----------------------------------------------------------------------
# Each check takes the value and the field's name; it raises ``ValueError`` naming the field.
Check = Callable[[object, str], None]


def _optional(check: Check) -> Check:
    def run(value: object, what: str) -> None:
        if value is not None:
            check(value, what)

    return run


def _string(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")


def _number(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {type(value).__name__}")


def _whole(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, not {type(value).__name__}")


def _flag(value: object, what: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, not {type(value).__name__}")


def _object(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, not {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list, not {type(value).__name__}")
    return value


def _items(value: object, what: str) -> list[object]:
    """A list field that may be absent or null: its items ([] then)."""
    return [] if value is None else _list(value, what)


def _validated(validator: Callable[[object, str], object]) -> Check:
    """A ``validate`` function as a field check: its one sentence becomes the reason."""

    def run(value: object, what: str) -> None:
        try:
            validator(value, what)
        except ImagekitError as exc:
            raise ValueError(exc.message.rstrip(".")) from None

    return run


def _image_ref(value: object, what: str) -> None:
    _string(value, what)
    name, _, tag = str(value).rpartition(":")
    if "/" in tag or not name:
        raise ValueError(f"{what} is not name:tag")
    _validated(validate.image_name)(name, f"{what} (name)")
    _validated(validate.image_tag)(tag, f"{what} (tag)")


def _file_name(value: object, what: str) -> None:
    _string(value, what)
    text = str(value)
    if not text or "/" in text or "\\" in text or text.startswith(".") or "\x00" in text:
        raise ValueError(f"{what} must be a plain file name in builds/")


def _string_map(value: object, what: str) -> None:
    for item in _object(value, what).values():
        _string(item, f"each value of {what}")


def _text_map(value: object, what: str) -> None:
    for item in _object(value, what).values():
        _text(item, f"each value of {what}")


def _fields(data: Mapping[str, object], what: str, checks: Mapping[str, Check]) -> None:
    for key, check in checks.items():
        if key in data:
            check(data[key], f"{what}{key}")


_version = _validated(validate.image_tag)
_text = _optional(_string)
_IMAGE_FIELDS = {
    "name": _optional(_validated(validate.image_name)),
    "tag": _optional(_version),
    "ref": _optional(_image_ref),
    "id": _optional(_validated(validate.not_an_option)),
    "digest": _text,
    "replaced": _optional(_image_ref),
}
_PIN_FIELDS = {
    "name": _string,
    "url": _optional(_validated(validate.repo_url)),
    "ref": _validated(validate.git_ref),
    "ref_kind": _text,
    "sha": _optional(_validated(validate.commit_sha)),
}
_CONTAINERFILE_FIELDS = {"path": _text, "sha256": _text, "content": _text, "apps_json_mode": _text}
_TIER_FIELDS = {
    "ref": _text,
    "key": _text,
    "built": _optional(_flag),
    "containerfile": _text,
}
_LEAK_SCAN_FIELDS = {"status": _text, "seconds": _optional(_number), "layers_from_cache": _optional(_whole)}
_DRIFT_KEYS = ("name", "ref", "use_ref", "status", "recorded_sha", "current_sha", "message")
_TOP_FIELDS = {
    "version": _version,
    "kind": _text,
    "status": _text,
    "created": _text,
    "finished": _text,
    "error": _text,
    "fingerprint": _text,
    "apps_json_sha256": _text,
    "rebuild_of": _optional(_version),
    "log_file": _optional(_file_name),
    "duration_seconds": _optional(_number),
    "build_args": _optional(_string_map),
    "labels": _optional(_string_map),
    "tools": _optional(_text_map),
}


def _pin(value: object, what: str, *, named: bool) -> None:
    pin = _object(value, what)
    if named:
        _validated(validate.not_an_option)(pin.get("name"), f"{what}.name")
    if "ref" not in pin:
        raise ValueError(f"{what} has no ref")
    _fields(pin, f"{what}.", _PIN_FIELDS)


def _image(value: object, what: str) -> None:
    image = _object(value, what)
    _fields(image, f"{what}.", _IMAGE_FIELDS)
    for i, digest in enumerate(_items(image.get("repo_digests"), f"{what}.repo_digests")):
        _string(digest, f"{what}.repo_digests[{i}]")


def _leak_scan(value: object, what: str) -> None:
    scan = _object(value, what)
    _fields(scan, f"{what}.", _LEAK_SCAN_FIELDS)
    for i, finding in enumerate(_items(scan.get("findings"), f"{what}.findings")):
        _object(finding, f"{what}.findings[{i}]")


def _workspace(value: object, what: str) -> None:
    _fields(_object(value, what), f"{what}.", {"git_commit": _text, "dirty": _optional(_flag)})


def _drift(value: object, what: str) -> None:
    for i, item in enumerate(_list(value, what)):
        _fields(_object(item, f"{what}[{i}]"), f"{what}[{i}].", dict.fromkeys(_DRIFT_KEYS, _text))


def _containerfile(value: object, what: str) -> None:
    _fields(_object(value, what), f"{what}.", _CONTAINERFILE_FIELDS)


def _tier(value: object, what: str) -> None:
    _fields(_object(value, what), f"{what}.", _TIER_FIELDS)


def _apps(value: object, what: str) -> None:
    for i, app in enumerate(_list(value, what)):
        _pin(app, f"{what}[{i}]", named=True)


_PARTS: dict[str, Check] = {
    "image": _image,
    "frappe": lambda value, what: _pin(value, what, named=False),
    "apps": _apps,
    "containerfile": _containerfile,
    "leak_scan": _leak_scan,
    "workspace": _workspace,
    "drift": _drift,
    "base_tier": _tier,
}


def check_manifest(data: Mapping[str, object]) -> BuildManifest:
    """``data`` as a ``BuildManifest`` when every field has the type that shape says and every
    value the code passes on is valid; else ``ValueError`` naming the first field that does not
    (never repeating a secret)."""
    _fields(data, "", _TOP_FIELDS)
    for key, check in _PARTS.items():
        if data.get(key) is not None:
            check(data[key], key)
    return cast(BuildManifest, data)  # every field checked above


# -- reading a folder of records ---------------------------------------------------------


def each_json(folder: Path, read: Callable[[Path], T]) -> Iterator[tuple[Path, T | BrokenManifest]]:
    """Each ``folder/*.json`` in name order: what ``read`` makes of it, or why it cannot (its
    ``ValueError``)."""
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            yield path, read(path)
        except ValueError as exc:
            yield path, BrokenManifest(path, str(exc))


def readable(
    items: Iterable[tuple[Path, T | BrokenManifest]],
) -> tuple[list[tuple[Path, T]], list[BrokenManifest]]:
    """``items`` (``iter_manifests``, ``deploy.record.iter_deploy_records``) split: the read
    ones with their file, and those that could not be read."""
    good: list[tuple[Path, T]] = []
    broken: list[BrokenManifest] = []
    for path, item in items:
        if isinstance(item, BrokenManifest):
            broken.append(item)
        else:
            good.append((path, item))
    return good, broken


def iter_manifests(ws: Workspace) -> Iterator[tuple[Path, BuildManifest | BrokenManifest]]:
    """Each ``builds/*.json`` in name order: its manifest, or why it cannot be read."""
    return each_json(ws.builds_dir, load_manifest)


def list_manifests(ws: Workspace) -> tuple[list[BuildManifest], list[BrokenManifest]]:
    """Every readable manifest (any status) and the ones that could not be read."""
    good, broken = readable(iter_manifests(ws))
    return [manifest for _path, manifest in good], broken


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
    Raises ``NotFoundError`` naming the nearest known versions; a version that is not a tag
    (it would name a file outside ``builds/``) is a ``UsageError``.
    """
    validate.image_tag(version, "the version", UsageError)
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
