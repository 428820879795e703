"""What a deploy carries from step to step: its options, its report, the paths of its state
folder on the target, and the ``Context`` every step takes (deploy/steps.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from frappe_imagekit import progress, validate
from frappe_imagekit.deploy import (
    compose,
    maintenance,
)
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.composeconfig import RenderedConfig
from frappe_imagekit.deploy.engine import DEFAULT_ENGINE, Engine, running_service
from frappe_imagekit.deploy.maintenance import SiteWindow
from frappe_imagekit.deploy.migrator import MigratorRun
from frappe_imagekit.deploy.record import (
    DEPLOY,
    SUCCEEDED,
)
from frappe_imagekit.deploy.record import SCHEMA_VERSION as RECORD_SCHEMA
from frappe_imagekit.deploy.send import AUTO, ImageTransfer
from frappe_imagekit.deploy.target import Connection, OnTarget, Target
from frappe_imagekit.errors import (
    DeployError,
    ExitCode,
    ImagekitError,
    UsageError,
)
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

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


LIST_SITES = 'for f in sites/*/site_config.json; do [ -f "$f" ] && basename "$(dirname "$f")"; done'


@dataclass
class DeployOptions(OnTarget):
    """What to deploy (``image``:``version``) where (``where``: the one ``Target`` value,
    deploy/target.py) and how; the target's fields read through (``opts.project`` ...)."""

    where: Target
    image: str  # repository, e.g. desiredeffect/erpnext-custom
    version: str  # the tag
    sites: list[str] | None = None  # None: every site of the bench
    backup: bool = True
    migrate_only: bool = False
    dry_run: bool = False
    force: bool = False
    lock_wait: float = 0
    health_check: bool = True  # ping and one asset per site after migrate
    keep_backups: int = 5  # deploys whose backups stay in the state folder
    maintenance: bool = True  # sites in maintenance (scheduler paused) from the backup to after migrate
    backup_files: bool = False  # bench backup --with-files: the public and private files archives too
    # compose down before up (everything stops, MariaDB and Redis too); without it only the
    # services whose image or configuration changed are recreated (README "What deploy stops")
    full_down: bool = False
    # seconds each service must run unrestarted after up (compose.SETTLE when the options are made)
    settle: float = field(default_factory=compose.settle_default)
    rehearsed: bool = False  # deploy --rehearse: only a version whose last rehearsal passed
    image_digest: str | None = None  # the version's recorded registry digest: pulled by it

    @classmethod
    def of(cls, project: str, compose_file: str, image: str, version: str, **flat: Any) -> DeployOptions:
        """From the flat names of the target's fields (``compose_file`` + ``compose_overrides``,
        ``state_dir``, ``image_var`` ...) and the deploy's own."""
        own = {k: flat.pop(k) for k in list(flat) if k in _OWN}
        return cls(flat_target(project, compose_file, **flat), image, version, **own)

    @property
    def image_ref(self) -> str:
        return f"{self.image}:{self.version}"


_OWN = frozenset(f.name for f in fields(DeployOptions)) - {"where", "image", "version"}


def flat_target(project: str, compose_file: str = "", **flat: Any) -> Target:
    """A ``Target`` from the flat option names deploy, rollback and sandbox had before it."""
    overrides = tuple(flat.pop("compose_overrides", ()))
    files = (compose_file, *overrides) if compose_file or overrides else ()
    connection = Connection(ssh_flags=tuple(flat.pop("ssh_flags", ())))
    transfer = ImageTransfer(
        flat.pop("source_docker_host", None),
        method=flat.pop("transfer", AUTO),
        allowed=flat.pop("send_image", True),
    )
    name = flat.pop("target", None)
    return Target(project=project, compose_files=files, connection=connection, transfer=transfer,
                  name=name, **flat)  # fmt: skip


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


@dataclass
class Context:
    runner: Runner
    ws: Workspace
    opts: DeployOptions
    report: DeployReport
    paths: StatePaths
    emit: EventSink
    engine: Engine | None = None  # chosen in preflight (deploy) or from last-up.json (rollback)
    compose_file: str = ""  # absolute, on the target
    compose_files: list[str] = field(default_factory=list)  # every -f, absolute; [0] is compose_file
    config: RenderedConfig | None = None  # as `up` will see it (compose config)
    migrator_run: MigratorRun | None = None  # frappe_docker's migrator, followed after up
    window: maintenance.Window | None = None  # the sites in maintenance (deploy/maintenance.py)
    reporter: progress.Reporter = progress.SILENT  # backups, restores, migrates (issue 24 item 4)
    # what LIST_SITES printed in each backend container, until an up (forget_site_folders)
    site_folders: dict[str, str] = field(default_factory=dict)


