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
import hashlib
import json
import os
import re
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import (
    backups,
    compose,
    composeconfig,
    health,
    lock,
    maintenance,
    migrator,
    nextsteps,
    place,
    plan,
    rehearsal_gate,
    send,
    verify,
)
from frappe_imagekit.deploy import migrate_parse as mp
from frappe_imagekit.deploy.compose import ComposeCLI, Container
from frappe_imagekit.deploy.composeconfig import RenderedConfig
from frappe_imagekit.deploy.engine import DEFAULT_ENGINE
from frappe_imagekit.deploy.maintenance import SiteWindow
from frappe_imagekit.deploy.migrate_parse import SiteResult, parse_migrate_output
from frappe_imagekit.deploy.migrate_report import BenchPlace, StepContext, pending_patch_line, ssh_prefix
from frappe_imagekit.deploy.migrate_report import next_steps as migrate_next_steps
from frappe_imagekit.deploy.migrator import MigratorRun
from frappe_imagekit.deploy.record import (
    DEPLOY,
    SUCCEEDED,
    DeployRecord,
    describe_since,
    maintenance_since,
    place_records,
    read_records,
    rolled_back_versions,
    stamp,
)
from frappe_imagekit.deploy.record import SCHEMA_VERSION as RECORD_SCHEMA
from frappe_imagekit.deploy.record import now as now_iso
from frappe_imagekit.errors import (
    DeployError,
    ExitCode,
    ImagekitError,
    MigrateError,
    NotFoundError,
    UsageError,
)
from frappe_imagekit.interrupts import interrupts_held, sigterm_as_interrupt
from frappe_imagekit.manifest import iter_deploy_records, list_manifests
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import LocalRunner, Runner, json_object
from frappe_imagekit.ssh import SSHRunner
from frappe_imagekit.workspace import Workspace, write_json_atomic

SCHEMA_VERSION = RECORD_SCHEMA
EventSink = Callable[[str], None]

FAILED = "failed"
PATCH_FAILED = "patch-failed"
MIGRATE_FAILED = "migrate-failed"
INTERRUPTED = "interrupted"
DRY_RUN = "dry-run"
HEALTH_MAINTENANCE = "maintenance"  # a site in maintenance mode answers 503: not checked

RESULT_EXIT_CODES = {
    SUCCEEDED: ExitCode.OK,
    DRY_RUN: ExitCode.OK,
    PATCH_FAILED: ExitCode.PATCH_FAILED,
    MIGRATE_FAILED: ExitCode.MIGRATE_FAILED,
    FAILED: ExitCode.DEPLOY_FAILED,
    INTERRUPTED: ExitCode.INTERRUPTED,
}

# docker's own words when the backend container went away during migrate
_CONTAINER_GONE = re.compile(r"No such container|is restarting|Container \S+ is not running")
_BACKUP_LINE = re.compile(r"^Database:\s+(?P<path>\S+)", re.MULTILINE)
_LIST_SITES = 'for f in sites/*/site_config.json; do [ -f "$f" ] && basename "$(dirname "$f")"; done'


@dataclass
class DeployOptions:
    project: str
    compose_file: str  # a path on the target
    image: str  # repository, e.g. desiredeffect/erpnext-custom
    version: str  # the tag
    sites: list[str] | None = None  # None: every site of the bench
    env_file: str | None = None  # a path on the target
    backup: bool = True
    migrate_only: bool = False
    dry_run: bool = False
    force: bool = False
    lock_wait: float = 0
    image_var: str = "CUSTOM_IMAGE"
    tag_var: str = "CUSTOM_TAG"
    backend_service: str = "backend"
    oneshot_services: tuple[str, ...] = ("configurator",)
    state_dir: str | None = None  # default: $XDG_STATE_HOME/imagekit on the target
    down_timeout: float = 60
    up_timeout: float = 120
    stop_timeout: int = 10
    # services killed (SIGKILL) before down: their PID 1 ignores SIGTERM and they hold no state
    kill_first: tuple[str, ...] = ("websocket", "scheduler")
    send_image: bool = True  # remote target without the image: docker save | docker load
    source_docker_host: str | None = None  # the daemon the image is sent from
    transfer: str = send.AUTO  # how: auto, registry (tunnel, by digest) or stream (save | load)
    image_digest: str | None = None  # the version's recorded registry digest: pulled by it
    compose_overrides: tuple[str, ...] = ()  # more -f files after compose_file (frappe_docker overrides/)
    health_check: bool = True  # ping and one asset per site after migrate
    keep_backups: int = 5  # deploys whose backups stay in the state folder
    maintenance: bool = True  # sites in maintenance (scheduler paused) from the backup to after migrate
    backup_files: bool = False  # bench backup --with-files: the public and private files archives too
    # printed next steps: the named target the deploy was started from (`imagekit deploy TARGET`),
    # and the command line's options they repeat (SSH options; with a target, what overrode it)
    target: str | None = None
    repeat: tuple[tuple[str, str], ...] = ()
    ssh_flags: tuple[str, ...] = ()  # ssh's own options for printed `ssh HOST '...'` lines (-i KEY ...)
    # compose down before up (everything stops, MariaDB and Redis too); without it only the
    # services whose image or configuration changed are recreated (README "What deploy stops")
    full_down: bool = False
    settle: float = compose.SETTLE  # seconds each service must run unrestarted after up
    rehearsed: bool = False  # deploy --rehearse: only a version whose last rehearsal passed

    @property
    def image_ref(self) -> str:
        return f"{self.image}:{self.version}"


@dataclass
class SiteReport:
    site: str
    status: str = "pending"  # ok | failed | interrupted | pending (not migrated)
    patches_run: list[str] = field(default_factory=list)  # interrupted: the patches that completed
    interrupted_in: str | None = None  # interrupted: the patch it was running (not recorded as run)
    failed_patch: str | None = None
    backup: str | None = None
    failure: str | None = None
    failed_module: str | None = None
    doctype: str | None = None
    exception: str | None = None
    traceback: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    apps_not_installed: list[str] = field(default_factory=list)
    # the migrate report (migrate_parse.SiteResult; docs/DESIGN.md "Migrate report")
    result: str | None = None  # ok | patch-failed | import-failed | ... (None: not migrated)
    failed_file: str | None = None
    section: str | None = None
    doctype_file: str | None = None
    services: list[str] = field(default_factory=list)
    lock_path: str | None = None
    step: str | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    warnings: list[str] = field(default_factory=list)
    migrate_notes: list[str] = field(default_factory=list)
    health: str | None = None  # ok | failed | maintenance (in it: not checked) | None (not checked)
    backup_files: list[dict[str, Any]] = field(default_factory=list)  # copies: path, size, sha256
    restored: str | None = None  # rollback: ok | failed | skipped (--no-restore)
    maintenance: SiteWindow | None = None  # its maintenance window (None: not in one)
    maintenance_now: str | None = None  # on | off: read back from the site at the end (None: unknown)


