# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""deploy proves what it deployed: the rendered compose config, the apps of the sites, the image
the containers run (real dockerd, docker-compose, the fake bench image)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from frappe_imagekit import process
from frappe_imagekit.deploy.migrate_report import step_commands
from frappe_imagekit.deploy.sequence import DeployFailed, deploy
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.runner import LocalRunner
from tests.support.benchimage import SLEEP_FOREVER, frontend_service
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    docker,
    options,
    project,
    workspace,
)
from tests.support.cli import cli

CONFIG_FILES = "com.docker.compose.project.config_files"
FAILING_PATCH = "myapp.patches.v1_0.fix_invoices #2024-05-01"


def run_deploy(project: Project, version: str = "v1", on_event=None, **kwargs):  # type: ignore[no-untyped-def]
    return deploy(LocalRunner(), workspace(project), options(project, version, **kwargs), on_event=on_event)


def compose_config(project: Project, tag: str) -> str:
    """What frappe_docker's documented set-up does: `compose config > final.yaml`."""
    env = {**os.environ, "CUSTOM_IMAGE": project.repo, "CUSTOM_TAG": tag}
    done = subprocess.run(
        ["docker-compose", "-p", project.name, "-f", str(project.compose), "config"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout


def running_ids(project: Project) -> dict[str, tuple[str, str]]:
    return {name: (c["Id"], c["State"]["Status"]) for name, c in project.services().items()}


def test_generated_file_with_a_fixed_image_is_refused_before_anything_stops(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    project.compose.write_text(compose_config(project, "v1"))  # image: <repo>:v1, fixed
    before = running_ids(project)

    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v2")

    message = str(info.value)
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED == 13
    assert f"services backend ({project.repo}:v1), configurator ({project.repo}:v1), queue" in message
    assert f"instead of {project.repo}:v2" in message
    lines = [n for n, text in enumerate(project.compose.read_text().splitlines(), 1) if "image:" in text]
    assert f"{project.compose}:{lines[0]}" in message and "${CUSTOM_IMAGE}:${CUSTOM_TAG}" in message
    assert "--image-var" in message and "Nothing was stopped" in message
    assert running_ids(project) == before  # same containers, still running
    assert project.records()[-1]["result"] == "failed"
    assert not project.lock_dir.exists()


def test_compose_file_using_other_variables_is_refused_then_deployed_with_image_var(project: Project):
    text = project.compose.read_text().replace("${CUSTOM_IMAGE}:${CUSTOM_TAG}", "${APP_IMAGE}:${APP_TAG}")
    project.compose.write_text(text)
    env_file = project.folder / "app.env"
    env_file.write_text("APP_IMAGE=someone/else\nAPP_TAG=v1\n")

    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v2", env_file=str(env_file))
    message = str(info.value)
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert f"no service of the compose files would run {project.repo}:v2" in message
    assert "backend=someone/else:v1" in message and "--image-var/--tag-var" in message
    assert project.services() == {}

    report = run_deploy(project, "v2", env_file=str(env_file), image_var="APP_IMAGE", tag_var="APP_TAG")
    assert report.result == "succeeded"
    assert project.services()["backend"]["Config"]["Image"] == f"{project.repo}:v2"


def test_app_installed_on_a_site_but_missing_from_the_image_is_refused(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    project.site_file("b.local", "apps.txt").write_text("frappe\nerpnext\npayments\n")
    before = running_ids(project)

    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v2")

    message = str(info.value)
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert f"{project.repo}:v2 lacks apps installed on the sites (site b.local has payments)" in message
    assert "Nothing was stopped" in message
    assert running_ids(project) == before


def test_tag_moved_during_the_deploy_is_caught_by_the_image_check(project: Project):
    moved = f"{project.repo}:moved"  # the same bench, another image id
    dockerfile = f"FROM {project.repo}:v1\nLABEL moved=1\n".encode()
    built = process.run(
        ["docker", "build", "-q", "-t", moved, "-"],
        input_bytes=dockerfile, env={"DOCKER_BUILDKIT": "0"}, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    first = run_deploy(project, "v1")
    assert first.result == "succeeded"
    assert first.image_services == ["backend", "configurator", "queue"]
    assert first.oneshot_services == ["configurator"]
    v2_id = docker("image", "inspect", "-f", "{{.Id}}", f"{project.repo}:v2").stdout.strip()

    def retag(line: str) -> None:  # somebody moves the tag between the checks and `up`
        if line.startswith("starting "):
            docker("tag", moved, f"{project.repo}:v2")

    try:
        with pytest.raises(DeployFailed) as info:
            run_deploy(project, "v2", on_event=retag)
    finally:
        docker("rmi", moved, check=False)

    message = str(info.value)
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert f"after up, containers do not run {project.repo}:v2 ({v2_id[:19]})" in message
    for service in ("backend", "configurator", "queue"):
        assert f"{service} (" in message
    assert info.value.report.image_id == v2_id
    assert project.records()[-1]["result"] == "failed"


MARIADB = """\
services:
  db:
    image: {busybox}
    network_mode: "none"
    stop_grace_period: 1s
    command: ["sh", "-c", '{sleep}']
"""

MIGRATOR = """\
services:
  migrator:
    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}
    network_mode: "none"
    restart: on-failure
    entrypoint: ["sh", "-c"]
    command: ["bench --site all migrate"]
    volumes:
      - ./sites:/home/frappe/frappe-bench/sites
    depends_on:
      configurator:
        condition: service_completed_successfully
"""


def frappe_docker_layout(project: Project, busybox: str) -> list[str]:
    """compose.yaml + overrides/compose.mariadb.yaml + overrides/compose.migrator.yaml (spec format)."""
    text = project.compose.read_text().replace('version: "3.7"\n', "")
    project.compose.write_text(text)
    overrides = project.folder / "overrides"
    overrides.mkdir()
    (overrides / "compose.mariadb.yaml").write_text(MARIADB.format(busybox=busybox, sleep=SLEEP_FOREVER))
    (overrides / "compose.migrator.yaml").write_text(MIGRATOR)
    return ["compose.yaml", "overrides/compose.mariadb.yaml", "overrides/compose.migrator.yaml"]


def test_frappe_docker_layout_three_files_migrator_and_v1_relative_labels(
    project: Project, busybox_image: str
):
    files = frappe_docker_layout(project, busybox_image)
    # started by hand from the project folder: compose v1 records relative config_files
    args = [a for f in files for a in ("-f", f)]
    env = {**os.environ, "CUSTOM_IMAGE": project.repo, "CUSTOM_TAG": "v1"}
    subprocess.run(["docker-compose", "-p", project.name, *args, "up", "-d"], cwd=project.folder, env=env,
                   check=True, capture_output=True)  # fmt: skip
    assert project.services()["backend"]["Config"]["Labels"][CONFIG_FILES] == ",".join(files)

    absolute = [str(project.folder / f) for f in files]
    cli_args = project.cli_args("--version", "v2", "--json")
    at = cli_args.index("--compose")
    cli_args[at : at + 2] = [a for f in absolute for a in ("--compose", f)]
    result = cli(*cli_args)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["result"] == "succeeded" and report["migrator"] == "migrator"
    assert report["image_services"] == ["backend", "configurator", "migrator", "queue"]  # not db
    assert report["oneshot_services"] == ["configurator", "migrator"]
    assert [(s["site"], s["status"]) for s in report["sites"]] == [("a.local", "ok"), ("b.local", "ok")]
    assert any("followed its logs instead of starting a second migrate" in n for n in report["notes"])
    assert any(
        n.startswith("compose v1 (docker-compose 1.29") and "unmaintained" in n for n in report["notes"]
    )
    services = project.services()
    assert services["migrator"]["State"]["ExitCode"] == 0
    assert {s: c["Config"]["Image"] for s, c in services.items() if s != "db"} == dict.fromkeys(
        ["backend", "configurator", "migrator", "queue"], f"{project.repo}:v2"
    )
    assert services["backend"]["Config"]["Labels"][CONFIG_FILES] == ",".join(absolute)
    kept = project.state / "projects" / project.name
    assert [(kept / n).read_text() for n in ("compose.yaml", "compose.1.yaml", "compose.2.yaml")] == [
        Path(p).read_text() for p in absolute
    ]

    # a failing patch in the migrator: reported from its logs, the migrator stopped, not looping
    project.site_file("b.local", "fail_patch").write_text(FAILING_PATCH + "\n")
    (project.folder / files[1]).write_text(MARIADB.format(busybox=busybox_image, sleep=SLEEP_FOREVER) + "\n")
    base = options(project, "v1")
    opts = replace(base, where=replace(base.where, compose_files=tuple(absolute)))
    failed = deploy(LocalRunner(), workspace(project), opts)

    assert failed.result == "patch-failed" and failed.exit_code == ExitCode.PATCH_FAILED
    site_b = failed.site("b.local")
    assert (site_b.status, site_b.failed_patch) == ("failed", FAILING_PATCH)
    assert failed.site("a.local").status == "ok" and site_b.backup
    assert any(f"{absolute[1]} changed since the last up" in n for n in failed.notes)
    assert any("stopped" in n and "restart policy" in n for n in failed.notes)
    migrator = project.services()["migrator"]["State"]
    assert (migrator["Status"], migrator["ExitCode"] != 0) == ("exited", True)
    # the migrator's failed site stays in maintenance; the one it migrated is live again
    flags = {s: json.loads(project.site_file(s, "site_config.json").read_text())["maintenance_mode"]
             for s in ("a.local", "b.local")}  # fmt: skip
    assert flags == {"a.local": 0, "b.local": 1}
    assert (site_b.maintenance.state, site_b.maintenance.left_on) == ("on", "its migrate failed")


def test_fresh_stack_has_no_site_yet_then_create_site_is_waited_for(project: Project):
    for site in project.sites:
        shutil.rmtree(project.sites_dir / site)
    first = run_deploy(project, "v1")
    assert first.result == "succeeded", first.error
    assert first.sites == [] and any(n.startswith("no site yet") for n in first.notes)

    # frappe_docker's create-site: a one-shot service found in the config, not listed by the user
    project.compose.write_text(
        project.compose.read_text()
        + "  create-site:\n    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}\n    network_mode: none\n"
        + "    volumes:\n      - ./sites:/home/frappe/frappe-bench/sites\n"
        + '    command: ["sh", "-c", "sleep 2; bench new-site c.local --mariadb-user-host-login-scope=%'
        + ' --admin-password=admin --db-root-password=123"]\n'
    )
    env_file = project.folder / "stack.env"
    env_file.write_text(f"COMPOSE_FILE=compose.yaml\nCOMPOSE_PROJECT_NAME={project.name}\n")
    args = ["deploy", "--env-file", str(env_file), "--state-dir", str(project.state), "-w", str(project.ws),
            "--version", "v2", "--up-timeout", "30", "--json"]  # fmt: skip
    result = cli(*args)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["oneshot_services"] == ["configurator", "create-site"]
    assert [(s["site"], s["status"]) for s in report["sites"]] == [("c.local", "ok")]
    assert project.site_file("c.local", "last_migrate").is_file()
    assert project.services()["create-site"]["State"]["ExitCode"] == 0


def test_no_compose_file_and_no_project_are_usage_errors(project: Project):
    base = ["deploy", "-w", str(project.ws), "--version", "v1"]
    missing = cli(*base, "--project", project.name)
    assert missing.exit_code == ExitCode.USAGE, missing.output
    assert "no compose file: pass --compose FILE" in missing.output and "COMPOSE_FILE" in missing.output
    no_name = cli(*base, "--compose", str(project.compose))
    assert no_name.exit_code == ExitCode.USAGE
    assert "no project name: pass --project NAME or set COMPOSE_PROJECT_NAME" in no_name.output


def test_dry_run_lists_sites_services_and_every_step(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    before = running_ids(project)

    config = project.site_file("a.local", "site_config.json").read_text()
    result = cli(*project.cli_args("--version", "v2", "--dry-run", "--backup-files"))

    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Deploy {project.repo}:v2 to {project.name} on local: dry-run" in out
    assert "a.local" in out and "b.local" in out and "pending" in out
    for service in ("backend", "configurator", "queue"):
        assert f"service {service}: {project.repo}:v2 (new image)" in out
    steps = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("step ")]
    assert steps[0].startswith("take the deploy lock")
    assert steps[1] == (
        "bench --site a.local set-maintenance-mode on; bench --site a.local scheduler pause; "
        "bench --site a.local ready-for-migration (a warning when jobs are queued)"
    )
    assert steps[2].startswith("bench --site b.local set-maintenance-mode on;")
    assert steps[3:5] == [
        "bench --site a.local backup --with-files",
        "bench --site b.local backup --with-files",
    ]
    assert steps[5] == (  # an image deploy stops nothing first (issue 18 item 6)
        "no down: up recreates the services whose image or configuration changed (backend, configurator, "
        "queue get the new image); no other service keep running unless their definition changed "
        "(--full-down stops everything first)"
    )
    assert steps[6].startswith(
        f"up: CUSTOM_IMAGE={project.repo} CUSTOM_TAG=v2 PULL_POLICY=never docker-compose"
    )
    assert steps[7] == "wait for the one-shot services to exit 0: configurator"
    assert steps[9] == f"check that backend, configurator, queue run the image id of {project.repo}:v2"
    assert steps[10:12] == ["bench --site a.local migrate", "bench --site b.local migrate"]
    assert steps[12].startswith("after a successful migrate: bench --site a.local set-maintenance-mode off;")
    assert project.site_file("a.local", "site_config.json").read_text() == config  # no window opened
    assert running_ids(project) == before
    assert len(project.records()) == 1  # a dry run records nothing


ASSET = "/assets/frappe/dist/js/frappe-web.bundle.5TDS2KWX.js"


def test_health_check_pings_each_site_and_fetches_an_asset_through_the_frontend(
    project: Project, busybox_image: str
):
    # backend and frontend on the project's own network; the probe runs inside the backend
    backend = "  backend:\n    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}\n"
    text = project.compose.read_text().replace(backend + '    network_mode: "none"\n', backend)
    project.compose.write_text(text + frontend_service(busybox_image))
    www = project.folder / "www"
    (www / "api" / "method").mkdir(parents=True)
    (www / "api" / "method" / "ping").write_text('{"message":"pong"}\n')
    (www / ASSET.lstrip("/")).parent.mkdir(parents=True)
    (www / ASSET.lstrip("/")).write_text("console.log(1)\n")
    (project.sites_dir / "assets").mkdir()
    (project.sites_dir / "assets" / "assets.json").write_text(json.dumps({"frappe-web.bundle.js": ASSET}))

    report = run_deploy(project, "v1")
    assert report.result == "succeeded", report.error
    assert [(s.site, s.health) for s in report.sites] == [("a.local", "ok"), ("b.local", "ok")]
    assert "health" in report.timings

    (www / ASSET.lstrip("/")).unlink()  # stale assets after an image change
    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v2")
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert f"site a.local answered {ASSET} (from sites/assets/assets.json) with 404" in str(info.value)
    assert [s.health for s in info.value.report.sites] == ["failed", None]

    (www / "api" / "method" / "ping").write_text("<h1>Service Unavailable</h1>\nmaintenance\n")
    result = cli(*project.cli_args("--version", "v2"))
    assert result.exit_code == ExitCode.DEPLOY_FAILED, result.output
    assert "site a.local answered /api/method/ping with 200: <h1>Service Unavailable</h1>" in result.output
    assert "a.local: next: a.local is live (maintenance mode is off) and failed its health check" in (
        result.output
    )

    skipped = cli(*project.cli_args("--version", "v2", "--no-health-check", "--json"))
    assert skipped.exit_code == 0, skipped.output
    assert [s["health"] for s in json.loads(skipped.stdout)["sites"]] == [None, None]


def test_health_check_without_frontend_asks_the_backend_port(project: Project):
    report = run_deploy(project, "v1")
    assert [s.health for s in report.sites] == ["ok", "ok"]
    assert any(n.startswith("no frontend service: the health check asked ping only") for n in report.notes)
    project.compose.write_text(project.compose.read_text().replace("nc -ll -p 8000", "nc -ll -p 8001"))
    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v2")
    assert "a.local did not answer at http://127.0.0.1:8000/api/method/ping" in str(info.value)
    assert "Connection refused" in str(info.value) and "--no-health-check" in str(info.value)
    # its window had ended: the site is live and broken; the way back is in its next steps
    site_a = info.value.report.site("a.local")
    assert (site_a.health, site_a.maintenance.state) == ("failed", "off")
    (broken,) = [s for s in site_a.next_steps if "is live (maintenance mode is off)" in s]
    commands = step_commands(broken)
    assert commands[0].endswith("exec -T backend bench --site a.local set-maintenance-mode on")
    assert commands[-2].endswith("up -d backend")  # migrate succeeded: fix the service, no restore
    assert not [c for step in site_a.next_steps for c in step_commands(step) if " restore " in c]


def test_backups_are_copied_off_the_volume_checked_hashed_and_pruned(project: Project):
    import gzip
    import hashlib
    import tarfile
    import time

    assert run_deploy(project, "v1").result == "succeeded"  # nothing ran yet: no backup
    (project.sites_dir / "a.local" / "public" / "files").mkdir(parents=True)
    (project.sites_dir / "a.local" / "public" / "files" / "logo.png").write_bytes(b"\x89PNG fake")
    report = run_deploy(project, "v2", keep_backups=2, backup_files=True)
    assert report.result == "succeeded", report.error

    root = project.state / "projects" / project.name / "backups"
    files = report.site("a.local").backup_files
    names = [Path(f["path"]).name for f in files]
    assert [n.split("-", 1)[-1] for n in names] == [
        "a_local-site_config_backup.json", "a_local-database.sql.gz", "a_local-files.tar",
        "a_local-private-files.tar",
    ]  # fmt: skip
    with tarfile.open(files[2]["path"]) as public:  # the public files archive, whole, as frappe makes it
        assert public.extractfile("./a.local/public/files/logo.png").read() == b"\x89PNG fake"
    for item in files:
        copy = Path(item["path"])
        assert copy.parent.parent.parent == root and copy.parent.name == "a.local"
        assert copy.stat().st_mode & 0o777 == 0o600
        assert (item["size"], item["sha256"]) == (
            copy.stat().st_size,
            hashlib.sha256(copy.read_bytes()).hexdigest(),
        )
    dump = gzip.decompress(Path(files[1]["path"]).read_bytes()).decode()
    assert dump.startswith("-- MariaDB dump") and dump.endswith("-- Dump completed\n")  # the fake's SQL
    record = project.records()[-1]
    assert record["sites"][0]["backup_files"] == files

    for tag in ("v1", "v2"):  # two more deploys; only the last two deploys' backups stay
        time.sleep(1)
        last = run_deploy(project, tag, keep_backups=2)
    assert len(sorted(root.iterdir())) == 2
    assert any(n.startswith("removed the backups of older deploys: ") for n in last.notes)
    assert Path(last.site("b.local").backup_files[1]["path"]).is_file()


def test_a_backup_that_is_not_whole_stops_the_deploy_before_anything_stops(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    project.site_file("b.local", "corrupt_backup").write_text("")
    before = running_ids(project)
    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v2")
    message = str(info.value)
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert "-b_local-database.sql.gz could not be copied to" in message and "is not whole" in message
    assert "nothing was stopped" in message
    assert running_ids(project) == before
    for site in ("a.local", "b.local"):  # nothing was stopped: the window ended, the sites serve again
        config = json.loads(project.site_file(site, "site_config.json").read_text())
        assert (config["maintenance_mode"], config["pause_scheduler"]) == (0, False)
        assert info.value.report.site(site).maintenance.state == "off"
