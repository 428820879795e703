"""deploy/sandbox.py: options, the restore command, the image step (no docker)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from frappe_imagekit.deploy import sandbox
from frappe_imagekit.deploy.backuplist import Backup
from frappe_imagekit.deploy.compose import ComposeCLI
from frappe_imagekit.deploy.engine import ComposeEngine
from frappe_imagekit.errors import UsageError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace

BASE: dict[str, Any] = {"version": "v1", "backup": "a.local@20261201T110000Z", "image": "org/erp"}
OPTIONS = sandbox.SandboxOptions(**BASE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "v1 rm"}, "VERSION"),
        ({"backup": "--all"}, "--backup"),
        ({"name": "ERP"}, "--name"),
        ({"site": "a_b"}, "--site"),
        ({"port": 0}, "--port must be a port number"),
        ({"port": 65536}, "--port must be a port number"),
        ({"db_password_var": "DB-PASSWORD"}, "--db-password-var"),
        ({"env_file": "-x"}, "--env-file"),
    ],
)
def test_bad_options_are_usage_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        sandbox.check_options(sandbox.SandboxOptions.of(**{**BASE, **change}))


def test_the_administrator_password_is_new_each_time() -> None:
    first, second = sandbox.new_admin_password(), sandbox.new_admin_password()
    assert first != second and len(first) >= 24


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"db_name": "_a", "encryption_key": "' + "A" * 43 + '="}', "A" * 43 + "="),
        ('{"db_name": "_a"}', None),
        ('{"encryption_key": "$(rm -rf /)"}', None),
        ('{"encryption_key": 5}', None),
        ("[1]", None),
        ("not json", None),
        (None, None),
        ("[" * 100_000, None),
    ],
)
def test_encryption_key_of_a_site_config_backup(text: str | None, key: str | None) -> None:
    assert sandbox.encryption_key(text) == key


@pytest.mark.parametrize(
    ("last", "cause"),
    [
        (
            "Access denied for user 'root'@'172.18.0.5' (using password: YES)",
            "--db-password-var (now DB_PASSWORD)",
        ),
        ("Site x does not exist!", "a bug in imagekit"),
        ("Site x already exists", "already had that site"),
        ("gzip: stdin: unexpected end of file", "a whole frappe database dump"),
    ],
)
def test_failure_advice_names_the_cause(last: str, cause: str) -> None:
    message = sandbox.restore_failure("bench new-site --source-sql", last, "DB_PASSWORD")
    assert f"({last})" in message and cause in message
    assert ("--db-password-var" in message) == ("Access denied" in last)


class FileRunner(LocalRunner):
    def __init__(self, present: set[str]) -> None:
        super().__init__()
        self.present = present

    def run(self, argv: Any, **_: Any) -> Completed:
        return Completed(
            tuple(argv), 0 if argv[:2] == ["test", "-f"] and argv[2] in self.present else 1, "", ""
        )


def test_backup_files_of_a_named_backup_and_of_a_dump_beside_its_files() -> None:
    folder = "/s/backups/20261201T110000Z/a.local"
    named = Backup(
        "a.local@20261201T110000Z", "a.local", "20261201T110000Z", "v1", "", f"{folder}/x-database.sql.gz",
        public_files=f"{folder}/x-files.tar", others=(f"{folder}/x-site_config_backup.json",),
    )  # fmt: skip
    assert sandbox.backup_files(FileRunner(set()), named) == {
        "database": f"{folder}/x-database.sql.gz", "public": f"{folder}/x-files.tar",
        "config": f"{folder}/x-site_config_backup.json",
    }  # fmt: skip
    dump = Backup("/b/1_a-database.sql.gz", "", "", None, "", "/b/1_a-database.sql.gz")
    runner = FileRunner({"/b/1_a-private-files.tar", "/b/1_a-site_config_backup.json"})
    assert sandbox.backup_files(runner, dump) == {
        "database": "/b/1_a-database.sql.gz", "private": "/b/1_a-private-files.tar",
        "config": "/b/1_a-site_config_backup.json",
    }  # fmt: skip


class ImageRunner(LocalRunner):
    """Answers `docker image inspect` from a set of present images; records every argv."""

    def __init__(self, present: set[str]) -> None:
        super().__init__()
        self.present, self.argv = present, []  # type: ignore[var-annotated]

    def run(self, argv: Any, **_: Any) -> Completed:
        self.argv.append(list(argv))
        found = argv[:3] == ["docker", "image", "inspect"] and argv[3] in self.present
        return Completed(tuple(argv), 0 if found else 1, "", "")


def start_of(runner: ImageRunner, tmp_path: Path) -> sandbox._Start:
    report = sandbox.SandboxReport(
        "erp-sandbox-v1", "erp", "v1", "org/erp:v1", "s", "b", "d", "u", "c", "local", "f"
    )
    backup = Backup("b", "s", "", None, "", "/d.sql.gz")
    engine = ComposeEngine(runner, ComposeCLI(("docker-compose",), "1.29.2"))
    return sandbox._Start(runner, Workspace.at(tmp_path), OPTIONS, report, lambda _l: None,
                          engine, backup)  # fmt: skip


def test_a_missing_image_is_rebuilt_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = ImageRunner(set())
    rebuilt: list[str] = []
    monkeypatch.setattr(sandbox, "_rebuild", lambda run: (rebuilt.append(run.opts.version),
                                                          runner.present.add("org/erp:v1")))  # fmt: skip
    run = start_of(runner, tmp_path)
    sandbox._ensure_image(run)
    assert rebuilt == ["v1"] and run.report.image_rebuilt and not run.report.image_sent
    assert run.report.notes == ["org/erp:v1 was rebuilt from builds/ (imagekit rebuild v1)."]


def test_a_present_image_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_rebuild", lambda run: pytest.fail("rebuilt an image that is there"))
    run = start_of(ImageRunner({"org/erp:v1"}), tmp_path)
    sandbox._ensure_image(run)
    assert not run.report.image_rebuilt and run.report.notes == []


class ListingRunner(LocalRunner):
    """Lists one id of each kind for the filters it is given; records every argv."""

    def __init__(self) -> None:
        super().__init__()
        self.argv: list[list[str]] = []

    def run(self, argv: Any, **_: Any) -> Completed:
        self.argv.append(list(argv))
        return Completed(tuple(argv), 0, "id1\n" if argv[1] in ("ps", "volume", "network") else "", "")


def test_clean_up_removes_only_what_carries_the_sandboxs_label_and_stamp() -> None:
    runner = ListingRunner()
    sandbox._remove(runner, "staging", "/s/sandboxes/staging/compose.yaml", "2026-12-07T13:00:00+00:00")
    listings = [a for a in runner.argv if a[1] in ("ps", "volume", "network") and ("-q" in a or "-aq" in a)]
    assert len(listings) == 3
    stamp = "label=io.imagekit.sandbox.created=2026-12-07T13:00:00+00:00"
    for argv in listings:
        assert argv[-4:] == ["--filter", "label=com.docker.compose.project=staging", "--filter", stamp]
    assert not [a for a in runner.argv if "down" in a]  # no `compose down -v`: it removes what the file names
    assert [a[:3] for a in runner.argv if "rm" in a[:3]] == [
        ["docker", "rm", "-f"], ["docker", "volume", "rm"], ["docker", "network", "rm"], ["rm", "-rf", "--"]
    ]  # fmt: skip


class ConfigRunner(ImageRunner):
    """`docker exec C cat sites/S/site_config.json` answers a new site's config; records stdin."""

    def __init__(self) -> None:
        super().__init__(set())
        self.stdin: list[bytes | None] = []

    def run(self, argv: Any, **kwargs: Any) -> Completed:
        self.argv.append(list(argv))
        self.stdin.append(kwargs.get("input_bytes"))
        config = '{\n "db_name": "_7267c9bf61628760",\n "db_password": "pw",\n "db_type": "mariadb"\n}'
        return Completed(tuple(argv), 0, config if "cat" in argv else "", "")


