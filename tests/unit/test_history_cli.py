"""`imagekit history` through typer's CliRunner: exit codes, warnings, table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_history_data import (
    ERPNEXT,
    app,
    default_apps,
    make_deploy,
    make_manifest,
    write,
    write_deploy,
)
from typer.testing import CliRunner

from frappe_imagekit.cli.main import _load_commands
from frappe_imagekit.cli.main import app as cli_app

_load_commands()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    builds = tmp_path / "builds"
    write(builds, make_manifest("v1.1.4", "2026-10-01T09:00:00+00:00"))
    apps = [app("erpnext", ERPNEXT, "v15.18.0"), *default_apps()[1:]]
    write(builds, make_manifest("v1.1.5", "2026-11-01T10:00:00+00:00", apps=apps))
    write_deploy(tmp_path / "deploys", make_deploy("v1.1.5", "2026-11-02T10:00:00+00:00"))
    return tmp_path


def test_list_plain_lines_newest_first(runner: CliRunner, ws: Path) -> None:
    result = runner.invoke(cli_app, ["history", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split("\t") == [
        "version",
        "date",
        "status",
        "image",
        "frappe",
        "apps",
        "deployed",
    ]
    first = lines[2].split("\t")
    assert first[:3] == ["v1.1.5", "2026-11-01 10:00", "succeeded"]
    assert "erpnext v15.18.0@" in first[5] and first[6] == "erp@local"
    assert lines[3].startswith("v1.1.4\t")


def test_list_json_and_limit(runner: CliRunner, ws: Path) -> None:
    result = runner.invoke(cli_app, ["history", "-w", str(ws), "--json", "--limit", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [b["version"] for b in data["builds"]] == ["v1.1.5"]
    assert data["total"] == 2 and data["broken"] == []
    assert data["builds"][0]["deployed_to"] == ["erp@local"]


def test_corrupt_manifest_is_warned_about_and_skipped(runner: CliRunner, ws: Path) -> None:
    (ws / "builds" / "v1.1.3.json").write_text('{"schema_version": 1, "vers')
    result = runner.invoke(cli_app, ["history", "-w", str(ws), "--json"])
    assert result.exit_code == 0
    assert "warning: skipped v1.1.3.json: not valid JSON" in result.stderr
    data = json.loads(result.stdout)
    assert [b["version"] for b in data["builds"]] == ["v1.1.5", "v1.1.4"]
    assert data["broken"][0]["file"] == "v1.1.3.json"


def test_show_one_build_grouped(runner: CliRunner, ws: Path) -> None:
    result = runner.invoke(cli_app, ["history", "v1.1.5", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("Build v1.1.5", "Image", "Apps", "Build args", "Containerfile", "Deploys"):
        assert heading in out
    assert "PYTHON_VERSION  3.11.6" in out
    assert "running on  erp@local" in out


def test_show_unknown_version_exit_12(runner: CliRunner, ws: Path) -> None:
    result = runner.invoke(cli_app, ["history", "v1.1.9", "-w", str(ws)])
    assert result.exit_code == 12
    assert "unknown version v1.1.9" in result.stderr and "v1.1.5" in result.stderr


def test_diff_offline(runner: CliRunner, ws: Path) -> None:
    result = runner.invoke(cli_app, ["history", "--diff", "v1.1.4", "v1.1.5", "--offline", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert "v1.1.4 -> v1.1.5" in result.stdout
    assert "~ erpnext: v15.17.0 -> v15.18.0" in result.stdout
    assert "not counted (--offline)" in result.stdout
    assert "= Containerfile unchanged" in result.stdout


def test_diff_json(runner: CliRunner, ws: Path) -> None:
    args = ["history", "--diff", "v1.1.4", "v1.1.5", "--offline", "--json", "-w", str(ws)]
    data = json.loads(runner.invoke(cli_app, args).stdout)
    assert data["changes"][0]["name"] == "erpnext" and data["containerfile"]["changed"] is False


def test_version_and_diff_together_is_a_usage_error(runner: CliRunner, ws: Path) -> None:
    result = runner.invoke(cli_app, ["history", "v1.1.5", "--diff", "v1.1.4", "v1.1.5", "-w", str(ws)])
    assert result.exit_code == 2


def test_show_a_rebuild_record_by_its_file_name(runner: CliRunner, ws: Path) -> None:
    record = make_manifest("v1.1.4", "2026-11-20T08:00:00+00:00", kind="rebuild")
    record["rebuild_of"] = "v1.1.4"
    record["labels"] = {"org.opencontainers.image.version": "v1.1.4"}
    record["drift"] = [{"name": "erpnext", "message": "erpnext: v15.17.0 still at 1234567"}]
    write(ws / "builds", record, "v1.1.4.rebuild-20261120T080000Z.json")
    result = runner.invoke(cli_app, ["history", "v1.1.4.rebuild-20261120T080000Z", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Build v1.1.4 (rebuild of v1.1.4)  [v1.1.4.rebuild-20261120T080000Z.json]" in out
    assert "org.opencontainers.image.version  v1.1.4" in out
    assert "erpnext  erpnext: v15.17.0 still at 1234567" in out
    original = runner.invoke(cli_app, ["history", "v1.1.4", "-w", str(ws)])
    assert "Rebuilds" in original.stdout and "v1.1.4.rebuild-20261120T080000Z.json" in original.stdout


# -- issue 18 item 9: places, per-place outcomes, --migrate-only runs ------------------------

DAEMON = "ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP"


def _lab_records(root: Path, daemon: str | None) -> None:
    """The real lab's v1.3.0 (real-lab-2026-12-07.md B5/B6): an interrupted local deploy, the
    same stack deployed over SSH, then the local --migrate-only that completed the first."""
    write(root / "builds", make_manifest("v1.3.0", "2026-12-07T12:05:06+00:00"))
    runs = [("2026-12-07T12:17:41+00:00", "local", "interrupted", True),
            ("2026-12-07T12:21:37+00:00", "root@127.0.0.1:2322", "succeeded", True),
            ("2026-12-07T12:23:00+00:00", "local", "succeeded", False)]  # fmt: skip
    for finished, host, result, served in runs:
        record = make_deploy("v1.3.0", finished, project="labik", host=host, result=result)
        record.update(schema_version=2, served=served, kind="deploy", daemon_id=daemon)
        write_deploy(root / "deploys", record)


def test_a_local_and_an_ssh_target_on_one_daemon_are_one_place(runner: CliRunner, tmp_path: Path) -> None:
    _lab_records(tmp_path, DAEMON)
    listed = runner.invoke(cli_app, ["history", "-w", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[2].split("\t")[6] == "labik@local (migrate-only)"
    shown = runner.invoke(cli_app, ["history", "v1.3.0", "-w", str(tmp_path)])
    deploys = shown.stdout.split("Deploys\n", 1)[1].splitlines()
    assert [line.split() for line in deploys if line.strip()] == [
        ["running", "on", "labik@local"],
        ["labik@local", "2026-12-07T12:17:41+00:00", "interrupted"],
        ["labik@local", "(as", "labik@root@127.0.0.1:2322)", "2026-12-07T12:21:37+00:00"],
        ["labik@local", "2026-12-07T12:23:00+00:00", "migrate-only"],
    ]


def test_without_a_daemon_id_each_target_is_its_own_place_with_its_own_outcome(
    runner: CliRunner, tmp_path: Path
) -> None:
    _lab_records(tmp_path, None)
    listed = runner.invoke(cli_app, ["history", "-w", str(tmp_path)])
    # the interrupted run was completed at its place: no "(interrupted)" tag on any place
    cell = "labik@local (migrate-only), labik@root@127.0.0.1:2322"
    assert listed.stdout.splitlines()[2].split("\t")[6] == cell
    assert "interrupted" not in listed.stdout.splitlines()[2]


def test_a_failure_stays_on_its_place_until_the_version_runs_fine_there(
    runner: CliRunner, tmp_path: Path
) -> None:
    write(tmp_path / "builds", make_manifest("v2", "2026-12-01T09:00:00+00:00"))
    for finished, host, result in [("2026-12-02T10:00:00+00:00", "local", "patch-failed"),
                                   ("2026-12-02T11:00:00+00:00", "local", "succeeded"),
                                   ("2026-12-02T12:00:00+00:00", "ops@b:22", "migrate-failed")]:  # fmt: skip
        write_deploy(tmp_path / "deploys", make_deploy("v2", finished, host=host, result=result))
    listed = runner.invoke(cli_app, ["history", "-w", str(tmp_path)])
    assert listed.stdout.splitlines()[2].split("\t")[6] == "erp@local, erp@ops@b:22 (migrate-failed)"


def test_a_daemon_id_of_the_wrong_shape_is_not_used(runner: CliRunner, tmp_path: Path) -> None:
    _lab_records(tmp_path, "../../x")
    listed = runner.invoke(cli_app, ["history", "-w", str(tmp_path)])
    cell = "labik@local (migrate-only), labik@root@127.0.0.1:2322"
    assert listed.stdout.splitlines()[2].split("\t")[6] == cell


# -- issue 20 item 3: deploy by digest -----------------------------------------------------------

DIGEST = "sha256:d5bf716684bc731c3bce353b3e3e7ade1bf66ad6fbf4f87ec218199b4e686358"


def test_history_shows_the_digest_a_deploy_was_pulled_by(runner: CliRunner, tmp_path: Path) -> None:
    write(tmp_path / "builds", make_manifest("v1.3.0", "2026-12-07T12:05:06+00:00"))
    record = make_deploy("v1.3.0", "2026-12-07T12:21:37+00:00", project="labik", host="root@127.0.0.1:2322")
    record.update(schema_version=2, served=True, kind="deploy", image_digest=DIGEST)
    write_deploy(tmp_path / "deploys", record)
    shown = runner.invoke(cli_app, ["history", "v1.3.0", "-w", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert f"2026-12-07T12:21:37+00:00 pulled by {DIGEST}" in " ".join(shown.stdout.split())
    listed = runner.invoke(cli_app, ["history", "--json", "-w", str(tmp_path)])
    assert [d["digest"] for d in json.loads(listed.stdout)["builds"][0]["deploys"]] == [DIGEST]
