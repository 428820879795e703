"""`imagekit rehearse`: the migrate of VERSION tried in a sandbox on a fresh copy of production's data."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from frappe_imagekit.cli import output, swarm_deploy, targetopts
from frappe_imagekit.cli.main import command
from frappe_imagekit.cli.progress_view import PROGRESS_OPTION, Progress, reporting
from frappe_imagekit.cli.sandbox_cmd import PROJECT_OPTION, TARGET_ARGUMENT, down_where_argv
from frappe_imagekit.deploy.rehearse import RehearsalFailed, RehearsalReport, RehearseOptions, rehearse
from frappe_imagekit.deploy.sandbox import SandboxOptions, check_options
from frappe_imagekit.deploy.sandboxconfig import DEFAULT_PORT
from frappe_imagekit.deploy.sequence import choose_image
from frappe_imagekit.errors import ImagekitError, UsageError
from frappe_imagekit.workspace import Workspace


@command("rehearse")
def rehearse_command(
    version: str = typer.Argument(..., help="The version (image tag) to rehearse."),
    target: str | None = TARGET_ARGUMENT,
    keep: bool = typer.Option(False, "--keep", help="Leave the sandbox up to look at the result."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port published on 127.0.0.1 for the sandbox."),
    backup_files: bool = typer.Option(False, "--backup-files", help="Back up and restore the files too."),
    no_health_check: bool = typer.Option(False, "--no-health-check", help="Skip the sandbox's health check."),
    project: str = PROJECT_OPTION,
    compose_file: list[str] | None = targetopts.COMPOSE_OPTION,
    env_file: str | None = typer.Option(None, "--env-file", help="Production's env file (target)."),
    db_password_var: str = typer.Option(
        "DB_PASSWORD", "--db-password-var", help="Env file variable with the database root password."
    ),
    backend_service: str | None = typer.Option(None, "--backend-service", help="Service that runs bench."),
    up_timeout: float | None = typer.Option(None, "--up-timeout", help="Seconds for services to start."),
    host: str | None = targetopts.HOST_OPTION,
    docker_host: str | None = targetopts.DOCKER_HOST_OPTION,
    state_dir: str | None = targetopts.STATE_DIR_OPTION,
    known_hosts: Path | None = targetopts.KNOWN_HOSTS_OPTION,
    identity: Path | None = targetopts.IDENTITY_OPTION,
    ssh_config: Path | None = targetopts.SSH_CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: Progress = PROGRESS_OPTION,
    workspace: Path = targetopts.WORKSPACE_OPTION,
) -> None:
    """Rehearse a deploy: back up every site (production keeps serving), migrate VERSION in a sandbox.

    The same migrate report, exit codes (0 ok, 9 a failed patch, 10 another failure) and next
    steps as deploy; the sandbox is removed (unless --keep) and the rehearsal recorded in deploys/.
    """

    ws = Workspace.at(workspace)
    given = targetopts.Where(
        project=project, compose_file=compose_file, host=host, env_file=env_file,
        backend_service=backend_service, up_timeout=up_timeout, docker_host=docker_host,
        state_dir=state_dir, known_hosts=known_hosts, identity=identity, ssh_config=ssh_config
    )  # fmt: skip
    again = _again_argv(version, target, given, port, ws)
    down = down_where_argv(target, given, ws)
    where = targetopts.from_target(ws.root, target, given)
    swarm_deploy.refuse_swarm(where.engine, "imagekit rehearse")
    stack = targetopts.build_target(where)
    image, tag = choose_image(ws, version)
    sbx = SandboxOptions(version=tag, backup="rehearsal.sql.gz", image=image, where=stack, port=port,
                         db_password_var=db_password_var)  # fmt: skip
    check_options(sbx)  # before anything connects
    opts = RehearseOptions(sbx, keep=keep, health_check=not no_health_check, backup_files=backup_files,
                           again=shlex.join(again))  # fmt: skip
    runner = targetopts.open_target_runner(stack)
    try:
        with reporting(progress.value) as reporter:
            report = rehearse(runner, ws, opts, on_event=output.err, reporter=reporter)
    except RehearsalFailed as failed:
        _render(failed.report, as_json, down)
        raise ImagekitError(failed.message, failed.exit_code) from None
    finally:
        runner.close()
    _render(report, as_json, down)
    if int(report.exit_code):
        raise typer.Exit(int(report.exit_code))


def _again_argv(
    version: str, target: str | None, given: targetopts.Where, port: int, ws: Workspace
) -> list[str]:
    """``imagekit rehearse VERSION ...`` naming the same stack (printed in next steps)."""
    argv = ["imagekit", "rehearse", version, *([target] if target else [])]
    if target is None:
        if not given.project:
            raise UsageError("no project: pass a TARGET of imagekit.toml or --project NAME.")
        argv += ["--project", given.project]
        argv += [item for path in given.compose_file or () for item in ("--compose", path)]
    argv += [item for pair in targetopts.repeated_options(target, given, where=True) for item in pair]
    argv += ["--port", str(port)] if port != DEFAULT_PORT else []
    return argv + (["-w", str(ws.root)] if ws.root != Path.cwd().resolve() else [])


def _render(report: RehearsalReport, as_json: bool, down: list[str]) -> None:
    if as_json:
        output.print_json({**report.to_dict(), "record": report.record, "exit_code": int(report.exit_code)})
        return
    output.out(f"rehearsal of {report.version} on {report.project} ({report.host}): {report.result}")
    for site in report.sites:
        line = f"{site.site}: {site.status}"
        if site.failed_patch:
            line += f" in patch {site.failed_patch}"
        elif site.result not in (None, "ok"):
            line += f" ({site.result})"
        if site.health:
            line += f", health {site.health}"
        output.out(f"{line} (backup {site.backup})")
        if site.exception:
            output.out(f"  {site.exception.splitlines()[0][:300]}")
        for step in site.next_steps:
            output.out(f"  next: {step}")
    for note in report.notes:
        output.out(f"note: {note}")
    if report.kept:
        remove = shlex.join([*down, "--down", report.sandbox])
        output.out(f"the sandbox {report.sandbox} was kept: {report.url} (remove it with `{remove}`)")
    output.out("production was not touched (no maintenance mode, no restart).")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
    output.out(f"timings: {timings}; recorded in {report.record}")
