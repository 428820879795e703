"""``imagekit deploy --engine swarm`` (or a target with ``engine = "swarm"``): the deploy options
turned into the swarm sequence's, its report printed. Not a command of its own: deploy_cmd calls
``run`` when the engine is swarm."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any

import typer

from frappe_imagekit import validate
from frappe_imagekit.cli import output
from frappe_imagekit.cli.targetopts import Where
from frappe_imagekit.deploy.sequence import DeployOptions, open_runner
from frappe_imagekit.deploy.swarm import deploy as swarm
from frappe_imagekit.deploy.swarm import records
from frappe_imagekit.deploy.swarm import rollback as swarm_rollback
from frappe_imagekit.deploy.swarm import sandbox as swarm_sandbox
from frappe_imagekit.errors import UsageError
from frappe_imagekit.interrupts import sigterm_as_interrupt
from frappe_imagekit.runner import LocalRunner, Runner
from frappe_imagekit.targets import ENGINES
from frappe_imagekit.workspace import Workspace

SWARM = "swarm"
_SSH = (("known_hosts", "known_hosts"), ("identity_file", "identity"), ("ssh_config", "ssh_config"))
_UNSUPPORTED = (("migrate_only", "--migrate-only"), ("dry_run", "--dry-run"), ("full_down", "--full-down"))


def engine_name(value: str | None) -> str:
    """``compose`` (the default) or ``swarm``; anything else is refused naming both."""
    if value is None or value in ENGINES:
        return value or ENGINES[0]
    raise UsageError(f"--engine {value[:40]!r} is not one imagekit knows: use compose or swarm.")


def refuse_swarm(engine: str | None, command: str) -> None:
    """``command`` (rehearse, backups --verify) runs a compose sandbox: refused on a swarm target,
    before anything connects."""
    if engine_name(engine) == SWARM:
        raise UsageError(
            f"{command} on a swarm target is not built yet: it would run a compose project outside "
            "the swarm, so nothing was started; use a compose target."
        )


def swarm_options(opts: DeployOptions) -> swarm.SwarmOptions:
    """The swarm options of a deploy; an option the swarm sequence does not have is refused."""
    for field, flag in _UNSUPPORTED:
        if getattr(opts, field):
            raise UsageError(f"{flag} is not built for the swarm engine yet: deploy without it.")
    return swarm.SwarmOptions(
        stack=opts.project,
        files=(opts.compose_file, *opts.compose_overrides),
        image=opts.image,
        version=opts.version,
        env_file=opts.env_file,
        sites=tuple(opts.sites) if opts.sites else None,
        backup=opts.backup,
        backend_service=opts.backend_service,
        up_timeout=opts.up_timeout,
        state_dir=opts.state_dir,
        image_var=opts.image_var,
        tag_var=opts.tag_var,
    )


def run(runner: Runner, opts: DeployOptions, as_json: bool, ws: Workspace) -> None:
    """Deploy on the swarm ``runner`` talks to; print the report; exit with its code."""
    options = swarm_options(opts)
    pinned = swarm.resolve_pin([LocalRunner(), runner], options)
    with sigterm_as_interrupt():
        report = swarm.deploy(runner, options, output.err, pinned)
    _keep(ws, report)
    _print(report, as_json)


def run_rollback(
    given: dict[str, Any], db_password_var: str, *, yes: bool, dry_run: bool, as_json: bool, ws: Workspace
) -> None:
    """``imagekit rollback TARGET`` of a swarm target: the last swarm deploy undone."""
    if dry_run:
        raise UsageError("--dry-run is not built for the swarm engine yet: roll back without it.")
    if not yes:
        raise UsageError("a swarm rollback restores every site's database: pass --yes to do it.")
    options = swarm.SwarmOptions(
        stack=given["project"],
        files=tuple(given["compose_file"]),
        image="",  # the record's previous image
        version="",
        env_file=given["env_file"],
        backend_service=given["backend_service"] or "backend",
        state_dir=given["state_dir"],
    )
    ssh = {key: str(given[name]) if given.get(name) else None for key, name in _SSH}
    runner = open_runner(given["host"], docker_host=given["docker_host"], **ssh)
    with closing(runner), sigterm_as_interrupt():
        report = swarm_rollback.rollback(runner, options, output.err, db_password_var)
    _keep(ws, report)
    _print(report, as_json)


@dataclass(frozen=True)
class SandboxAsk:
    """``imagekit sandbox`` of a swarm target: the target (filled from imagekit.toml) and the
    sandbox's own options."""

    where: Where
    version: str | None
    backup: str | None
    site: str | None
    name: str | None
    port: int
    db_password_var: str
    list_them: bool
    down_name: str | None


