"""history: list / show / diff over realistic manifests and deploy records (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_history_data import (
    ERPNEXT,
    app,
    default_apps,
    make_deploy,
    make_manifest,
    write,
    write_deploy,
)

from frappe_imagekit import history
from frappe_imagekit.errors import ExitCode, NotFoundError
from frappe_imagekit.manifest import find_manifest, nearest_versions
from frappe_imagekit.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path)


def _three_builds(ws: Workspace) -> None:
    write(ws.builds_dir, make_manifest("v1.1.4", "2026-10-01T09:00:00+00:00"))
    write(ws.builds_dir, make_manifest("v1.1.5", "2026-11-01T10:00:00+00:00"))
    write(ws.builds_dir, make_manifest("v1.10.0", "2026-11-05T08:00:00+00:00"))


def test_lists_newest_first_with_refs_and_short_ids(ws: Workspace) -> None:
    _three_builds(ws)
    listing = history.list_builds(ws)
    assert [r.version for r in listing.rows] == ["v1.10.0", "v1.1.5", "v1.1.4"]
    assert listing.broken == [] and listing.total == 3
    row = listing.rows[1]
    assert row.status == "succeeded" and row.kind == "build"
    assert len(row.short_image_id) == 12 and not row.short_image_id.startswith("sha256")
    assert history.pin_label(row.frappe) == f"version-15@{row.frappe['sha'][:7]}"
    assert [a["name"] for a in row.apps] == ["erpnext", "hrms", "de_macrs"]


def test_limit_keeps_the_newest_and_reports_the_total(ws: Workspace) -> None:
    _three_builds(ws)
    listing = history.list_builds(ws, limit=2)
    assert [r.version for r in listing.rows] == ["v1.10.0", "v1.1.5"]
    assert listing.total == 3
    assert history.list_builds(ws, limit=0).rows == []


def test_empty_workspace_lists_nothing(ws: Workspace) -> None:
    listing = history.list_builds(ws)
    assert (listing.rows, listing.broken, listing.total) == ([], [], 0)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"schema_version": 1, "version": "v1.0.1", "apps": [', "not valid JSON"),
        ("", "not valid JSON"),
        ('{"schema_version": 9, "version": "v1.0.1"}', "newer imagekit (schema 9 > 1)"),
        ('{"version": "v1.0.1"}', "no schema_version"),
        ('["not", "a", "manifest"]', "no version field"),
    ],
)
def test_broken_manifest_is_named_and_the_rest_still_lists(ws: Workspace, content: str, reason: str) -> None:
    _three_builds(ws)
    (ws.builds_dir / "v1.0.1.json").write_text(content)
    listing = history.list_builds(ws)
    assert [r.version for r in listing.rows] == ["v1.10.0", "v1.1.5", "v1.1.4"]
    assert [b.path.name for b in listing.broken] == ["v1.0.1.json"]
    assert reason in listing.broken[0].reason
    assert listing.to_dict()["broken"] == [{"file": "v1.0.1.json", "reason": listing.broken[0].reason}]


def test_failed_builds_are_listed_with_status_failed(ws: Workspace) -> None:
    _three_builds(ws)
    failed = make_manifest("v1.2.0", "2026-11-06T08:00:00+00:00", status="failed")
    write(ws.builds_dir, failed, "v1.2.0.failed-20261106T080000Z.json")
    rows = history.list_builds(ws).rows
    assert (rows[0].version, rows[0].status, rows[0].file) == (
        "v1.2.0",
        "failed",
        "v1.2.0.failed-20261106T080000Z.json",
    )
    assert rows[0].error.startswith("docker build failed")


def test_rebuilds_are_nested_under_their_original(ws: Workspace) -> None:
    _three_builds(ws)
    rebuild = make_manifest("v1.1.4", "2026-11-20T08:00:00+00:00", kind="rebuild", rebuild_of="v1.1.4")
    write(ws.builds_dir, rebuild, "v1.1.4.rebuild-20261120T080000Z.json")
    listing = history.list_builds(ws)
    assert [r.version for r in listing.rows] == ["v1.10.0", "v1.1.5", "v1.1.4"]
    original = listing.rows[2]
    assert [r.file for r in original.rebuilds] == ["v1.1.4.rebuild-20261120T080000Z.json"]
    data = listing.to_dict()["builds"][2]
    assert data["rebuilds"][0]["rebuild_of"] == "v1.1.4" and data["rebuilds"][0]["kind"] == "rebuild"


def test_rebuild_without_its_original_stays_top_level(ws: Workspace) -> None:
    rebuild = make_manifest("v0.9.0", "2026-11-20T08:00:00+00:00", kind="rebuild", rebuild_of="v0.9.0")
    write(ws.builds_dir, rebuild, "v0.9.0.rebuild-20261120T080000Z.json")
    rows = history.list_builds(ws).rows
    assert [(r.version, r.kind) for r in rows] == [("v0.9.0", "rebuild")]


def test_deploy_records_say_where_each_version_runs(ws: Workspace) -> None:
    _three_builds(ws)
    write_deploy(ws.deploys_dir, make_deploy("v1.1.4", "2026-10-02T10:00:00+00:00"))
    write_deploy(ws.deploys_dir, make_deploy("v1.1.5", "2026-11-02T10:00:00+00:00"))
    write_deploy(ws.deploys_dir, make_deploy("v1.1.4", "2026-11-03T10:00:00+00:00", "erp", "prod.example"))
    # a failed deploy of v1.10.0 does not count
    write_deploy(ws.deploys_dir, make_deploy("v1.10.0", "2026-11-06T10:00:00+00:00", result="failed"))
    (ws.deploys_dir / "garbage.json").write_text("{")
    rows = {r.version: r for r in history.list_builds(ws).rows}
    assert rows["v1.1.5"].deployed_to == ["erp@local"]
    assert rows["v1.1.4"].deployed_to == ["erp@prod.example"]  # replaced by v1.1.5 on local
    assert [d["where"] for d in rows["v1.1.4"].deploys] == ["erp@local", "erp@prod.example"]
    assert rows["v1.10.0"].deployed_to == [] and rows["v1.10.0"].deploys == []


def test_show_returns_the_manifest_with_rebuilds_and_deploys(ws: Workspace) -> None:
    _three_builds(ws)
    write_deploy(ws.deploys_dir, make_deploy("v1.1.5", "2026-11-02T10:00:00+00:00"))
    shown = history.show_build(ws, "v1.1.5")
    assert shown["file"] == "v1.1.5.json"
    assert shown["manifest"]["version"] == "v1.1.5"
    assert shown["manifest"]["build_args"]["PYTHON_VERSION"] == "3.11.6"
    assert shown["deployed_to"] == ["erp@local"]
    assert shown["rebuilds"] == []


def test_show_a_version_that_only_failed(ws: Workspace) -> None:
    failed = make_manifest("v1.2.0", "2026-11-06T08:00:00+00:00", status="failed")
    write(ws.builds_dir, failed, "v1.2.0.failed-20261106T080000Z.json")
    shown = history.show_build(ws, "v1.2.0")
    assert shown["manifest"]["status"] == "failed"
    with pytest.raises(NotFoundError, match="v1.2.0 has no successful build, only failed"):
        find_manifest(ws, "v1.2.0")


def test_unknown_version_names_the_nearest(ws: Workspace) -> None:
    _three_builds(ws)
    with pytest.raises(NotFoundError) as info:
        history.show_build(ws, "v1.1.6")
    assert info.value.exit_code == ExitCode.NOT_FOUND
    assert "unknown version v1.1.6" in info.value.message
    assert "v1.1.5" in info.value.message and "v1.10.0" in info.value.message


def test_unknown_version_in_an_empty_workspace(ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="there are no builds"):
        history.show_build(ws, "v1.0.0")


def test_nearest_versions_uses_release_order() -> None:
    known = ["v1.1.4", "v1.1.5", "v1.2.0", "v1.10.0", "v2.0.0"]
    near = nearest_versions("v1.3.0", known)
    assert "v1.2.0" in near and "v1.10.0" in near
    assert near == sorted(near, key=lambda v: tuple(int(x) for x in v[1:].split(".")))


def test_diff_reports_added_removed_moved_and_toolchain(ws: Workspace) -> None:
    apps_a = default_apps()
    apps_b = [
        app("erpnext", ERPNEXT, "v15.18.0"),
        apps_a[2],
        app("payments", "https://github.com/frappe/payments", "version-15", "release-line"),
    ]
    write(ws.builds_dir, make_manifest("v1.1.4", "2026-10-01T09:00:00+00:00", apps=apps_a))
    write(
        ws.builds_dir,
        make_manifest(
            "v1.1.5",
            "2026-11-01T10:00:00+00:00",
            apps=apps_b,
            node="20.19.3",
            containerfile="FROM x\n",
        ),
    )
    diff = history.diff_builds(ws, "v1.1.4", "v1.1.5", offline=True)
    assert [a["name"] for a in diff.apps_added] == ["payments"]
    assert [a["name"] for a in diff.apps_removed] == ["hrms"]
    assert [(c.name, c.old_ref, c.new_ref) for c in diff.changes] == [("erpnext", "v15.17.0", "v15.18.0")]
    assert diff.changes[0].commits is None
    assert diff.changes[0].commits_note == "not counted (--offline)"
    assert diff.args_changed == {"NODE_VERSION": ("20.19.2", "20.19.3")}
    assert diff.containerfile_changed is True and not diff.identical
    data = diff.to_dict()
    assert data["containerfile"]["changed"] is True
    assert json.loads(json.dumps(data)) == data


def test_diff_of_identical_builds(ws: Workspace) -> None:
    write(ws.builds_dir, make_manifest("v1.1.4", "2026-10-01T09:00:00+00:00"))
    write(ws.builds_dir, make_manifest("v1.1.5", "2026-11-01T10:00:00+00:00"))
    diff = history.diff_builds(ws, "v1.1.4", "v1.1.5", offline=True)
    assert diff.identical and diff.containerfile_changed is False and diff.changes == []


def test_diff_frappe_branch_moved_counts_commits(ws: Workspace, monkeypatch) -> None:
    write(ws.builds_dir, make_manifest("v1.1.4", "2026-10-01T09:00:00+00:00"))
    write(
        ws.builds_dir,
        make_manifest(
            "v1.1.5",
            "2026-11-01T10:00:00+00:00",
            frappe_seed="frappe-2",
            apps=default_apps()[:2]
            + [app("de_macrs", default_apps()[2]["url"], "main", "moving-branch", seed="macrs-2")],
        ),
    )
    calls = []

    def fake_count(url, env, token_var, old, new, timeout):
        calls.append((url, token_var, env.get(token_var) if token_var else None))
        return 12 if "frappe" in url else -3

    from frappe_imagekit import gitremote

    # the token variable comes from the current apps.json, never from the manifest
    ws.apps_file.write_text(json.dumps([{"url": default_apps()[2]["url"], "branch": "main"}]))
    monkeypatch.setattr(gitremote, "count_commits_between", fake_count)
    diff = history.diff_builds(ws, "v1.1.4", "v1.1.5", env={"DE_MACRS_PAT": "canary-token-1234"})
    assert [(c.name, c.commits) for c in diff.changes] == [("frappe", 12), ("de_macrs", -3)]
    assert calls[1] == (default_apps()[2]["url"], "DE_MACRS_PAT", "canary-token-1234")
    assert diff.args_changed == {}  # CACHE_BUST differs but is derived from the SHAs


def test_diff_remote_failure_becomes_a_note(ws: Workspace, monkeypatch) -> None:
    from frappe_imagekit import gitremote

    write(ws.builds_dir, make_manifest("v1.1.4", "2026-10-01T09:00:00+00:00"))
    write(ws.builds_dir, make_manifest("v1.1.5", "2026-11-01T10:00:00+00:00", frappe_seed="f2"))

    def refuse(*args, **kwargs):
        raise gitremote.GitUnreachableError("cannot reach https://github.com/frappe/frappe: x.")

    monkeypatch.setattr(gitremote, "count_commits_between", refuse)
    diff = history.diff_builds(ws, "v1.1.4", "v1.1.5")
    assert diff.changes[0].commits is None
    assert diff.changes[0].commits_note.startswith("cannot reach")


def test_diff_unknown_version(ws: Workspace) -> None:
    _three_builds(ws)
    with pytest.raises(NotFoundError, match="unknown version v9"):
        history.diff_builds(ws, "v1.1.4", "v9", offline=True)


def test_diff_finds_the_token_variable_of_a_private_repo_in_apps_json(ws: Workspace, monkeypatch) -> None:
    public = "https://github.com/desiredeffect/de_macrs.git"  # as build records it
    old_apps = [app("de_macrs", public, "main", "moving-branch", seed="m1")]
    new_apps = [app("de_macrs", public, "main", "moving-branch", seed="m2")]
    write(ws.builds_dir, make_manifest("v1.1.4", "2026-10-01T09:00:00+00:00", apps=old_apps))
    write(ws.builds_dir, make_manifest("v1.1.5", "2026-11-01T10:00:00+00:00", apps=new_apps))
    ws.apps_file.write_text(json.dumps([{"url": default_apps()[2]["url"], "branch": "main"}]))
    calls = []

    def fake_count(url, env, token_var, old, new, timeout):
        calls.append((url, token_var))
        return 4

    from frappe_imagekit import gitremote

    monkeypatch.setattr(gitremote, "count_commits_between", fake_count)
    diff = history.diff_builds(ws, "v1.1.4", "v1.1.5", env={"DE_MACRS_PAT": "canary-0123"})
    assert calls == [(default_apps()[2]["url"], "DE_MACRS_PAT")]
    assert [(c.name, c.commits) for c in diff.changes] == [("de_macrs", 4)]


def test_nearest_versions_ignore_attempt_records(ws: Workspace) -> None:
    _three_builds(ws)
    for name in ("v1.1.5.rebuild-20261120T080000Z", "v1.1.5.replaced-20261120T080000Z"):
        write(
            ws.builds_dir,
            make_manifest("v1.1.5", kind="rebuild", rebuild_of="v1.1.5"),
            name + ".json",
        )
    with pytest.raises(NotFoundError) as info:
        find_manifest(ws, "v1.1.50")
    assert "rebuild" not in info.value.message and "replaced" not in info.value.message
    assert "v1.1.5" in info.value.message
