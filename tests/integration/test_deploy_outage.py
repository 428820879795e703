# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""What a deploy stops (issue 18 items 3, 5, 6), on a stack shaped like frappe_docker's:
compose.yaml with the app services plus overrides/compose.mariadb.yaml (db) and
overrides/compose.redis.yaml (redis-cache, redis-queue), as on the real lab stack."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from frappe_imagekit.deploy.sequence import deploy
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.runner import LocalRunner
from tests.support.benchimage import compose_yaml, write_overrides
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    docker,
    options,
    project,
    workspace,
)
from tests.support.cli import cli

OTHERS = ("db", "redis-cache", "redis-queue")


@pytest.fixture
def stack(project: Project, busybox_image: str) -> Iterator[list[str]]:
    """The project on three files, networked (the backend reaches db on 3306); the files."""
    project.compose.write_text(compose_yaml(networked=True))
    files = [str(project.compose), *(str(p) for p in write_overrides(project.folder, busybox_image))]
    yield files
    for c in docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project.name}"
    ).stdout.split():
        docker("rm", "-f", c, check=False)
    docker("network", "rm", f"{project.name}_default", check=False)


def deploy_files(project: Project, files: list[str], version: str, on_event=None, **kwargs):  # type: ignore[no-untyped-def]
    base = options(project, version, **kwargs)
    opts = replace(base, where=replace(base.where, compose_files=tuple(files)))
    return deploy(LocalRunner(), workspace(project), opts, on_event)


def cli_files(project: Project, files: list[str], *extra: str) -> list[str]:
    args = project.cli_args(*extra)
    at = args.index("--compose")
    args[at : at + 2] = [a for f in files for a in ("--compose", f)]
    return args


def started(project: Project) -> dict[str, tuple[str, str]]:
    return {name: (c["Id"], c["State"]["StartedAt"]) for name, c in project.services().items()}


def ping(project: Project, site: str = "a.local") -> str:
    """The status line the backend answers to ping (its web handler, as gunicorn would)."""
    request = (
        f"printf 'GET /api/method/ping HTTP/1.1\\r\\nHost: {site}\\r\\n\\r\\n' | /usr/local/bin/frappe-web"
    )
    done = docker("exec", project.services()["backend"]["Id"], "sh", "-c", request)
    return done.stdout.splitlines()[0].strip()


def test_files_that_drop_running_services_are_refused_before_anything_stops(
    project: Project, stack: list[str]
):
    """Real-lab run 14: the printed step named compose.yaml only; deploy went ahead without MariaDB
    and Redis. Now refused (exit 13) naming the services and the files of the last up."""
    assert deploy_files(project, stack, "v1").result == "succeeded"
    before = started(project)

    for extra in ((), ("--dry-run",)):
        result = cli(*project.cli_args("--version", "v2", *extra))  # compose.yaml only
        assert result.exit_code == ExitCode.DEPLOY_FAILED == 13, result.output
        assert (
            f"error: the compose files {stack[0]} have no service db, redis-cache, redis-queue, which are "
            f"part of project {project.name} now (the files of the last up: {', '.join(stack)}): the deploy "
            "would remove them." in result.output
        )
        assert "or pass --force to remove them. Nothing was stopped." in result.output
    assert started(project) == before
    assert [r["result"] for r in project.records()] == ["succeeded", "failed"]

    lines: list[str] = []
    forced = deploy_files(project, stack[:1], "v2", lines.append, force=True, health_check=False)
    assert forced.result == "succeeded"
    said = (
        f"--force: the deploy removes db, redis-cache, redis-queue (not in the compose files {stack[0]}): "
        "up --remove-orphans stops and deletes their containers (named volumes stay)."
    )
    assert said in forced.notes
    assert said in lines and lines.index(said) < lines.index(f"starting {project.repo}:v2")  # before
    assert set(project.services()) == {"configurator", "backend", "queue"}


