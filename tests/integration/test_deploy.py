# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""imagekit deploy on this machine: real dockerd, real docker-compose, the fake bench image."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from frappe_imagekit.deploy.context import LIST_SITES
from frappe_imagekit.deploy.migrate_report import step_commands
from frappe_imagekit.deploy.sequence import DeployFailed, deploy
from frappe_imagekit.errors import ExitCode, UsageError
from frappe_imagekit.runner import LocalRunner, this_host
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    options,
    project,
    workspace,
)
from tests.support.cli import cli

CONFIG_FILES = "com.docker.compose.project.config_files"
FAILING_PATCH = "myapp.patches.v1_0.fix_invoices #2024-05-01"
ROOT = Path(__file__).resolve().parents[2]


class CountingRunner(LocalRunner):
    """A LocalRunner that keeps the argv of every command it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[list[str]] = []

    def run(self, argv, **kwargs):  # type: ignore[no-untyped-def]
        self.ran.append(list(argv))
        return super().run(argv, **kwargs)


def run_deploy(project: Project, version: str = "v1", **kwargs):  # type: ignore[no-untyped-def]
    return deploy(LocalRunner(), workspace(project), options(project, version, **kwargs))


def site_config(project: Project, site: str, name: str = "site_config.json") -> dict:
    return json.loads(project.site_file(site, name).read_text())


def test_happy_path_two_sites_then_upgrade(project: Project):
    first = run_deploy(project, "v1")
    assert first.result == "succeeded" and first.exit_code == 0
    assert [(s.site, s.status, s.backup) for s in first.sites] == [
        ("a.local", "ok", None),
        ("b.local", "ok", None),
    ]
    assert first.sites[0].apps_not_installed == ["hrms"]
    services = project.services()
    assert services["backend"]["Config"]["Image"] == f"{project.repo}:v1"
    assert services["backend"]["State"]["Status"] == "running"
    assert services["configurator"]["State"]["ExitCode"] == 0

    project.site_file("b.local", "pending_jobs").write_text("")
    told: list[str] = []
    runner = CountingRunner()
    second = deploy(runner, workspace(project), options(project, "v2"), on_event=told.append)
    assert second.result == "succeeded"
    # the sites were listed once in v1's backend and once in v2's (each a `docker exec`), not
    # once for every step that needs them (it was eight times)
    backends = [argv[2] for argv in runner.ran if argv[-1] == LIST_SITES]
    assert len(backends) == 2 and backends[0] != backends[1], backends
    # bench's progress bar (redrawn with \r: 72-migrate-progress-bars-redrawn) is told as its last
    # state, once per site, not as every redraw run together on one line
    bars = [line for line in told if "Updating DocTypes" in line]
    full = "Updating DocTypes for frappe        : [========================================] 100%"
    assert bars == [full, full]
    assert project.services()["backend"]["Config"]["Image"] == f"{project.repo}:v2"
    # the maintenance window: on (scheduler paused) while migrate ran, the site answering 503; off after
    for site in second.sites:
        saw = site_config(project, site.site, "migrate_saw_config")
        assert (saw["maintenance_mode"], saw["pause_scheduler"]) == (1, True)
        assert project.site_file(site.site, "migrate_saw_ping").read_text().strip() == "503"
        after = site_config(project, site.site)
        assert (after["maintenance_mode"], after["pause_scheduler"], after["db_name"]) == (0, False, "_x")
        assert (site.maintenance.state, site.maintenance.left_on, site.health) == ("off", None, "ok")
        assert 0 < site.maintenance.seconds < 120 and site.maintenance.closed
    assert (second.sites[0].maintenance.pending_jobs, second.sites[1].maintenance.pending_jobs) == (
        False,
        True,
    )
    assert any(n.startswith("b.local had background jobs queued") for n in second.notes)
    assert {"maintenance_on", "maintenance_off"} <= set(second.timings)
    for site in second.sites:  # backups taken from the running v1 backend before down
        assert site.backup.startswith(f"sites/{site.site}/private/backups/")
        assert (project.folder / site.backup).is_file()
    assert (project.site_file("a.local", "last_migrate")).is_file()

    records = project.records()
    assert [r["version"] for r in records] == ["v1", "v2"]
    record = records[-1]
    assert record["schema_version"] == 2 and record["result"] == "succeeded"
    assert (record["kind"], record["previous_version"], record["served"]) == ("deploy", "v1", True)
    assert record["project"] == project.name and record["host"] == "local"
    assert record["image"] == f"{project.repo}:v2"
    assert record["backups"] == [s.backup for s in second.sites]
    assert [s["maintenance"]["state"] for s in record["sites"]] == ["off", "off"]
    assert {s["site"]: s["status"] for s in record["sites"]} == {"a.local": "ok", "b.local": "ok"}
    audit = [json.loads(line) for line in project.audit_log.read_text().splitlines()]
    assert [(a["version"], a["result"]) for a in audit] == [
        ("v1", "succeeded"),
        ("v2", "succeeded"),
    ]
    assert not project.lock_dir.exists()
    copy = project.state / "projects" / project.name / "compose.yaml"
    assert copy.read_text() == project.compose.read_text()


def test_failing_patch_names_the_line_exit_code_and_backup(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    project.site_file("a.local", "fail_patch").write_text(FAILING_PATCH + "\n")

    result = cli(*project.cli_args("--version", "v2"))

    assert result.exit_code == ExitCode.PATCH_FAILED == 9, result.output
    assert "a.local: FAILED in patch myapp.patches.v1_0.fix_invoices #2024-05-01" in result.output
    assert "Unknown column 'total_x'" in result.output
    # an unknown column is the patch's fault: a fixed release, not --migrate-only (test_deploy_migrate.py)
    assert "the way out is a fixed release of myapp" in result.output
    assert "--migrate-only" not in result.output
    record = project.records()[-1]
    assert record["result"] == "patch-failed"
    assert record["failed_patches"] == [FAILING_PATCH]
    site_a, site_b = record["sites"]
    assert (site_a["status"], site_a["failure"], site_b["status"]) == ("failed", "patch", "ok")
    assert site_a["backup"].endswith("-a_local-database.sql.gz")
    # the way back: rollback of this deploy (its backup and v1 together), not a bench restore
    assert f"imagekit rollback --project {project.name} --state-dir {project.state}" in result.output
    assert not project.lock_dir.exists()
    # a.local is broken: left in maintenance; b.local migrated: live again
    assert (site_config(project, "a.local")["maintenance_mode"], site_a["maintenance"]["state"]) == (1, "on")
    assert site_config(project, "a.local")["pause_scheduler"] is True
    assert (site_config(project, "b.local")["maintenance_mode"], site_b["maintenance"]["state"]) == (0, "off")
    assert "a.local\tfailed\t-\tON\tpatch" in result.output  # the table's health and maintenance columns
    # progress (issue 24 item 4), plain lines without a terminal: each backup, each migrate, its patch
    for site in ("a.local", "b.local"):
        assert re.search(rf"^progress: backup {site} done in \d+\.\d s$", result.stderr, re.M)
    assert f"progress: migrate a.local: patch {FAILING_PATCH}\n" in result.stderr
    assert re.search(r"^progress: migrate a.local failed after \d+\.\d s$", result.stderr, re.M)
    assert re.search(r"^progress: migrate b.local done in \d+\.\d s$", result.stderr, re.M)
    base = f"docker-compose -p {project.name} -f {project.compose} exec -T backend bench --site a.local"
    (end,) = [step for step in site_a["next_steps"] if "still in maintenance mode" in step]
    assert "(its migrate failed)" in end
    assert step_commands(end) == [f"{base} set-maintenance-mode off", f"{base} scheduler resume"]
    assert end in result.output
    for command in step_commands(end):
        pasted = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert (
        site_config(project, "a.local")["maintenance_mode"],
        site_config(project, "a.local")["pause_scheduler"],
    ) == (0, False)

    # fixed: --migrate-only migrates the running backend without down/up
    project.site_file("a.local", "fail_patch").unlink()
    backend_before = project.services()["backend"]["Id"]
    again = cli(*project.cli_args("--version", "v2", "--migrate-only", "--json", "--progress", "none"))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["result"] == "succeeded"
    assert "progress:" not in again.stderr and "migrating a.local" in again.stderr
    assert project.services()["backend"]["Id"] == backend_before
    assert project.records()[-1]["result"] == "succeeded"


@pytest.mark.parametrize(
    ("setup", "failure", "exception"),
    [
        (
            "fail_import",
            "import",
            "ModuleNotFoundError: No module named 'myapp.patches.v1_0.fix_invoices'",
        ),
        (
            "hold_lock",
            "lock",
            "frappe.exceptions.LockTimeoutError: Failed to aquire lock: bench_migrate.",
        ),
    ],
)
def test_other_migrate_failures_exit_10(project: Project, setup: str, failure: str, exception: str):
    if setup == "fail_import":
        project.site_file("b.local", "fail_import").write_text(FAILING_PATCH + "\n")
    else:
        (project.sites_dir / ".hold_migrate_lock").write_text("")
    report = run_deploy(project, "v1")
    assert report.result == "migrate-failed"
    assert report.exit_code == ExitCode.MIGRATE_FAILED
    failed = [s for s in report.sites if s.status == "failed"]
    assert failed[-1].failure == failure
    assert failed[-1].exception.startswith(exception)
    assert failed[-1].failed_patch is None


def test_lock_held_is_refused_with_details_then_waited_for(project: Project):
    project.lock_dir.mkdir(parents=True)
    holder = {"who": "alice", "when": "2026-11-21T05:00:00+00:00", "host": "local",
              "version": "v9", "pid": 1, "hostname": this_host()}  # fmt: skip
    (project.lock_dir / "details.json").write_text(json.dumps(holder))

    result = cli(*project.cli_args("--version", "v1"))
    assert result.exit_code == ExitCode.LOCKED == 8, result.output
    assert "locked by alice" in result.output and "deploying v9" in result.output
    assert "(pid 1)" in result.output and f"imagekit unlock --project {project.name}" in result.output
    assert project.services() == {}  # nothing was touched
    assert project.lock_dir.is_dir()  # somebody else's lock stays

    # the holder finishes while we wait
    threading.Timer(1.0, lambda: _rmtree(project.lock_dir)).start()
    report = run_deploy(project, "v1", lock_wait=20)
    assert report.result == "succeeded"


def test_stale_lock_is_reported_and_cleared_with_unlock(project: Project):
    dead = subprocess.Popen(["true"])
    dead.wait()
    project.lock_dir.mkdir(parents=True)
    holder = {"who": "bob", "when": "2026-11-21T05:00:00+00:00", "host": "local",
              "version": "v1", "pid": dead.pid, "hostname": this_host()}  # fmt: skip
    (project.lock_dir / "details.json").write_text(json.dumps(holder))

    result = cli(*project.cli_args("--version", "v1", "--lock-wait", "30"))
    assert result.exit_code == ExitCode.LOCKED, result.output
    assert "stale deploy lock" in result.output and "that process is gone" in result.output

    cleared = cli("unlock", "--project", project.name, "--state-dir", str(project.state))
    assert cleared.exit_code == 0, cleared.output
    assert "held by bob" in cleared.output
    assert not project.lock_dir.exists()
    assert run_deploy(project, "v1").result == "succeeded"


def test_compose_file_edited_between_up_and_down_is_detected(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    # the operator renames the queue service; a plain `down -f compose.yaml` would leave queue up
    text = project.compose.read_text().replace("  queue:", "  worker:")
    project.compose.write_text(text)
    configs = {site: project.site_file(site, "site_config.json").read_text() for site in project.sites}
    # queue would disappear: refused before anything stops (issue 18 item 3), unless --force
    with pytest.raises(DeployFailed, match="have no service queue, which is part of project"):
        run_deploy(project, "v2", maintenance=False)

    report = run_deploy(project, "v2", maintenance=False, force=True)

    assert report.result == "succeeded"
    assert any("changed since the last up" in note for note in report.notes)
    # --no-maintenance: migrate ran with the flags untouched (the site answered it)
    for site in report.sites:
        assert site.maintenance is None
        assert site_config(project, site.site, "migrate_saw_config")["maintenance_mode"] == 0
        assert project.site_file(site.site, "migrate_saw_ping").read_text().strip() == "200"
        assert project.site_file(site.site, "site_config.json").read_text() == configs[site.site]
    services = project.services()
    assert set(services) == {"configurator", "backend", "worker"}
    assert services["worker"]["Config"]["Image"] == f"{project.repo}:v2"


def test_containers_started_by_another_file_stop_the_deploy(project: Project):
    other = project.folder / "other.yaml"
    other.write_text(project.compose.read_text())
    env = {"CUSTOM_IMAGE": project.repo, "CUSTOM_TAG": "v1"}
    subprocess.run(
        ["docker-compose", "-p", project.name, "-f", str(other), "up", "-d"],
        env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v1")
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert f"were started with {other} and imagekit has no record" in str(info.value)

    forced = run_deploy(project, "v2", force=True)  # down with the label's file, then up
    assert forced.result == "succeeded"
    services = project.services()
    assert services["backend"]["Config"]["Labels"][CONFIG_FILES] == str(project.compose)


def test_recorded_file_differs_from_running_labels(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    other = project.folder / "other.yaml"
    # another file, not a copy: a file of another path with the same contents counts as the
    # file of the last up (a rollback's kept copies; test_deploy_nextsteps.py step 4)
    other.write_text(project.compose.read_text() + "# started by hand\n")
    env = {"CUSTOM_IMAGE": project.repo, "CUSTOM_TAG": "v1"}
    subprocess.run(
        ["docker-compose", "-p", project.name, "-f", str(other), "up", "-d", "--force-recreate"],
        env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip

    result = cli(*project.cli_args("--version", "v2"))
    assert result.exit_code == ExitCode.DEPLOY_FAILED, result.output
    assert f"were started with {other}" in result.output and "--force" in result.output
    assert project.services()["backend"]["Config"]["Image"] == f"{project.repo}:v1"

    forced = run_deploy(project, "v2", force=True)
    assert forced.result == "succeeded"
    assert project.services()["backend"]["Config"]["Image"] == f"{project.repo}:v2"


def test_missing_image_fails_before_anything_stops(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    backend = project.services()["backend"]["Id"]
    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v404")
    assert info.value.exit_code == ExitCode.NOT_FOUND
    assert f"{project.repo}:v404 is not on this machine" in str(info.value)
    assert project.services()["backend"]["Id"] == backend
    assert project.records()[-1]["result"] == "failed"
    assert not project.lock_dir.exists()


def test_crashing_service_shows_its_logs(project: Project):
    text = project.compose.read_text().replace(
        '"echo configured; ls sites"', '"echo config broken >&2; exit 3"'
    )
    project.compose.write_text(text)
    with pytest.raises(DeployFailed) as info:
        run_deploy(project, "v1")
    message = str(info.value)
    assert info.value.exit_code == ExitCode.DEPLOY_FAILED
    assert "service configurator" in message and "exited with code 3" in message
    assert "config broken" in message


def test_dry_run_changes_nothing(project: Project):
    result = cli(*project.cli_args("--version", "v1", "--dry-run", "--json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == "dry-run"
    assert project.services() == {}
    assert not (project.ws / "deploys").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_migrate_releases_lock_and_records(project: Project, sig: int):
    returncode, err = project.interrupt_during_migrate(sig)
    assert returncode == ExitCode.INTERRUPTED == 130, err
    assert not project.lock_dir.exists()
    record = project.records()[-1]
    assert record["result"] == "interrupted"
    assert "interrupted" in project.audit_log.read_text()
    # the migrate deploy started in the backend did not go on unseen: stopped (SIGINT), and said so
    backend = project.services()["backend"]["Id"]
    top = subprocess.run(["docker", "top", backend, "-o", "pid,args"], capture_output=True, text=True)
    assert "migrate" not in top.stdout, top.stdout
    assert project.site_file("a.local", "migrate_aborted").is_file()
    stopped = "deploy was interrupted during the migrate of a.local: imagekit stopped it in the backend"
    assert any(n.startswith(stopped) for n in record["notes"]), record["notes"]
    assert stopped.encode() in err
    # and the maintenance state: both sites still in it, the commands that end it on stderr
    site_a = next(s for s in record["sites"] if s["site"] == "a.local")
    assert site_a["maintenance"]["state"] == "on"
    assert site_a["maintenance"]["left_on"] == "interrupted, after the stack was changed"
    assert site_config(project, "a.local")["maintenance_mode"] == 1
    assert b"a.local is still in maintenance mode (interrupted" in err
    assert b"exec -T backend bench --site a.local set-maintenance-mode off" in err


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_migrate_only_with_services_down_exits_10(project: Project):
    result = cli(*project.cli_args("--version", "v1", "--migrate-only"))
    assert result.exit_code == ExitCode.MIGRATE_FAILED, result.output
    assert "services down: no running backend container" in result.output


def test_backend_stopping_during_migrate_is_reported_as_services_down(project: Project):
    assert run_deploy(project, "v1").result == "succeeded"
    project.site_file("a.local", "slow_migrate").write_text("20\n")
    backend = project.services()["backend"]["Id"]

    def on_event(line: str) -> None:  # stop the backend once migrate runs
        if line == "Migrating a.local":
            subprocess.run(["docker", "kill", backend], capture_output=True)

    opts = options(project, "v1", migrate_only=True)
    report = deploy(LocalRunner(), workspace(project), opts, on_event=on_event)

    assert report.result == "migrate-failed"
    site_a = report.sites[0]
    assert (site_a.site, site_a.status, site_a.failure) == ("a.local", "failed", "services")
    assert "container stopped during migrate" in site_a.next_steps[0]


def test_healthcheck_is_waited_for_and_env_file_is_kept(project: Project):
    text = project.compose.read_text().replace(
        "  backend:\n",
        "  backend:\n    healthcheck:\n"
        # unhealthy on the first probe, healthy from the second: deploy must wait for it
        '      test: ["CMD", "sh", "-c", "test -f /tmp/up || { touch /tmp/up; exit 1; }"]\n'
        "      interval: 1s\n      retries: 30\n",
    )
    text = text.replace('"echo configured; ls sites"', '"echo configured for $${SITE_NAME}"')
    text = text.replace("    restart: \"no\"\n", "    restart: \"no\"\n    environment:\n"
                        "      SITE_NAME: ${SITE_NAME}\n")  # fmt: skip
    project.compose.write_text(text)
    env_file = project.folder / "deploy.env"
    env_file.write_text("SITE_NAME=erp.example\n")

    report = run_deploy(project, "v1", env_file=str(env_file))

    assert report.result == "succeeded", report.error
    services = project.services()
    assert services["backend"]["State"]["Health"]["Status"] == "healthy"
    logs = subprocess.run(["docker", "logs", services["configurator"]["Id"]], capture_output=True, text=True)
    assert logs.stdout.strip() == "configured for erp.example"
    kept = project.state / "projects" / project.name / "env"
    assert kept.read_text() == "SITE_NAME=erp.example\n"
    # down uses the kept env file even after the original is gone
    env_file.unlink()
    with pytest.raises(DeployFailed, match="does not exist"):
        run_deploy(project, "v2", env_file=str(env_file))
    assert run_deploy(project, "v2").result == "succeeded"


def test_missing_compose_file_is_named_with_the_fix(project: Project, tmp_path: Path):
    missing = tmp_path / "compose-main.yaml"
    args = project.cli_args("--version", "v1")
    args[args.index("--compose") + 1] = str(missing)
    result = cli(*args)
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert f"compose file {missing} does not exist on this machine" in result.output
    assert "--compose" in result.output and "Traceback" not in result.output


def test_a_named_target_deploys_with_its_own_project_and_compose(project: Project):
    """`imagekit deploy NAME`: imagekit.toml's target gives project, compose file, state folder,
    sites and timeout; a --project that differs is refused before anything runs."""
    (project.ws / "imagekit.toml").write_text(
        "[targets.staging]\n"
        f'project = "{project.name}"\n'
        f'compose = ["{project.compose}"]\n'
        f'state_dir = "{project.state}"\n'
        'sites = ["a.local"]\n'
        "up_timeout = 30\n"
    )
    refused = cli("deploy", "staging", "--project", "other", "-w", str(project.ws), "--version", "v1")
    assert refused.exit_code == 2
    assert f"target staging is project '{project.name}', not 'other'" in refused.output
    assert project.services() == {}

    result = cli("deploy", "staging", "-w", str(project.ws), "--version", "v1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["project"] == project.name and report["result"] == "succeeded"
    assert [s["site"] for s in report["sites"]] == ["a.local"]
    assert set(project.services()) >= {"backend"}
    assert (project.state / "projects" / project.name / "last-up.json").exists()

    unknown = cli("deploy", "stagin", "-w", str(project.ws), "--version", "v1")
    assert unknown.exit_code == 12
    assert "there is no target 'stagin' (did you mean 'staging'?)" in unknown.output


def test_services_that_ignore_sigterm_are_killed_before_down(project: Project):
    """websocket and scheduler ignore SIGTERM (as frappe_docker's do): deploy kills them first
    instead of letting `down` wait out their stop timeout while the site is down."""
    from tests.support.benchimage import compose_yaml

    project.compose.write_text(compose_yaml(("configurator", "backend", "queue", "websocket", "scheduler")))
    assert run_deploy(project, "v1").result == "succeeded"
    report = run_deploy(project, "v2")
    assert report.result == "succeeded", report.error
    assert any(
        n.startswith("killed scheduler, websocket at once before they were replaced") for n in report.notes
    )
    running = project.services()
    assert {"websocket", "scheduler"} <= set(running)
    assert {c["Config"]["Image"] for c in running.values()} == {f"{project.repo}:v2"}

    with pytest.raises(UsageError, match="a --kill-first service"):
        run_deploy(project, "v1", kill_first=("-x",))
