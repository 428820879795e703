"""appslock: apps.lock.json written, read back through validate, applied to a build's pins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit import appslock
from frappe_imagekit.errors import ConfigError
from frappe_imagekit.workspace import Workspace

FRAPPE = {"name": "frappe", "url": "https://github.com/frappe/frappe", "ref": "version-15",
          "ref_kind": "release-line", "sha": "a" * 40}  # fmt: skip
APPS = [
    {"name": "erpnext", "url": "https://github.com/frappe/erpnext", "ref": "v15.17.0", "sha": "b" * 40},
    {"name": "de_macrs", "url": "https://${DE_MACRS_PAT}@github.com/d/de_macrs.git", "ref": "develop",
     "sha": "c" * 40},
]  # fmt: skip


def _ws(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path)


def test_lock_file_round_trip_keeps_placeholders_and_order(tmp_path: Path) -> None:
    path = appslock.write_lock(_ws(tmp_path), FRAPPE, APPS)
    assert path == tmp_path / "apps.lock.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    assert data["frappe"] == {"name": "frappe", "url": FRAPPE["url"], "ref": "version-15", "sha": "a" * 40}
    assert [a["name"] for a in data["apps"]] == ["erpnext", "de_macrs"]
    assert data["apps"][1]["url"] == "https://${DE_MACRS_PAT}@github.com/d/de_macrs.git"
    assert list(appslock.read_lock(path)) == ["frappe", "erpnext", "de_macrs"]
    assert appslock.read_lock(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["apps"][0].update(sha="abc"),
        lambda d: d["apps"][0].update(ref="--upload-pack=x"),
        lambda d: d["apps"][0].update(url="https://h/x\nurl.y=https://evil"),
        lambda d: d["apps"][0].update(name="../etc"),
        lambda d: d.update(schema_version=2),
        lambda d: d.pop("frappe"),
        lambda d: d.update(apps={"x": 1}),
    ],
)
def test_a_hostile_or_foreign_lock_is_refused_with_the_fix(tmp_path: Path, edit) -> None:
    path = appslock.write_lock(_ws(tmp_path), FRAPPE, APPS)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"run `imagekit lock` to write it again"):
        appslock.read_lock(path)


def test_apply_lock_keeps_matching_commits_and_names_changed_added_and_removed() -> None:
    lock = {e["name"]: {k: e[k] for k in ("name", "url", "ref", "sha")} for e in [FRAPPE, *APPS]}
    moved = [{**APPS[0], "sha": "d" * 40}, {**APPS[1], "ref": "main", "sha": "e" * 40}]
    added = {"name": "hrms", "url": "https://github.com/frappe/hrms", "ref": "v15.1.0", "sha": "f" * 40}
    use = appslock.apply_lock(lock, {**FRAPPE, "sha": "9" * 40}, [moved[0], moved[1], added])
    assert use.frappe["sha"] == "a" * 40 and use.frappe["ref_kind"] == "release-line"
    assert [a["sha"] for a in use.apps] == ["b" * 40, "e" * 40, "f" * 40]
    assert use.changed == ["de_macrs", "hrms"]
    assert appslock.apply_lock(lock, FRAPPE, APPS[:1]).changed == ["de_macrs (removed)"]


def test_use_lock_updates_a_stale_lock_and_says_so(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    appslock.write_lock(ws, FRAPPE, APPS)
    bumped = [APPS[0], {**APPS[1], "ref": "main", "sha": "e" * 40}]
    dry = appslock.use_lock(ws, dict(FRAPPE), bumped, exact=True, frozen=False, dry_run=True)
    assert dry.note == "apps.lock.json: de_macrs resolved again; would update the lock"
    assert json.loads((tmp_path / "apps.lock.json").read_text())["apps"][1]["ref"] == "develop"
    use = appslock.use_lock(ws, dict(FRAPPE), bumped, exact=True, frozen=False, dry_run=False)
    assert use.note == "apps.lock.json: de_macrs resolved again; updated the lock"
    assert json.loads((tmp_path / "apps.lock.json").read_text())["apps"][1]["sha"] == "e" * 40
    again = appslock.use_lock(ws, dict(FRAPPE), bumped, exact=True, frozen=True, dry_run=False)
    assert again.note == "apps.lock.json: every commit taken from the lock" and again.changed == []


def test_frozen_refuses_a_missing_or_stale_lock_and_a_users_own_containerfile(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    with pytest.raises(ConfigError, match=r"--frozen needs apps.lock.json: run `imagekit lock`"):
        appslock.use_lock(ws, dict(FRAPPE), list(APPS), exact=True, frozen=True, dry_run=False)
    unlocked = appslock.use_lock(ws, dict(FRAPPE), list(APPS), exact=True, frozen=False, dry_run=False)
    assert unlocked.note is None and unlocked.apps == APPS
    appslock.write_lock(ws, FRAPPE, APPS)
    hrms = {"name": "hrms", "url": "https://github.com/frappe/hrms", "ref": "v15.1.0", "sha": "f" * 40}
    added = [*APPS, hrms]
    with pytest.raises(ConfigError, match=r"apps.lock.json is stale for hrms \(changed in apps.json"):
        appslock.use_lock(ws, dict(FRAPPE), added, exact=True, frozen=True, dry_run=False)
    assert "hrms" not in (tmp_path / "apps.lock.json").read_text()  # nothing written on refusal
    with pytest.raises(ConfigError, match=r"needs imagekit's Containerfile"):
        appslock.use_lock(ws, dict(FRAPPE), list(APPS), exact=False, frozen=True, dry_run=False)
    own = appslock.use_lock(ws, dict(FRAPPE), list(APPS), exact=False, frozen=False, dry_run=False)
    assert own.note == "apps.lock.json is not used with your own Containerfile (it clones by ref)"
    assert own.apps == APPS