def test_an_image_deploy_keeps_mariadb_and_redis_running(project: Project, stack: list[str]):
    """Real-lab runs 03b/25: `down` stopped db and Redis while the backend still answered (HTTP
    500 for ~10 s). An image deploy recreates the app services only; --full-down stops all."""
    assert deploy_files(project, stack, "v1").result == "succeeded"
    before = started(project)
    events: list[str] = []

    report = deploy_files(project, stack, "v2", on_event=events.append)

    assert report.result == "succeeded", report.error
    assert not any(e.startswith("stopping project") for e in events) and "down" not in report.timings
    after = started(project)
    assert {name: after[name] for name in OTHERS} == {name: before[name] for name in OTHERS}
    for name in ("backend", "configurator", "queue"):
        assert after[name][0] != before[name][0]
        assert project.services()[name]["Config"]["Image"] == f"{project.repo}:v2"
    assert all(s.maintenance.state == "off" and s.health == "ok" for s in report.sites)

    # the fake backend answers as frappe 15.55.1 did (tests/fixtures/frappe-v15-lab/58*): without
    # its database 500; in maintenance 503 while MariaDB or Redis answers, 500 when both are gone
    ids = {name: c["Id"] for name, c in project.services().items()}
    docker("stop", ids["db"])
    assert ping(project) == "HTTP/1.1 500 Internal Server Error"  # 58c
    maintenance = '{"db_name": "_x", "maintenance_mode": 1}\n'
    project.site_file("a.local", "site_config.json").write_text(maintenance)
    assert ping(project) == "HTTP/1.1 503 SERVICE UNAVAILABLE"  # 58f
    docker("stop", ids["redis-cache"], ids["redis-queue"])
    assert ping(project) == "HTTP/1.1 500 Internal Server Error"  # 58g
    docker("start", ids["db"], ids["redis-cache"], ids["redis-queue"])
    project.site_file("a.local", "site_config.json").write_text('{"db_name": "_x"}\n')
    assert ping(project) == "HTTP/1.1 200 OK"

    dry = cli(*cli_files(project, stack, "--version", "v1", "--dry-run", "--json"))
    steps = json.loads(dry.stdout)["steps"]
    assert not any(s.startswith("down") for s in steps)
    assert any("db, redis-cache, redis-queue keep running" in s for s in steps)
    full = deploy_files(project, stack, "v1", full_down=True)
    assert full.result == "succeeded" and "down" in full.timings
    assert all(started(project)[name][0] != after[name][0] for name in OTHERS)


def test_a_crash_looping_service_fails_the_deploy_before_migrate(project: Project, product_settle: float):
    """Real-lab 01b/19: nginx in a restart loop, `running` at moments, passed the wait. Now its
    restarts are counted: exit 13 naming it with its last log lines, before migrate, the sites
    left in maintenance."""
    assert cli(*project.cli_args("--version", "v1")).exit_code == 0
    project.compose.write_text(
        project.compose.read_text()
        + '  frontend:\n    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}\n    network_mode: "none"\n'
        "    restart: unless-stopped\n"
        "    command: ['sh', '-c', 'echo \"[emerg] invalid variable name in frappe.conf:16\" >&2; "
        "sleep 1; exit 1']\n"
    )
    for site in project.sites:
        project.site_file(site, "migrate_saw_config").unlink()

    result = cli(*project.cli_args("--version", "v2"))

    assert result.exit_code == ExitCode.DEPLOY_FAILED, result.output
    # the restarts counted between the look that saw it running and the one that ends the settle
    # time (1 or more, as docker's restart backoff and the machine's load allow)
    said = r"service frontend \(\S+\) restarted (\d+) times? in \d+s \(a crash loop"
    counted = re.search(said, result.output)
    assert counted and int(counted.group(1)) >= 1, result.output
    assert "(a crash loop: its restart policy starts it again each time it exits" in result.output
    assert "[emerg] invalid variable name in frappe.conf:16" in result.output
    for site in project.sites:
        assert not project.site_file(site, "migrate_saw_config").exists()  # migrate never ran
        config = json.loads(project.site_file(site, "site_config.json").read_text())
        assert (config["maintenance_mode"], config["pause_scheduler"]) == (1, True)
    record = project.records()[-1]
    assert record["result"] == "failed" and "crash loop" in record["error"]
    assert [s["maintenance"]["state"] for s in record["sites"]] == ["on", "on"]
    # its containers were replaced though it never served: the default rollback undoes THIS deploy
    assert (record["served"], record["stack_changed"]) == (False, True)
    dry = cli("rollback", "--project", project.name, "--state-dir", str(project.state),
              "-w", str(project.ws), "--dry-run", "--no-restore")  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert "of v2 (failed" in dry.output and "go back to" in dry.output and ":v1" in dry.output
