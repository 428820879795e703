"""The typer app and the one error handler."""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer

from frappe_imagekit import __version__
from frappe_imagekit.cli import output
from frappe_imagekit.errors import ExitCode, ImagekitError
from frappe_imagekit.interrupts import sigterm_as_interrupt

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="imagekit",
    help="Build, record and deploy custom Frappe/ERPNext images without leaking tokens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich-formatted help costs ~80 ms of imports on every --help.
    rich_markup_mode=None,
)

STATE = {"verbose": False}

WORKSPACE_HELP = "Folder with .env, de-example.env, apps.json and builds/."


def workspace_option(help: str = WORKSPACE_HELP) -> Any:  # noqa: A002 - typer's keyword
    """The `-w/--workspace` option every command takes (default: the current directory)."""
    return typer.Option(Path("."), "--workspace", "-w", help=help)


def _version(value: bool) -> None:
    if value:
        output.out(f"imagekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show more detail on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    STATE["verbose"] = verbose


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The one handler: ImagekitError -> one red line + its exit code; anything else is a bug."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ImagekitError as exc:
            output.err(f"error: {exc.message}")
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            output.err("interrupted.")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            _report_bug(exc)
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return wrapper


def command(name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``@command("build")``: register a CLI command wrapped in the error handler."""

    def decorate(func: F) -> F:
        app.command(name, **kwargs)(handle_errors(func))
        return func

    return decorate


def _report_bug(exc: BaseException) -> None:
    output.err(
        f"internal error ({type(exc).__name__}): this is a bug in imagekit; "
        "run again with --verbose and report the output."
    )
    if STATE["verbose"] or os.environ.get("IMAGEKIT_DEBUG"):
        # format_exception never includes local variables; the text is redacted like every line
        output.err("".join(traceback.format_exception(exc)).rstrip())


def _load_commands() -> None:
    # Each module registers its commands with @command on import; they import `command` from
    # this module, so importing them here at the top would be a cycle.
    from frappe_imagekit.cli import (  # noqa: F401
        build_cmd,
        check_cmd,
        completion_cmd,
        deploy_cmd,
        history_cmd,
        init_cmd,
        migrate_cmd,
        rollback_cmd,
        sandbox_cmd,
        site_cmd,
        targets_cmd,
    )


def main() -> None:
    """Console-script entry point."""
    _load_commands()
    with sigterm_as_interrupt():
        app()
