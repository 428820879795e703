"""deploy/benchsite.py: what site new, sandbox and rollback say to bench (no docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from frappe_imagekit.deploy import benchsite, sandboxconfig
from frappe_imagekit.errors import ConfigError, UsageError

LAB = Path(__file__).parent.parent / "fixtures" / "frappe-v15-lab"


def test_new_site_argv_has_no_password_and_the_user_scope_frappe_docker_needs() -> None:
    argv = benchsite.new_site_argv("c1", "erp-sandbox-v1", source_sql="/tmp/imagekit-restore/d.sql.gz")
    assert argv == [
        "docker", "exec", "-i", "-e", "PYTHONUNBUFFERED=1", "c1", "bench", "new-site", "erp-sandbox-v1",
        "--source-sql", "/tmp/imagekit-restore/d.sql.gz", "--mariadb-user-host-login-scope=%",
    ]  # fmt: skip
    assert benchsite.new_site_argv("c1", "a.local", apps=["erpnext"])[-3:] == [
        "--mariadb-user-host-login-scope=%", "--install-app", "erpnext"]  # fmt: skip
    with pytest.raises(UsageError):
        benchsite.new_site_argv("c1", "a.local", source_sql="--force")


def test_new_site_answers_root_then_administrator_twice() -> None:
    assert benchsite.new_site_stdin("r00t", "adm") == b"r00t\nadm\nadm\n"


@pytest.mark.parametrize(
    ("stdout", "stderr", "last"),
    [
        ("Site s already exists\n", "", "Site s already exists"),
        ('(1045, "Access denied")\n', "Warning: Password input may be echoed.\nMySQL root password: \n",
         '(1045, "Access denied")'),
        ("Warning: MariaDB version\n", "MySQL root password: \nTraceback (most recent call last):\n  File x\n"
         'pymysql.err.OperationalError: (1045, "Access denied")\n',
         'pymysql.err.OperationalError: (1045, "Access denied")'),
        ("", "Warning: Password input may be echoed.\nSet Administrator password: \n", ""),
        ("", "Updating : [=  ] 5%\rUpdating : [===] 100%\n", "Updating : [===] 100%"),
    ],
)  # fmt: skip
def test_the_failure_line_is_never_a_password_prompt(stdout: str, stderr: str, last: str) -> None:
    assert benchsite.last_words((stderr, stdout)) == last


def test_the_failure_line_masks_the_root_password() -> None:
    said = "pymysql.err.OperationalError: (1045, 'bad root pw S3cr3t-canary for root')"
    assert benchsite.last_words(("", said), ("S3cr3t-canary", "")) == (
        "pymysql.err.OperationalError: (1045, 'bad root pw *** for root')"
    )


def test_a_password_spanning_lines_is_refused_not_emptied() -> None:
    assert benchsite.env_password("DB_PASSWORD=one\n", "erp.env", "DB_PASSWORD") == "one"
    assert benchsite.env_password("OTHER=x\n", "erp.env", "DB_PASSWORD") == ""
    with pytest.raises(ConfigError, match="DB_PASSWORD in erp.env spans lines"):
        benchsite.env_password('DB_PASSWORD="one\ntwo"\n', "erp.env", "DB_PASSWORD")


PUBLIC = ["./a.local/public/files/", "./a.local/public/files/logo.txt"]


@pytest.mark.parametrize(
    ("names", "types", "folder", "problem"),
    [
        (PUBLIC, ["d", "-"], "public", None),
        (["./", "./a.local/", *PUBLIC], ["d", "d", "d", "-"], "public", None),
        (PUBLIC, ["d", "-"], "private", "is not under ./SITE/private/"),
        (["/etc/passwd"], ["-"], "public", "points outside the site"),
        (["./a.local/public/../../../x"], ["-"], "public", "points outside the site"),
        (["./a.local/site_config.json"], ["-"], "public", "is not under ./SITE/public/"),
        (["./a.local/public/files/l"], ["l"], "public", "is not a plain file or folder"),
        (["./a.local/public/files/h"], ["h"], "public", "is not a plain file or folder"),
        (["a.local/public/files/x"], ["-"], "public", "is not under ./SITE/public/"),
        (PUBLIC, ["d"], "public", "not one member a line"),
    ],
)
def test_archive_members_are_checked_before_unpacking(
    names: list[str], types: list[str], folder: str, problem: str | None
) -> None:
    found = benchsite.archive_problem(names, types, folder)
    assert found is None if problem is None else problem in (found or "")


def test_the_sandbox_file_keeps_secrets_as_references() -> None:
    values = {"DB_PASSWORD": "pw$1", "ADMIN_PASSWORD": "", "SITE": "erp", "API_TOKEN": "tok"}
    secrets = sandboxconfig.env_secrets(values, ("DB_ROOT",))
    assert secrets == {"DB_PASSWORD": "pw$1", "API_TOKEN": "tok"}
    config = {"services": {"db": {
        "environment": {"MYSQL_ROOT_PASSWORD": "pw$$1", "SITE": "erp"},
        "healthcheck": {"test": ["CMD", "mysqladmin", "--password=pw$$1"], "retries": 3},
    }}}  # fmt: skip
    assert sandboxconfig.unset_secrets(config, secrets) == {"services": {"db": {
        "environment": {"MYSQL_ROOT_PASSWORD": "${DB_PASSWORD}", "SITE": "erp"},
        "healthcheck": {"test": ["CMD", "mysqladmin", "--password=${DB_PASSWORD}"], "retries": 3},
    }}}  # fmt: skip


def test_redrawn_shows_a_progress_bar_as_a_terminal_does() -> None:
    # real bench (72-migrate-progress-bars-redrawn): each redraw starts with \r, one line per bar
    real = (LAB / "72-migrate-progress-bars-redrawn.txt").read_bytes().decode()
    lines = real.split("\n")
    assert len(lines[1]) > 10_000  # every redraw of frappe's bar on one line
    shown = [benchsite.redrawn(line) for line in lines]
    assert shown[:3] == [
        "Migrating s1.lab",
        "Updating DocTypes for frappe        : [========================================] 100%",
        "Updating DocTypes for lab_app       : [========================================] 100%",
    ]
    assert benchsite.redrawn("Executing lab_app.patches.v1_1.set_location in s1.lab\n") == (
        "Executing lab_app.patches.v1_1.set_location in s1.lab"
    )
    assert benchsite.redrawn("") == ""
