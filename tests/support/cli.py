"""Run the imagekit CLI in-process through typer's CliRunner.

``invoke``: an exception inside the command is raised in the test (``catch_exceptions=False``).
``cli``: as the deploy tests always ran it, CliRunner's default: an exception becomes exit code 1
and ``result.exception``, so a test asserting an exit code sees the failure as a wrong code.
"""

from __future__ import annotations

from typer.testing import CliRunner, Result

from frappe_imagekit.cli.main import _load_commands, app


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """Invoke ``imagekit ARGS``; the result has exit_code, stdout and stderr."""
    _load_commands()
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def cli(*args: str) -> Result:
    """Invoke ``imagekit ARGS`` with CliRunner's defaults (exceptions caught into the result)."""
    _load_commands()
    return CliRunner().invoke(app, list(args))