@dataclass
class DeployReport:
    version: str
    image: str
    project: str
    host: str
    user: str
    started: str
    finished: str | None = None
    result: str = FAILED
    sites: list[SiteReport] = field(default_factory=list)
    error: str | None = None
    compose: str | None = None  # e.g. "docker-compose 1.29.2"
    notes: list[str] = field(default_factory=list)
    image_sent: bool = False
    image_digest: str | None = None  # the registry digest the target pulled (--transfer registry)
    timings: dict[str, float] = field(default_factory=dict)
    record: str | None = None
    image_id: str | None = None  # of IMAGE:VERSION on the target, checked after up
    image_services: list[str] = field(default_factory=list)  # services the config gives the image
    oneshot_services: list[str] = field(default_factory=list)  # waited for to exit 0
    migrator: str | None = None  # the service that migrates on start (frappe_docker's migrator)
    services: dict[str, str] = field(default_factory=dict)  # every service -> its rendered image
    steps: list[str] = field(default_factory=list)  # --dry-run: what the deploy would do
    kind: str = DEPLOY  # or record.ROLLBACK
    previous_version: str | None = None  # the version that ran before (from last-up.json)
    served: bool = False  # the version's containers came up running its image
    stack_changed: bool = False  # replacing the containers began (down, or up --remove-orphans)
    rolled_back_from: str | None = None  # rollback: the version it left
    rollback_of: str | None = None  # rollback: the deploy id it undid
    progress: list[str] = field(default_factory=list)  # rollback: the steps done
    next_step: str | None = None  # rollback: what to do when it stopped before the end
    daemon_id: str | None = None  # the target daemon's ID (docker info): one place, local or SSH
    engine: str = DEFAULT_ENGINE  # what ran the stack (deploy/engine.py), recorded

    @property
    def exit_code(self) -> ExitCode:
        return RESULT_EXIT_CODES.get(self.result, ExitCode.DEPLOY_FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    def site(self, name: str) -> SiteReport:
        for site in self.sites:
            if site.site == name:
                return site
        self.sites.append(SiteReport(name))
        return self.sites[-1]


class DeployFailed(ImagekitError):
    """The deploy stopped; ``report`` says how far it got (it was recorded)."""

    def __init__(self, error: ImagekitError, report: DeployReport) -> None:
        super().__init__(error.message, error.exit_code)
        self.report = report


# ---------------------------------------------------------------- options


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
    if opts.transfer not in send.TRANSFERS.values():
        raise UsageError(f"--transfer is {opts.transfer[:40]!r}: use auto, registry or save.")
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


# ---------------------------------------------------------------- choosing what to deploy


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

    records = [item for _, item in iter_deploy_records(ws) if isinstance(item, dict)]
    where = rolled_back_versions((DeployRecord.from_dict(r) for r in records), project or None).get(version)
    if where:
        raise UsageError(
            f"{version}, the newest build, was rolled back on {where} (imagekit rollback); "
            f"pass --version {version} to deploy it again, or --version with another build."
        )


def _name_of(manifest: dict[str, Any]) -> str:
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


# ---------------------------------------------------------------- paths on the target


@dataclass(frozen=True)
class StatePaths:
    root: str  # .../imagekit/projects/<project>

    @property
    def lock_dir(self) -> str:
        return f"{self.root}/lock"

    @property
    def compose_copy(self) -> str:
        return f"{self.root}/compose.yaml"

    @property
    def env_copy(self) -> str:
        return f"{self.root}/env"

    @property
    def last_up(self) -> str:
        return f"{self.root}/last-up.json"

    @property
    def audit_log(self) -> str:
        return f"{self.root}/audit.log"


def state_paths(runner: Runner, project: str, state_dir: str | None = None) -> StatePaths:
    """The project's state folder; ``project`` is checked first since it names a folder."""
    validate.project_name(project, "--project", UsageError)
    base = state_dir or f"{runner.state_home()}/imagekit"
    return StatePaths(f"{base.rstrip('/')}/projects/{project}")


# ---------------------------------------------------------------- the sequence


@dataclass
class _Context:
    runner: Runner
    ws: Workspace
    opts: DeployOptions
    report: DeployReport
    paths: StatePaths
    emit: EventSink
    cli: ComposeCLI | None = None
    compose_file: str = ""  # absolute, on the target
    compose_files: list[str] = field(default_factory=list)  # every -f, absolute; [0] is compose_file
    config: RenderedConfig | None = None  # as `up` will see it (compose config)
    migrator_run: MigratorRun | None = None  # frappe_docker's migrator, followed after up
    window: maintenance.Window | None = None  # the sites in maintenance (deploy/maintenance.py)


def deploy(
    runner: Runner,
    ws: Workspace,
    opts: DeployOptions,
    on_event: EventSink | None = None,
) -> DeployReport:
    """Run the deploy sequence; return the report (also recorded locally and on the target).

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
    ctx = _Context(runner, ws, opts, report, state_paths(runner, opts.project, opts.state_dir),
                   on_event or (lambda _line: None))  # fmt: skip
    try:
        with sigterm_as_interrupt():
            _run(ctx)
    except KeyboardInterrupt:
        report.result, report.error = INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)"
        _finish(ctx)
        raise
    except ImagekitError as exc:
        report.result, report.error = FAILED, exc.message
        if not opts.dry_run:
            _finish(ctx)
        raise DeployFailed(exc, report) from None
    if not opts.dry_run:
        _finish(ctx)
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
    base = str(Path(_absolute(runner, from_file)).parent) if from_file else os.getcwd()
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
    return replace(
        opts,
        project=opts.project or validate.project_name(project, "COMPOSE_PROJECT_NAME", UsageError),
        compose_file=chosen[0],
        compose_overrides=tuple(chosen[1:]),
    )


def _run(ctx: _Context) -> None:
    _timed(ctx, "preflight", _preflight)
    if ctx.opts.dry_run:
        _plan_dry_run(ctx)
        ctx.report.result = DRY_RUN
        return
    details = lock.lock_details(ctx.opts.version, ctx.runner.host)
    with lock.held(ctx.runner, ctx.paths.lock_dir, details, ctx.opts.project, ctx.opts.lock_wait):
        with _maintenance_window(ctx):
            if not ctx.opts.migrate_only:
                _replace_containers(ctx)
            if ctx.migrator_run is not None:
                _report_migrator(ctx, ctx.migrator_run)
            elif _no_site_yet(ctx):
                ctx.report.notes.append("no site yet: nothing to migrate (create one with bench new-site).")
            else:
                _open_window(ctx)
                _window(ctx).stack_changed()  # an interrupted migrate leaves the sites in maintenance
                _timed(ctx, "migrate", _migrate_all)
            _keep_unmigrated_in_maintenance(ctx)
        _check_apps(ctx)
        if ctx.opts.health_check and all(s.status == "ok" for s in ctx.report.sites):
            try:
                _timed(ctx, "health", _check_health)
            except DeployError:
                _live_and_broken(ctx)
                raise
    sites = ctx.report.sites
    failures = [s.failure for s in sites if s.status == "failed"]
    if not failures:
        ctx.report.result = SUCCEEDED
    else:
        ctx.report.result = PATCH_FAILED if "patch" in failures else MIGRATE_FAILED


def _plan_dry_run(ctx: _Context) -> None:
    """List the sites (as pending) and every step the deploy would take."""
    assert ctx.cli is not None
    opts, cli = ctx.opts, ctx.cli
    running = compose.service_containers(compose.project_containers(ctx.runner, opts.project))
    sites = _dry_run_sites(ctx, running)
    for site in sites:
        ctx.report.site(site)
    down = None
    if running and not opts.migrate_only:
        files = _down_files(ctx, running)  # refuses containers of other files, as the deploy would
        down_args = compose.down_args(cli, opts.stop_timeout)
        where = {"project_dir": files["project_dir"], "env_file": files["env_file"]}
        if _needs_full_down(ctx, running):
            down = compose.compose_argv(cli, opts.project, files["files"], *down_args, **where)
    up_args = compose.up_args(cli, opts.stop_timeout)
    up = compose.compose_argv(cli, opts.project, ctx.compose_files, *up_args, env_file=opts.env_file)
    facts = plan.PlanFacts(
        project=opts.project, image_ref=opts.image_ref, lock_dir=ctx.paths.lock_dir, sites=sites,
        running=bool(running), backup=opts.backup, down_argv=down, up_argv=up, up_env=_up_env(opts),
        image_services=ctx.report.image_services, oneshot=ctx.report.oneshot_services,
        migrator=ctx.report.migrator, migrate_only=opts.migrate_only,
        maintenance=opts.maintenance, backup_files=opts.backup_files,
        kept=sorted(set(ctx.report.services) - set(ctx.report.image_services)),
        kill_first=[s for s in opts.kill_first if s in ctx.report.services],
    )  # fmt: skip
    ctx.report.steps = plan.steps(facts)


def _dry_run_sites(ctx: _Context, running: Sequence[Container]) -> list[str]:
    if ctx.opts.sites:
        return list(ctx.opts.sites)
    try:
        backend = _backend(ctx, running)
    except DeployError:
        return []
    return _listed_sites(ctx, _exec(ctx, backend, ["sh", "-c", _LIST_SITES], timeout=60).stdout)


def _replace_containers(ctx: _Context) -> None:
    running = compose.service_containers(compose.project_containers(ctx.runner, ctx.opts.project))
    down_files = _down_files(ctx, running)
    full = bool(running) and _needs_full_down(ctx, running)
    if running:
        ctx.report.previous_version = _last_up_version(ctx)
    _open_window(ctx, running)
    if ctx.opts.backup and running:
        _timed(ctx, "backup", lambda c: _backup(c, running))
    _window(ctx).stack_changed()  # from down on, a failure leaves the sites in maintenance
    ctx.report.stack_changed = True  # rollback's default target, even if up or its wait fails
    _note_changed_files(ctx, down_files, full)
    if full:
        ctx.emit(f"stopping project {ctx.opts.project}")
        _timed(ctx, "down", lambda c: _compose_down(c, down_files, bool(running)))
    else:
        _kill_first(ctx)
    ctx.emit(f"starting {ctx.opts.image_ref}")
    _timed(ctx, "up", _up)
    _timed(ctx, "image_check", _check_running_image)
    ctx.report.served = True


# ---------------------------------------------------------------- maintenance window


@contextmanager
def _maintenance_window(ctx: _Context) -> Iterator[None]:
    """Sites in maintenance from before the backup to after a successful migrate
    (deploy/maintenance.py); what it left on is reported, with the commands that end it."""
    try:
        with maintenance.window(ctx.runner, lambda: _backend(ctx).id, ctx.emit,
                                enabled=ctx.opts.maintenance) as ctx.window:  # fmt: skip
            yield
    finally:
        _report_window(ctx)


def _window(ctx: _Context) -> maintenance.Window:
    assert ctx.window is not None
    return ctx.window


def _open_window(ctx: _Context, running: Sequence[Container] | None = None) -> None:
    """Open the window in the running backend, once: before the backup, or before migrate
    when no backend ran before the deploy. No backend or no site yet: nothing to open."""
    window = _window(ctx)
    if not window.enabled or window.sites:
        return
    try:
        backend = _backend(ctx, running)
    except DeployError:
        return
    sites = [] if _no_site_yet(ctx) else _sites(ctx, backend)
    _found_states(ctx, window, backend, sites)
    for site in window.open(backend.id, sites):
        ctx.report.site(site.site).maintenance = site


def _found_states(ctx: _Context, window: maintenance.Window, backend: Container, sites: list[str]) -> None:
    """What the sites are in before the window opens, read from them: one already in
    maintenance (an earlier deploy left it) is left as found if this one stops early."""
    states = maintenance.read_states(ctx.runner, backend.id, sites)
    why = {name: _maintenance_since(ctx, name) for name, state in states.items() if state.maintenance}
    window.found(states, why)
    for name, since in why.items():
        ctx.emit(f"{name} is in maintenance mode already ({since})")


def _maintenance_since(ctx: _Context, site: str) -> str:
    """Since which deploy ``site`` is in maintenance, from the deploy records (``deploys/`` and
    the target's audit log, which has the deploys of other workspaces too)."""
    records = _place_records(ctx)
    return describe_since(
        maintenance_since(records, ctx.opts.project, ctx.runner.host, site, ctx.report.daemon_id)
    )


def _place_records(ctx: _Context) -> list[DeployRecord]:
    """The records of this project at this place (``record.at_place``, keyed by the daemon's
    ID): this workspace's ``deploys/`` and the target's audit log (every workspace's deploys
    of it: they ran here, whatever host name they used)."""
    local = read_records(item for _, item in iter_deploy_records(ctx.ws) if isinstance(item, dict))
    audit = ctx.runner.read_file(ctx.paths.audit_log) or ""
    return place_records(local, audit, ctx.opts.project, ctx.runner.host, lambda: ctx.report.daemon_id)


def _read_back_maintenance(ctx: _Context) -> None:
    """Each site's real maintenance state at the end (whatever the options), read from the
    site; one in maintenance that the window did not report gets the commands that end it."""
    names = [s.site for s in ctx.report.sites if s.site != MIGRATOR_SITES]
    states: dict[str, maintenance.SiteState] = {}
    try:
        with interrupts_held():
            states = maintenance.read_states(ctx.runner, _backend(ctx).id, names) if names else {}
    except (ImagekitError, KeyboardInterrupt):
        pass  # no backend runs (or it cannot be asked): unknown
    for name in names:
        state = states.get(name)
        ctx.report.site(name).maintenance_now = state.word if state else None
        if state and state.maintenance:
            _say_still_on(ctx, name)


def _say_still_on(ctx: _Context, name: str) -> None:
    site = ctx.report.site(name)
    if ctx.window is not None and name in ctx.window.open_sites():
        return  # the window's own report said it (_report_window)
    why = f"read back from the site at the end; {_maintenance_since(ctx, name)}"
    step = maintenance.end_step(bench_place(ctx), SiteWindow(name, left_on=why))
    if step in site.next_steps:
        return
    site.next_steps.append(step)
    ctx.report.notes.append(f"{name} is in maintenance mode ({why}); its next steps end it.")
    ctx.emit(step)


def _keep_unmigrated_in_maintenance(ctx: _Context) -> None:
    """A site whose migrate failed is broken, one not migrated is not on the new version yet:
    both stay in maintenance; the others leave it as the window ends."""
    window = _window(ctx)
    window.stack_changed()
    for name in window.open_sites():
        status = ctx.report.site(name).status
        if status != "ok":
            window.keep([name], "its migrate failed" if status == "failed" else "it was not migrated")


def _report_window(ctx: _Context) -> None:
    if ctx.window is None:
        return
    ctx.report.timings.update(ctx.window.timings)
    ctx.report.notes.extend(ctx.window.warnings)
    place = bench_place(ctx)
    for name in ctx.window.open_sites():
        window = ctx.window.sites[name]
        step = maintenance.end_step(place, window)
        ctx.report.site(name).next_steps.append(step)
        ctx.report.notes.append(f"{name} is still in maintenance mode ({window.left_on}); its next steps "
                                "end it.")  # fmt: skip
        ctx.emit(step)


def _live_and_broken(ctx: _Context) -> None:
    """A site that failed its health check after its window ended: its migrate succeeded, so the
    fault is a service; say so, with how to fix it, and the way back (nextsteps.py)."""
    place, call = bench_place(ctx), _imagekit_call(ctx)
    services = ctx.config.services if ctx.config else {c.service: c for c in _project(ctx)}
    service = "frontend" if health.base_url(services) == health.FRONTEND_URL else ctx.opts.backend_service
    _read_back_maintenance(ctx)  # "live" only when the site says so
    for site in ctx.report.sites:
        in_window = site.maintenance_now == maintenance.ON
        if site.health == "failed" and not in_window:
            site.next_steps += [
                nextsteps.health_failed_step(place, call, site.site, service, ctx.opts.version),
                nextsteps.redeploy_step(call, ctx.opts.version),
                _go_back_step(ctx, call),
            ]


def bench_place(ctx: _Context) -> BenchPlace:
    """Where printed compose commands run: every -f of the deploy, its env file, the daemon."""
    runner, opts = ctx.runner, ctx.opts
    env = [("DOCKER_HOST", host) for host in [getattr(runner, "base_env", {}).get("DOCKER_HOST")] if host]
    return BenchPlace(
        project=opts.project,
        compose=tuple(ctx.cli.base) if ctx.cli else ("docker", "compose"),
        compose_files=tuple(ctx.compose_files) or (opts.compose_file, *opts.compose_overrides),
        env_file=_printed_path(runner, opts.env_file),
        service=opts.backend_service,
        ssh=ssh_prefix(runner.host, opts.ssh_flags),
        env=tuple(env),
        up_env=tuple(sorted(_running_env(ctx).items())),
    )


def _running_env(ctx: _Context) -> dict[str, str]:
    """The variables of the up the stack now runs from: this deploy's, or the last up's (none
    when last-up.json cannot be read or used: next steps are built on the way out of failures)."""
    if ctx.report.served:
        return _up_env(ctx.opts)
    try:
        text = ctx.runner.read_file(ctx.paths.last_up)
        recorded = parse_last_up(text) if text is not None else {}
    except (ImagekitError, OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in recorded.get("env", {}).items()}


def _printed_path(runner: Runner, path: str | None) -> str | None:
    """``path`` made absolute on the target for a printed command (as given when that fails)."""
    if not path:
        return None
    try:
        return _absolute(runner, path)
    except (ImagekitError, OSError):
        return path


def _imagekit_call(ctx: _Context) -> nextsteps.ImagekitCall:
    """``imagekit deploy|rollback`` naming this deploy's stack (nextsteps.py)."""
    runner, opts = ctx.runner, ctx.opts
    options = list(opts.repeat)
    if Path.cwd().resolve() != ctx.ws.root:
        options.append(("-w", str(ctx.ws.root)))
    if opts.sites:
        options.append(("--sites", ",".join(opts.sites)))
    defaults = DeployOptions("", "", "", "")
    for option, name in _REPEATED_OPTIONS:
        if getattr(opts, name) != getattr(defaults, name):
            options.append((option, str(getattr(opts, name))))
    return nextsteps.imagekit_call(
        opts.target, opts.project, ctx.compose_files or [opts.compose_file, *opts.compose_overrides],
        env_file=_printed_path(runner, opts.env_file),
        state_dir=_printed_path(runner, opts.state_dir),
        host=runner.host, options=options,
    )  # fmt: skip


# options a printed `imagekit deploy` repeats when they differ from their defaults
_REPEATED_OPTIONS = (
    ("--backend-service", "backend_service"),
    ("--image-var", "image_var"),
    ("--tag-var", "tag_var"),
)


def _go_back_step(ctx: _Context, call: nextsteps.ImagekitCall) -> str:
    sites = ctx.report.sites
    return nextsteps.go_back_step(
        call,
        deploy_id=stamp(ctx.report.started),
        version=ctx.opts.version,
        replaced=ctx.report.served,
        backed_up=bool(sites) and all(s.backup for s in sites),
        previous=ctx.report.previous_version,
    )


# ---------------------------------------------------------------- preflight


def _preflight(ctx: _Context) -> None:
    runner, opts = ctx.runner, ctx.opts
    ctx.cli = compose.detect_compose(runner)
    ctx.report.compose = f"{' '.join(ctx.cli.base)} {ctx.cli.version}"
    if not ctx.cli.is_v2:
        ctx.report.notes.append(
            f"compose v1 ({ctx.report.compose}) is unmaintained upstream; it works, but install the "
            "compose v2 plugin (`docker compose`) on the target."
        )
    docker = runner.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    if docker.returncode != 0:
        raise DeployError(
            f"docker does not answer on {runner.host} ({_last_line(docker)}); start the Docker daemon there."
        )
    ctx.report.daemon_id = place.daemon_of(runner)
    ctx.compose_files = [_absolute(runner, p) for p in (opts.compose_file, *opts.compose_overrides)]
    ctx.compose_file = ctx.compose_files[0]
    for path in ctx.compose_files:
        if runner.run(["test", "-f", path]).returncode != 0:
            raise NotFoundError(
                f"compose file {path} does not exist on {_where(runner)}: pass the file "
                "the site runs with (--compose, a path on the target)."
            )
    if opts.env_file and runner.run(["test", "-f", opts.env_file]).returncode != 0:
        raise NotFoundError(
            f"env file {opts.env_file} does not exist on {_where(runner)}: fix --env-file "
            "(a path on the target) or leave it out."
        )
    if not _image_present(runner, opts.image_ref):
        _send_image(ctx)
    if not opts.migrate_only:
        _check_config(ctx)
        _check_services_kept(ctx)
        _check_image_apps(ctx)


def _check_config(ctx: _Context) -> None:
    """Render the config `up` will use; refuse it unless services get IMAGE:VERSION."""
    assert ctx.cli is not None
    opts, files = ctx.opts, ctx.compose_files
    ctx.config = composeconfig.render(ctx.runner, ctx.cli, opts.project, files, _up_env(opts), opts.env_file)
    images = composeconfig.image_plan(ctx.config, opts.image, opts.version)
    contents = {path: ctx.runner.read_file(path) or "" for path in files}
    lines = composeconfig.image_lines(contents, images.pinned.values())
    verify.require_image_plan(images, opts.image_ref, lines, opts.image_var, opts.tag_var)
    ctx.report.image_services = images.new
    ctx.report.services = {name: svc.image for name, svc in sorted(ctx.config.services.items())}
    ctx.report.oneshot_services = composeconfig.oneshot_services(ctx.config, opts.oneshot_services)
    ctx.report.migrator = next(iter(composeconfig.migrator_services(ctx.config)), None)


def _check_image_apps(ctx: _Context) -> None:
    """Every app installed on a site must be in the new image (read from the running backend)."""
    runner, opts = ctx.runner, ctx.opts
    if not _image_present(runner, opts.image_ref):  # dry run: it would be sent
        return
    ctx.report.image_id = verify.image_id(runner, opts.image_ref)
    try:
        backend = _backend(ctx)
    except DeployError:
        backend = None
    if backend is None or _no_site_yet(ctx):
        ctx.report.notes.append("no running backend or no site yet: the apps of the sites were not checked.")
        return
    sites = _sites(ctx, backend)
    installed = verify.site_apps(runner, backend.id, sites)
    in_image = verify.manifest_apps(ctx.ws, opts.version, ctx.report.image_id)
    if in_image is None:
        in_image = verify.bench_version_apps(runner, opts.image_ref)
    verify.require_apps(installed, in_image, opts.image_ref)


def _check_running_image(ctx: _Context) -> None:
    if not ctx.report.image_id:
        return
    running = verify.running_images(ctx.runner, ctx.opts.project)
    verify.require_running_image(running, ctx.report.image_services, ctx.report.image_id, ctx.opts.image_ref)


def _absolute(runner: Runner, path: str) -> str:
    if path.startswith("/"):
        return path
    done = runner.run(["sh", "-c", 'cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"', "sh", path])
    return done.stdout.strip() or path


def _image_present(runner: Runner, ref: str) -> bool:
    return runner.run(["docker", "image", "inspect", ref], timeout=60).returncode == 0


def _send_image(ctx: _Context) -> None:
    """Stream ``docker save`` (here) into ``docker load`` (there), before anything stops."""
    runner, opts = ctx.runner, ctx.opts
    if isinstance(runner, LocalRunner) and not opts.source_docker_host:
        raise NotFoundError(
            f"image {opts.image_ref} is not on this machine; build it first or pass --version."
        )
    if not opts.send_image:
        raise NotFoundError(f"image {opts.image_ref} is not on {runner.host}; load it there first.")
    if not _image_present(LocalRunner(opts.source_docker_host), opts.image_ref):
        raise NotFoundError(f"image {opts.image_ref} is neither on {runner.host} nor here; build it first.")
    if opts.dry_run:
        ctx.report.notes.append(f"{opts.image_ref} is not on {runner.host}: it would be sent.")
        return
    sent = send.send_image(runner, opts.image_ref, _transfer(opts), ctx.emit, digest=opts.image_digest)
    ctx.report.image_sent = True
    ctx.report.image_digest = sent.digest
    ctx.report.timings["send_image"] = sent.seconds


def _transfer(opts: DeployOptions) -> send.ImageTransfer:
    return send.ImageTransfer(opts.source_docker_host, method=opts.transfer, allowed=opts.send_image)


# ---------------------------------------------------------------- compose files


def _down_files(ctx: _Context, running: Sequence[Container]) -> dict[str, Any]:
    """Which compose file (and env) ``down`` must use: the copy from the last ``up``."""
    recorded = _last_up(ctx)
    labels = sorted({composeconfig.resolve_config_files(c.config_files, c.working_dir)
                     for c in running if c.config_files})  # fmt: skip
    if recorded:
        others = [label for label in labels if not _same_files(ctx, label, recorded)]
        if others and not ctx.opts.force:
            raise DeployError(
                f"the running containers of {ctx.opts.project} were started with "
                f"{' and '.join(labels)}, not with {recorded['config_files']} (the last up by "
                "imagekit); bring them down with that file yourself, or pass --force."
            )
        kept = _recorded_files(ctx, recorded)
        env_file = ctx.paths.env_copy if recorded.get("env_file") else None
        return {"files": [item["copy"] for item in kept], "project_dir": recorded["project_dir"],
                "env_file": env_file, "env": recorded.get("env", {}), "kept": kept,
                "config_files": recorded["config_files"]}  # fmt: skip
    if labels and labels != [",".join(ctx.compose_files)] and not ctx.opts.force:
        raise DeployError(
            f"the running containers of {ctx.opts.project} were started with {' and '.join(labels)}"
            f" and imagekit has no record of that up; bring them down with that file, or pass "
            "--force to use the config_files label."
        )
    files = labels[0].split(",") if labels else ctx.compose_files
    return {"files": files, "project_dir": None, "env_file": ctx.opts.env_file, "env": {}, "kept": [],
            "config_files": ",".join(files)}  # fmt: skip


def _same_files(ctx: _Context, label: str, recorded: dict[str, Any]) -> bool:
    """Whether containers labelled with ``label`` (their compose files) were started with the
    files of the last up: the same paths, or files of other paths with the same contents in the
    same order. A rollback starts the image's services with the state folder's copies of the
    files while MariaDB and Redis keep the labels of the originals (a real v15 stack refused every
    deploy after a rollback until --force, 2026-12-07)."""
    if label == recorded["config_files"]:
        return True
    wanted = [item["sha256"] for item in _recorded_files(ctx, recorded)]
    return [_sha256_on_target(ctx.runner, path) for path in label.split(",")] == wanted


def _note_changed_files(ctx: _Context, files: dict[str, Any], full: bool) -> None:
    for item in files["kept"]:
        if _sha256_on_target(ctx.runner, item["path"]) != item["sha256"]:
            how = (
                f"down used the copy from that up ({item['copy']})"
                if full
                else "up recreated what it changes"
            )
            ctx.report.notes.append(f"{item['path']} changed since the last up; {how}.")


def _needs_full_down(ctx: _Context, running: Sequence[Container]) -> bool:
    """``compose down`` first (everything stops) only with --full-down or when the running
    containers were started with another set of compose files than this deploy's (their
    labels); the same files with other contents are compose's to converge (``up``). A file
    of another path with the same content (the kept copy a rollback ran with) is the same file."""
    if ctx.opts.full_down:
        return True
    target = [_sha256_on_target(ctx.runner, path) for path in ctx.compose_files]
    for label in {composeconfig.resolve_config_files(c.config_files, c.working_dir) for c in running}:
        paths = label.split(",") if label else []
        if paths == ctx.compose_files:
            continue
        if [_sha256_on_target(ctx.runner, path) for path in paths] != target:
            return True
    return False


def _check_services_kept(ctx: _Context) -> None:
    """Refuse (exit 13) when services of the running project are not in the rendered config:
    ``up --remove-orphans`` would remove them (real-lab 14: db, redis-cache and redis-queue gone
    with a file set missing frappe_docker's overrides). ``--force`` removes them."""
    assert ctx.config is not None
    running = compose.service_containers(compose.project_containers(ctx.runner, ctx.opts.project))
    gone = sorted({c.service for c in running} - set(ctx.config.services))
    if not gone:
        return
    if ctx.opts.force:
        said = (
            f"--force: the deploy removes {', '.join(gone)} (not in the compose files "
            f"{', '.join(ctx.compose_files)}): up --remove-orphans stops and deletes "
            f"{'its container' if len(gone) == 1 else 'their containers'} (named volumes stay)."
        )
        ctx.emit(said)  # said before anything stops, not only in the report at the end
        ctx.report.notes.append(said)
        return
    recorded = _last_up(ctx)
    labels = sorted({composeconfig.resolve_config_files(c.config_files, c.working_dir)
                     for c in running if c.service in gone and c.config_files})  # fmt: skip
    last = recorded["config_files"] if recorded else " and ".join(labels) or "unknown files"
    raise DeployError(
        f"the compose files {', '.join(ctx.compose_files)} have no service {', '.join(gone)}, which "
        f"{'is' if len(gone) == 1 else 'are'} part of project {ctx.opts.project} now (the files of the last "
        f"up: {last.replace(',', ', ')}): the deploy would remove {'it' if len(gone) == 1 else 'them'}. "
        "Deploy with those files (--compose for each, or the target that names them), or pass --force to "
        "remove them. Nothing was stopped."
    )


def _recorded_files(ctx: _Context, recorded: dict[str, Any]) -> list[dict[str, str]]:
    """The files of the last up with their hash and copy (records before several files: one)."""
    items = recorded.get("files")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items) or not items:
        items = [{"path": recorded.get("config_files"), "sha256": recorded.get("sha256")}]
    what = f"a compose file in {ctx.paths.last_up}"
    return [
        {"path": validate.not_an_option(item.get("path"), what, DeployError),
         "sha256": str(item.get("sha256")), "copy": _copy_path(ctx.paths, index)}
        for index, item in enumerate(items)
    ]  # fmt: skip


def _copy_path(paths: StatePaths, index: int) -> str:
    """Where the copy of the ``index``-th compose file of the last up is kept (never read from a file)."""
    return paths.compose_copy if index == 0 else f"{paths.root}/compose.{index}.yaml"


def _last_up(ctx: _Context) -> dict[str, Any] | None:
    """The record of the last ``up``; one that cannot be used is treated as missing, with a note."""
    text = ctx.runner.read_file(ctx.paths.last_up)
    if text is None:
        return None
    try:
        return parse_last_up(text)
    except ValueError as exc:
        ctx.report.notes.append(
            f"{ctx.paths.last_up} cannot be used ({exc}): treated as missing; down used the "
            "containers' config_files label."
        )
        return None


def _last_up_version(ctx: _Context) -> str | None:
    """The version the last ``up`` started (what runs now), when last-up.json names a valid one."""
    text = ctx.runner.read_file(ctx.paths.last_up)
    try:
        data = parse_last_up(text) if text is not None else {}
        return validate.image_tag(data.get("version"), "the version in last-up.json")
    except (ValueError, ImagekitError):
        return None


def parse_last_up(text: str) -> dict[str, Any]:
    """``last-up.json`` (a file on the target: any content) checked field by field; raises
    ``ValueError`` naming the first field that cannot be used."""
    data = json_object(text)
    for key in ("config_files", "sha256", "project_dir", "env_file"):
        value = data.get(key)
        if value is not None or key in ("config_files", "sha256"):
            _state_value(value, key)
    env = data.get("env", {})
    if not isinstance(env, dict):
        raise ValueError("env is not an object")
    for name, value in env.items():
        _state_value(name, "a variable name in env", validate.env_name)
        if not isinstance(value, str) or "\x00" in value:
            shown = "a variable shaped like a token" if validate.TOKEN_SHAPE.search(name) else name
            raise ValueError(f"env {shown} is not a string")
    return data


def _state_value(value: object, what: str, check: Callable[..., str] = validate.not_an_option) -> None:
    try:
        check(value, what)
    except ImagekitError as exc:
        raise ValueError(exc.message.rstrip(".")) from None


def _sha256_on_target(runner: Runner, path: str) -> str | None:
    content = runner.read_file(path)
    return hashlib.sha256(content.encode()).hexdigest() if content is not None else None


def _keep_copy(ctx: _Context, env: dict[str, str]) -> None:
    runner, paths = ctx.runner, ctx.paths
    files = []
    for index, path in enumerate(ctx.compose_files):
        text = runner.read_file(path) or ""
        copy = _copy_path(paths, index)
        runner.write_file(copy, text.encode())
        files.append({"path": path, "sha256": hashlib.sha256(text.encode()).hexdigest(), "copy": copy})
    if ctx.opts.env_file:
        runner.write_file(paths.env_copy, (runner.read_file(ctx.opts.env_file) or "").encode())
    record = {
        "config_files": ",".join(ctx.compose_files),
        "sha256": files[0]["sha256"],
        "files": files,
        "project_dir": str(Path(ctx.compose_file).parent),
        "env_file": ctx.opts.env_file,
        "env": env,
        "version": ctx.opts.version,
        "when": now_iso(),
    }
    runner.write_file(paths.last_up, json.dumps(record, indent=2).encode())


# ---------------------------------------------------------------- backup, down, up


def _backend(ctx: _Context, containers: Sequence[Container] | None = None) -> Container:
    if containers is None:
        containers = compose.project_containers(ctx.runner, ctx.opts.project)
    for container in compose.service_containers(containers):
        if container.service == ctx.opts.backend_service and container.state == "running":
            return container
    raise DeployError(
        f"no running {ctx.opts.backend_service} container in project {ctx.opts.project}; "
        "start the project (imagekit deploy without --migrate-only) or pass --backend-service."
    )


def _exec(ctx: _Context, container: Container, argv: Sequence[str], **kwargs: Any) -> Completed:
    return ctx.runner.run(["docker", "exec", container.id, *argv], **kwargs)


def _sites(ctx: _Context, backend: Container) -> list[str]:
    if ctx.opts.sites:
        return list(ctx.opts.sites)
    done = _exec(ctx, backend, ["sh", "-c", _LIST_SITES], timeout=60)
    sites = _listed_sites(ctx, done.stdout)
    if not sites:
        raise DeployError(
            f"no site found in {ctx.opts.backend_service} (sites/*/site_config.json); "
            "pass --sites site1,site2."
        )
    return sites


def _listed_sites(ctx: _Context, stdout: str) -> list[str]:
    """The site folders the backend listed (one a line), each a valid site name before it
    reaches bench or a path: a folder named otherwise stops the deploy, naming it."""
    what = f"the folder in sites/ of {ctx.opts.backend_service} (remove it, or pass --sites)"
    return sorted(validate.site_name(line, what, DeployError) for line in stdout.splitlines() if line)


def _backup(ctx: _Context, running: Sequence[Container]) -> None:
    try:
        backend = _backend(ctx, running)
    except DeployError:
        ctx.report.notes.append("no running backend before the deploy: no backup taken.")
        return
    if _no_site_yet(ctx):
        ctx.report.notes.append("no site yet: no backup taken.")
        return
    for site in _sites(ctx, backend):
        ctx.emit(f"backing up {site}")
        argv = ["bench", "--site", site, "backup", *(["--with-files"] if ctx.opts.backup_files else [])]
        done = _exec(ctx, backend, argv, timeout=3600)
        match = _BACKUP_LINE.search(done.stdout)
        if done.returncode != 0 or not match:
            raise DeployError(
                f"backup of {site} failed ({_last_line(done)}); nothing was stopped: fix it, "
                "or deploy with --no-backup."
            )
        ctx.report.site(site).backup = _site_path(match["path"])
        _keep_backup(ctx, backend, site, done.stdout)
    _prune_backups(ctx)


def _prune_backups(ctx: _Context) -> None:
    """Only the last --keep-backups deploys' backups stay, but never a failed deploy's nor the
    newest copy of a version's data (deploy/backups.py ``plan_prune``), as the records say: the
    target's audit log (every workspace's deploys of it), then this workspace's ``deploys/``."""
    facts = backups.deploy_facts(_place_records(ctx))
    current = stamp(ctx.report.started)
    facts[current] = backups.DeployFacts(False, ctx.report.previous_version)
    pruned = backups.prune(ctx.runner, f"{ctx.paths.root}/backups", ctx.opts.keep_backups, facts, current)
    ctx.report.notes.extend(backups.describe(pruned, ctx.opts.keep_backups))


def _keep_backup(ctx: _Context, backend: Container, site: str, output: str) -> None:
    """Copy the site's backup off the volume into the state folder, checked and hashed."""
    site = validate.site_name(site, "a site of the backend", DeployError)
    folder = f"{ctx.paths.root}/backups/{stamp(ctx.report.started)}/{site}"
    files = backups.copy_off(ctx.runner, backend.id, backups.files_in_output(output), folder)
    ctx.report.site(site).backup_files = [asdict(f) for f in files]


def _site_path(path: str) -> str:
    """bench prints backup paths relative to sites/; make them bench-relative."""
    return path if path.startswith("/") else "sites/" + path.removeprefix("./")


def _down(ctx: _Context, files: dict[str, Any], anything: bool) -> None:
    """Stop and remove the containers of the image's services before they start again on
    another image (rollback): MariaDB and Redis keep running (README "What deploy stops");
    everything (compose down) with --full-down."""
    if ctx.opts.full_down or not ctx.report.image_services:
        _compose_down(ctx, files, anything)
        return
    _kill_first(ctx)
    removed = compose.remove_services(ctx.runner, ctx.opts.project, ctx.report.image_services,
                                      ctx.opts.stop_timeout)  # fmt: skip
    if removed:
        ctx.emit(f"stopped {', '.join(removed)}; {_kept_running(ctx)} keep running")


def _kept_running(ctx: _Context) -> str:
    kept = sorted(set(ctx.report.services) - set(ctx.report.image_services))
    return ", ".join(kept) or "no other service"


def _kill_first(ctx: _Context) -> None:
    killed = compose.kill_services(ctx.runner, ctx.opts.project, ctx.opts.kill_first)
    if killed:
        ctx.report.notes.append(
            f"killed {', '.join(killed)} at once before they were replaced: they ignore SIGTERM and hold "
            "no state (--kill-first)."
        )


def _compose_down(ctx: _Context, files: dict[str, Any], anything: bool) -> None:
    if not anything and not compose.project_containers(ctx.runner, ctx.opts.project):
        return
    assert ctx.cli is not None
    _kill_first(ctx)
    argv = compose.compose_argv(
        ctx.cli,
        ctx.opts.project,
        files["files"],
        *compose.down_args(ctx.cli, ctx.opts.stop_timeout),
        project_dir=files["project_dir"],
        env_file=files["env_file"],
    )
    done = ctx.runner.run(argv, env=files["env"] or None, timeout=ctx.opts.down_timeout + 30)
    if done.returncode != 0:
        raise DeployError(
            f"compose down failed ({_last_line(done)}); run `{shlex.join(argv)}` by hand to see why."
        )
    compose.wait_gone(ctx.runner, ctx.opts.project, ctx.opts.down_timeout)


def _up(ctx: _Context) -> None:
    assert ctx.cli is not None
    opts = ctx.opts
    env = _up_env(opts)
    argv = compose.compose_argv(
        ctx.cli, opts.project, ctx.compose_files, *compose.up_args(ctx.cli, opts.stop_timeout),
        env_file=opts.env_file,
    )  # fmt: skip
    before = compose.restart_counts(_project(ctx))
    done = ctx.runner.run(argv, env=env, timeout=opts.up_timeout + 60)
    _keep_copy(ctx, env)  # even a failed up may have started containers with this file
    if done.returncode != 0:
        raise DeployError(
            f"compose up failed: {_last_line(done)}; fix the compose file or the image and deploy again."
        )
    if ctx.report.migrator:
        _timed(ctx, "migrate", _follow_migrator)
        if ctx.migrator_run and ctx.migrator_run.failed:
            return  # reported as a migrate failure; the other services are up
    oneshot = ctx.report.oneshot_services or opts.oneshot_services
    compose.wait_services(
        ctx.runner, opts.project, oneshot, opts.up_timeout, settle=opts.settle, before=before
    )


def _follow_migrator(ctx: _Context) -> None:
    assert ctx.report.migrator is not None
    ctx.emit(f"waiting for the {ctx.report.migrator} service (bench migrate on start)")
    ctx.migrator_run = migrator.wait_for(ctx.runner, ctx.opts.project, ctx.report.migrator, ctx.emit)


MIGRATOR_SITES = "all"  # frappe_docker's migrator runs `bench --site all migrate`


def _report_migrator(ctx: _Context, run: MigratorRun) -> None:
    """Sites' results from the migrator's logs (imagekit does not start a second migrate)."""
    results = parse_migrate_output(run.output, exit_code=run.exit_code)
    for result in results:
        # output that names no site (`bench: not found` before any `Migrating`) is the result of
        # the migrator's own `--site all`
        _fill_site(ctx, ctx.report.site(result.site or MIGRATOR_SITES), result)
    ctx.report.notes.append(
        f"migrate ran in the {run.service} service on up ({run.container}, exit {run.exit_code}); "
        "imagekit followed its logs instead of starting a second migrate."
    )
    if run.stopped:
        ctx.report.notes.append(
            f"imagekit stopped {run.container} after it failed, so that its restart policy does not "
            "run migrate again unseen; it runs again on the next up."
        )
    if not results and not run.failed:
        ctx.report.notes.append("no site yet: the migrator had nothing to migrate.")


def _check_health(ctx: _Context) -> None:
    """Each migrated site answers ping (and one asset through the frontend), from inside."""
    if not ctx.report.sites:
        return
    backend = _backend(ctx)
    services = ctx.config.services if ctx.config else {c.service: c for c in _project(ctx)}
    url = health.base_url(services)
    asset = None
    if url == health.FRONTEND_URL:
        asset = health.first_asset(_exec(ctx, backend, ["cat", health.ASSETS_MANIFEST], timeout=30).stdout)
    else:
        ctx.report.notes.append(
            "no frontend service: the health check asked ping only (gunicorn serves no assets)."
        )
    in_maintenance = maintenance.read_states(ctx.runner, backend.id, [s.site for s in ctx.report.sites])
    for site in ctx.report.sites:
        state = in_maintenance.get(site.site)
        if state is not None and state.maintenance:  # it answers 503 by design: not a failure
            site.health = HEALTH_MAINTENANCE
            ctx.report.notes.append(f"{site.site} was not checked: it is in maintenance mode (answers 503).")
            continue
        ctx.emit(f"checking {site.site} ({url})")
        site.health = "failed"
        site.health = health.check_site(ctx.runner, backend.id, url, site.site, asset)


def _project(ctx: _Context) -> list[Container]:
    return compose.service_containers(compose.project_containers(ctx.runner, ctx.opts.project))


def _no_site_yet(ctx: _Context) -> bool:
    """A fresh stack: the backend runs and has no site (and --sites names none)."""
    if ctx.opts.sites:
        return False
    try:
        backend = _backend(ctx)
    except DeployError:
        return False
    return not _exec(ctx, backend, ["sh", "-c", _LIST_SITES], timeout=60).stdout.split()


def _up_env(opts: DeployOptions) -> dict[str, str]:
    """The variables `up` (and `config` before it) runs with: the image to deploy."""
    return {opts.image_var: opts.image, opts.tag_var: opts.version, "PULL_POLICY": "never"}


# ---------------------------------------------------------------- migrate and apps


def _migrate_all(ctx: _Context) -> None:
    try:
        backend = _backend(ctx)
    except DeployError as exc:
        raise MigrateError(f"services down: {exc.message}") from None
    for site in _sites(ctx, backend):
        ctx.emit(f"migrating {site}")
        _migrate(ctx, backend, site)


def _migrate(ctx: _Context, backend: Container, site: str) -> None:
    seen: list[str] = []  # the output so far: what an interrupted migrate had done

    def line(text: str) -> None:
        seen.append(text)
        ctx.emit(text)

    try:
        done = ctx.runner.run(maintenance.migrate_argv(backend.id, site), on_stdout=line)
    except KeyboardInterrupt:  # the migrate in the backend would go on unseen: stop it, say so
        top = bench_place(ctx).on_host(["docker", "top", backend.id[:12]])
        note = maintenance.stop_interrupted_migrate(ctx.runner, backend.id, site, top)
        _interrupted_site(ctx.report.site(site), "\n".join(seen), note)
        ctx.report.notes.append(note)
        ctx.emit(note)
        raise
    output = done.stdout + done.stderr
    (result, *_) = parse_migrate_output(output, sites=[site], exit_code=done.returncode)
    stopped = (
        done.returncode != 0
        and result.result != mp.SERVICES_DOWN
        and (_CONTAINER_GONE.search(output) is not None or not _running(ctx, backend))
    )
    if stopped:
        result.result, result.services = mp.SERVICES_DOWN, []
        result.exception = result.exception or _last_line(done)
    if result.result == mp.IMPORT_FAILED and not stopped:
        _find_patch_line(ctx, backend, site, result)
    _fill_site(ctx, ctx.report.site(site), result, stopped)


def _interrupted_site(site: SiteReport, output: str, note: str) -> None:
    """The record of a migrate interrupted on ``site``: the patches that completed (a
    ``Success`` after their ``Executing`` line: committed) and the one it was in."""
    seen = parse_migrate_output(output, sites=[site.site])
    result = seen[-1] if seen else SiteResult(site=site.site)
    site.status = INTERRUPTED
    site.patches_run = list(result.patches_run)
    site.interrupted_in = mp.running_patch(output, site.site)
    site.migrate_notes.append(note)


def _running(ctx: _Context, container: Container) -> bool:
    done = ctx.runner.run(["docker", "inspect", "-f", "{{.State.Running}}", container.id])
    return done.stdout.strip() == "true"


# Patch Log rows that count as run (frappe's run_all: skipped = 0), as a JSON list on stdout
_PATCH_LOG_KWARGS = (
    "{'doctype': 'Patch Log', 'filters': {'skipped': 0}, 'pluck': 'patch', 'limit_page_length': 0}"
)


def _find_patch_line(ctx: _Context, backend: Container, site: str, result: SiteResult) -> None:
    """An import failure prints no Executing line: find the line in the app's patches.txt
    (in the backend container) that is not yet in the site's Patch Log and names the module."""
    try:
        app = validate.python_module(result.failed_module, "the module named by migrate").split(".")[0]
    except ImagekitError:
        return
    patches = _exec(ctx, backend, ["cat", f"apps/{app}/{app}/patches.txt"], timeout=60)
    logged = _exec(ctx, backend, ["bench", "--site", site, "execute", "frappe.get_all",
                                  "--kwargs", _PATCH_LOG_KWARGS], timeout=120)  # fmt: skip
    executed = verify.first_json(logged.stdout) if logged.stdout.strip() else []
    if patches.returncode != 0:
        result.notes.append(f"could not read apps/{app}/{app}/patches.txt in the backend")
        return
    if logged.returncode != 0 or not isinstance(executed, list):
        result.notes.append(f"could not read the Patch Log of {site} (bench execute frappe.get_all)")
        return
    executed_lines = [str(entry) for entry in executed]
    found = pending_patch_line(patches.stdout, executed_lines, result.failed_module, result.section)
    if found is None:
        result.notes.append(f"no line of apps/{app}/{app}/patches.txt outside the Patch Log names it")
        return
    result.failed_patch = found
    result.notes[:] = [
        f"the line was read from apps/{app}/{app}/patches.txt in the backend: the first one not in "
        f"the Patch Log of {site} under {result.failed_module}"
    ]


def _fill_site(ctx: _Context, site: SiteReport, result: SiteResult, stopped: bool = False) -> None:
    site.status = "ok" if result.status == "ok" else "failed"
    for name in _REPORTED:
        setattr(site, name, getattr(result, name))
    site.migrate_notes = list(result.notes)
    if site.status == "failed":
        call = _imagekit_call(ctx)
        site.next_steps = next_steps(site, bench_place(ctx), call, ctx.opts.version,
                                     go_back=_go_back_step(ctx, call), container_stopped=stopped)  # fmt: skip


_REPORTED = ("result", "failed_patch", "failure", "failed_module", "failed_file", "section", "doctype",
             "doctype_file", "services", "lock_path", "step", "exception", "exception_type",
             "exception_message", "traceback", "warnings")  # fmt: skip


def next_steps(
    site: SiteReport,
    place: BenchPlace,
    call: nextsteps.ImagekitCall,
    version: str,
    *,
    go_back: str | None = None,
    container_stopped: bool = False,
) -> list[str]:
    """What the operator can do about a failed site, most likely first; every command quoted,
    compose ones at ``place``, imagekit ones naming the deploy's stack (``call``)."""
    steps = StepContext(
        place=place,
        again=call.deploy("--version", version, "--migrate-only"),
        deploy_new=call.deploy(),
        build=shlex.join(["imagekit", "build", *call.workspace()]),
        go_back=go_back,
        container_stopped=container_stopped,
    )
    if site.result is None:  # a report made by hand or read from an older record
        kinds = {kind: result for result, kind in mp.FAILURE_KINDS.items()}
        site = replace(site, result=kinds.get(site.failure or "", mp.ERROR))
    return migrate_next_steps(site, steps)


def _check_apps(ctx: _Context) -> None:
    ok_sites = [s for s in ctx.report.sites if s.status == "ok"]
    if not ok_sites:
        return
    backend = _backend(ctx)
    version = _exec(ctx, backend, ["bench", "version", "--format", "json"], timeout=120)
    image_apps = verify.first_json(version.stdout)
    names = [a.get("app") for a in image_apps if isinstance(a, dict)] if isinstance(image_apps, list) else []
    for site in ok_sites:
        listed = _exec(
            ctx,
            backend,
            ["bench", "--site", site.site, "list-apps", "--format", "json"],
            timeout=120,
        )
        installed = verify.first_json(listed.stdout)
        apps = installed.get(site.site, []) if isinstance(installed, dict) else []
        site.apps_not_installed = [n for n in names if n and n not in apps]


# ---------------------------------------------------------------- record


def _finish(ctx: _Context) -> None:
    _read_back_maintenance(ctx)
    report = ctx.report
    report.finished = now_iso()
    record = record_dict(report)
    path = ctx.ws.deploys_dir / f"{stamp(report.started)}-{report.project}.json"
    write_json_atomic(path, record)
    report.record = str(path)
    line = json.dumps(record, separators=(",", ":")) + "\n"
    try:
        ctx.runner.append_file(ctx.paths.audit_log, line.encode())
    except (ImagekitError, OSError):
        report.notes.append(f"could not append to {ctx.paths.audit_log} on {report.host}")


def record_dict(report: DeployReport) -> dict[str, Any]:
    """The deploy record (docs/DESIGN.md "Deploy record"), read by ``imagekit history``:
    checked by ``DeployRecord`` before it is written, as it is when read."""
    data = report.to_dict()
    data.pop("record", None)
    return DeployRecord.from_dict(data).to_dict()


# ---------------------------------------------------------------- helpers


def _timed(ctx: _Context, name: str, step: Callable[[_Context], None]) -> None:
    started = time.monotonic()
    try:
        step(ctx)
    finally:
        ctx.report.timings[name] = round(time.monotonic() - started, 3)


def _where(runner: Runner) -> str:
    return "this machine" if runner.host == "local" else runner.host


def _last_line(done: Any) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


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


def unlock(runner: Runner, project: str, state_dir: str | None = None) -> dict[str, Any] | None:
    """Clear the deploy lock of ``project`` on the target; return who held it (None: no lock)."""
    paths = state_paths(runner, project, state_dir)
    if runner.run(["test", "-d", paths.lock_dir]).returncode != 0:
        return None
    return lock.remove(runner, paths.lock_dir) or {}
