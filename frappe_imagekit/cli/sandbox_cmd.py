"""`imagekit sandbox` (an old version with an old backup beside production) and `imagekit backups`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from frappe_imagekit import validate
from frappe_imagekit.cli import backupverify, output, swarm_deploy
from frappe_imagekit.cli.main import command
from frappe_imagekit.cli.targetopts import (
    COMPOSE_OPTION,
    DOCKER_HOST_OPTION,
    HOST_OPTION,
    IDENTITY_OPTION,
    KNOWN_HOSTS_OPTION,
    SSH_CONFIG_OPTION,
    STATE_DIR_OPTION,
    TRANSFER_OPTION,
    WHERE_KEYS,
    WORKSPACE_OPTION,
    Where,
    build_target,
    from_target,
    open_target_runner,
    repeated_options,
)
from frappe_imagekit.deploy.backuplist import list_backups
from frappe_imagekit.deploy.sandbox import SandboxOptions, check_options, down, list_sandboxes, start
from frappe_imagekit.deploy.sequence import choose_image, state_paths
from frappe_imagekit.errors import UsageError
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

TARGET_ARGUMENT = typer.Argument(None, help="A named target of imagekit.toml (see `imagekit targets`).")
PROJECT_OPTION = typer.Option("", "--project", "-p", help="Production's compose project.")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
_CONNECTION = ("host", "docker_host", "state_dir", "known_hosts", "identity", "ssh_config")


@command("backups")
def backups_command(
    target: str | None = TARGET_ARGUMENT,
    project: str = PROJECT_OPTION,
    host: str | None = HOST_OPTION,
    docker_host: str | None = DOCKER_HOST_OPTION,
    state_dir: str | None = STATE_DIR_OPTION,
    known_hosts: Path | None = KNOWN_HOSTS_OPTION,
    identity: Path | None = IDENTITY_OPTION,
    ssh_config: Path | None = SSH_CONFIG_OPTION,
    as_json: bool = JSON_OPTION,
    workspace: Path = WORKSPACE_OPTION,
    verify: str | None = typer.Option(
        None, "--verify", metavar="NAME|latest", help="Restore it in a throw-away sandbox and check it."
    ),
    verify_all: bool = typer.Option(
        False, "--all", help="Verify every kept backup (instead of --verify NAME)."
    ),
    compose_file: list[str] | None = COMPOSE_OPTION,
    env_file: str | None = typer.Option(None, "--env-file", help="Production's env file (target)."),
    port: int = typer.Option(8081, "--port", help="--verify: port of the throw-away sandbox (127.0.0.1)."),
) -> None:
    """List the backups deploys kept in the target's state folder, with their short names."""

    ws = Workspace.at(workspace)
    backupverify.refuse_mixed(verify, verify_all)
    given = _with_target(ws.root, target, locals())
    if not given["project"]:
        raise UsageError("no project: pass a TARGET of imagekit.toml or --project NAME.")
    validate.project_name(given["project"], "--project", UsageError)
    runner = _runner(given)
    try:
        root = state_paths(runner, given["project"], given["state_dir"]).root
        listing = list_backups(runner, ws, root, given["project"])
        if verify is not None or verify_all:  # --verify NAME|latest, --all (cli/backupverify.py)
            backupverify.run(runner, ws, given, listing, root, as_json)
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
        f"Backups of {given['project']} on {runner.host}",
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
    compose_file: list[str] | None = COMPOSE_OPTION,
    env_file: str | None = typer.Option(None, "--env-file", help="Production's env file (target)."),
    db_password_var: str = typer.Option(
        "DB_PASSWORD", "--db-password-var", help="Env file variable with the database root password."
    ),
    backend_service: str | None = typer.Option(None, "--backend-service", help="Service that runs bench."),
    up_timeout: float | None = typer.Option(None, "--up-timeout", help="Seconds for services to start."),
    host: str | None = HOST_OPTION,
    docker_host: str | None = DOCKER_HOST_OPTION,
    transfer: str | None = TRANSFER_OPTION,
    state_dir: str | None = STATE_DIR_OPTION,
    known_hosts: Path | None = KNOWN_HOSTS_OPTION,
    identity: Path | None = IDENTITY_OPTION,
    ssh_config: Path | None = SSH_CONFIG_OPTION,
    as_json: bool = JSON_OPTION,
    workspace: Path = WORKSPACE_OPTION,
) -> None:
    """Start VERSION with a backup as a separate compose project beside production (--list, --down)."""

    ws = Workspace.at(workspace)
    if (list_them or down_name is not None) and target is None:
        version, target = None, version  # `sandbox --list TARGET`: the one argument is the target
    down_where = down_where_argv(target, locals(), ws)  # before the target fills them in
    if is_swarm(ws.root, target, locals()):  # its own stack beside production (cli/swarm_deploy.py)
        swarm_deploy.run_sandbox(_with_target(ws.root, target, locals()), down_where, as_json)
        return
    given = _with_target(ws.root, target, locals())
    if list_them or down_name is not None:
        if backup is not None or (list_them and down_name is not None):
            raise UsageError("--list and --down NAME take no --backup, and not each other.")
        _list_or_down(given, down_name, as_json)
        return
    if version is None or backup is None:
        raise UsageError("pass VERSION and --backup NAME|FILE (or --list, or --down NAME).")
    _start(ws, given, as_json, down_where)


