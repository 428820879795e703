"""`imagekit init`: a new workspace with a stack imagekit can build and deploy."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from frappe_imagekit import initspace, validate
from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import command
from frappe_imagekit.errors import UsageError

FOLDER_ARGUMENT = typer.Argument(Path("."), help="Folder of the new workspace (default: here).")
APPS_HELP = "Apps of the image, comma-separated (erpnext,hrms)."


@command("init")
def init_command(
    folder: Path = FOLDER_ARGUMENT,
    frappe: int = typer.Option(15, "--frappe", help="Frappe major: 15 or 16."),
    apps: str = typer.Option(",".join(initspace.DEFAULT_APPS), "--apps", help=APPS_HELP),
    site: str = typer.Option(initspace.DEFAULT_SITE, "--site", help="Name of the first site."),
    offline: bool = typer.Option(
        False, "--offline", help="Write the branch version-N instead of asking the remotes for releases."
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite files that exist (a new .env: new passwords)."
    ),
) -> None:
    """Write a workspace: .env, apps.json, a compose stack and the target `local`."""
    choices = initspace.Choices(
        folder=folder,
        major=initspace.check_major(frappe),
        apps=initspace.parse_apps(apps),
        site=validate.site_name(site, "--site", UsageError),
        offline=offline,
        git_base=initspace.git_base(os.environ.get(initspace.GIT_BASE_ENV) or initspace.DEFAULT_GIT_BASE),
    )
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder: name a new or existing folder.")
    names = list(initspace.plan_names())
    taken = initspace.existing(folder, names)
    if taken and not force:  # before asking any remote
        raise initspace.FilesExistError(initspace.exists_message(folder, taken))
    pins = initspace.resolve_pins(("frappe", *choices.apps), choices.git_base, choices.major, offline)
    plan = initspace.plan(choices, pins)
    folder.mkdir(parents=True, exist_ok=True)
    overwritten = initspace.write_files(folder, plan, force)
    _report(choices, pins, plan, overwritten)


def _report(
    choices: initspace.Choices, pins: list[initspace.Pin], plan: initspace.Plan, overwritten: list[str]
) -> None:
    output.out(f"wrote {len(plan.files)} files in {choices.folder} (Frappe {choices.major}):")
    for name in plan.files:
        mark = " (overwritten)" if name in overwritten else ""
        output.out(f"  {name}{mark}")
    for pin in pins:
        output.out(f"  {pin.name}: {pin.ref} ({pin.kind})")
    for note in plan.notes:
        output.warn(note)
    if ".env" in overwritten:
        output.warn(
            ".env was overwritten with new passwords: a database that exists keeps its old root password."
        )
    output.out("next:")
    for line in initspace.next_commands(choices.folder, Path.cwd(), choices.site):
        output.out(f"  {line}")
    port = initspace.DEFAULT_PORT
    output.out(
        f"then open http://{choices.site}:{port} (user Administrator, password ADMIN_PASSWORD in .env)"
    )