def absolute(runner: Runner, path: str) -> str:
    if path.startswith("/"):
        return path
    done = runner.run(["sh", "-c", 'cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"', "sh", path])
    return done.stdout.strip() or path


def engine_of(ctx: Context) -> Engine:
    if ctx.engine is None:
        raise DeployError("no engine chosen yet (preflight did not run); this is a bug in imagekit.")
    return ctx.engine


def all_containers(ctx: Context) -> list[Container]:
    """Every container of the project (one-offs too), through the engine once it is chosen."""
    if ctx.engine is None:  # before preflight (a record written on the way out): by label
        return compose.project_containers(ctx.runner, ctx.opts.project)
    return ctx.engine.containers(ctx.opts.project)


def find_backend(ctx: Context, containers: Sequence[Container] | None = None) -> Container:
    found = all_containers(ctx) if containers is None else containers
    backend = running_service(compose.service_containers(found), ctx.opts.backend_service)
    if backend is not None:
        return backend
    raise DeployError(
        f"no running {ctx.opts.backend_service} container in project {ctx.opts.project}; "
        "start the project (imagekit deploy without --migrate-only) or pass --backend-service."
    )


def exec_in(ctx: Context, container: Container, argv: Sequence[str], **kwargs: Any) -> Completed:
    argv = (
        engine_of(ctx).exec_argv(container.id, argv)
        if ctx.engine
        else ["docker", "exec", container.id, *argv]
    )
    return ctx.runner.run(argv, **kwargs)


def site_names(ctx: Context, backend: Container) -> list[str]:
    if ctx.opts.sites:
        return list(ctx.opts.sites)
    sites = listed_sites(ctx, site_folders(ctx, backend))
    if not sites:
        raise DeployError(
            f"no site found in {ctx.opts.backend_service} (sites/*/site_config.json); "
            "pass --sites site1,site2."
        )
    return sites


def site_folders(ctx: Context, backend: Container) -> str:
    """The site folders ``backend`` lists (LIST_SITES' output), read once per container until
    the next up: each read is a `docker exec` (over SSH a round trip), and nothing of imagekit
    adds a site between one up and the next."""
    if backend.id not in ctx.site_folders:
        done = exec_in(ctx, backend, ["sh", "-c", LIST_SITES], timeout=60)
        if done.returncode != 0:  # not kept: the next step asks again
            return done.stdout
        ctx.site_folders[backend.id] = done.stdout
    return ctx.site_folders[backend.id]


def forget_site_folders(ctx: Context) -> None:
    """After an up: a new backend, or a one-shot service (frappe_docker's create-site) that made a
    site in the one that stayed."""
    ctx.site_folders.clear()


def listed_sites(ctx: Context, stdout: str) -> list[str]:
    """The site folders the backend listed (one a line), each a valid site name before it
    reaches bench or a path: a folder named otherwise stops the deploy, naming it."""
    what = f"the folder in sites/ of {ctx.opts.backend_service} (remove it, or pass --sites)"
    return sorted(validate.site_name(line, what, DeployError) for line in stdout.splitlines() if line)


MIGRATOR_SITES = "all"  # frappe_docker's migrator runs `bench --site all migrate`


def project_services(ctx: Context) -> list[Container]:
    return compose.service_containers(all_containers(ctx))


def no_site_yet(ctx: Context, backend: Container | None = None) -> bool:
    """A fresh stack: the backend runs and has no site (and --sites names none). ``backend``:
    the one the caller just found (else it is looked up: a `docker ps` and a `docker inspect`)."""
    if ctx.opts.sites:
        return False
    if backend is None:
        try:
            backend = find_backend(ctx)
        except DeployError:
            return False
    return not site_folders(ctx, backend).split()


def up_env(opts: DeployOptions) -> dict[str, str]:
    """The variables `up` (and `config` before it) runs with: the image to deploy."""
    return {opts.image_var: opts.image, opts.tag_var: opts.version, "PULL_POLICY": "never"}


def timed(ctx: Context, name: str, step: Callable[[Context], None]) -> None:
    started = time.monotonic()
    try:
        step(ctx)
    finally:
        ctx.report.timings[name] = round(time.monotonic() - started, 3)


def where_named(runner: Runner) -> str:
    return "this machine" if runner.host == "local" else runner.host
