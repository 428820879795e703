"""`imagekit history --diff` against real git (file:// remotes, 127.0.0.1 servers): a manifest is
repository content, so nothing in it may run a command or choose where a token goes (issue 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_history_data import app, make_manifest, write

from tests.support.cli import invoke
from tests.support.githttp import (  # noqa: F401 - fixtures
    AuthCaptureServer,
    attacker,
    git_identity,
    make_remote,
)
from tests.support.workspace import CANARY, make_workspace


@pytest.fixture
def repo(tmp_path: Path, git_identity):  # noqa: F811
    return make_remote(tmp_path / "remotes", "de_macrs", tags=("v0.0.3", "v0.0.4"), annotated=(), branches=())


def _two_builds(ws: Path, old_pin: dict, new_pin: dict) -> None:
    write(ws / "builds", make_manifest("v1.0.0", "2026-10-01T09:00:00+00:00", apps=[old_pin]))
    write(ws / "builds", make_manifest("v1.0.1", "2026-11-01T09:00:00+00:00", apps=[new_pin]))


def _diff(ws: Path):
    result = invoke("history", "-w", str(ws), "--diff", "v1.0.0", "v1.0.1", "--json")
    assert CANARY not in result.stdout + result.stderr
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_crafted_sha_in_a_manifest_runs_nothing(tmp_path: Path, repo) -> None:
    marker = tmp_path / "PWNED"
    ws = make_workspace(tmp_path / "ws", apps=[{"url": repo.url, "branch": "v0.0.4"}])
    old = app("de_macrs", repo.url, "v0.0.3")
    old["sha"] = f"--upload-pack=touch {marker};git-upload-pack"
    new = app("de_macrs", repo.url, "v0.0.4")
    new["sha"] = repo.tags["v0.0.4"]
    _two_builds(ws, old, new)
    # the manifest reader is the boundary: the file is named as unusable, git never runs
    result = invoke("history", "-w", str(ws), "--diff", "v1.0.0", "v1.0.1", "--json")
    assert result.exit_code == 12, result.stderr
    assert "v1.0.0.json cannot be used (apps[0].sha is not a commit SHA" in result.stderr
    assert not marker.exists()


def test_counts_still_work_for_real_shas(tmp_path: Path, repo) -> None:
    ws = make_workspace(tmp_path / "ws", apps=[{"url": repo.url, "branch": "v0.0.4"}])
    old, new = app("de_macrs", repo.url, "v0.0.3"), app("de_macrs", repo.url, "v0.0.4")
    old["sha"], new["sha"] = repo.tags["v0.0.3"], repo.tags["v0.0.4"]
    _two_builds(ws, old, new)
    (change,) = [c for c in _diff(ws)["changes"] if c["name"] == "de_macrs"]
    assert change["commits"] == 1


def test_a_placeholder_url_in_a_manifest_gets_no_token(
    tmp_path: Path,
    repo,
    attacker: AuthCaptureServer,  # noqa: F811
) -> None:
    # the current apps.json names de_macrs at its real place; the manifest points elsewhere
    ws = make_workspace(tmp_path / "ws", apps=[{"url": repo.url, "branch": "v0.0.4"}])
    evil = attacker.url("x.git", "${DE_MACRS_PAT}")
    old, new = app("de_macrs", evil, "v0.0.3"), app("de_macrs", evil, "v0.0.4")
    old["sha"], new["sha"] = repo.tags["v0.0.3"], repo.tags["v0.0.4"]
    _two_builds(ws, old, new)
    (change,) = [c for c in _diff(ws)["changes"] if c["name"] == "de_macrs"]
    assert change["commits"] is None and change["commits_note"]
    assert attacker.requests  # it was asked, anonymously...
    assert not attacker.saw_secret(CANARY)  # ...and never with the token
    assert set(attacker.authorization) == {""}