def run_sandbox(asked: SandboxAsk, down_where: list[str], as_json: bool) -> None:
    """``imagekit sandbox`` of a swarm target: start VERSION as its own stack, ``--list``, ``--down``."""
    for value, flag in ((asked.backup, "--backup"), (asked.site, "--site")):
        if value is not None:
            raise UsageError(
                f"{flag} is not taken on a swarm target: the sandbox restores each site's backup of "
                "the deploy that replaced VERSION; start it without that option."
            )
    where = asked.where
    production = swarm.SwarmOptions(
        stack=where.project, files=tuple(where.compose_file or ()), image="", version="",
        env_file=where.env_file, backend_service=where.backend_service or "backend",
        state_dir=where.state_dir,
    )  # fmt: skip
    if asked.list_them and asked.down_name is not None:
        raise UsageError("--list and --down NAME take no --backup, and not each other.")
    listing = asked.list_them or asked.down_name is not None
    spec = None if listing else _sandbox_spec(asked, production)
    ssh = {key: str(getattr(where, name)) if getattr(where, name) else None for key, name in _SSH}
    runner = open_runner(where.host, docker_host=where.docker_host, **ssh)
    with closing(runner):
        if spec is None:
            _list_or_down(runner, asked.down_name, as_json)
            return
        password = swarm_rollback.root_password(runner, production, asked.db_password_var)
        with sigterm_as_interrupt():
            made = swarm_sandbox.start(runner, spec, password, output.err)
    if as_json:
        output.print_json(made.to_dict())
        return
    output.out(f"sandbox {made.name}: {made.ref} (stack) with the backups of deploy {made.deploy_id} "
               f"restored into {', '.join(made.sites)}")  # fmt: skip
    output.out(
        f"open {made.url} (the sandbox answers there only, on the swarm manager's loopback; "
        f"remove it with `{swarm_sandbox.down_line(down_where, made.name)}`)"
    )


def _sandbox_spec(asked: SandboxAsk, production: swarm.SwarmOptions) -> swarm_sandbox.SandboxSpec:
    """The sandbox to start, every value checked before anything connects."""
    if not asked.version:
        raise UsageError("pass VERSION (or --list, or --down NAME).")
    validate.env_name(asked.db_password_var, "--db-password-var", UsageError)
    spec = swarm_sandbox.SandboxSpec(
        production, asked.version, asked.name, asked.port, asked.where.up_timeout or 300
    )
    return swarm_sandbox.check(spec)


def _list_or_down(runner: Runner, down_name: str | None, as_json: bool) -> None:
    if down_name is not None:
        removed = swarm_sandbox.down(runner, down_name)
        if as_json:
            output.print_json(removed)
        else:
            output.out(f"removed sandbox {down_name} (stack, {len(removed['containers'])} containers, "
                       f"{len(removed['volumes'])} volumes)")  # fmt: skip
        return
    found = swarm_sandbox.list_sandboxes(runner)
    if as_json:
        output.print_json(found)
        return
    rows = [[s["name"], s["version"], s["backup"], s["created"], s["url"], s["of"]] for s in found]
    output.print_table(
        f"Swarm sandboxes on {runner.host}", ["name", "version", "deploy", "since", "url", "beside"], rows
    )


def _keep(ws: Workspace, report: swarm.SwarmReport) -> None:
    """The record's copy in the workspace (``deploys/swarm/``), which ``imagekit history`` reads."""
    if report.deploy_id is not None:
        records.write_workspace(ws.deploys_dir, report.deploy_id, report.stack, report.to_dict())


def _print(report: swarm.SwarmReport, as_json: bool) -> None:
    if as_json:
        output.print_json(report.to_dict())
    else:
        for line in swarm.summary(report):
            output.out(line)
    if report.exit_code:
        raise typer.Exit(report.exit_code)