def is_swarm(root: Path, target: str | None, given: dict[str, Any]) -> bool:
    """Whether the target's engine is swarm (its sandbox is a stack: cli/swarm_deploy.py)."""
    return swarm_deploy.engine_name(from_target(root, target, where_of(given)).engine) == swarm_deploy.SWARM


def down_where_argv(target: str | None, given: dict[str, Any], ws: Workspace) -> list[str]:
    """``imagekit sandbox [TARGET] ...`` naming the same place: what ``--down NAME`` is printed with."""
    argv = ["imagekit", "sandbox", *([target] if target else [])]
    argv += [item for pair in repeated_options(target, given, where=True) for item in pair]
    return argv + (["-w", str(ws.root)] if ws.root != Path.cwd().resolve() else [])


def _start(ws: Any, given: dict[str, Any], as_json: bool, down_where: list[str]) -> None:

    image, tag = choose_image(ws, given["version"])
    options = SandboxOptions(
        version=tag, backup=given["backup"], image=image, where=build_target(where_of(given)),
        site=given["site"], port=given["port"], name=given["name"], db_password_var=given["db_password_var"],
    )  # fmt: skip
    check_options(options)  # before anything connects
    runner = _runner(given)
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


def _list_or_down(given: dict[str, Any], down_name: str | None, as_json: bool) -> None:

    if down_name is not None:
        validate.project_name(down_name, "--down", UsageError)
    runner = _runner(given)
    try:
        if down_name is not None:
            removed = down(runner, down_name, given["state_dir"])
            result: Any = removed.to_dict()
        else:
            result = [s.to_dict() for s in list_sandboxes(runner)]
    finally:
        runner.close()
    if as_json:
        output.print_json(result)
    elif down_name is not None:
        output.out(f"removed sandbox {down_name}: {len(removed.containers)} containers, "
                   f"{len(removed.volumes)} volumes, {len(removed.networks)} networks")  # fmt: skip
    else:
        _render_list(runner.host, result)


def _render_list(host: str, sandboxes: list[dict[str, Any]]) -> None:
    rows = [[s["name"], s["version"], s["backup"], s["created"], s["url"],
             f"{s['running']}/{s['containers']}", s["of"]] for s in sandboxes]  # fmt: skip
    columns = ["name", "version", "backup", "since", "url", "running", "beside"]
    output.print_table(f"Sandboxes on {host}", columns, rows)


def _with_target(root: Path, name: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The options, with the named target's values where the command line gave none."""
    where = from_target(root, name, where_of(given))
    return {**given, **{key: getattr(where, key) for key in WHERE_KEYS if key in given}}


def where_of(given: dict[str, Any]) -> Where:
    """The command line's target options among ``given`` (a command's parameters)."""
    return Where(**{key: given[key] for key in WHERE_KEYS if key in given})


def _runner(given: dict[str, Any]) -> Runner:
    return open_target_runner(build_target(where_of(given)))


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


# public names for `imagekit rehearse` (cli/rehearse_cmd.py): the same target options, the same runner
with_target = _with_target
target_runner = _runner
