"""`imagekit deploy` and `imagekit unlock`."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from frappe_imagekit import validate
from frappe_imagekit.cli import output, swarm_deploy, targetopts
from frappe_imagekit.cli.main import command
from frappe_imagekit.cli.migrate_cmd import render_site
from frappe_imagekit.cli.progress_view import PROGRESS_OPTION, Progress, reporting
from frappe_imagekit.deploy.sequence import (
    DeployFailed,
    DeployOptions,
    DeployReport,
    SiteReport,
    check_options,
    choose_image,
    deploy,
    open_runner,
    unlock,
)
from frappe_imagekit.errors import UsageError
from frappe_imagekit.workspace import Workspace

if TYPE_CHECKING:
    from frappe_imagekit.deploy.sequence import DeployReport, SiteReport


@command("deploy")
def deploy_command(
    target: str | None = typer.Argument(
        None, help="A named target of imagekit.toml (`imagekit targets` lists them)."
    ),
    project: str = typer.Option(
        "", "--project", "-p", help="Compose project (default: COMPOSE_PROJECT_NAME)"
    ),
    compose_file: list[str] | None = targetopts.COMPOSE_OPTION,
    host: str | None = targetopts.HOST_OPTION,
    version: str | None = typer.Option(
        None, "--version", help="Tag to deploy (default: the newest successful build)."
    ),
    sites: str | None = typer.Option(None, "--sites", help="all (default), or site1,site2."),
    no_backup: bool = typer.Option(False, "--no-backup", help="Skip bench backup before down."),
    migrate_only: bool = typer.Option(
        False, "--migrate-only", help="Only migrate the running backend (no down/up)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Preflight only; change nothing."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Proceed although the containers were started by other files, and remove the running "
        "services the compose files no longer have (named before anything stops).",
    ),
    rehearse: bool = typer.Option(
        False, "--rehearse", help="Deploy only a version whose last rehearsal passed (imagekit rehearse)."
    ),
    full_down: bool = typer.Option(
        False,
        "--full-down",
        help="compose down first (MariaDB and Redis stop too); default: recreate what changed.",
    ),
    lock_wait: float = typer.Option(0, "--lock-wait", help="Seconds to wait for the lock."),
    env_file: str | None = typer.Option(None, "--env-file", help="Env file for compose (target)."),
    image_var: str = typer.Option("CUSTOM_IMAGE", "--image-var", help="Compose variable: image."),
    tag_var: str = typer.Option("CUSTOM_TAG", "--tag-var", help="Compose variable: tag."),
    backend_service: str | None = typer.Option(
        None, "--backend-service", help="Service that runs bench (migrate, backup); default backend."
    ),
    oneshot: str = typer.Option(
        "configurator", "--oneshot", help="Comma-separated services that must exit 0."
    ),
    kill_first: str = typer.Option(
        "websocket,scheduler",
        "--kill-first",
        help="Services killed at once before down: they ignore SIGTERM and hold no state ('' for none).",
    ),
    up_timeout: float | None = typer.Option(
        None, "--up-timeout", help="Seconds for services to start (default 120)."
    ),
    no_health_check: bool = typer.Option(
        False, "--no-health-check", help="Skip the ping and asset check of each site after migrate."
    ),
    keep_backups: int = typer.Option(
        5, "--keep-backups", min=1, help="Deploys whose copied backups stay in the state folder."
    ),
    no_maintenance: bool = typer.Option(
        False,
        "--no-maintenance",
        help="Keep the sites out of maintenance mode (and their scheduler running) during the deploy.",
    ),
    backup_files: bool = typer.Option(
        False, "--backup-files", help="Back up the public and private files too (bench backup --with-files)."
    ),
    known_hosts: Path | None = targetopts.KNOWN_HOSTS_OPTION,
    identity: Path | None = targetopts.IDENTITY_OPTION,
    ssh_config: Path | None = targetopts.SSH_CONFIG_OPTION,
    docker_host: str | None = targetopts.DOCKER_HOST_OPTION,
    transfer: str | None = targetopts.TRANSFER_OPTION,
    state_dir: str | None = targetopts.STATE_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    progress: Progress = PROGRESS_OPTION,
    engine: str | None = typer.Option(
        None, "--engine", help="compose (default) or swarm (a target's engine)."
    ),
    workspace: Path = targetopts.WORKSPACE_OPTION,
) -> None:
    """Deploy an image: backup, recreate the services whose image or configuration changed, migrate."""
    ws = Workspace.at(workspace)
    given = targetopts.Where(
        project=project, compose_file=compose_file, host=host, env_file=env_file, sites=sites,
        backend_service=backend_service, up_timeout=up_timeout, docker_host=docker_host,
        state_dir=state_dir, known_hosts=known_hosts, identity=identity, ssh_config=ssh_config,
        engine=engine, transfer=transfer
    )  # fmt: skip
    repeat = targetopts.repeated_options(target, given)  # before the target fills them in
    where = targetopts.from_target(ws.root, target, given)
    targetopts.check_connection_options(where.host, where.docker_host, version)
    image, tag = choose_image(ws, version, where.project or None)
    stack = targetopts.build_target(where, name=target, repeat=repeat, image_var=image_var, tag_var=tag_var,
                         oneshot=_names(oneshot), kill_first=_names(kill_first))  # fmt: skip
    options = DeployOptions(
        stack, image, tag, sites=targetopts.parse_sites(where.sites), backup=not no_backup,
        migrate_only=migrate_only, dry_run=dry_run, force=force, rehearsed=rehearse, full_down=full_down,
        lock_wait=lock_wait, health_check=not no_health_check, keep_backups=keep_backups,
        maintenance=not no_maintenance, backup_files=backup_files,
    )  # fmt: skip
    check_options(options)  # every option checked before anything connects or stops
    runner = targetopts.open_target_runner(stack)
    if swarm_deploy.engine_name(where.engine) == swarm_deploy.SWARM:
        with closing(runner):
            return swarm_deploy.run(runner, options, as_json, ws)
    try:
        with reporting(progress.value) as reporter:
            report = deploy(runner, ws, options, on_event=output.err, reporter=reporter)
    except DeployFailed as exc:
        if as_json:
            output.print_json(exc.report.to_dict())
        else:
            _render_next_steps(exc.report)  # e.g. a site left in maintenance, or live and broken
        raise
    finally:
        runner.close()
    if as_json:
        output.print_json(report.to_dict())
    else:
        render_report(report)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))


@command("unlock")
def unlock_command(
    project: str = typer.Option(..., "--project", "-p", help="Compose project name."),
    host: str | None = targetopts.HOST_OPTION,
    known_hosts: Path | None = targetopts.KNOWN_HOSTS_OPTION,
    identity: Path | None = targetopts.IDENTITY_OPTION,
    ssh_config: Path | None = targetopts.SSH_CONFIG_OPTION,
    state_dir: str | None = targetopts.STATE_DIR_OPTION,
) -> None:
    """Clear a deploy lock left behind by a deploy that is gone."""
    validate.project_name(project, "--project", UsageError)
    targetopts.check_connection_options(host, None, None)
    runner = open_runner(
        host,
        known_hosts=targetopts.path_str(known_hosts),
        identity_file=targetopts.path_str(identity),
        ssh_config=targetopts.path_str(ssh_config),
    )
    try:
        holder = unlock(runner, project, state_dir)
    finally:
        runner.close()
    if holder is None:
        output.out(f"project {project} on {runner.host} was not locked.")
    else:
        who = f"{holder.get('who')} on {holder.get('hostname')} (pid {holder.get('pid')})"
        output.out(f"removed the deploy lock of {project} on {runner.host}, held by {who}.")


def _names(listed: str) -> tuple[str, ...]:
    """``--oneshot a,b`` and ``--kill-first a,b``: the service names, blanks dropped."""
    return tuple(s.strip() for s in listed.split(",") if s.strip())


def render_report(report: DeployReport) -> None:
    rows = [
        [s.site, s.status, s.health or "-", _maintenance_cell(s), s.failure or "-", s.failed_patch or "-",
         s.backup or "-"]
        for s in report.sites
    ]  # fmt: skip
    output.print_table(
        f"Deploy {report.image} to {report.project} on {report.host}: {report.result}",
        ["site", "status", "health", "maintenance", "failure", "failed patch", "backup"],
        rows,
    )
    for site in report.sites:
        if site.status == "failed" or site.warnings:
            _render_failure(site)
        if site.apps_not_installed:
            output.out(
                f"{site.site}: in the image but not installed on the site: "
                f"{', '.join(site.apps_not_installed)} (bench --site {site.site} install-app APP)"
            )
    for note in report.notes:
        output.out(f"note: {note}")
    if report.steps:
        _render_plan(report)
    if report.record:
        output.out(f"recorded in {report.record}")


def _render_next_steps(report: DeployReport) -> None:
    for site in report.sites:
        for step in site.next_steps:
            output.out(f"{site.site}: next: {step}".replace("\n", "\n        "))


def _maintenance_cell(site: SiteReport) -> str:
    """The site's real maintenance state, read back at the end: ``ON``, ``off after 12.3s`` (the
    window ended), ``off``; without a read-back, the window's: ``ON``, ``off after ..``, ``-``."""
    window, now = site.maintenance, site.maintenance_now
    if now == "on" or (now is None and window is not None and window.state == "on"):
        return "ON"
    if window is not None and window.state == "off":
        return f"off after {window.seconds:.1f}s"
    return "off" if now == "off" else "-"


def _render_plan(report: DeployReport) -> None:
    new = set(report.image_services)
    for service, image in report.services.items():
        output.out(f"service {service}: {image or '(build)'}{' (new image)' if service in new else ''}")
    for number, step in enumerate(report.steps, 1):
        output.out(f"step {number}: {step}")


def _render_failure(site: SiteReport) -> None:
    render_site(site)
