"""`imagekit targets`."""

from __future__ import annotations

from pathlib import Path

import typer

from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import command, workspace_option
from frappe_imagekit.targets import TARGETS_FILE, load_targets
from frappe_imagekit.workspace import Workspace

WORKSPACE_OPTION = workspace_option("Folder with imagekit.toml.")


@command("targets")
def targets_command(
    workspace: Path = WORKSPACE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the targets as JSON."),
) -> None:
    """List the named deploy targets of imagekit.toml (`imagekit deploy NAME` uses one)."""
    targets = load_targets(Workspace.at(workspace).root)
    if as_json:
        output.print_json([t.to_dict() for t in targets.values()])
        return
    if not targets:
        output.out(f"no targets: add [targets.NAME] tables to {TARGETS_FILE} (see the README).")
        return
    rows = [
        [t.name, t.host or "this machine", t.project, ", ".join(t.compose), ", ".join(t.sites or ["all"])]
        for t in targets.values()
    ]
    output.print_table("Targets", ["target", "host", "project", "compose", "sites"], rows)
