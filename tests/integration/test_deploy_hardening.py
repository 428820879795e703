# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""Deploy inputs that are refused before anything stops, and state files that cannot be used,
against the real daemon and docker-compose with the fake bench image."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from frappe_imagekit.deploy.sequence import deploy
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.runner import LocalRunner
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    deployed_v1,
    options,
    project,
    workspace,
)
from tests.support.cli import cli

pytestmark = pytest.mark.integration
CANARY = "ghp_" + "c4n4ry" * 6


def _running(project: Project) -> dict[str, str]:
    """service -> container id of the running containers."""
    return {name: c["Id"] for name, c in project.services().items() if c["State"]["Status"] == "running"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def running(project: Project) -> Project:
    report = deploy(LocalRunner(), workspace(project), options(project, "v1"))
    assert report.result == "succeeded"
    return project


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image-var", "A=B"], "--image-var 'A=B' is not a variable name"),
        (["--tag-var", "CUSTOM_TAG;rm"], "--tag-var 'CUSTOM_TAG;rm' is not a variable name"),
        (["--backend-service", "-x"], "--backend-service '-x' is not a compose service name"),
        (["--sites", "a.local,../b"], "a --sites entry '../b' is not a valid site name"),
        (["--env-file", "--x"], "--env-file '--x' cannot start with '-'"),
    ],
)
def test_a_bad_option_stops_nothing_and_records_nothing(deployed_v1: Project, extra: list[str], message: str):
    before, records = _running(deployed_v1), len(deployed_v1.records())
    result = cli(*deployed_v1.cli_args("--version", "v2", *extra))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.output and "Traceback" not in result.output
    assert _running(deployed_v1) == before  # the same containers, still running
    assert len(deployed_v1.records()) == records


def test_a_project_name_that_is_a_path_writes_nothing_outside(deployed_v1: Project, tmp_path: Path):
    escape = "../../../" + deployed_v1.name + "-escaped"
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    result = cli(*deployed_v1.cli_args("--version", "v2", "--project", escape))
    assert result.exit_code == ExitCode.USAGE
    assert "is not a compose project name" in result.output
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert not list(deployed_v1.state.rglob("*escaped*")) and len(deployed_v1.records()) == 1


def test_a_name_compose_would_change_is_refused(deployed_v1: Project):
    before = _running(deployed_v1)
    result = cli(*deployed_v1.cli_args("--version", "v2", "--project", deployed_v1.name.upper()))
    assert result.exit_code == ExitCode.USAGE
    assert f"(compose would use {deployed_v1.name!r})" in result.output
    assert _running(deployed_v1) == before and len(deployed_v1.records()) == 1


def test_state_folder_and_the_env_copy_are_private(project: Project):
    env_file = project.folder / "deploy.env"
    env_file.write_text(f"SITE_NAME=erp.example\nDB_PASSWORD={CANARY}\n")
    env_file.chmod(0o644)
    report = deploy(LocalRunner(), workspace(project), options(project, "v1", env_file=str(env_file)))
    assert report.result == "succeeded"
    folder = project.state / "projects" / project.name
    assert _mode(folder) == 0o700
    assert CANARY in (folder / "env").read_text()
    for name in ("env", "compose.yaml", "last-up.json", "audit.log"):
        assert _mode(folder / name) == 0o600, name


WRONG_SHAPES = [
    ("[]", "not a JSON object"),
    ('{"config_files": 5, "sha256": "x"}', "config_files must be a string"),
    ('{"config_files": "/x", "sha256": "y", "env": {"A=B": "1"}}', "is not a variable name"),
    ("{", "not valid JSON"),
]


def test_a_last_up_of_the_wrong_shape_is_treated_as_missing(running: Project):
    """One stack for the four shapes (each was a test with its own v1 deploy): each shape is
    written over the last up, and a deploy of v2 goes on without it and writes it anew."""
    last_up = running.state / "projects" / running.name / "last-up.json"
    for content, reason in WRONG_SHAPES:
        last_up.write_text(content)
        report = deploy(LocalRunner(), workspace(running), options(running, "v2"))
        assert report.result == "succeeded", (content, report.error)
        cannot, missing = "last-up.json cannot be used (", "treated as missing"
        notes = [n for n in report.notes if cannot in n and missing in n]
        assert len(notes) == 1 and reason in notes[0], (content, report.notes)
        assert running.services()["backend"]["Config"]["Image"] == f"{running.repo}:v2"
        assert json.loads(last_up.read_text())["version"] == "v2"  # rewritten by this up


def test_lock_details_of_the_wrong_shape_still_lock(running: Project):
    running.lock_dir.mkdir(parents=True)
    (running.lock_dir / "details.json").write_text('["who", 1]')
    before = _running(running)
    result = cli(*running.cli_args("--version", "v2"))
    assert result.exit_code == ExitCode.LOCKED, result.output
    assert "locked by another deploy (no usable details yet)" in result.output
    assert _running(running) == before
    unlocked = cli("unlock", "--project", running.name, "--state-dir", str(running.state))
    assert unlocked.exit_code == 0 and not running.lock_dir.exists()
