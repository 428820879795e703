# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""imagekit deploy over SSH (real sshd on 127.0.0.1) and to a second Docker host."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from frappe_imagekit.cli.main import _load_commands, app
from frappe_imagekit.deploy.sequence import deploy
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.ssh import SSHRunner
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    containers,
    options,
    project,
    remove_project,
    workspace,
)
from tests.support.dockerhost import DockerHost
from tests.support.sshd import SSHServer

_load_commands()


@pytest.fixture
def second_host() -> Iterator[DockerHost]:
    host = DockerHost.start()
    yield host
    host.stop()


def ssh_args(sshd: SSHServer, known_hosts: Path | None = None) -> list[str]:
    return [
        "--host", sshd.spec, "--known-hosts", str(known_hosts or sshd.known_hosts),
        "--identity", str(sshd.client_key),
    ]  # fmt: skip


def test_deploy_over_ssh_two_sites(project: Project, sshd: SSHServer):
    first = CliRunner().invoke(app, project.cli_args("--version", "v1", *ssh_args(sshd), "--json"))
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["result"] == "succeeded" and report["host"] == f"root@127.0.0.1:{sshd.port}"
    assert [s["status"] for s in report["sites"]] == ["ok", "ok"]

    project.site_file("b.local", "fail_patch").write_text(
        'execute:frappe.delete_doc_if_exists("Page", "old page")\n'
    )
    second = CliRunner().invoke(app, project.cli_args("--version", "v2", *ssh_args(sshd)))
    assert second.exit_code == ExitCode.PATCH_FAILED, second.output
    assert 'b.local: FAILED in patch execute:frappe.delete_doc_if_exists("Page", "old page")' in (
        second.output
    )
    audit = [json.loads(line) for line in project.audit_log.read_text().splitlines()]
    assert [(a["version"], a["result"]) for a in audit] == [
        ("v1", "succeeded"),
        ("v2", "patch-failed"),
    ]
    assert audit[-1]["failed_patches"] == ['execute:frappe.delete_doc_if_exists("Page", "old page")']
    assert not project.lock_dir.exists()


def test_unknown_host_key_is_refused_before_anything(project: Project, sshd: SSHServer):
    empty = project.ws / "empty_known_hosts"
    empty.write_text("")
    result = CliRunner().invoke(app, project.cli_args("--version", "v1", *ssh_args(sshd, empty)))
    assert result.exit_code == ExitCode.REMOTE == 7
    assert "is not known" in result.output and "SHA256:" in result.output
    changed = CliRunner().invoke(
        app, project.cli_args("--version", "v1", *ssh_args(sshd, sshd.wrong_known_hosts))
    )
    assert changed.exit_code == ExitCode.REMOTE
    assert "CHANGED" in changed.output
    assert project.services() == {}


def test_image_missing_on_second_host_is_sent_then_deployed(
    project: Project, sshd: SSHServer, second_host: DockerHost
):
    ref = f"{project.repo}:v1"
    assert second_host.docker("image", "inspect", ref).returncode != 0
    runner = SSHRunner(
        sshd.spec,
        known_hosts=sshd.known_hosts,
        identity_file=sshd.client_key,
        docker_host=second_host.url,
    )
    events: list[str] = []
    try:
        dry = deploy(runner, workspace(project), options(project, "v1", dry_run=True))
        assert dry.result == "dry-run" and dry.image_sent is False
        assert f"{ref} is not on {runner.host}: it would be sent." in dry.notes
        assert second_host.docker("image", "inspect", ref).returncode != 0
        report = deploy(runner, workspace(project), options(project, "v1"), on_event=events.append)
    finally:
        runner.close()
        remove_project(project.name, second_host.url)
    assert report.result == "succeeded", report
    assert report.image_sent is True
    # issue 20: the default for an SSH target is the registry tunnel, and the record holds the digest
    assert (
        f"sending {ref} to {runner.host} (local registry and SSH tunnel: only the layers it lacks)" in events
    )
    assert report.image_digest is not None and re.fullmatch(r"sha256:[0-9a-f]{64}", report.image_digest)
    recorded = json.loads(Path(report.record or "").read_text())
    assert recorded["image_digest"] == report.image_digest
    assert second_host.docker("image", "inspect", ref).returncode == 0
    # the transfer happened in preflight, before the lock/down/up window
    assert list(report.timings)[:2] == ["send_image", "preflight"]
    assert report.timings["send_image"] <= report.timings["preflight"]
    assert [s.status for s in report.sites] == ["ok", "ok"]
    assert containers(project.name) == []  # nothing on the main daemon


def test_ctrl_c_during_remote_migrate_releases_the_remote_lock(project: Project, sshd: SSHServer):
    returncode, err = project.interrupt_during_migrate(signal.SIGINT, *ssh_args(sshd))
    assert returncode == ExitCode.INTERRUPTED, err
    assert not project.lock_dir.exists()
    audit = [json.loads(line) for line in project.audit_log.read_text().splitlines()]
    assert audit[-1]["result"] == "interrupted"
    assert project.records()[-1]["host"] == f"root@127.0.0.1:{sshd.port}"


def test_rollback_to_a_second_host_pulls_the_version_by_its_recorded_digest(
    project: Project, sshd: SSHServer, second_host: DockerHost
):
    """Issue 20 item 3: deploy v1 and v2 through the registry tunnel (each record holds its
    digest), drop v1 from the server, roll back: v1 comes back by the digest v1's deploy
    recorded, still in the local registry (no push)."""
    from tests.integration.test_rollback import prepare, rollback_args

    env_file = prepare(project)
    ssh = [*ssh_args(sshd), "--docker-host", second_host.url]
    try:
        for version in ("v1", "v2"):
            done = CliRunner().invoke(
                app, project.cli_args("--version", version, "--env-file", str(env_file), *ssh)
            )
            assert done.exit_code == 0, done.output
        digest = project.records()[0]["image_digest"]
        assert second_host.docker("image", "rm", f"{project.repo}:v1").returncode == 0
        rolled = CliRunner().invoke(app, rollback_args(project, "--yes", *ssh))
    finally:
        remove_project(project.name, second_host.url)
    assert rolled.exit_code == 0, rolled.output
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert f"{project.repo}:v1 is in the local registry as {digest}: pulling by that digest" in rolled.output
    assert "pushing " not in rolled.output
    last = project.records()[-1]
    assert (last["kind"], last["version"], last["image_digest"]) == ("rollback", "v1", digest)
    shown = second_host.docker("image", "inspect", "--format", "{{.Id}}", f"{project.repo}:v1").stdout.strip()
    assert shown.startswith("sha256:")
