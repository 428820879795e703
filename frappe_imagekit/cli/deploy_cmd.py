"""`imagekit deploy` and `imagekit unlock`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from frappe_imagekit import validate
from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import command, workspace_option
from frappe_imagekit.cli.migrate_cmd import render_site
from frappe_imagekit.deploy.send import AUTO, transfer_method
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
from frappe_imagekit.targets import check_identity, get_target
from frappe_imagekit.workspace import Workspace

if TYPE_CHECKING:
    from frappe_imagekit.deploy.sequence import DeployReport, SiteReport

WORKSPACE_OPTION = workspace_option("Folder with .env, builds/ and deploys/.")
HOST_OPTION = typer.Option(None, "--host", help="user@server[:port]; run over SSH (default: this machine).")
KNOWN_HOSTS_OPTION = typer.Option(
    None, "--known-hosts", help="known_hosts file (default: the system and user files)."
)
IDENTITY_OPTION = typer.Option(None, "--identity", "-i", help="SSH private key file.")
SSH_CONFIG_OPTION = typer.Option(None, "--ssh-config", help="ssh config file (default ~/.ssh/config).")
DOCKER_HOST_OPTION = typer.Option(
    None, "--docker-host", help="DOCKER_HOST for the commands on the target (e.g. unix:///...)."
)
TRANSFER_OPTION = typer.Option(
    None,
    "--transfer",
    metavar="auto|registry|save",
    help="How an image the SSH target lacks gets there: registry (a local registry and an SSH "
    "tunnel: only missing layers, pulled by digest), save (docker save | docker load) or auto "
    "(default: registry when docker-registry is installed here).",
)
COMPOSE_OPTION = typer.Option(
    None,
    "--compose",
    "-f",
    metavar="FILE",
    help="Compose file on the target; repeat for overrides (default: COMPOSE_FILE).",
)
STATE_DIR_OPTION = typer.Option(
    None,
    "--state-dir",
    help="imagekit state folder on the target (default ~/.local/state/imagekit).",
)


@command("deploy")
def deploy_command(
    target: str | None = typer.Argument(
        None, help="A named target of imagekit.toml (`imagekit targets` lists them)."
    ),
    project: str = typer.Option(
        "", "--project", "-p", help="Compose project (default: COMPOSE_PROJECT_NAME)"
    ),
    compose_file: list[str] | None = COMPOSE_OPTION,
    host: str | None = HOST_OPTION,
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
    known_hosts: Path | None = KNOWN_HOSTS_OPTION,
    identity: Path | None = IDENTITY_OPTION,
    ssh_config: Path | None = SSH_CONFIG_OPTION,
    docker_host: str | None = DOCKER_HOST_OPTION,
    transfer: str | None = TRANSFER_OPTION,
    state_dir: str | None = STATE_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    workspace: Path = WORKSPACE_OPTION,
) -> None:
    """Deploy an image: backup, recreate the services whose image or configuration changed, migrate."""
    ws = Workspace.at(workspace)
    repeat = repeated_options(target, locals())  # before the target fills them in
    if target is not None:
        given = _from_target(ws.root, target, locals())
        project, compose_file, host, env_file, sites = (given[k] for k in _TARGET_WHERE)
        docker_host, state_dir, known_hosts, identity, ssh_config = (given[k] for k in _TARGET_SSH)
        backend_service, up_timeout = given["backend_service"], given["up_timeout"]
    _check_connection_options(host, docker_host, version)
    image, tag = choose_image(ws, version, project or None)
    options = DeployOptions(
        project=project,
        compose_file=compose_file[0] if compose_file else "",
        compose_overrides=tuple((compose_file or [])[1:]),
        image=image,
        version=tag,
        sites=_sites(sites),
        env_file=env_file,
        backup=not no_backup,
        migrate_only=migrate_only,
        dry_run=dry_run,
        force=force,
        rehearsed=rehearse,
        full_down=full_down,
        lock_wait=lock_wait,
        image_var=image_var,
        tag_var=tag_var,
        backend_service=backend_service or "backend",
        oneshot_services=tuple(s.strip() for s in oneshot.split(",") if s.strip()),
        kill_first=tuple(s.strip() for s in kill_first.split(",") if s.strip()),
        state_dir=state_dir,
        up_timeout=120 if up_timeout is None else up_timeout,
        health_check=not no_health_check,
        keep_backups=keep_backups,
        maintenance=not no_maintenance,
        backup_files=backup_files,
        target=target,
        repeat=repeat,
        ssh_flags=ssh_flags(known_hosts, identity, ssh_config),
        transfer=transfer_method(transfer or AUTO),
    )
    check_options(options)  # every option checked before anything connects or stops
    runner = open_runner(
        host,
        known_hosts=_str(known_hosts),
        identity_file=_str(identity),
        ssh_config=_str(ssh_config),
        docker_host=docker_host,
    )
    try:
        report = deploy(runner, ws, options, on_event=output.err)
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
    host: str | None = HOST_OPTION,
    known_hosts: Path | None = KNOWN_HOSTS_OPTION,
    identity: Path | None = IDENTITY_OPTION,
    ssh_config: Path | None = SSH_CONFIG_OPTION,
    state_dir: str | None = STATE_DIR_OPTION,
) -> None:
    """Clear a deploy lock left behind by a deploy that is gone."""
    validate.project_name(project, "--project", UsageError)
    _check_connection_options(host, None, None)
    runner = open_runner(
        host,
        known_hosts=_str(known_hosts),
        identity_file=_str(identity),
        ssh_config=_str(ssh_config),
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


def _check_connection_options(host: str | None, docker_host: str | None, version: str | None) -> None:
    """Usage errors (exit 2) for --host, --docker-host and --version before anything runs."""
    if host is not None:
        validate.host_spec(host, "--host", UsageError)
    if docker_host is not None:
        validate.not_an_option(docker_host, "--docker-host", UsageError)
    if version is not None:
        validate.image_tag(version, "--version", UsageError)


_TARGET_WHERE = ("project", "compose_file", "host", "env_file", "sites")
_TARGET_SSH = ("docker_host", "state_dir", "known_hosts", "identity", "ssh_config")


def _from_target(root: Path, name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The command line's deploy options, with the named target's values where it gave none;
    a --project or --compose that differs from the target's is refused."""
    target = get_target(root, name)
    check_identity(target, given["project"] or None, given["compose_file"] or None)
    filled = dict(given, project=target.project, compose_file=list(target.compose))
    for key in ("host", "env_file", "backend_service", "up_timeout", *_TARGET_SSH):
        if filled[key] is None:
            filled[key] = getattr(target, key)
    if filled["sites"] is None and target.sites is not None:
        filled["sites"] = ",".join(target.sites)
    return filled


