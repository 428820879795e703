"""`imagekit sandbox` and `imagekit backups`: usage errors, before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from frappe_imagekit.cli import backupverify, sandbox_cmd, targetopts
from frappe_imagekit.deploy.backupcheck import BackupCheck
from frappe_imagekit.deploy.backuplist import Backup, BackupListing
from frappe_imagekit.deploy.context import StatePaths
from frappe_imagekit.deploy.sandbox import SandboxOptions
from frappe_imagekit.runner import LocalRunner
from tests.support.cli import invoke


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sandbox",), "pass VERSION and --backup NAME|FILE"),
        (("sandbox", "v1"), "pass VERSION and --backup NAME|FILE"),
        (("sandbox", "--list", "--backup", "a@latest"), "--list and --down NAME take no --backup"),
        (("sandbox", "--list", "--down", "x"), "and not each other"),
        (("sandbox", "--down", "ERP"), "--down 'ERP' is not a compose project name"),
        (
            (
                "sandbox",
                "v1",
                "--backup",
                "a@latest",
                "--port",
                "70000",
                "--project",
                "erp",
                "--compose",
                "c.yaml",
            ),
            "--port must be a port number",
        ),
        (
            ("sandbox", "v1", "--backup", "a@latest", "--name", "Bad Name"),
            "--name 'Bad Name' is not a compose",
        ),
        (("sandbox", "v1", "--backup", "a@latest", "--host", "-oProxyCommand=x"), "--host"),
        (("backups",), "no project: pass a TARGET of imagekit.toml or --project NAME"),
        (("backups", "--project", "../x"), "is not a compose project name"),
    ],
)
def test_usage_errors(
    args: tuple[str, ...], message: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(str(tmp_path))
    (tmp_path / ".env").write_text("IMAGE_NAME=org/erp\n")  # type: ignore[operator]
    done = invoke(*args)
    assert done.exit_code == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_backups_verify_starts_its_sandbox_on_the_target_imagekit_sandbox_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``backups TARGET --verify``: the options come from the named target through the one
    Target helper (cli/targetopts.py), as for ``imagekit sandbox TARGET``: its backend service
    and timeout too (on f848349 the verify sandbox took "backend" and 120 s whatever the target
    said, and ``backups`` handed its ``locals()`` on)."""
    (tmp_path / ".env").write_text("IMAGE_NAME=org/erp\n")
    (tmp_path / "imagekit.toml").write_text(
        '[targets.prod]\nproject = "erp"\ncompose = ["/srv/compose.yaml"]\nbackend_service = "web"\n'
        'up_timeout = 90\nstate_dir = "/srv/state"\nenv_file = "/srv/erp.env"\n'
    )
    backup = Backup("a.local@20261201T100000Z", "a.local", "20261201T100000Z", None, "", "/srv/x.sql.gz")
    started: list[SandboxOptions] = []

    def verify(
        runner: object, ws: object, picked: Backup, base: SandboxOptions, log: str, emit: object
    ) -> BackupCheck:
        started.append(base)
        assert log == "/srv/state/projects/erp/backup-checks.jsonl" and picked == backup
        return BackupCheck(picked.name, picked.site, None, result="ok")

    monkeypatch.setattr(sandbox_cmd, "list_backups", lambda *_: BackupListing([backup]))
    monkeypatch.setattr(
        sandbox_cmd, "state_paths", lambda _r, project, state: StatePaths(f"{state}/projects/{project}")
    )
    monkeypatch.setattr(targetopts, "open_target_runner", lambda _target: LocalRunner())
    monkeypatch.setattr(backupverify, "verify", verify)
    done = invoke("backups", "prod", "--verify", "latest", "--port", "8099", "-w", str(tmp_path))
    assert done.exit_code == 0, done.stderr
    [base] = started
    assert (base.project, base.compose_files, base.env_file, base.state_dir) == (
        "erp",
        ("/srv/compose.yaml",),
        "/srv/erp.env",
        "/srv/state",
    )
    assert (base.backend_service, base.up_timeout, base.port, base.version) == ("web", 90, 8099, "unknown")
