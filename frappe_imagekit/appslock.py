"""``apps.lock.json``: the resolved commit of frappe and every app, for review in pull requests.

``imagekit lock`` writes it next to apps.json (``write_lock``). ``build`` with imagekit's
Containerfile uses it (``use_lock``): an entry whose name, URL and ref still match apps.json (and
FRAPPE_PATH / FRAPPE_BRANCH for frappe) keeps its locked commit; a changed or added entry keeps
the commit just resolved and the lock is updated (the plan says which); ``frozen`` refuses a
missing or stale lock instead. Every value read back goes through ``validate``; URLs are
token-free (``${VAR}`` placeholders kept, as in manifests).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frappe_imagekit import bounded, validate
from frappe_imagekit.build.records import LockEntry, LockFile, PinRecord
from frappe_imagekit.check import run_check
from frappe_imagekit.errors import ConfigError, DriftError
from frappe_imagekit.workspace import Workspace, write_text_atomic

LOCK_NAME = "apps.lock.json"
SCHEMA_VERSION = 1


@dataclass
class LockUse:
    """What the build takes from the lock; ``frappe``/``apps`` are the pins to build."""

    frappe: PinRecord
    apps: list[PinRecord]
    changed: list[str] = field(default_factory=list)  # re-resolved: changed, added or removed
    note: str | None = None


def lock_path(ws: Workspace) -> Path:
    return ws.lock_file


def lock_data(frappe: PinRecord, apps: Sequence[PinRecord]) -> LockFile:
    """The lock file's content for these pins (apps in apps.json order)."""
    return {"schema_version": SCHEMA_VERSION, "frappe": _entry(frappe), "apps": [_entry(app) for app in apps]}


def lock_text(frappe: PinRecord, apps: Sequence[PinRecord]) -> str:
    """The lock file for these pins (stable: the keys in one order, apps in apps.json order)."""
    return json.dumps(lock_data(frappe, apps), indent=2) + "\n"


def _entry(pin: PinRecord) -> LockEntry:
    return {"name": pin["name"], "url": pin["url"], "ref": pin["ref"] or "", "sha": pin["sha"] or ""}


def write_lock(ws: Workspace, frappe: PinRecord, apps: Sequence[PinRecord]) -> Path:
    path = lock_path(ws)
    write_text_atomic(path, lock_text(frappe, apps))
    return path


def read_lock(path: Path) -> dict[str, LockEntry] | None:
    """``{name: entry}`` of frappe and every app, or None when there is no lock file."""
    try:
        text = bounded.read_text(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path.name} ({exc.strerror}): fix its permissions.") from None
    except ValueError as exc:  # too large, or not UTF-8
        raise ConfigError(
            f"{path.name} cannot be used ({exc}): run `imagekit lock` to write it again."
        ) from None
    try:
        data = json.loads(bounded.check_json(text))
        entries = [data["frappe"], *data["apps"]]
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError("schema_version")
        return {checked["name"]: checked for checked in (_checked(e) for e in entries)}
    except (ValueError, KeyError, TypeError, AttributeError, ConfigError):
        raise ConfigError(
            f"{path.name} is not a lock file imagekit wrote (schema_version {SCHEMA_VERSION}, "
            "frappe and apps with name, url, ref, sha): run `imagekit lock` to write it again."
        ) from None


def _checked(entry: Mapping[str, Any]) -> LockEntry:
    name = str(entry["name"])
    if name != "frappe":
        validate.app_name(name, "an app name in apps.lock.json")
    return {
        "name": name,
        "url": validate.git_url(entry["url"], f"the URL of {name} in apps.lock.json"),
        "ref": validate.git_ref(entry["ref"], f"the ref of {name} in apps.lock.json"),
        "sha": validate.commit_sha(entry["sha"], f"the commit of {name} in apps.lock.json"),
    }


