"""deploy/backuplist.py: backups in the state folder, their records and short names."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from frappe_imagekit.deploy import backuplist
from frappe_imagekit.deploy.backups import data_of, deploy_facts
from frappe_imagekit.deploy.record import DeployRecord, place_records, read_records
from frappe_imagekit.errors import NotFoundError, UsageError
from frappe_imagekit.process import Completed
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke

ROOT = "/state/imagekit/projects/erp"
SHA = "ab" * 32


class ListingRunner:
    host = "local"

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.argv: list[Sequence[str]] = []

    def run(self, argv: Sequence[str], **_: Any) -> Completed:
        self.argv.append(argv)
        return Completed(tuple(argv), 0, self.stdout, "")

    def read_file(self, path: str) -> str | None:
        return getattr(self, "audit", None) if path == f"{ROOT}/audit.log" else None


def record(ws: Path, started: str, version: str, result: str = "succeeded", **extra: Any) -> None:
    folder = ws / "deploys"
    folder.mkdir(exist_ok=True)
    stamp = backuplist.deploy_id(started)
    data = {"project": "erp", "version": version, "started": started, "result": result, **extra}
    (folder / f"{stamp}-erp.json").write_text(json.dumps(data))


def listing(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def test_backups_are_listed_newest_first_with_versions_from_the_records(tmp_path: Path) -> None:
    record(tmp_path, "2026-12-01T10:00:00+00:00", "v1")
    record(
        tmp_path,
        "2026-12-01T11:00:00+00:00",
        "v2",
        sites=[
            {
                "site": "a.local",
                "backup_files": [
                    {
                        "path": f"{ROOT}/backups/20261201T110000Z/a.local/1-a_local-database.sql.gz",
                        "size": 40,
                        "sha256": SHA,
                    }
                ],
            }
        ],
    )
    record(tmp_path, "2026-12-01T12:00:00+00:00", "v3", result="patch-failed")
    record(tmp_path, "2026-12-01T13:00:00+00:00", "v3")
    runner = ListingRunner(listing(
        f"40 {ROOT}/backups/20261201T110000Z/a.local/1-a_local-database.sql.gz",
        f"2 {ROOT}/backups/20261201T110000Z/a.local/1-a_local-site_config_backup.json",
        f"100 {ROOT}/backups/20261201T110000Z/a.local/1-a_local-files.tar",
        f"200 {ROOT}/backups/20261201T110000Z/a.local/1-a_local-private-files.tar",
        f"41 {ROOT}/backups/20261201T130000Z/a.local/2-a_local-database.sql.gz",
        f"42 {ROOT}/backups/20261201T130000Z/b.local/2-b_local-database.sql.gz",
    ))  # fmt: skip
    found = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp")  # type: ignore[arg-type]
    assert [b.name for b in found.backups] == [
        "b.local@20261201T130000Z", "a.local@20261201T130000Z", "a.local@20261201T110000Z"]  # fmt: skip
    old = found.backups[2]
    assert (old.version, old.data_of, old.when) == ("v2", "v1", "2026-12-01T11:00:00+00:00")
    assert old.database == f"{ROOT}/backups/20261201T110000Z/a.local/1-a_local-database.sql.gz"
    assert old.public_files and old.public_files.endswith("-files.tar") and "private" not in old.public_files
    assert old.private_files and old.private_files.endswith("-private-files.tar")
    assert old.others == (f"{ROOT}/backups/20261201T110000Z/a.local/1-a_local-site_config_backup.json",)
    assert (old.size, old.sha256) == (342, SHA)
    assert found.backups[0].data_of == "v2"  # v3's failed deploy in between did not run
    assert found.skipped == []
    assert runner.argv[0][-1] == f"{ROOT}/backups"


def test_without_a_record_the_time_comes_from_the_deploy_id(tmp_path: Path) -> None:
    runner = ListingRunner(listing(f"40 {ROOT}/backups/20261201T110000Z/a.local/x-database.sql.gz"))
    (only,) = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp").backups  # type: ignore[arg-type]
    assert (only.version, only.when, only.sha256) == (None, "2026-12-01T11:00:00+00:00", None)


@pytest.mark.parametrize(
    "line",
    [
        f"40 {ROOT}/backups/latest/a.local/x-database.sql.gz",  # not a deploy id
        f"40 {ROOT}/backups/20261201T110000Z/-rf/x-database.sql.gz",  # not a site
        f"40 {ROOT}/backups/20261201T110000Z/a.local/-x-database.sql.gz",  # an option
        f"40 {ROOT}/backups/20261201T110000Z/a.local/x y-database.sql.gz",
        "40 /etc/backups/20261201T110000Z/a.local/x-database.sql.gz",  # outside the folder
        f"big {ROOT}/backups/20261201T110000Z/a.local/x-database.sql.gz",
        f"40 {ROOT}/backups/20261201T110000Z/a.local/deeper/x-database.sql.gz",
    ],
)
def test_hostile_listing_lines_are_left_out(tmp_path: Path, line: str) -> None:
    runner = ListingRunner(listing(line))
    found = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp")  # type: ignore[arg-type]
    assert found.backups == [] and len(found.skipped) == 1


def test_a_folder_without_a_dump_is_left_out(tmp_path: Path) -> None:
    runner = ListingRunner(listing(f"2 {ROOT}/backups/20261201T110000Z/a.local/x-site_config_backup.json"))
    found = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp")  # type: ignore[arg-type]
    assert found.backups == []
    assert found.skipped == ["20261201T110000Z/a.local: no database dump in the folder"]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        json.dumps({"project": "other", "version": "v9", "started": "2026-12-01T11:00:00+00:00"}),
        json.dumps({"project": "erp", "version": "-rf", "started": "2026-12-01T11:00:00+00:00"}),
        json.dumps({"project": "erp", "version": "v9", "started": "yesterday"}),
        json.dumps(
            {
                "project": "erp",
                "version": "v9",
                "started": "2026-12-01T11:00:00+00:00",
                "sites": [{"site": "a.local", "backup_files": [{"path": "x", "sha256": "$(rm)"}]}],
            }
        ),
    ],
)
def test_hostile_records_give_no_version(tmp_path: Path, content: str) -> None:
    (tmp_path / "deploys").mkdir()
    (tmp_path / "deploys" / "20261201T110000Z-erp.json").write_text(content)
    runner = ListingRunner(listing(f"40 {ROOT}/backups/20261201T110000Z/a.local/x-database.sql.gz"))
    (only,) = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp").backups  # type: ignore[arg-type]
    assert only.sha256 is None
    assert only.version in (None, "v9")


def backups_of(*names: str) -> list[backuplist.Backup]:
    made = []
    for name in names:
        site, deploy = name.split("@")
        dump = f"{ROOT}/{deploy}/{site}/d-database.sql.gz"
        made.append(backuplist.Backup(name, site, deploy, "v1", "", dump))
    return made


def test_short_names() -> None:
    known = backups_of("a.local@20261201T130000Z", "b.local@20261201T130000Z", "a.local@20261201T110000Z")
    assert backuplist.find(known, "a.local@20261201T110000Z") is known[2]
    assert backuplist.find(known, "a.local@latest") is known[0]
    assert backuplist.is_short_name("a.local@latest") and backuplist.is_short_name("a@20261201T110000Z")
    assert not backuplist.is_short_name("/srv/backups/x-database.sql.gz")
    assert not backuplist.is_short_name("a.local@yesterday")


def test_an_unknown_name_lists_the_known_ones() -> None:
    known = backups_of("a.local@20261201T130000Z")
    with pytest.raises(NotFoundError, match=r"no backup named c.local@latest .*known: a.local@2026"):
        backuplist.find(known, "c.local@latest")
    with pytest.raises(UsageError, match="is not a backup name"):
        backuplist.find(known, "a.local")


# -- issue 19 item 13: data_of from this place's deploys only; issue 18 item 9: "data of" shown --


def test_data_of_comes_from_the_deploys_of_this_host_only(tmp_path: Path) -> None:
    record(tmp_path, "2026-12-01T10:00:00+00:00", "v1")
    record(tmp_path, "2026-12-01T11:00:00+00:00", "v9", host="ops@other.example:22")  # another erp
    record(tmp_path, "2026-12-01T12:00:00+00:00", "v2")
    runner = ListingRunner(listing(f"40 {ROOT}/backups/20261201T120000Z/a.local/1-a_local-database.sql.gz"))
    found = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp")  # type: ignore[arg-type]
    assert [(b.version, b.data_of) for b in found.backups] == [("v2", "v1")]
    assert runner.argv[-1][:2] == ["sh", "-c"]  # no record names a daemon: docker is not asked


DAEMON = "ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP"


class DaemonRunner(ListingRunner):
    """The target answers ``docker info`` with its daemon ID, the listing otherwise."""

    def run(self, argv: Sequence[str], **_: Any) -> Completed:
        self.argv.append(argv)
        out = DAEMON + "\n" if list(argv[:2]) == ["docker", "info"] else self.stdout
        return Completed(tuple(argv), 0, out, "")


def test_a_deploy_over_ssh_to_the_same_daemon_is_this_place(tmp_path: Path) -> None:
    record(tmp_path, "2026-12-01T10:00:00+00:00", "v1", host="root@127.0.0.1:2322", daemon_id=DAEMON)
    record(
        tmp_path,
        "2026-12-01T11:00:00+00:00",
        "v7",
        host="ops@other.example:22",
        daemon_id="OTHER:" + "A" * 20,
    )
    record(tmp_path, "2026-12-01T12:00:00+00:00", "v2", daemon_id=DAEMON)
    runner = DaemonRunner(listing(f"40 {ROOT}/backups/20261201T120000Z/a.local/1-a_local-database.sql.gz"))
    found = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp")  # type: ignore[arg-type]
    assert [(b.version, b.data_of) for b in found.backups] == [("v2", "v1")]


def test_backups_text_shows_the_version_whose_data_each_backup_holds(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = state / "projects" / "erp" / "backups" / "20261201T120000Z" / "a.local"
    folder.mkdir(parents=True)
    (folder / "1-a_local-database.sql.gz").write_bytes(b"x" * 40)
    record(tmp_path, "2026-12-01T10:00:00+00:00", "v1")
    record(tmp_path, "2026-12-01T12:00:00+00:00", "v2")
    result = invoke("backups", "--project", "erp", "--state-dir", str(state), "-w", str(tmp_path))
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[1:3]
    assert header.split("\t")[:4] == ["name", "site", "deploy", "data of"]
    assert row.split("\t")[:4] == ["a.local@20261201T120000Z", "a.local", "v2", "v1"]


# -- one "data of" for `imagekit backups` and the pruner (backups.data_of), the audit log in both --


def test_backups_and_the_pruner_say_the_same_data_of_from_previous_version_and_the_audit_log(
    tmp_path: Path,
) -> None:
    """v1 here; v2 deployed from another workspace (in the target's audit log only); v3 here,
    whose record says v2 ran before it. Before: `backups` said v3's backup held v1's data (the
    last success in deploys/), the pruner v2."""
    record(tmp_path, "2026-12-01T10:00:00+00:00", "v1")
    record(tmp_path, "2026-12-01T12:00:00+00:00", "v3", previous_version="v2", schema_version=2)
    other = {"schema_version": 2, "project": "erp", "version": "v2", "started": "2026-12-01T11:00:00+00:00",
             "result": "succeeded", "previous_version": "v1", "host": "ops@erp.example:22"}  # fmt: skip
    runner = ListingRunner(listing(
        f"40 {ROOT}/backups/20261201T110000Z/a.local/1-a_local-database.sql.gz",
        f"40 {ROOT}/backups/20261201T120000Z/a.local/2-a_local-database.sql.gz",
    ))  # fmt: skip
    runner.audit = json.dumps(other) + "\n"  # type: ignore[attr-defined]
    found = backuplist.list_backups(runner, Workspace.at(tmp_path), ROOT, "erp")  # type: ignore[arg-type]
    ids = {b.deploy_id for b in found.backups}
    assert [(b.deploy_id, b.version, b.data_of) for b in found.backups] == [
        ("20261201T120000Z", "v3", "v2"), ("20261201T110000Z", "v2", "v1")]  # fmt: skip
    local = read_records(json.loads(p.read_text()) for p in sorted((tmp_path / "deploys").iterdir()))
    pruned = deploy_facts(place_records(local, runner.audit, "erp", "local"))  # type: ignore[attr-defined]
    assert {i: f.data_of for i, f in pruned.items() if i in ids} == {
        b.deploy_id: b.data_of for b in found.backups
    }


def test_data_of_takes_previous_version_first_else_the_last_success_before():
    def rec(started: str, version: str, result: str = "succeeded", **more: object) -> DeployRecord:
        started = f"2026-12-01T{started}:00+00:00"
        data = {"schema_version": 2, "project": "erp", "version": version, "started": started}
        return DeployRecord.from_dict({**data, "result": result, **more})

    records = [rec("10:00", "v1"), rec("11:00", "v2", "patch-failed"),
               rec("12:00", "v1", kind="rollback"), rec("13:00", "v3"),
               rec("14:00", "v4", previous_version="v9")]  # fmt: skip
    assert data_of(reversed(records)) == {
        "20261201T110000Z": "v1", "20261201T130000Z": "v1", "20261201T140000Z": "v9"}  # fmt: skip
