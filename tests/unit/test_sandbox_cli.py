"""`imagekit sandbox` and `imagekit backups`: usage errors, before anything connects."""

from __future__ import annotations

import pytest

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