def apply_lock(
    lock: Mapping[str, LockEntry],
    frappe: PinRecord,
    apps: Sequence[PinRecord],
    tags: Collection[str] = (),
) -> LockUse:
    """Locked commits for the pins that still match; the names of those that do not.

    ``tags`` names the pins whose ref is a tag on the remote: their ``sha`` is the tag's
    commit just listed by ``git ls-remote`` (an annotated tag's peeled ``^{}`` commit), and a
    lock entry naming another commit is refused (``DriftError``). A branch entry's commit is a
    pin by design: it stays whatever the branch does.
    """
    pins = [frappe.copy(), *(a.copy() for a in apps)]
    changed = []
    for pin in pins:
        locked = lock.get(pin["name"])
        if locked and locked["url"] == pin["url"] and locked["ref"] == pin["ref"]:
            if pin["name"] in tags and locked["sha"] != pin["sha"]:
                raise tag_mismatch(pin["name"], pin["ref"], locked["sha"], str(pin["sha"]))
            pin["sha"] = locked["sha"]
        else:
            changed.append(pin["name"])
    names = {p["name"] for p in pins}
    changed += [f"{name} (removed)" for name in lock if name not in names]
    return LockUse(pins[0], pins[1:], changed)


def tag_mismatch(name: str, tag: str, locked: str, remote: str) -> DriftError:
    """The refusal of a lock entry whose tag names another commit than the remote's tag."""
    return DriftError(
        f"{LOCK_NAME} pins {name} at {locked} for tag {tag}, but the remote's tag {tag} is commit "
        f"{remote}: restore {LOCK_NAME} from review, or run `imagekit lock` again if the tag was "
        "moved on purpose."
    )


def use_lock(
    ws: Workspace,
    frappe: PinRecord,
    apps: list[PinRecord],
    *,
    exact: bool,
    frozen: bool,
    dry_run: bool,
    tags: Collection[str] = (),
) -> LockUse:
    """The pins a build uses, given apps.lock.json (see the module docstring)."""
    path = lock_path(ws)
    lock = read_lock(path)
    if not exact:
        if frozen:
            raise ConfigError(
                "--frozen builds the commits of apps.lock.json, which needs imagekit's Containerfile "
                "(yours clones by ref): leave out --containerfile and CONTAINERFILE, or --frozen."
            )
        note = f"{LOCK_NAME} is not used with your own Containerfile (it clones by ref)" if lock else None
        return LockUse(frappe, apps, note=note)
    if lock is None:
        if frozen:
            raise ConfigError(f"--frozen needs {LOCK_NAME}: run `imagekit lock` and commit the file.")
        return LockUse(frappe, apps)
    use = apply_lock(lock, frappe, apps, tags)
    if use.changed and frozen:
        raise ConfigError(
            f"{LOCK_NAME} is stale for {', '.join(use.changed)} (changed in apps.json or .env): run "
            "`imagekit lock` and commit the file, or build without --frozen."
        )
    if use.changed and not dry_run:
        write_lock(ws, use.frappe, use.apps)
    if use.changed:
        verb = "would update" if dry_run else "updated"
        use.note = f"{LOCK_NAME}: {', '.join(use.changed)} resolved again; {verb} the lock"
    else:
        use.note = f"{LOCK_NAME}: every commit taken from the lock"
    return use


def lock_workspace(ws: Workspace) -> tuple[Path, LockFile]:
    """Check the workspace (resolving every ref), write the lock; returns its path and content."""
    report = run_check(ws, offline=False, strict=False, check_version_is_new=False)
    if report.has_errors:
        first = report.errors[0].message.rstrip(".")
        raise ConfigError(
            f"imagekit check found {len(report.errors)} error(s), first: {first} "
            "(run `imagekit check` for all of them and fix them before locking)."
        )
    pins = [p.record() for p in report.config.all_pins]
    unresolved = [p["name"] for p in pins if not p.get("sha")]
    if report.config.frappe is None or unresolved:
        names = ", ".join(unresolved) or "frappe"
        raise ConfigError(f"cannot lock unresolved refs ({names}): fix them (see `imagekit check`).")
    return write_lock(ws, pins[0], pins[1:]), lock_data(pins[0], pins[1:])
