"""`imagekit check`."""

from __future__ import annotations

from pathlib import Path

import typer

from frappe_imagekit.check import CheckReport, build_downloads, pin_dict, run_check
from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import command, files_options, workspace_option
from frappe_imagekit.workspace import Workspace

WORKSPACE_OPTION = workspace_option()
ENV_FILE_OPTION, APPS_FILE_OPTION = files_options()


@command("check")
def check(
    workspace: Path = WORKSPACE_OPTION,
    offline: bool = typer.Option(False, "--offline", help="Skip the git remote checks."),
    strict: bool = typer.Option(False, "--strict", help="Moving branches are errors, not warnings."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    env_file: str | None = ENV_FILE_OPTION,
    apps_file: str | None = APPS_FILE_OPTION,
) -> None:
    """Validate .env and apps.json and resolve every ref, before anything is built."""
    ws = Workspace.at(workspace, env_file=env_file, apps_file=apps_file)
    report = run_check(ws, offline=offline, strict=strict)
    with output.redacting(report.config.secrets.redactor):
        if as_json:
            output.print_json(report.to_dict())
        else:
            render_report(report)
    if report.has_errors:
        raise typer.Exit(1)


def render_report(report: CheckReport) -> None:
    pins = [pin_dict(pin) for pin in report.config.all_pins]  # a URL or ref that broke a rule is not shown
    rows = [[p["name"], p["ref"] or "-", p["ref_kind"], (p["sha"] or "-")[:12], p["status"]] for p in pins]
    if rows:
        output.print_table("Apps", ["app", "ref", "kind", "sha", "status"], rows)
    fetched = [[d.what, d.source] for d in build_downloads(report.config.values)]
    if fetched:
        output.print_table("What the build downloads", ["what", "from"], fetched)
    for finding in report.findings:
        output.err(f"{finding.level}: {finding.message}")
    output.out(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s).")
