"""The typer app and the one error handler."""

from __future__ import annotations

import functools
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Mapping
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


def files_options() -> tuple[Any, Any]:
    """``--env-file``/``--apps-file``: other files of the workspace in place of .env and apps.json
    (the ``.env.v16``/``apps.v16.json`` that ``imagekit upgrade-plan`` writes beside them)."""
    env = typer.Option(None, "--env-file", help="Env file of the workspace instead of .env (e.g. .env.v16).")
    apps = typer.Option(None, "--apps-file", help="Apps file of the workspace instead of apps.json.")
    return env, apps


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


# Every command: the module under frappe_imagekit.cli that registers it, and the first paragraph
# of its help (what `imagekit --help` lists), in the order `imagekit --help` lists them.
# `imagekit NAME ...` imports NAME's module alone; `imagekit --help` imports none and lists
# these (tests/unit/test_cli_lazy.py checks the table against the modules).
COMMANDS: dict[str, tuple[str, str]] = {
    "build": (
        "build_cmd",
        "Check the workspace, build the image with BuildKit, scan it for secrets, record it.",
    ),
    "lock": (
        "build_cmd",
        "Resolve frappe and every app again and write apps.lock.json next to apps.json.",
    ),
    "prune": (
        "build_cmd",
        "Remove IMAGE_NAME's images that no build, deploy or system tier in use needs.",
    ),
    "check": (
        "check_cmd",
        "Validate .env and apps.json and resolve every ref, before anything is built.",
    ),
    "migrate-report": (
        "migrate_cmd",
        "Report a saved migrate transcript: per site the result, the failed patch, the exception,\n"
        "the app frames, warnings and next steps. Exit 0 all ok, 9 a failed patch, 10 otherwise.",
    ),
    "deploy": (
        "deploy_cmd",
        "Deploy an image: backup, recreate the services whose image or configuration changed, migrate.",
    ),
    "unlock": (
        "deploy_cmd",
        "Clear a deploy lock left behind by a deploy that is gone.",
    ),
    "history": (
        "history_cmd",
        "The build log: every build newest first, one build in full, or the diff of two.",
    ),
    "rebuild": (
        "history_cmd",
        "Rebuild a past version from its manifest: same Containerfile, args, apps and commits.",
    ),
    "init": (
        "init_cmd",
        "Write a workspace: .env, apps.json, a compose stack and the target `local`.",
    ),
    "rollback": (
        "rollback_cmd",
        "Undo a deploy: restore each site's backup from it and run the version before (no migrate).",
    ),
    "backups": (
        "sandbox_cmd",
        "List the backups deploys kept in the target's state folder, with their short names.",
    ),
    "sandbox": (
        "sandbox_cmd",
        "Start VERSION with a backup as a separate compose project beside production (--list, --down).",
    ),
    "rehearse": (
        "rehearse_cmd",
        "Rehearse a deploy: back up every site (production keeps serving), migrate VERSION in a sandbox.",
    ),
    "upgrade-plan": (
        "upgrade_cmd",
        "Plan the move to Frappe MAJOR: refs, missing apps, Python/Node, apps.vN.json and .env.vN.",
    ),
    "targets": (
        "targets_cmd",
        "List the named deploy targets of imagekit.toml (`imagekit deploy NAME` uses one).",
    ),
    "completion": (
        "completion_cmd",
        "Shell completion for imagekit (bash, zsh, fish); nothing is installed unless asked.",
    ),
    "site": (
        "site_cmd",
        "Sites of a deployed stack.",
    ),
}
COMPLETE_VAR = "_IMAGEKIT_COMPLETE"  # set when a shell asks for completions (completion_cmd.py)
_ROOT_FLAGS = {"-v", "--verbose"}  # the root callback's options that take no value


def _load_commands() -> None:
    """Register every command (tests, completion): each module registers its own on import."""
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        importlib.import_module(f"frappe_imagekit.cli.{module}")


def requested_command(argv: list[str]) -> str | None:
    """The command ``argv`` (without the program name) names, past the root options; None when
    it names none (``--help``, ``--version``, nothing)."""
    for arg in argv:
        if arg not in _ROOT_FLAGS:
            return None if arg.startswith("-") else arg
    return None


def _list_commands() -> None:
    """Stand-ins that carry each command's name and help, for the listing of ``imagekit --help``
    (or of an unknown command's error): none of the command modules is imported."""
    for name, (_, help_text) in COMMANDS.items():
        app.command(name, help=help_text, add_help_option=False)(_not_loaded)


def _not_loaded() -> None:
    raise AssertionError("a listed command ran without its module: main() loads it first")  # pragma: no cover


def load_for(argv: list[str], environ: Mapping[str, str]) -> None:
    """Register what ``imagekit ARGV`` needs: the one module of the command it names, every
    module when a shell asks for completions, else the stand-ins for the listing."""
    name = requested_command(argv)
    if environ.get(COMPLETE_VAR):
        _load_commands()
    elif name in COMMANDS:
        importlib.import_module(f"frappe_imagekit.cli.{COMMANDS[name][0]}")
    else:
        _list_commands()


def main() -> None:
    """Console-script entry point."""
    load_for(sys.argv[1:], os.environ)
    with sigterm_as_interrupt():
        app()
