"""Run the imagekit CLI in-process through typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from frappe_imagekit.cli.main import _load_commands, app


def invoke(*args: str, env: dict[str, str | None] | None = None):
    """Invoke ``imagekit ARGS``; the result has exit_code, stdout and stderr."""
    _load_commands()
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
