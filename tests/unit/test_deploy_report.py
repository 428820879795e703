"""Choosing the image, next steps, the record and exit codes (pure / tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit.deploy.migrate_report import BenchPlace
from frappe_imagekit.deploy.nextsteps import imagekit_call
from frappe_imagekit.deploy.sequence import (
    DeployOptions,
    DeployReport,
    SiteReport,
    choose_image,
    next_steps,
    record_dict,
)
from frappe_imagekit.errors import ExitCode, NotFoundError
from frappe_imagekit.ssh import parse_host
from frappe_imagekit.workspace import Workspace


def manifest(ws: Path, version: str, created: str, status: str = "succeeded") -> None:
    (ws / "builds").mkdir(exist_ok=True)
    data = {
        "schema_version": 1, "version": version, "status": status, "created": created,
        "image": {"name": "de/erp", "tag": version, "ref": f"de/erp:{version}"},
    }  # fmt: skip
    (ws / "builds" / f"{version}.json").write_text(json.dumps(data))


def test_newest_successful_build_is_chosen(tmp_path: Path):
    manifest(tmp_path, "v1.1.4", "2026-11-01T00:00:00+00:00")
    manifest(tmp_path, "v1.1.10", "2026-11-20T00:00:00+00:00")
    manifest(tmp_path, "v1.1.11", "2026-11-21T00:00:00+00:00", status="failed")
    assert choose_image(Workspace.at(tmp_path), None) == ("de/erp", "v1.1.10")
    assert choose_image(Workspace.at(tmp_path), "v1.1.4") == ("de/erp", "v1.1.4")


def test_without_manifest_the_image_name_comes_from_env(tmp_path: Path):
    (tmp_path / ".env").write_text("IMAGE_NAME=de/erp-custom\n")
    assert choose_image(Workspace.at(tmp_path), "v2") == ("de/erp-custom", "v2")
    with pytest.raises(NotFoundError, match="pass --version"):
        choose_image(Workspace.at(tmp_path), None)


def test_no_image_name_anywhere(tmp_path: Path):
    with pytest.raises(NotFoundError, match="no IMAGE_NAME"):
        choose_image(Workspace.at(tmp_path), "v2")


def test_next_steps_for_a_failed_patch():
    site = SiteReport("a.local", status="failed", failure="patch", result="patch-failed",
                      failed_patch="app.patches.v1.fix #again",
                      exception="frappe.exceptions.ValidationError: Invoice X has no customer",
                      exception_type="frappe.exceptions.ValidationError",
                      backup="sites/a.local/private/backups/x-database.sql.gz")  # fmt: skip
    place = BenchPlace(project="erp", compose_files=("/srv/compose.yaml", "/srv/overrides/db.yaml"),
                       env_file="/srv/erp.env")  # fmt: skip
    call = imagekit_call("production", "erp", ["/srv/compose.yaml"])
    exec_bench = (
        "docker compose -p erp -f /srv/compose.yaml -f /srv/overrides/db.yaml --env-file /srv/erp.env "
        "exec -T backend bench --site a.local"
    )
    again = "imagekit deploy production --version v1.1.5 --migrate-only"
    assert next_steps(site, place, call, "v1.1.5", go_back="or go back: ...") == [
        "the patch refused the site's data (frappe.exceptions.ValidationError: Invoice X has no "
        f"customer): fix the records its message names, then migrate again:\n    {again}",
        "or, once the data is fixed, run only that patch, then migrate for the rest:\n"
        f"    {exec_bench} run-patch 'app.patches.v1.fix #again' --force\n    {again}",
        "if the patch is wrong rather than the data: the way out is a fixed release of app, a new "
        "image and a deploy of it (migrating again with this image fails the same way):\n"
        "    imagekit build\n    imagekit deploy production",
        "or go back: ...",
    ]


@pytest.mark.parametrize(
    ("result", "code"),
    [
        ("succeeded", ExitCode.OK),
        ("patch-failed", ExitCode.PATCH_FAILED),
        ("migrate-failed", ExitCode.MIGRATE_FAILED),
        ("failed", ExitCode.DEPLOY_FAILED),
        ("interrupted", ExitCode.INTERRUPTED),
    ],
)
def test_exit_codes(result: str, code: ExitCode):
    report = DeployReport("v1", "de/erp:v1", "erp", "local", "root", "2026-11-21T05:00:00+00:00")
    report.result = result
    assert report.exit_code == code


def test_record_has_the_design_fields():
    report = DeployReport("v1", "de/erp:v1", "erp", "local", "root", "2026-11-21T05:00:00+00:00")
    report.sites = [SiteReport("a", "failed", failed_patch="p.q", backup="b.sql.gz")]
    record = record_dict(report)
    for key in ("schema_version", "version", "image", "project", "host", "user", "started",
                "finished", "result", "sites", "error"):  # fmt: skip
        assert key in record
    assert record["sites"][0]["failed_patch"] == "p.q"
    assert record["failed_patches"] == ["p.q"] and record["backups"] == ["b.sql.gz"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("root@server", ("root", "server", None)),
        ("server:2222", (None, "server", 2222)),
        ("u@[::1]:2200", ("u", "::1", 2200)),
        ("u@10.0.0.1", ("u", "10.0.0.1", None)),
    ],
)
def test_parse_host(spec, expected):
    assert parse_host(spec) == expected


def test_help_does_not_import_paramiko_or_docker():
    import subprocess
    import sys

    code = (
        "import sys; from frappe_imagekit.cli.main import _load_commands; _load_commands(); "
        "print(sorted(m for m in ('paramiko', 'docker', 'git') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_migrator_output_naming_no_site_is_reported_for_all_sites(tmp_path: Path, capsys):
    from frappe_imagekit.cli.deploy_cmd import render_report
    from frappe_imagekit.deploy.context import Context, state_paths
    from frappe_imagekit.deploy.migratesteps import report_migrator
    from frappe_imagekit.deploy.migrator import MigratorRun
    from frappe_imagekit.runner import LocalRunner

    opts = DeployOptions.of(project="erp", compose_file="compose.yaml", image="de/erp", version="v2")
    report = DeployReport(version="v2", image="de/erp:v2", project="erp", host="local", user="me",
                          started="2026-12-01T00:00:00+00:00")  # fmt: skip
    runner = LocalRunner()
    ctx = Context(runner, Workspace.at(tmp_path), opts, report, state_paths(runner, "erp", str(tmp_path)),
                   emit=lambda _: None)  # fmt: skip
    run = MigratorRun(service="migrator", container="erp-migrator-1", exit_code=127, restarts=0,
                      output="OCI runtime exec failed: exec: \"bench\": executable file not found\n",
                      stopped=False)  # fmt: skip
    report_migrator(ctx, run)
    assert [(s.site, s.status) for s in report.sites] == [("all", "failed")]
    render_report(report)
    assert "all" in capsys.readouterr().out


def test_the_table_has_health_and_maintenance_columns_and_the_record_keeps_the_window(capsys):
    from frappe_imagekit.cli.deploy_cmd import render_report
    from frappe_imagekit.deploy.maintenance import SiteWindow

    report = DeployReport("v2", "de/erp:v2", "erp", "local", "me", "2026-12-01T19:00:00+00:00")
    report.result = "patch-failed"
    ok = SiteReport("a.local", status="ok", health=None)
    ok.maintenance = SiteWindow("a.local", state="off", opened="t0", closed="t1", seconds=4.25)
    broken = SiteReport("b.local", status="failed", failure="patch", failed_patch="app.patches.x")
    broken.maintenance = SiteWindow("b.local", opened="t0", left_on="its migrate failed")
    report.sites = [ok, broken, SiteReport("c.local", status="ok", health="ok")]

    render_report(report)

    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "site\tstatus\thealth\tmaintenance\tfailure\tfailed patch\tbackup"
    assert lines[2:5] == [
        "a.local\tok\t-\toff after 4.2s\t-\t-\t-",
        "b.local\tfailed\t-\tON\tpatch\tapp.patches.x\t-",
        "c.local\tok\tok\t-\t-\t-\t-",
    ]
    windows = [site["maintenance"] for site in record_dict(report)["sites"]]
    assert windows[1] == {"site": "b.local", "state": "on", "opened": "t0", "closed": None, "seconds": None,
                          "pending_jobs": False, "left_on": "its migrate failed", "found": None}  # fmt: skip
    assert windows[2] is None

    # read back from the sites at the end (issue 19 item 12): the real state wins
    ok.maintenance_now, report.sites[2].maintenance_now = "on", "off"
    render_report(report)
    rows = capsys.readouterr().out.splitlines()[2:5]
    assert [row.split("\t")[3] for row in rows] == ["ON", "ON", "off"]
