"""``imagekit deploy``: preflight, lock, backup, replace the services, migrate, report, record.

The replace step recreates only the services whose image or configuration changed (``up -d
--remove-orphans``): MariaDB and Redis keep running, so the sites answer the maintenance 503
and not frappe's 500 without its database (README "What deploy stops, and why"); ``compose
down`` first only with ``--full-down`` or another set of compose files.

``deploy(runner, ws, options)`` runs the whole sequence on a ``Runner`` (this machine or an SSH
host) and returns a ``DeployReport``; it does not print. Live output (migrate lines, transfer
progress) goes to the ``on_event`` callback. The lock is released and the record written on
every exit, Ctrl-C and SIGTERM included.

State on the target, in ``$XDG_STATE_HOME/imagekit/projects/<project>/`` (default
``~/.local/state/...``): ``lock/`` (held during a deploy), ``compose.yaml`` + ``env`` (the exact
files of the last ``up``), ``last-up.json`` (their original paths, hash and the image variables)
and ``audit.log`` (one JSON line per deploy).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from frappe_imagekit import progress, validate
from frappe_imagekit.build.records import BuildManifest
from frappe_imagekit.deploy import (
    composeconfig,
    lock,
    plan,
    rehearsal_gate,
    send,
)
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.context import (
    DRY_RUN,
    FAILED,
    INTERRUPTED,
    MIGRATE_FAILED,
    PATCH_FAILED,
    SCHEMA_VERSION,
    Context,
    DeployFailed,
    DeployOptions,
    DeployReport,
    EventSink,
    SiteReport,
    StatePaths,
    absolute,
    engine_of,
    find_backend,
    listed_sites,
    no_site_yet,
    project_services,
    site_folders,
    state_paths,
    timed,
    up_env,
)
from frappe_imagekit.deploy.lastup import files_for_down, needs_full_down, parse_last_up
from frappe_imagekit.deploy.migratesteps import check_apps, migrate_all, next_steps, report_migrator
from frappe_imagekit.deploy.record import (
    SUCCEEDED,
    read_deploys,
    rolled_back_versions,
)
from frappe_imagekit.deploy.record import now as now_iso
from frappe_imagekit.deploy.sitewindow import (
    bench_place,
    keep_unmigrated_in_maintenance,
    live_and_broken,
    maintenance_window,
    open_window,
    the_window,
)
from frappe_imagekit.deploy.steps import (
    check_health,
    down_stack,
    finish,
    preflight,
    record_dict,
    replace_services,
    up_stack,
)
from frappe_imagekit.errors import (
    DeployError,
    ImagekitError,
    NotFoundError,
    UsageError,
)
from frappe_imagekit.interrupts import sigterm_as_interrupt
from frappe_imagekit.manifest import list_manifests
from frappe_imagekit.runner import LocalRunner, Runner
from frappe_imagekit.ssh import SSHRunner
from frappe_imagekit.workspace import Workspace

# the names the CLI and the tests take from here (defined in the step modules)
__all__ = [
    "FAILED", "INTERRUPTED", "SCHEMA_VERSION", "DeployFailed", "DeployOptions", "DeployReport",
    "SiteReport", "StatePaths", "bench_place", "check_options", "choose_image", "deploy", "next_steps",
    "open_runner", "parse_last_up", "record_dict", "resolve_layout", "state_paths", "unlock",
]  # fmt: skip


def check_options(opts: DeployOptions) -> DeployOptions:
    """``opts`` when every value can be used, else ``UsageError`` (exit 2) naming the option.

    Runs before anything connects, locks or stops: each value reaches compose, docker, a shell
    on the target or a path in the state folder (the project names a folder there). An empty
    project or compose file is left for ``_with_layout``, which takes them from COMPOSE_* or
    refuses; ``deploy()`` checks again after it.
    """
    _check_names(opts)
    _check_paths(opts)
    _check_numbers(opts)
    return opts


def _check_names(opts: DeployOptions) -> None:
    if opts.project:
        validate.project_name(opts.project, "--project", UsageError)
    validate.image_name(opts.image, "the image name (IMAGE_NAME or the build's manifest)", UsageError)
    validate.image_tag(opts.version, "--version", UsageError)
    validate.env_name(opts.image_var, "--image-var", UsageError)
    validate.env_name(opts.tag_var, "--tag-var", UsageError)
    if opts.image_var == opts.tag_var:
        raise UsageError(f"--image-var and --tag-var are both {opts.image_var}: give two names.")
    validate.service_name(opts.backend_service, "--backend-service", UsageError)
    for service in opts.oneshot_services:
        validate.service_name(service, "a --oneshot service", UsageError)
    for service in opts.kill_first:
        validate.service_name(service, "a --kill-first service", UsageError)
    if opts.sites is not None and not opts.sites:
        raise UsageError("--sites names no site: pass all, or site1,site2.")
    if opts.where.transfer.method not in send.TRANSFERS.values():
        raise UsageError(f"--transfer is {opts.where.transfer.method[:40]!r}: use auto, registry or save.")
    if opts.image_digest is not None:
        validate.image_digest(opts.image_digest, "the recorded image digest", UsageError)
    for site in opts.sites or []:
        validate.site_name(site, "a --sites entry", UsageError)


def _check_paths(opts: DeployOptions) -> None:
    for compose_file in (opts.compose_file, *opts.compose_overrides):
        if compose_file or opts.compose_overrides:
            validate.not_an_option(compose_file, "--compose", UsageError)
    for value, what in (
        (opts.env_file, "--env-file"),
        (opts.state_dir, "--state-dir"),
        (opts.source_docker_host, "--docker-host"),
    ):
        if value is not None:
            validate.not_an_option(value, what, UsageError)


def _check_numbers(opts: DeployOptions) -> None:
    for value, what in (
        (opts.lock_wait, "--lock-wait"),
        (opts.up_timeout, "--up-timeout"),
        (opts.down_timeout, "the down timeout"),
        (opts.stop_timeout, "the stop timeout"),
        (opts.settle, "the settle time"),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e7:
            raise UsageError(f"{what} must be a number of seconds from 0 to 9999999, not {value!r}.")


def choose_image(ws: Workspace, version: str | None, project: str | None = None) -> tuple[str, str]:
    """(image name, version): ``--version`` or the newest successful build of the workspace,
    unless a rollback left that build on ``project`` (any project when None): then
    ``UsageError`` naming it, since deploying it again must be asked for by name."""
    manifests, _ = list_manifests(ws)
    built = sorted(
        (m for m in manifests if m.get("status") == "succeeded"),
        key=lambda m: str(m.get("created", "")),
    )
    if version:
        for manifest in built:
            if manifest.get("version") == version:
                return _name_of(manifest), version
        return _env_image_name(ws, version), version
    if not built:
        raise NotFoundError(
            f"no successful build recorded in {ws.builds_dir}; pass --version TAG to deploy one."
        )
    newest = built[-1]
    _refuse_rolled_back(ws, str(newest["version"]), project)
    return _name_of(newest), str(newest["version"])


def _refuse_rolled_back(ws: Workspace, version: str, project: str | None) -> None:

    where = rolled_back_versions(read_deploys(ws).records, project or None).get(version)
    if where:
        raise UsageError(
            f"{version}, the newest build, was rolled back on {where} (imagekit rollback); "
            f"pass --version {version} to deploy it again, or --version with another build."
        )


def _name_of(manifest: BuildManifest) -> str:
    image = manifest.get("image") or {}
    ref = str(image.get("ref") or "")
    return image.get("name") or ref.rsplit(":", 1)[0]


def _env_image_name(ws: Workspace, version: str) -> str:
    from dotenv import dotenv_values

    name = dotenv_values(ws.env_file).get("IMAGE_NAME") if ws.env_file.is_file() else None
    if not name:
        raise NotFoundError(
            f"no build of {version} recorded and no IMAGE_NAME in {ws.env_file}; "
            "set IMAGE_NAME there or build the image with imagekit."
        )
    return name


def deploy(
    runner: Runner,
    ws: Workspace,
    opts: DeployOptions,
    on_event: EventSink | None = None,
    reporter: progress.Reporter = progress.SILENT,
) -> DeployReport:
    """Run the deploy sequence; return the report (also recorded locally and on the target).
    ``reporter`` is told each backup and migrate (per site).

    Failures before migrate raise ``DeployFailed`` (an ImagekitError carrying the report);
    migrate failures are returned in the report (``result`` patch-failed / migrate-failed).
    Options that cannot be used raise ``UsageError`` before anything runs (nothing recorded).
    """
    opts = check_options(_with_layout(runner, opts))
    rehearsal_gate.check_last_rehearsal(
        ws, opts.project, opts.version, force=opts.force, required=opts.rehearsed
    )
    report = DeployReport(
        version=opts.version,
        image=opts.image_ref,
        project=opts.project,
        host=runner.host,
        user=getpass.getuser(),
        started=now_iso(),
    )
    ctx = Context(runner, ws, opts, report, state_paths(runner, opts.project, opts.state_dir),
                   on_event or (lambda _line: None), reporter=reporter)  # fmt: skip
    try:
        with sigterm_as_interrupt():
            _run(ctx)
    except KeyboardInterrupt:
        report.result, report.error = INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)"
        finish(ctx)
        raise
    except ImagekitError as exc:
        report.result, report.error = FAILED, exc.message
        if not opts.dry_run:
            finish(ctx)
        raise DeployFailed(exc, report) from None
    if not opts.dry_run:
        finish(ctx)
    return report


def resolve_layout(runner: Runner, opts: DeployOptions) -> DeployOptions:
    """``opts`` with the project and compose files deploy would use (options, COMPOSE_*), checked."""
    return check_options(_with_layout(runner, opts))


def _with_layout(runner: Runner, opts: DeployOptions) -> DeployOptions:
    """``--compose``/``--project``, else COMPOSE_FILE and COMPOSE_PROJECT_NAME from the
    environment (this machine only) or the env file, as compose reads them."""
    if opts.compose_file and opts.project:
        return opts
    if opts.env_file is not None:
        validate.not_an_option(opts.env_file, "--env-file", UsageError)  # before it is read
    environ = dict(os.environ) if isinstance(runner, LocalRunner) else {}
    env_text = runner.read_file(opts.env_file) if opts.env_file else None
    found = composeconfig.compose_env(environ, env_text)
    from_file = opts.env_file if "COMPOSE_FILE" not in environ else None
    base = str(Path(absolute(runner, from_file)).parent) if from_file else os.getcwd()
    files, project = composeconfig.layout_from_env(found, base)
    if not opts.compose_file and not files:
        raise UsageError(
            "no compose file: pass --compose FILE (repeat it for override files) or set COMPOSE_FILE "
            "in the environment or the env file."
        )
    if not opts.project and not project:
        raise UsageError("no project name: pass --project NAME or set COMPOSE_PROJECT_NAME.")
    chosen = [opts.compose_file, *opts.compose_overrides] if opts.compose_file else files
    chosen = [validate.not_an_option(f, "a compose file", UsageError) for f in chosen]
    project = opts.project or validate.project_name(project, "COMPOSE_PROJECT_NAME", UsageError)
    return replace(opts, where=replace(opts.where, project=project, compose_files=tuple(chosen)))


def _run(ctx: Context) -> None:
    timed(ctx, "preflight", preflight)
    if ctx.opts.dry_run:
        _plan_dry_run(ctx)
        ctx.report.result = DRY_RUN
        return
    details = lock.lock_details(ctx.opts.version, ctx.runner.host)
    with lock.held(ctx.runner, ctx.paths.lock_dir, details, ctx.opts.project, ctx.opts.lock_wait):
        with maintenance_window(ctx):
            if not ctx.opts.migrate_only:
                replace_services(ctx)
            if ctx.migrator_run is not None:
                report_migrator(ctx, ctx.migrator_run)
            elif no_site_yet(ctx):
                ctx.report.notes.append(no_site_note(ctx.opts.where.name))
            else:
                open_window(ctx)
                the_window(ctx).stack_changed()  # an interrupted migrate leaves the sites in maintenance
                timed(ctx, "migrate", migrate_all)
            keep_unmigrated_in_maintenance(ctx)
        check_apps(ctx)
        if ctx.opts.health_check and all(s.status == "ok" for s in ctx.report.sites):
            try:
                timed(ctx, "health", check_health)
            except DeployError:
                live_and_broken(ctx)
                raise
    sites = ctx.report.sites
    failures = [s.failure for s in sites if s.status == "failed"]
    if not failures:
        ctx.report.result = SUCCEEDED
    else:
        ctx.report.result = PATCH_FAILED if "patch" in failures else MIGRATE_FAILED


def _plan_dry_run(ctx: Context) -> None:
    """List the sites (as pending) and every step the deploy would take."""
    opts, engine = ctx.opts, engine_of(ctx)
    running = project_services(ctx)
    sites = _dry_run_sites(ctx, running)
    for site in sites:
        ctx.report.site(site)
    down = None
    if running and not opts.migrate_only:
        files = files_for_down(ctx, running)  # refuses containers of other files, as the deploy would
        if needs_full_down(ctx, running):
            down = engine.down_argv(down_stack(ctx, files), stop_timeout=opts.stop_timeout)
    up = engine.up_argv(up_stack(ctx), stop_timeout=opts.stop_timeout)
    facts = plan.PlanFacts(
        project=opts.project, image_ref=opts.image_ref, lock_dir=ctx.paths.lock_dir, sites=sites,
        running=bool(running), backup=opts.backup, down_argv=down, up_argv=up, up_env=up_env(opts),
        image_services=ctx.report.image_services, oneshot=ctx.report.oneshot_services,
        migrator=ctx.report.migrator, migrate_only=opts.migrate_only,
        maintenance=opts.maintenance, backup_files=opts.backup_files,
        kept=sorted(set(ctx.report.services) - set(ctx.report.image_services)),
        kill_first=[s for s in opts.kill_first if s in ctx.report.services],
    )  # fmt: skip
    ctx.report.steps = plan.steps(facts)


def _dry_run_sites(ctx: Context, running: Sequence[Container]) -> list[str]:
    if ctx.opts.sites:
        return list(ctx.opts.sites)
    try:
        backend = find_backend(ctx, running)
    except DeployError:
        return []
    return listed_sites(ctx, site_folders(ctx, backend))


def open_runner(
    host: str | None,
    *,
    known_hosts: str | None = None,
    identity_file: str | None = None,
    ssh_config: str | None = None,
    docker_host: str | None = None,
) -> Runner:
    """``LocalRunner`` without a host, else an ``SSHRunner`` (paramiko imported only then)."""
    if not host:
        return LocalRunner(docker_host)
    return SSHRunner(
        host,
        known_hosts=known_hosts,
        identity_file=identity_file,
        ssh_config=ssh_config,
        docker_host=docker_host,
    )


def unlock(runner: Runner, project: str, state_dir: str | None = None) -> lock.LockDetails | None:
    """Clear the deploy lock of ``project`` on the target; return who held it (None: no lock)."""
    paths = state_paths(runner, project, state_dir)
    if runner.run(["test", "-d", paths.lock_dir]).returncode != 0:
        return None
    return lock.remove(runner, paths.lock_dir) or lock.LockDetails()


def no_site_note(target: str | None) -> str:
    """What a deploy of a stack without sites says: the command that makes the first one."""
    how = (
        f"imagekit site new SITE {target}"
        if target
        else "imagekit site new SITE TARGET (a target of imagekit.toml)"
    )
    return f"no site yet: nothing to migrate; create the first one with {how}."
