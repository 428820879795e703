"""`imagekit upgrade-plan MAJOR`: the next Frappe major, proposed beside the workspace's files."""

from __future__ import annotations

from pathlib import Path

import typer

from frappe_imagekit import envfile, upgradeplan
from frappe_imagekit.check import run_check
from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import command, workspace_option
from frappe_imagekit.targets import load_targets
from frappe_imagekit.versions import PAIRINGS
from frappe_imagekit.workspace import Workspace

WORKSPACE_OPTION = workspace_option()
MAJOR_ARGUMENT = typer.Argument(..., help="The Frappe major to move to (e.g. 16).")


@command("upgrade-plan")
def upgrade_plan(
    major: int = MAJOR_ARGUMENT,
    workspace: Path = WORKSPACE_OPTION,
    from_major: int | None = typer.Option(
        None, "--from", help="The major the workspace is on (default: FRAPPE_BRANCH's)."
    ),
    allow_skip: bool = typer.Option(
        False, "--allow-skip", help="Plan a jump over a major (each major's patches expect the one before)."
    ),
    force: bool = typer.Option(False, "--force", help="Write over an .env.vN / apps.vN.json that exist."),
) -> None:
    """Plan the move to Frappe MAJOR: refs, missing apps, Python/Node, apps.vN.json and .env.vN.

    For frappe (FRAPPE_PATH) and each app of apps.json: the newest vMAJOR.x.y release tag on its
    remote, else its version-MAJOR branch; what each app declares at that commit (pyproject.toml
    [tool.bench.frappe-dependencies], hooks.py required_apps) and what does not fit; the Python and
    Node pair of the major. Writes .env.vMAJOR and apps.vMAJOR.json next to .env and apps.json
    (never over them: exit 6 when they exist, unless --force) and prints the commands that check,
    build and rehearse them. A jump over a major is refused unless --allow-skip.
    """
    ws = Workspace.at(workspace)
    names = upgradeplan.plan_names(major)
    upgradeplan.refuse_existing(ws, names, force)  # before any remote is asked
    report = run_check(ws, offline=True, check_version_is_new=False)
    with output.redacting(report.config.secrets.redactor):
        upgradeplan.check_config(len(report.errors))
        targets = sorted(load_targets(ws.root))
        plan = upgradeplan.make_plan(ws, report.config, major, from_major, allow_skip)
        upgradeplan.write(ws, plan, envfile.read_text(ws.env_file, ".env"))
        _report(ws, plan, targets)


def _report(ws: Workspace, plan: upgradeplan.Plan, targets: list[str]) -> None:
    output.out(f"Frappe {plan.current} -> {plan.major} ({ws.root}):")
    for app in [plan.frappe, *plan.apps]:
        ref = f"{app.ref} ({app.kind})" if app.ref else "MISSING"
        output.out(f"  {app.name}: {app.request.ref} -> {ref}")
        if app.frappe_dependencies:
            deps = ", ".join(f"{k} {v}" for k, v in app.frappe_dependencies.items())
            output.out(f"    frappe-dependencies: {deps}")
        if app.required_apps:
            output.out(f"    required_apps: {', '.join(app.required_apps)}")
    pairing = PAIRINGS.get(plan.major)
    if pairing:
        output.out(f"  Python {pairing.python}, Node {pairing.nodes[0]} (Frappe {plan.major}'s pair)")
    for problem in [p for app in plan.apps for p in app.problems]:
        output.warn(problem)
    for note in plan.notes:
        output.warn(note)
    changed = ", ".join(f"{k}={v}" for k, v in upgradeplan.env_values(plan).items())
    output.out(f"wrote {plan.env_name} ({changed}) and {plan.apps_name}; .env and apps.json unchanged.")
    output.out("next:")
    for line in upgradeplan.next_commands(ws, plan, targets):
        output.out(f"  {line}")
    if not targets:
        output.out(f"  imagekit rehearse {plan.version or 'VERSION'} TARGET (name production's target)")
