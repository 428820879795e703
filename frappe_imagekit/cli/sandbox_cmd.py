"""`imagekit sandbox` (an old version with an old backup beside production) and `imagekit backups`."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from frappe_imagekit import validate
from frappe_imagekit.cli import backupverify, output, swarm_deploy, targetopts
from frappe_imagekit.cli.main import command
from frappe_imagekit.deploy.backuplist import list_backups
from frappe_imagekit.deploy.sandbox import (
    DownReport,
    Sandbox,
    SandboxOptions,
    check_options,
    down,
    list_sandboxes,
    start,
)
from frappe_imagekit.deploy.sequence import choose_image, state_paths
from frappe_imagekit.deploy.target import Target
from frappe_imagekit.errors import UsageError
from frappe_imagekit.workspace import Workspace

TARGET_ARGUMENT = typer.Argument(None, help="A named target of imagekit.toml (see `imagekit targets`).")
PROJECT_OPTION = typer.Option("", "--project", "-p", help="Production's compose project.")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


@command("backups")
def backups_command(
    target: str | None = TARGET_ARGUMENT,
    project: str = PROJECT_OPTION,
    host: str | None = targetopts.HOST_OPTION,
    docker_host: str | None = targetopts.DOCKER_HOST_OPTION,
    state_dir: str | None = targetopts.STATE_DIR_OPTION,
    known_hosts: Path | None = targetopts.KNOWN_HOSTS_OPTION,
    identity: Path | None = targetopts.IDENTITY_OPTION,
    ssh_config: Path | None = targetopts.SSH_CONFIG_OPTION,
    as_json: bool = JSON_OPTION,
    workspace: Path = targetopts.WORKSPACE_OPTION,
    verify: str | None = typer.Option(
        None, "--verify", metavar="NAME|latest", help="Restore it in a throw-away sandbox and check it."
    ),
    verify_all: bool = typer.Option(
        False, "--all", help="Verify every kept backup (instead of --verify NAME)."
    ),
    compose_file: list[str] | None = targetopts.COMPOSE_OPTION,
    env_file: str | None = typer.Option(None, "--env-file", help="Production's env file (target)."),
    port: int = typer.Option(8081, "--port", help="--verify: port of the throw-away sandbox (127.0.0.1)."),
) -> None:
    """List the backups deploys kept in the target's state folder, with their short names."""

    ws = Workspace.at(workspace)
    backupverify.refuse_mixed(verify, verify_all)
    given = targetopts.Where(
        project=project, compose_file=compose_file, host=host, env_file=env_file, docker_host=docker_host,
        state_dir=state_dir, known_hosts=known_hosts, identity=identity, ssh_config=ssh_config
    )  # fmt: skip
    where = targetopts.from_target(ws.root, target, given)
    if verify is not None or verify_all:
        swarm_deploy.refuse_swarm(where.engine, "imagekit backups --verify")
    if not where.project:
        raise UsageError("no project: pass a TARGET of imagekit.toml or --project NAME.")
    validate.project_name(where.project, "--project", UsageError)
    stack = targetopts.build_target(where)
    runner = targetopts.open_target_runner(stack)
    try:
        root = state_paths(runner, where.project, where.state_dir).root
        listing = list_backups(runner, ws, root, where.project)
        if verify is not None or verify_all:  # --verify NAME|latest, --all (cli/backupverify.py)
            picked = backupverify.chosen(listing, verify, verify_all)
            backupverify.run(runner, ws, stack, picked, f"{root}/backup-checks.jsonl", as_json, port=port)
            return
    finally:
        runner.close()
    if as_json:
        output.print_json(listing.to_dict())
        return
    # "data of": the version whose data the backup holds (what ran before the deploy that took it)
    rows = [[b.name, b.site, b.version or "?", b.data_of or "?", b.deploy_id, b.when, _size(b.size),
             b.database] for b in listing.backups]  # fmt: skip
    output.print_table(
        f"Backups of {where.project} on {runner.host}",
        ["name", "site", "deploy", "data of", "deploy id", "when", "size", "database"],
        rows,
    )
    for reason in listing.skipped:
        output.warn(f"left out {reason}")


