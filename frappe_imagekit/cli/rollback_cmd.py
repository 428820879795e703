"""`imagekit rollback`: undo a deploy (database and image), after saying what it will do."""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import typer

from frappe_imagekit.cli import output, swarm_deploy, targetopts
from frappe_imagekit.cli.main import command
from frappe_imagekit.cli.progress_view import PROGRESS_OPTION, Progress, reporting
from frappe_imagekit.deploy.rollback import RollbackOptions, check_options, plan_rollback, rollback
from frappe_imagekit.deploy.sequence import DeployFailed
from frappe_imagekit.errors import ExitCode, UsageError
from frappe_imagekit.workspace import Workspace

NO_TERMINAL = (
    "imagekit rollback replaces databases and asks before it does, but there is no terminal to ask "
    "on: look at the plan with --dry-run, then run it with --yes (or in a terminal)."
)


@command("rollback")
def rollback_command(
    target: str | None = typer.Argument(None, help="A named target of imagekit.toml."),
    project: str = typer.Option("", "--project", "-p", help="Compose project (or the TARGET's)."),
    to: str | None = typer.Option(
        None, "--to", metavar="VERSION", help="Version to go back to (default: what ran before)."
    ),
    deploy_record: str | None = typer.Option(
        None, "--deploy", metavar="RECORD", help="Deploy id or deploys/ file to undo (default: the last)."
    ),
    sites: str | None = typer.Option(None, "--sites", help="all (default: the deploy's), or site1,site2."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    no_restore: bool = typer.Option(
        False, "--no-restore", help="Image only: leave the databases as they are (schema may be newer)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what it would do and lose; change nothing."),
    db_password_var: str = typer.Option(
        "DB_PASSWORD",
        "--db-password-var",
        metavar="NAME",
        help="Variable of the target's env file holding the database root password (bench restore).",
    ),
    backend_service: str | None = typer.Option(None, "--backend-service", help="Service that runs bench."),
    lock_wait: float = typer.Option(0, "--lock-wait", help="Seconds to wait for the deploy lock."),
    up_timeout: float | None = typer.Option(None, "--up-timeout", help="Seconds for services to start."),
    no_health_check: bool = typer.Option(False, "--no-health-check", help="Skip the ping of each site."),
    no_maintenance: bool = typer.Option(
        False, "--no-maintenance", help="Do not put the sites in maintenance mode during the rollback."
    ),
    force: bool = typer.Option(
        False, "--force", help="Stop the containers although they were started by other compose files."
    ),
    host: str | None = targetopts.HOST_OPTION,
    known_hosts: Path | None = targetopts.KNOWN_HOSTS_OPTION,
    identity: Path | None = targetopts.IDENTITY_OPTION,
    ssh_config: Path | None = targetopts.SSH_CONFIG_OPTION,
    docker_host: str | None = targetopts.DOCKER_HOST_OPTION,
    transfer: str | None = targetopts.TRANSFER_OPTION,
    state_dir: str | None = targetopts.STATE_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the plan (--dry-run) or the report as JSON."),
    progress: Progress = PROGRESS_OPTION,
    workspace: Path = targetopts.WORKSPACE_OPTION,
) -> None:
    """Undo a deploy: restore each site's backup from it and run the version before (no migrate)."""

    ws = Workspace.at(workspace)
    given = targetopts.Where(
        project=project, host=host, sites=sites, backend_service=backend_service, up_timeout=up_timeout,
        docker_host=docker_host, state_dir=state_dir, known_hosts=known_hosts, identity=identity,
        ssh_config=ssh_config, transfer=transfer
    )  # fmt: skip
    repeat = _repeated(target, given, workspace, db_password_var)  # before the target fills them in
    where = targetopts.from_target(ws.root, target, given)
    if swarm_deploy.engine_name(where.engine) == swarm_deploy.SWARM:
        if to is not None or deploy_record is not None:
            unbuilt = "--to and --deploy are not built for the swarm engine yet"
            raise UsageError(f"{unbuilt}: roll back without them (the newest swarm deploy is undone).")
        return swarm_deploy.run_rollback(
            asdict(where), db_password_var, yes=yes, dry_run=dry_run, as_json=as_json, ws=ws
        )
    if not where.project:
        raise UsageError("no project: pass --project NAME or a TARGET of imagekit.toml.")
    targetopts.check_connection_options(where.host, where.docker_host, None)
    stack = replace(
        targetopts.build_target(where, name=target, repeat=repeat), compose_files=(), env_file=None
    )
    opts = check_options(
        RollbackOptions(
            where=stack, to_version=to, deploy=deploy_record, sites=targetopts.parse_sites(where.sites),
            no_restore=no_restore, db_password_var=db_password_var, lock_wait=lock_wait,
            health_check=not no_health_check, force=force, maintenance=not no_maintenance,
        )
    )  # fmt: skip
    if not (yes or dry_run or sys.stdin.isatty()):
        raise UsageError(NO_TERMINAL)
    _run(ws, opts, yes=yes, dry_run=dry_run, as_json=as_json, progress=progress.value)


def _repeated(
    target: str | None, given: targetopts.Where, workspace: Path, db_password_var: str
) -> tuple[tuple[str, str], ...]:
    """What a printed ``imagekit rollback`` repeats of this command line (deploy_cmd's, and
    ``-w`` and ``--db-password-var`` when they are not the defaults)."""
    pairs = list(targetopts.repeated_options(target, given))
    if Path(workspace).resolve() != Path.cwd().resolve():
        pairs.append(("-w", str(Path(workspace).resolve())))
    if db_password_var != "DB_PASSWORD":
        pairs.append(("--db-password-var", db_password_var))
    return tuple(pairs)


def _run(
    ws: Workspace, opts: RollbackOptions, *, yes: bool, dry_run: bool, as_json: bool, progress: str
) -> None:
    runner = targetopts.open_target_runner(opts.where)
    try:
        plan = plan_rollback(runner, ws, opts)
        render_plan(plan, output.err if as_json else output.out)
        if dry_run:
            if as_json:
                output.print_json(plan.to_dict())
            return
        if not yes and not typer.confirm(f"Roll back {opts.project} on {plan.host} to {plan.to_version}?"):
            output.err("rollback cancelled: nothing was changed.")
            raise typer.Exit(int(ExitCode.INTERRUPTED))
        with reporting(progress) as reporter:
            report = rollback(runner, plan, on_event=output.err, reporter=reporter)
    except DeployFailed as exc:
        if as_json:
            output.print_json(exc.report.to_dict())
        if exc.report.next_step:
            output.err(f"next: {exc.report.next_step}")
        raise
    finally:
        runner.close()
    if as_json:
        output.print_json(report.to_dict())
    else:
        render_report(report)


def render_plan(plan: Any, say: Any) -> None:
    undo = plan.undo
    say(
        f"Rollback of {plan.opts.project} on {plan.host}: undo deploy {undo.deploy_id} of {undo.version} "
        f"({undo.result}, started {undo.started}) and go back to {plan.image_ref}."
    )
    say("It will:")
    for number, step in enumerate(plan.steps, 1):
        say(f"  {number}. {step}")
    if plan.lost:
        say("What will be lost:")
        for line in plan.lost:
            say(f"  - {line}")
    for warning in plan.warnings:
        output.warn(f"warning: {warning}")


_MAINTENANCE = {"on": "ON", "off": "off"}  # read back from the site at the end


def render_report(report: Any) -> None:
    rows = [[s.site, s.restored or "-", s.health or "-", _MAINTENANCE.get(s.maintenance_now, "-")]
            for s in report.sites]  # fmt: skip
    output.print_table(
        f"Rollback of {report.project} on {report.host} from {report.rolled_back_from} to "
        f"{report.version}: {report.result}",
        ["site", "restored", "answers", "maintenance"],
        rows,
    )
    for note in report.notes:
        output.out(f"note: {note}")
    if report.record:
        output.out(f"recorded in {report.record}")
