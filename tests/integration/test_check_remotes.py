"""`imagekit check` resolving refs against real git remotes: file:// and smart HTTP with basic auth."""

import json
import os
import time

import pytest

from tests.support.cli import invoke
from tests.support.githttp import GitHTTPServer, HangingServer, make_remote
from tests.support.githttp import git_identity as git_identity  # noqa: F401 (fixture)
from tests.support.workspace import CANARY, make_workspace

pytestmark = pytest.mark.integration


@pytest.fixture
def remotes(tmp_path, git_identity):
    root = tmp_path / "remotes"
    frappe = make_remote(root, "frappe", tags=("v15.40.0",), annotated=(), branches=("version-15",))
    erpnext = make_remote(root, "erpnext")
    private = make_remote(root, "de_macrs", tags=("v0.0.4",), annotated=("v0.0.4",), branches=())
    return frappe, erpnext, private


@pytest.fixture
def server(remotes):
    with GitHTTPServer(remotes[0].bare.parent, tokens=[CANARY]) as srv:
        yield srv


def workspace(tmp_path, frappe, apps, **env):
    return make_workspace(tmp_path / "ws", env={"FRAPPE_PATH": frappe.url, **env}, apps=apps)


def run_check(ws, *extra):
    result = invoke("check", "-w", str(ws), "--json", *extra)
    assert CANARY not in result.stdout + result.stderr
    return result, json.loads(result.stdout)


def test_every_ref_resolves_to_its_sha(tmp_path, remotes, server):
    frappe, erpnext, private = remotes
    apps = [
        {"url": erpnext.url, "branch": "v15.17.0"},
        {"url": server.url("de_macrs.git", "${DE_MACRS_PAT}"), "branch": "v0.0.4"},
    ]
    result, report = run_check(workspace(tmp_path, frappe, apps))
    assert result.exit_code == 0, result.stderr
    assert report["frappe"]["sha"] == frappe.branches["version-15"]
    assert report["frappe"]["ref_kind"] == "release-line"
    assert [(a["name"], a["sha"], a["status"]) for a in report["apps"]] == [
        ("erpnext", erpnext.tags["v15.17.0"], "ok"),
        ("de_macrs", private.tags["v0.0.4"], "ok"),
    ]
    assert report["apps"][1]["url"] == server.url("de_macrs.git")


def test_moving_branch_warns_and_strict_fails(tmp_path, remotes):
    frappe, erpnext, _ = remotes
    ws = workspace(tmp_path, frappe, [{"url": erpnext.url, "branch": "develop"}])
    result, report = run_check(ws)
    assert result.exit_code == 0
    assert report["apps"][0]["status"] == "moving"
    assert any(f["code"] == "pin-moving" and f["level"] == "warning" for f in report["findings"])
    result, report = run_check(ws, "--strict")
    assert result.exit_code == 1
    assert any(f["code"] == "pin-moving" and f["level"] == "error" for f in report["findings"])


def test_missing_ref_lists_closest_tags(tmp_path, remotes):
    frappe, erpnext, _ = remotes
    ws = workspace(tmp_path, frappe, [{"url": erpnext.url, "branch": "v15.17.1"}])
    result = invoke("check", "-w", str(ws))
    assert result.exit_code == 1
    assert "v15.17.1" in result.stderr and "v15.17.0" in result.stderr


def test_wrong_token_names_the_variable_and_never_the_token(tmp_path, remotes, server):
    frappe, _, _ = remotes
    apps = [{"url": server.url("de_macrs.git", "${DE_MACRS_PAT}"), "branch": "v0.0.4"}]
    wrong = "ghp_WRONGwrongWRONGwrong000000"
    ws = workspace(tmp_path, frappe, apps, DE_MACRS_PAT=wrong)
    result = invoke("check", "-w", str(ws))
    assert result.exit_code == 1
    assert "DE_MACRS_PAT" in result.stderr and "expired" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert server.rejected >= 1  # a real 401 was served


def test_unreachable_and_hanging_remotes_fail_fast(tmp_path, remotes):
    frappe, _, _ = remotes
    hanging = HangingServer()
    try:
        apps = [{"url": f"http://127.0.0.1:{hanging.port}/app.git", "branch": "v1.0.0"}]
        ws = workspace(tmp_path, frappe, apps)
        started = time.monotonic()
        result = invoke("check", "-w", str(ws), env={"IMAGEKIT_GIT_TIMEOUT": "3"})
        assert time.monotonic() - started < 30
        assert result.exit_code == 1
        assert "app" in result.stderr
    finally:
        hanging.stop()
    assert os.environ.get("IMAGEKIT_GIT_TIMEOUT") is None


# -- issue 8: a URL or ref that breaks a rule is never sent to git -------------------------------


def test_option_shaped_urls_and_frappe_path_never_run_a_command(tmp_path, remotes):
    frappe, erpnext, _ = remotes
    marker = tmp_path / "PWNED"
    evil = f"--upload-pack=touch {marker};git-upload-pack"
    apps = [{"url": evil, "branch": "v15.17.0"}, {"url": erpnext.url, "branch": "v15.17.0"}]
    for ws in (
        workspace(tmp_path / "a", frappe, apps),
        make_workspace(tmp_path / "b" / "ws", env={"FRAPPE_PATH": evil}, apps=apps[1:]),
    ):
        result, report = run_check(ws)
        assert result.exit_code == 1
        (error,) = [f for f in report["findings"] if f["code"] == "url-option"]
        assert "cannot start with '-'" in error["message"] and error["level"] == "error"
        pins = [report["frappe"], *report["apps"]]
        assert [p["status"] for p in pins if p["url"] is None] == ["skipped"]  # not repeated
        assert str(marker) not in json.dumps(pins)
        assert report["apps"][-1]["status"] == "ok"  # the good entry is still resolved
    assert not marker.exists()


def test_a_url_without_scheme_and_a_bad_ref_are_not_resolved(tmp_path, remotes, server):
    frappe, erpnext, _ = remotes
    apps = [
        {"url": str(erpnext.bare), "branch": "v15.17.0"},  # a path: "no scheme"
        {"url": server.url("de_macrs.git", "${DE_MACRS_PAT}"), "branch": "--upload-pack=x"},
        {"url": server.url("${DE_MACRS_PAT}/de_macrs.git"), "branch": "v0.0.4"},
    ]
    result, report = run_check(workspace(tmp_path, frappe, apps))
    assert result.exit_code == 1
    codes = [f["code"] for f in report["findings"] if f["level"] == "error"]
    assert codes == ["apps-scheme", "apps-ref", "url-placeholder-place"]
    assert [a["status"] for a in report["apps"]] == ["skipped", "skipped", "skipped"]
    assert report["frappe"]["status"] == "ok"
    assert server.requests == []  # nothing was asked of the server, so no token went anywhere
