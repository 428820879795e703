"""deploy/backupcheck.py's file checks and cli/backupverify.py's choice, without Docker."""

from __future__ import annotations

import gzip
import json
import shlex
import tarfile
from pathlib import Path

import pytest

from frappe_imagekit.cli.backupverify import chosen, refuse_mixed
from frappe_imagekit.deploy.backupcheck import (
    BackupCheck,
    count_argv,
    file_problems,
    parse_count,
    rows_problem,
    verify_name,
)
from frappe_imagekit.deploy.backuplist import Backup, BackupListing
from frappe_imagekit.errors import ImagekitError
from frappe_imagekit.runner import LocalRunner

LAB = Path(__file__).resolve().parents[1] / "fixtures" / "frappe-v15-lab"
DUMP = b"CREATE TABLE `tabUser` (`name` varchar(140));\nINSERT INTO `tabUser` VALUES ('Administrator');\n"


def backup(tmp_path: Path, dump: bytes, with_files: bool = True) -> Backup:
    path = tmp_path / "20261207_101500-a_local-database.sql.gz"
    path.write_bytes(gzip.compress(dump + DUMP.replace(b"tabUser", b"tabDocType")))
    public = None
    if with_files:
        public = tmp_path / "20261207_101500-a_local-files.tar"
        with tarfile.open(public, "w") as tar:
            tar.add(path, arcname="./a.local/public/files/x")
    return Backup(name="a.local@20261207T101500Z", site="a.local", deploy_id="20261207T101500Z", version="v2",
                  when="", database=str(path), public_files=str(public) if public else None)  # fmt: skip


def check_of(item: Backup) -> BackupCheck:
    check = BackupCheck(item.name, item.site, "v1")
    file_problems(LocalRunner(), item, check)
    return check


def test_a_whole_backup_passes_every_file_check(tmp_path: Path) -> None:
    check = check_of(backup(tmp_path, DUMP))
    assert check.problem is None
    assert check.checks == ["database dump is whole (gzip -t)",
                            "20261207_101500-a_local-files.tar readable (tar -tf)"]  # fmt: skip


def test_a_truncated_dump_an_empty_core_table_and_a_corrupt_archive_name_the_file(tmp_path: Path) -> None:
    item = backup(tmp_path, DUMP)
    Path(item.database).write_bytes(Path(item.database).read_bytes()[:12])
    check = check_of(item)
    assert check.problem == f"the database dump {item.database} is truncated or not a gzip file"
    assert check.file == item.database
    item = backup(tmp_path, DUMP)
    assert item.public_files is not None
    Path(item.public_files).write_bytes(b"garbage" * 100)
    assert check_of(item).problem == f"the files archive {item.public_files} is corrupt (tar cannot list it)"


def test_latest_is_every_site_of_the_newest_deploy() -> None:
    def b(site: str, deploy_id: str) -> Backup:
        return Backup(f"{site}@{deploy_id}", site, deploy_id, "v2", "", "/x.sql.gz")

    listing = BackupListing(
        [b("a", "20261207T101500Z"), b("b", "20261207T101500Z"), b("a", "20261206T101500Z")]
    )
    assert [x.name for x in chosen(listing, "latest", False)] == ["a@20261207T101500Z", "b@20261207T101500Z"]
    assert len(chosen(listing, None, True)) == 3
    assert [x.name for x in chosen(listing, "a@20261206T101500Z", False)] == ["a@20261206T101500Z"]
    with pytest.raises(ImagekitError, match="not both"):
        refuse_mixed("latest", True)
    assert verify_name("erp", "v15.1") == "erp-verify-v15-1"


@pytest.mark.parametrize(
    ("name", "rows"),
    [("71-db-count-user", 2), ("71b-db-count-doctype", 264), ("71d-db-count-empty-table", 0),
     ("71c-db-count-missing-table", None)],
)  # fmt: skip
def test_the_count_is_read_as_real_bench_printed_it(name: str, rows: int | None) -> None:
    meta = json.loads((LAB / f"{name}.json").read_text())
    assert parse_count(meta["exit_code"], (LAB / f"{name}.txt").read_text()) == rows
    doctype = json.loads(shlex.split(meta["command"])[-1])[0]
    assert count_argv("c1", "s1.lab", doctype)[-7:] == shlex.split(meta["command"])  # the command captured


def test_an_empty_or_missing_core_table_names_the_dump() -> None:
    dump = "/state/b/x-database.sql.gz"
    assert rows_problem({"User": 2, "DocType": 264}, "s1.lab", dump) is None
    assert rows_problem({"User": 0, "DocType": 264}, "s1.lab", dump) == (
        f"the database restored from {dump} has no rows in tabUser (s1.lab)"
    )
    missing = "pymysql.err.ProgrammingError: (1146, \"Table '_5116005a7a161418.tabUser' doesn't exist\")"
    assert rows_problem({"User": missing, "DocType": 1}, "s1.lab", dump) == (
        f"the database restored from {dump} could not be counted (tabUser of s1.lab: {missing})"
    )
    with pytest.raises(ImagekitError):
        count_argv("c1", "-rf", "User")