# options a printed imagekit command repeats as given: with a target, what overrode the target's
_REPEATED_WITH_TARGET = (("--host", "host"), ("--env-file", "env_file"), ("--state-dir", "state_dir"))
_REPEATED_SSH = (("--known-hosts", "known_hosts"), ("--identity", "identity"),
                 ("--ssh-config", "ssh_config"), ("--docker-host", "docker_host"),
                 ("--transfer", "transfer"))  # fmt: skip


def repeated_options(
    target: str | None, given: dict[str, Any], *, where: bool | None = None
) -> tuple[tuple[str, str], ...]:
    """The command line's options that printed ``imagekit deploy|rollback`` commands repeat:
    the SSH options (their files, on this machine, made absolute), and with a target (or
    ``where``) --host, --env-file and --state-dir as given (paths on the target)."""
    where = target is not None if where is None else where
    wanted = (*(_REPEATED_WITH_TARGET if where else ()), *_REPEATED_SSH)
    pairs = []
    for option, key in wanted:
        value = given.get(key)
        if value is None:
            continue
        pairs.append((option, os.path.abspath(value) if isinstance(value, Path) else str(value)))
    return tuple(pairs)


def ssh_flags(known_hosts: Path | None, identity: Path | None, ssh_config: Path | None) -> tuple[str, ...]:
    """The deploy's SSH files as OpenSSH's options, for the printed ``ssh HOST '...'`` lines."""
    flags: list[str] = []
    if ssh_config:
        flags += ["-F", os.path.abspath(os.path.expanduser(ssh_config))]
    if identity:
        flags += ["-i", os.path.abspath(os.path.expanduser(identity))]
    if known_hosts:
        flags += ["-o", f"UserKnownHostsFile={os.path.abspath(os.path.expanduser(known_hosts))}"]
    return tuple(flags)


def _sites(sites: str | None) -> list[str] | None:
    if sites is None or sites.strip() == "all":
        return None
    return [s.strip() for s in sites.split(",") if s.strip()]


def _str(path: Path | None) -> str | None:
    return str(path) if path else None


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