def test_the_backups_encryption_key_goes_into_the_new_sites_config_through_stdin(tmp_path: Path) -> None:
    runner, key = ConfigRunner(), "K" * 43 + "="
    sandbox._set_config_value(start_of(runner, tmp_path), "c1", "encryption_key", key)
    assert not [argv for argv in runner.argv if any(key in part for part in argv)]  # never in argv
    assert (
        runner.argv[-1][:4] == ["docker", "exec", "-i", "c1"]
        and runner.argv[-1][-1] == "sites/s/site_config.json"
    )
    written = json.loads(runner.stdin[-1] or b"")
    assert written == {
        "db_name": "_7267c9bf61628760",
        "db_password": "pw",
        "db_type": "mariadb",
        "encryption_key": key,
    }


def test_the_secrets_come_from_the_env_file_compose_read(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / ".env").write_text("DB_PASSWORD=from-dot-env\nSITE=erp\n")
    run = start_of(ImageRunner(set()), tmp_path)
    run.runner = LocalRunner()  # reads the files
    run.opts = sandbox.SandboxOptions.of(**BASE, compose_files=(str(tmp_path / "compose.yaml"),))
    assert sandbox._secrets(run) == {"DB_PASSWORD": "from-dot-env"}  # compose's default .env
    (tmp_path / "erp.env").write_text("DB_PASSWORD=given\nAPI_TOKEN=t\n")
    run.opts = replace(run.opts, where=replace(run.opts.where, env_file=str(tmp_path / "erp.env")))
    assert sandbox._secrets(run) == {"DB_PASSWORD": "given", "API_TOKEN": "t"}
