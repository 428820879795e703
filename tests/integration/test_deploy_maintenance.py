# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""The maintenance state a deploy or a rollback leaves, read from the sites (real dockerd and
docker-compose, the fake bench, whose set-maintenance-mode writes site_config.json as frappe
does): a deploy that did not open a site's window never switches it off (issue 18 item 4), and
the report says each site's real state whatever the options (issue 19 item 12)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.test_rollback import (
    deploy_v1_then_failing_v2,
    invoke,
    prepare,
    rollback_args,
)
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    project,
)

ROOT = Path(__file__).resolve().parents[2]
FAILING_PATCH = "myapp.patches.v1_0.fix_invoices #2024-05-01"


def flags(project: Project, site: str) -> tuple[int, bool]:
    config = json.loads(project.site_file(site, "site_config.json").read_text())
    return config.get("maintenance_mode", 0), config.get("pause_scheduler", False)


def deploy_id(record: dict) -> str:
    return record["started"].replace("-", "").replace(":", "")[:15] + "Z"


def test_a_deploy_that_stops_at_its_backup_leaves_a_site_found_in_maintenance_on(project: Project):
    assert invoke(*project.cli_args("--version", "v1")).exit_code == 0
    project.site_file("a.local", "fail_patch").write_text(FAILING_PATCH + "\n")
    failed = invoke(*project.cli_args("--version", "v2"))
    assert failed.exit_code == 9, failed.output
    failed_id = deploy_id(project.records()[-1])
    assert (flags(project, "a.local"), flags(project, "b.local")) == ((1, True), (0, False))

    project.site_file("a.local", "fail_patch").unlink()
    project.site_file("a.local", "corrupt_backup").write_text("")  # the next deploy stops at its backup
    stopped = invoke(*project.cli_args("--version", "v2"))

    assert stopped.exit_code == 13, stopped.output
    assert "could not be copied" in stopped.output and "nothing was stopped" in stopped.output
    # a.local: as found (the failed deploy's maintenance, scheduler paused); b.local: its window ended
    assert (flags(project, "a.local"), flags(project, "b.local")) == ((1, True), (0, False))
    since = f"since deploy {failed_id} of v2, patch-failed"
    assert f"a.local is in maintenance mode already ({since})" in stopped.output
    assert f"a.local is still in maintenance mode (it was in maintenance before this deploy ({since})" in (
        stopped.output
    )
    assert "exec -T backend bench --site a.local set-maintenance-mode off" in stopped.output
    site_a, site_b = project.records()[-1]["sites"]
    assert (site_a["maintenance"]["state"], site_a["maintenance"]["found"], site_a["maintenance_now"]) == (
        "on", "on", "on",
    )  # fmt: skip
    assert (site_b["maintenance"]["state"], site_b["maintenance_now"]) == ("off", "off")


def test_the_real_state_is_reported_after_no_maintenance_rollback_and_migrate_only(project: Project):
    env_file = prepare(project)
    deploy_v1_then_failing_v2(project, env_file)
    assert flags(project, "a.local") == (1, True)  # the failed deploy left it in maintenance
    failed_id = deploy_id(project.records()[-1])

    rolled = invoke(*rollback_args(project, "--yes", "--no-maintenance"))
    assert rolled.exit_code == 0, rolled.output
    assert "a.local\tok\tmaintenance\tON" in rolled.output and "b.local\tok\tok\toff" in rolled.output
    said = (
        f"note: a.local is in maintenance mode (read back from the site at the end; since deploy {failed_id}"
    )
    assert said in rolled.output
    assert "exec -T backend bench --site a.local set-maintenance-mode off" in rolled.output
    assert [s["maintenance_now"] for s in project.records()[-1]["sites"]] == ["on", "off"]

    again = invoke(*project.cli_args("--version", "v1", "--migrate-only", "--no-maintenance",
                                     "--env-file", str(env_file), "--json"))  # fmt: skip
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert [(s["site"], s["status"], s["maintenance"], s["maintenance_now"]) for s in report["sites"]] == [
        ("a.local", "ok", None, "on"),
        ("b.local", "ok", None, "off"),
    ]
    assert flags(project, "a.local") == (1, True)  # --no-maintenance: not touched, and said
    text = invoke(*project.cli_args("--version", "v1", "--migrate-only", "--no-maintenance",
                                    "--env-file", str(env_file)))  # fmt: skip
    assert "a.local\tok\tmaintenance\tON" in text.output and "b.local\tok\tok\toff" in text.output


def test_an_interrupted_migrate_is_recorded_with_the_patches_that_ran(project: Project):
    """Issue 18 item 9: the record of an interrupted migrate says which patches completed (they
    are committed) and which one it was in, instead of `pending` (real run: lab run 08)."""
    project.site_file("a.local", "slow_patch").write_text("erpnext.patches.v15_0.set_default_currency 30\n")
    argv = [sys.executable, "-m", "frappe_imagekit", *project.cli_args("--version", "v1")]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    seen = []  # kept for the messages: a deploy that ended before the patch shows why
    for raw in proc.stderr:
        seen.append(raw)
        if b"slow patch 1" in raw:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    said = b"".join(seen) + err
    assert b"slow patch 1" in said, said
    assert proc.returncode == 130, said

    site_a = next(s for s in project.records()[-1]["sites"] if s["site"] == "a.local")
    assert site_a["status"] == "interrupted"
    assert site_a["patches_run"] == ["frappe.patches.v15_0.remove_old_field"]
    assert site_a["interrupted_in"] == "erpnext.patches.v15_0.set_default_currency"
    assert project.site_file("a.local", "migrate_aborted").is_file()  # stopped in the backend


def test_a_hostile_folder_in_sites_stops_the_deploy_before_bench_or_docker_sees_it(project: Project):
    """Site names listed from the backend are checked where they are read (issue 19): a folder
    named like an option never reaches `bench --site`, nor the maintenance read script."""
    assert invoke(*project.cli_args("--version", "v1")).exit_code == 0
    hostile = project.sites_dir / "--help"
    hostile.mkdir()
    (hostile / "site_config.json").write_text("{}")

    result = invoke(*project.cli_args("--version", "v2", "--no-maintenance"))  # no window to check it

    assert result.exit_code == 13, result.output
    said = "the folder in sites/ of backend (remove it, or pass --sites) '--help' is not a valid site name"
    assert said in result.output and "backing up" not in result.output
    assert project.services()["backend"]["Config"]["Image"] == f"{project.repo}:v1"  # nothing changed
    assert not any(s["site"] == "--help" for s in project.records()[-1]["sites"])
