"""deploy/sandbox.py: options, the restore command, the image step (no docker)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from frappe_imagekit.deploy import sandbox
from frappe_imagekit.deploy.backuplist import Backup
from frappe_imagekit.deploy.compose import ComposeCLI
from frappe_imagekit.errors import UsageError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace

OPTIONS = sandbox.SandboxOptions(version="v1", backup="a.local@20261201T110000Z", image="org/erp")


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
        sandbox.check_options(replace(OPTIONS, **change))


def test_restore_argv_has_no_password_and_names_the_files() -> None:
    argv = sandbox.restore_argv("c1", "erp-sandbox-v1", "/tmp/imagekit-restore/d.sql.gz",
                                "/tmp/imagekit-restore/f.tar", None, stdin=True)  # fmt: skip
    assert argv == [
        "docker", "exec", "-i", "c1", "bench", "--site", "erp-sandbox-v1", "restore",
        "/tmp/imagekit-restore/d.sql.gz", "--db-root-username", "root",
        "--with-public-files", "/tmp/imagekit-restore/f.tar",
    ]  # fmt: skip
    assert "-i" not in sandbox.restore_argv("c1", "s", "/d.sql", None, None, stdin=False)


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
    return sandbox._Start(runner, Workspace.at(tmp_path), OPTIONS, report, lambda _l: None,
                          ComposeCLI(("docker-compose",), "1.29.2"), backup)  # fmt: skip


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