@command("sandbox")
def sandbox_command(
    version: str | None = typer.Argument(None, help="The version (image tag) to start."),
    target: str | None = TARGET_ARGUMENT,
    backup: str | None = typer.Option(
        None, "--backup", help="A name from `imagekit backups` (site@deploy-id) or a dump file on the target."
    ),
    site: str | None = typer.Option(None, "--site", help="The site in the sandbox (default: its name)."),
    port: int = typer.Option(8081, "--port", help="Port published on 127.0.0.1 for the sandbox."),
    name: str | None = typer.Option(None, "--name", help="Its project (<project>-sandbox-<version>)."),
    list_them: bool = typer.Option(False, "--list", help="List the sandboxes on the target."),
    down_name: str | None = typer.Option(
        None, "--down", metavar="NAME", help="Remove a sandbox and its volumes."
    ),
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
    transfer: str | None = targetopts.TRANSFER_OPTION,
    state_dir: str | None = targetopts.STATE_DIR_OPTION,
    known_hosts: Path | None = targetopts.KNOWN_HOSTS_OPTION,
    identity: Path | None = targetopts.IDENTITY_OPTION,
    ssh_config: Path | None = targetopts.SSH_CONFIG_OPTION,
    as_json: bool = JSON_OPTION,
    workspace: Path = targetopts.WORKSPACE_OPTION,
) -> None:
    """Start VERSION with a backup as a separate compose project beside production (--list, --down)."""

    ws = Workspace.at(workspace)
    if (list_them or down_name is not None) and target is None:
        version, target = None, version  # `sandbox --list TARGET`: the one argument is the target
    given = targetopts.Where(
        project=project, compose_file=compose_file, host=host, env_file=env_file,
        backend_service=backend_service, up_timeout=up_timeout, docker_host=docker_host,
        state_dir=state_dir, known_hosts=known_hosts, identity=identity, ssh_config=ssh_config,
        transfer=transfer
    )  # fmt: skip
    down_where = down_where_argv(target, given, ws)  # before the target fills them in
    where = targetopts.from_target(ws.root, target, given)
    if swarm_deploy.engine_name(where.engine) == swarm_deploy.SWARM:  # its own stack beside production
        asked = swarm_deploy.SandboxAsk(where, version, backup, site, name, port, db_password_var,
                                        list_them, down_name)  # fmt: skip
        swarm_deploy.run_sandbox(asked, down_where, as_json)
        return
    stack = targetopts.build_target(where)
    if list_them or down_name is not None:
        if backup is not None or (list_them and down_name is not None):
            raise UsageError("--list and --down NAME take no --backup, and not each other.")
        _list_or_down(stack, down_name, as_json)
        return
    if version is None or backup is None:
        raise UsageError("pass VERSION and --backup NAME|FILE (or --list, or --down NAME).")
    image, tag = choose_image(ws, version)
    options = SandboxOptions(version=tag, backup=backup, image=image, where=stack, site=site, port=port,
                             name=name, db_password_var=db_password_var)  # fmt: skip
    _start(ws, options, as_json, down_where)


def down_where_argv(target: str | None, given: targetopts.Where, ws: Workspace) -> list[str]:
    """``imagekit sandbox [TARGET] ...`` naming the same place: what ``--down NAME`` is printed with."""
    argv = ["imagekit", "sandbox", *([target] if target else [])]
    argv += [item for pair in targetopts.repeated_options(target, given, where=True) for item in pair]
    return argv + (["-w", str(ws.root)] if ws.root != Path.cwd().resolve() else [])


def _start(ws: Workspace, options: SandboxOptions, as_json: bool, down_where: list[str]) -> None:
    check_options(options)  # before anything connects
    runner = targetopts.open_target_runner(options.where)
    try:
        report = start(runner, ws, options, on_event=output.err)
    finally:
        runner.close()
    if as_json:
        output.print_json(report.to_dict())
        return
    output.out(f"sandbox {report.name}: {report.image} with {report.backup} restored into site {report.site}")
    for note in report.notes:
        output.out(f"note: {note}")
    output.out(
        f"open {report.url} (the sandbox answers there only, on the target's loopback; "
        f"remove it with `{shlex.join([*down_where, '--down', report.name])}`)"
    )


def _list_or_down(stack: Target, down_name: str | None, as_json: bool) -> None:
    if down_name is not None:
        validate.project_name(down_name, "--down", UsageError)
    runner = targetopts.open_target_runner(stack)
    try:
        if down_name is not None:
            _render_down(down(runner, down_name, stack.state_dir), as_json)
            return
        sandboxes = list_sandboxes(runner)
    finally:
        runner.close()
    if as_json:
        output.print_json([s.to_dict() for s in sandboxes])
    else:
        _render_list(runner.host, sandboxes)


def _render_down(removed: DownReport, as_json: bool) -> None:
    if as_json:
        output.print_json(removed.to_dict())
    else:
        output.out(f"removed sandbox {removed.name}: {len(removed.containers)} containers, "
                   f"{len(removed.volumes)} volumes, {len(removed.networks)} networks")  # fmt: skip


def _render_list(host: str, sandboxes: list[Sandbox]) -> None:
    rows = [[s.name, s.version, s.backup, s.created, s.url, f"{s.running}/{s.containers}", s.of]
            for s in sandboxes]  # fmt: skip
    columns = ["name", "version", "backup", "since", "url", "running", "beside"]
    output.print_table(f"Sandboxes on {host}", columns, rows)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
