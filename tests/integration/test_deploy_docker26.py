# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""imagekit deploy over SSH to the Debian 13 test host: Docker 26.1 and Compose v2 (2.26).

The same compose project as test_deploy.py (the fake bench image, two sites) is deployed with
real SSH to the host container; the session's tmp folder is mounted at the same path inside, so
the compose file, the sites and the state folder are the same paths on the target. The images
are only on this machine's daemon: every first deploy sends them over SSH. The v1 path
(docker-compose 1.29) stays covered by test_deploy.py on this machine's dockerd.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from frappe_imagekit.deploy import compose
from frappe_imagekit.deploy.sequence import DeployFailed, deploy
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.runner import this_host
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
from tests.support.cli import cli
from tests.support.debian13 import Debian13Host

pytestmark = pytest.mark.integration


@pytest.fixture
def target(debian13_host: Debian13Host, debian13_socket: Path, project: Project) -> Iterator[str]:
    """DOCKER_HOST of the Debian 13 daemon (for reading containers); removes the project there."""
    url = f"unix://{debian13_socket}"
    yield url
    remove_project(project.name, url)
    debian13_host.docker_in("rmi", f"{project.repo}:v1", f"{project.repo}:v2")


def ssh_args(host: Debian13Host) -> list[str]:
    return ["--host", host.spec, "--known-hosts", str(host.known_hosts), "--identity", str(host.client_key)]


def runner(host: Debian13Host) -> SSHRunner:
    return SSHRunner(host.spec, known_hosts=host.known_hosts, identity_file=host.client_key)


def run_deploy(host: Debian13Host, project: Project, version: str = "v1", **kwargs):  # type: ignore[no-untyped-def]
    ssh = runner(host)
    try:
        return deploy(ssh, workspace(project), options(project, version, **kwargs))
    finally:
        ssh.close()


def test_compose_v2_is_detected_on_docker_26(debian13_host: Debian13Host):
    ssh = runner(debian13_host)
    try:
        found = compose.detect_compose(ssh)
        server = ssh.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    finally:
        ssh.close()
    assert found.is_v2 and found.base == ("docker", "compose")
    assert found.version.startswith("2.26.")
    assert server.stdout.startswith("26.1.")


def test_two_sites_then_upgrade_sends_the_image_and_names_containers_the_v2_way(
    project: Project, debian13_host: Debian13Host, target: str
):
    first = cli(*project.cli_args("--version", "v1", *ssh_args(debian13_host), "--json"))
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["result"] == "succeeded" and report["image_sent"] is True
    assert report["host"] == debian13_host.spec
    assert [(s["site"], s["status"]) for s in report["sites"]] == [("a.local", "ok"), ("b.local", "ok")]
    services = project.services(target)
    assert {s: c["Name"] for s, c in services.items()} == {
        s: f"/{project.name}-{s}-1" for s in ("configurator", "backend", "queue")
    }  # v2: project-service-1 (v1 writes project_service_1)
    assert services["backend"]["Config"]["Image"] == f"{project.repo}:v1"
    assert services["backend"]["Config"]["Labels"][compose.CONFIG_FILES_LABEL] == str(project.compose)
    assert services["configurator"]["State"]["ExitCode"] == 0

    second = run_deploy(debian13_host, project, "v2")
    assert second.result == "succeeded", second.error
    assert project.services(target)["backend"]["Config"]["Image"] == f"{project.repo}:v2"
    for site in second.sites:  # backups from the running v1 backend, on the target's sites folder
        assert site.backup.startswith(f"sites/{site.site}/private/backups/")
        assert (project.folder / site.backup).is_file()
    records = project.records()
    assert [(r["version"], r["result"], r["host"]) for r in records] == [
        ("v1", "succeeded", debian13_host.spec),
        ("v2", "succeeded", debian13_host.spec),
    ]
    assert not project.lock_dir.exists()
    assert containers(project.name) == []  # nothing on this machine's daemon


def test_failing_patch_exit_9_names_the_line(project: Project, debian13_host: Debian13Host, target: str):
    project.site_file("b.local", "fail_patch").write_text(
        'execute:frappe.delete_doc_if_exists("Page", "old page")\n'
    )
    result = cli(*project.cli_args("--version", "v1", *ssh_args(debian13_host)))
    assert result.exit_code == ExitCode.PATCH_FAILED, result.output
    assert 'b.local: FAILED in patch execute:frappe.delete_doc_if_exists("Page", "old page")' in (
        result.output
    )
    assert project.records()[-1]["failed_patches"] == [
        'execute:frappe.delete_doc_if_exists("Page", "old page")'
    ]
    assert not project.lock_dir.exists()


def test_renamed_service_leaves_no_orphan(project: Project, debian13_host: Debian13Host, target: str):
    assert run_deploy(debian13_host, project, "v1").result == "succeeded"
    project.compose.write_text(project.compose.read_text().replace("  queue:", "  worker:"))

    report = run_deploy(debian13_host, project, "v2", force=True)  # queue goes: refused without --force

    assert report.result == "succeeded", report.error
    assert any("changed since the last up" in note for note in report.notes)
    services = project.services(target)
    assert set(services) == {"configurator", "backend", "worker"}
    assert services["worker"]["Name"] == f"/{project.name}-worker-1"


def test_healthcheck_is_waited_for(project: Project, debian13_host: Debian13Host, target: str):
    text = project.compose.read_text().replace(
        "  backend:\n",
        "  backend:\n    healthcheck:\n"
        '      test: ["CMD", "sh", "-c", "test -f /tmp/up || { touch /tmp/up; exit 1; }"]\n'
        "      interval: 1s\n      retries: 30\n",
    )
    project.compose.write_text(text)
    report = run_deploy(debian13_host, project, "v1")
    assert report.result == "succeeded", report.error
    assert project.services(target)["backend"]["State"]["Health"]["Status"] == "healthy"


def test_crashing_service_shows_its_logs(project: Project, debian13_host: Debian13Host, target: str):
    text = project.compose.read_text().replace(
        '"echo configured; ls sites"', '"echo config broken >&2; exit 3"'
    )
    project.compose.write_text(text)
    with pytest.raises(DeployFailed) as info:
        run_deploy(debian13_host, project, "v1")
    message = str(info.value)
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert f"service configurator ({project.name}-configurator-1) exited with code 3" in message
    assert "config broken" in message


def test_lock_held_is_refused_then_waited_for(project: Project, debian13_host: Debian13Host, target: str):
    project.lock_dir.mkdir(parents=True)
    holder = {"who": "alice", "when": "2026-11-21T05:00:00+00:00", "host": debian13_host.spec,
              "version": "v9", "pid": 1, "hostname": this_host()}  # fmt: skip
    (project.lock_dir / "details.json").write_text(json.dumps(holder))

    result = cli(*project.cli_args("--version", "v1", *ssh_args(debian13_host)))
    assert result.exit_code == ExitCode.LOCKED, result.output
    assert "locked by alice" in result.output and "deploying v9" in result.output
    assert project.services(target) == {}

    threading.Timer(1.0, lambda: _rmtree(project.lock_dir)).start()
    assert run_deploy(debian13_host, project, "v1", lock_wait=20).result == "succeeded"


def test_ctrl_c_during_migrate_releases_the_lock(project: Project, debian13_host: Debian13Host, target: str):
    returncode, err = project.interrupt_during_migrate(signal.SIGINT, *ssh_args(debian13_host))
    assert returncode == ExitCode.INTERRUPTED, err
    assert not project.lock_dir.exists()
    audit = [json.loads(line) for line in project.audit_log.read_text().splitlines()]
    assert audit[-1]["result"] == "interrupted"


def test_config_output_resolves_the_image_on_compose_v2(
    project: Project, debian13_host: Debian13Host, target: str
):
    env = f"CUSTOM_IMAGE={project.repo}\nCUSTOM_TAG=v1\n"
    (project.folder / "config.env").write_text(env)
    done = debian13_host.ssh(
        "docker", "compose", "-p", project.name, "-f", str(project.compose),
        "--env-file", str(project.folder / "config.env"), "config", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["name"] == project.name
    assert {s: c["image"] for s, c in config["services"].items()} == {
        s: f"{project.repo}:v1" for s in ("configurator", "backend", "queue")
    }
    # v2 drops the obsolete top-level `version:` (with a warning) and writes bind mounts long-form
    assert "version" not in config
    assert config["services"]["backend"]["volumes"][0]["source"] == str(project.folder / "sites")


def test_up_wait_fails_on_the_one_shot_configurator_so_deploy_waits_itself(
    project: Project, debian13_host: Debian13Host, target: str
):
    # Why compose.up_args never passes --wait: compose 2.26 reports a one-shot service that
    # exited 0 (frappe_docker's configurator) as a failure. If a later compose accepts it, this
    # test fails and --wait can replace compose.wait_services on v2.
    debian13_host.load_image(f"{project.repo}:v1")
    env = project.folder / "wait.env"
    env.write_text(f"CUSTOM_IMAGE={project.repo}\nCUSTOM_TAG=v1\n")
    done = debian13_host.ssh(
        "docker", "compose", "-p", project.name, "-f", str(project.compose), "--env-file", str(env),
        "up", "-d", "--wait", "--wait-timeout", "30",
    )  # fmt: skip
    assert done.returncode == 1
    assert f"container {project.name}-configurator-1 exited (0)" in done.stderr
    assert project.services(target)["backend"]["State"]["Status"] == "running"


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = ["subprocess"]
