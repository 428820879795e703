"""``imagekit rollback``: undo a deploy, database and image together.

Frappe has no reverse migrations: going back means restoring, for each site, the backup the
deploy took before migrate, and running the version that ran before it. Two steps, so that the
CLI can show what will happen (and what will be lost) and ask before anything changes:

- ``plan_rollback(runner, ws, opts)`` reads the deploy records and the target (the kept compose
  files, the backup copies and their sha256, the image, the env file's password variable) and
  returns a ``RollbackPlan``; it changes nothing and refuses what cannot work.
- ``rollback(runner, ws, plan)`` runs it under the deploy lock: send the image if it is not on
  the target, ``down`` with the files of the last up, ``restore_and_start`` (the backend on the
  old image, ``bench --site S restore`` per site, then every service), the image check and the
  health check. No migrate: the restored database matches the old code. It returns the report,
  recorded as a deploy record of kind ``rollback`` on every exit, Ctrl-C included, with the
  steps done (``progress``) and the ``next_step``.

The database root password ``bench restore`` asks for comes from a named variable of the env
file of the last up (frappe_docker's ``DB_PASSWORD``), read on the target and written to
bench's stdin: never argv (``docker exec`` argv is visible in /proc), never a file.
"""

from __future__ import annotations

import getpass
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frappe_imagekit import progress, validate
from frappe_imagekit.deploy import benchsite, compose, lock, verify
from frappe_imagekit.deploy.benchsite import restore_argv
from frappe_imagekit.deploy.context import (
    FAILED,
    INTERRUPTED,
    Context,
    DeployFailed,
    DeployOptions,
    DeployReport,
    engine_of,
    find_backend,
    flat_target,
    forget_site_folders,
    project_services,
    state_paths,
)
from frappe_imagekit.deploy.engine import open_engine
from frappe_imagekit.deploy.lastup import (
    DownFiles,
    KeptFile,
    LastUp,
    files_for_down,
    last_up_engine,
    read_last_up,
    sha256_on_target,
    write_last_up,
)
from frappe_imagekit.deploy.record import (
    DEPLOY,
    ROLLBACK,
    SUCCEEDED,
    BackupCopy,
    DeployRecord,
    read_deploys,
    recorded_digest,
)
from frappe_imagekit.deploy.record import now as now_iso
from frappe_imagekit.deploy.restorewait import interrupted_restore_note, wait_restore
from frappe_imagekit.deploy.send import image_present, last_line
from frappe_imagekit.deploy.sequence import check_options as check_deploy_options
from frappe_imagekit.deploy.sitewindow import bench_place, maintenance_window, open_window, the_window
from frappe_imagekit.deploy.steps import (
    check_config,
    check_health,
    check_image,
    down,
    down_stack,
    finish,
    send_image,
)
from frappe_imagekit.deploy.target import Connection, OnTarget, Target
from frappe_imagekit.errors import ConfigError, DeployError, ImagekitError, NotFoundError, UsageError
from frappe_imagekit.interrupts import sigterm_as_interrupt
from frappe_imagekit.manifest import BrokenManifest, list_manifests
from frappe_imagekit.runner import LocalRunner, Runner
from frappe_imagekit.workspace import Workspace

EventSink = Callable[[str], None]

# $1 the copy on the target, $2 the container, $3 the path in it: streamed in as the container's
# own user (frappe, uid 1000, in frappe_docker's image) with umask 022, so bench can read it.
_PUT = 'docker exec -i "$2" sh -c \'umask 022 && cat > "$1"\' sh "$3" < "$1"'
_RESTORED = "has been restored"


@dataclass
class RollbackOptions(OnTarget):
    """Which deploy to undo and how, on ``where`` (the one ``Target`` value, deploy/target.py:
    project, state folder, connection, backend service ...; its fields read through). The
    printed `imagekit rollback` again names ``where.name`` (the named target) and repeats
    ``where.repeat`` (-w, SSH options, --db-password-var; with a target, what overrode it)."""

    where: Target
    to_version: str | None = None  # default: the version that ran before the deploy undone
    deploy: str | None = None  # deploy id (20261201T165500Z) or record file; default: the last
    sites: list[str] | None = None  # None: every site of that deploy
    no_restore: bool = False  # image only; the databases stay as they are
    db_password_var: str = "DB_PASSWORD"  # in the env file of the last up
    lock_wait: float = 0
    health_check: bool = True
    force: bool = False  # down although the running containers were started by other files
    maintenance: bool = True  # the sites in maintenance from before down until every service is up
    settle: float = field(default_factory=compose.settle_default)  # after each up, as deploy's

    @classmethod
    def of(cls, project: str, **flat: Any) -> RollbackOptions:
        """From the flat names of the target's fields (``state_dir``, ``target`` ...) and its own."""
        own = {k: flat.pop(k) for k in list(flat) if k in _OWN}
        return cls(flat_target(project, **flat), **own)


_OWN = frozenset(f.name for f in fields(RollbackOptions)) - {"where"}


@dataclass(frozen=True)
class SiteRestore:
    site: str
    backup: BackupCopy | None  # the database copy in the state folder; None: not restored
    public_files: BackupCopy | None = None  # the files archives, when the deploy took them
    private_files: BackupCopy | None = None

    @property
    def copies(self) -> list[BackupCopy]:
        return [c for c in (self.backup, self.public_files, self.private_files) if c is not None]


@dataclass
class RollbackPlan:
    """What ``rollback`` will do, found before anything changes (``describe`` it first)."""

    opts: RollbackOptions
    host: str
    undo: DeployRecord  # the deploy undone
    to_version: str
    image: str  # repository
    sites: list[SiteRestore]
    image_on_target: bool
    down_files: DownFiles  # files, project_dir, env_file, env: those of the last up
    lost: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    image_digest: str | None = None  # the registry digest a deploy of to_version recorded: pulled by it
    ctx: Context | None = field(default=None, repr=False)

    @property
    def image_ref(self) -> str:
        return f"{self.image}:{self.to_version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.opts.project,
            "host": self.host,
            "undo": {"deploy_id": self.undo.deploy_id, "version": self.undo.version,
                     "result": self.undo.result, "started": self.undo.started},
            "to_version": self.to_version,
            "image": self.image_ref,
            "image_on_target": self.image_on_target,
            "sites": [{"site": s.site, "backup": s.backup and s.backup.to_dict()} for s in self.sites],
            "lost": list(self.lost),
            "warnings": list(self.warnings),
            "steps": list(self.steps),
        }  # fmt: skip


# ---------------------------------------------------------------- options


def check_options(opts: RollbackOptions) -> RollbackOptions:
    """``opts`` when every value can be used, else ``UsageError`` (exit 2) naming the option."""
    validate.project_name(opts.project, "--project", UsageError)
    if opts.to_version is not None:
        validate.image_tag(opts.to_version, "--to", UsageError)
    if opts.deploy is not None:
        validate.deploy_id(_deploy_id(opts.deploy), "--deploy", UsageError)
    if opts.sites is not None and not opts.sites:
        raise UsageError("--sites names no site: pass all, or site1,site2.")
    for site in opts.sites or []:
        validate.site_name(site, "a --sites entry", UsageError)
    validate.env_name(opts.db_password_var, "--db-password-var", UsageError)
    return opts


def _deploy_id(value: str) -> str:
    """``--deploy`` takes the id or the record's file name (``20261201T165500Z-erp.json``)."""
    return Path(value).name.split("-", 1)[0].removesuffix(".json")


# ---------------------------------------------------------------- plan


def plan_rollback(runner: Runner, ws: Workspace, opts: RollbackOptions) -> RollbackPlan:
    """Find the deploy to undo, the version to go back to and each site's backup, and check
    the target; change nothing. Raises (UsageError, NotFoundError, DeployError) what cannot work."""
    check_options(opts)
    deploys = read_deploys(ws)
    records = _records(deploys.records, opts.project, runner.host)
    undo = _checked_undo(records, deploys.broken_of(opts.project), opts, runner.host)
    to_version = _to_version(records, undo, opts)
    plan = RollbackPlan(
        opts=opts, host=runner.host, undo=undo, to_version=to_version,
        image=_image_name(ws, to_version, undo),
        sites=site_restores(undo, opts, state_paths(runner, opts.project, opts.state_dir).root),
        image_on_target=False, down_files=DownFiles([], None, None, {}, [], ""),
        image_digest=recorded_digest(records, to_version),
    )  # fmt: skip
    _check_target(runner, ws, plan)
    _describe(plan)
    return plan


def _records(records: Sequence[DeployRecord], project: str, host: str) -> list[DeployRecord]:
    """The usable deploy records of ``project`` on ``host``, oldest first."""
    found = [r for r in records if r.project == project and r.host == host and r.deploy_id]
    return sorted(found, key=lambda r: str(r.started))


def _checked_undo(
    records: Sequence[DeployRecord], broken: Sequence[BrokenManifest], opts: RollbackOptions, host: str
) -> DeployRecord:
    """``_deploy_to_undo``, refused when a record of the project that cannot be read is the one
    ``--deploy`` names, or could be a later deploy than the one chosen (hand-edited or corrupt:
    rollback must not undo another deploy than the last)."""
    wanted = _deploy_id(opts.deploy) if opts.deploy is not None else None
    named = [b for b in broken if b.path.name.split("-", 1)[0] == wanted]
    if named:
        raise NotFoundError(f"{_unusable(named[0])}: restore it from git (git checkout -- "
                            f"deploys/{named[0].path.name}), then roll back again.")  # fmt: skip
    try:
        undo = _deploy_to_undo(records, opts, host)
    except NotFoundError:
        if wanted is None and broken:
            raise ConfigError(_later(broken[-1], "no usable record of a deploy")) from None
        raise
    later = [b for b in broken if wanted is None and b.path.name.split("-", 1)[0] > str(undo.deploy_id)]
    if later:
        raise ConfigError(_later(later[-1], f"the last usable one is {undo.deploy_id}"))
    return undo


def _unusable(broken: BrokenManifest) -> str:
    return f"deploys/{broken.path.name} cannot be used ({broken.reason})"


def _later(broken: BrokenManifest, usable: str) -> str:
    return (
        f"{_unusable(broken)} and may record the last deploy ({usable}): restore it from git "
        f"(git checkout -- deploys/{broken.path.name}) or move it away, or pass --deploy ID to "
        "name the deploy to undo."
    )


def _deploy_to_undo(records: Sequence[DeployRecord], opts: RollbackOptions, host: str) -> DeployRecord:
    if opts.deploy is not None:
        wanted = _deploy_id(opts.deploy)
        chosen = next((r for r in records if r.deploy_id == wanted), None)
        if chosen is None:
            known = ", ".join(f"{r.deploy_id} ({r.version})" for r in records[-3:]) or "none"
            raise NotFoundError(
                f"no deploy {wanted} of {opts.project} on {host} in deploys/ (the last: {known}); "
                "pass --deploy with one of them."
            )
        if chosen.kind == ROLLBACK:
            raise UsageError(
                f"{wanted} is a rollback (to {chosen.version}); to undo it, deploy "
                f"{chosen.rolled_back_from} again with imagekit deploy --version."
            )
        return chosen
    changed = [r for r in records if r.served or (r.kind == DEPLOY and r.stack_changed)]
    if not changed:
        raise NotFoundError(
            f"no deploy of {opts.project} on {host} that changed anything is recorded in deploys/; "
            "there is nothing to roll back."
        )
    last = changed[-1]
    if last.kind == ROLLBACK:
        raise UsageError(
            f"the last change of {opts.project} on {host} is already a rollback ({last.deploy_id}, from "
            f"{last.rolled_back_from} to {last.version}); pass --deploy ID to undo an older deploy."
        )
    return last


def _to_version(records: Sequence[DeployRecord], undo: DeployRecord, opts: RollbackOptions) -> str:
    version = opts.to_version or undo.previous_version
    if version is None:  # a record from before previous_version: the last one that ran before it
        ran = [r.version for r in records if r.served and str(r.started) < str(undo.started)]
        version = next((v for v in reversed(ran) if v != undo.version), None)
    if version is None:
        raise UsageError(
            f"the deploy {undo.deploy_id} of {undo.version} does not say what ran before it; "
            "pass --to VERSION."
        )
    if version == undo.version:
        raise UsageError(f"--to {version} is the version of the deploy being undone: name an older one.")
    return version


def _image_name(ws: Workspace, version: str, undo: DeployRecord) -> str:
    """The repository of ``version``: its build manifest, else the repository of the deploy undone."""
    manifests, _ = list_manifests(ws)
    for manifest in manifests:
        if manifest.get("version") == version and manifest.get("status") == "succeeded":
            name = (manifest.get("image") or {}).get("name")
            if name:
                return validate.image_name(name, f"the image name in builds/{version}.json", NotFoundError)
    if undo.image:
        return undo.image.rpartition(":")[0]
    raise NotFoundError(f"no build of {version} in builds/ and no image in the deploy record; pass --to.")


def site_restores(undo: DeployRecord, opts: RollbackOptions, state_root: str) -> list[SiteRestore]:
    names = [s.site for s in undo.sites]
    for site in opts.sites or []:
        if site not in names:
            raise UsageError(
                f"--sites names {site}, which the deploy {undo.deploy_id} did not touch "
                f"(it had {', '.join(names) or 'no site'})."
            )
    chosen = [s for s in undo.sites if opts.sites is None or s.site in opts.sites]
    restores = [SiteRestore(s.site, None) if opts.no_restore else _site_restore(undo, s.site, state_root)
                for s in chosen]  # fmt: skip
    missing = [r.site for r in restores if r.backup is None and not opts.no_restore]
    if missing:
        raise NotFoundError(
            f"no backup from deploy {undo.deploy_id} for {', '.join(missing)} (deployed with --no-backup, "
            "or pruned): restore it by hand, or pass --no-restore to roll back the image only."
        )
    return restores


def _site_restore(undo: DeployRecord, site: str, state_root: str) -> SiteRestore:
    """The site's database copy and, when the deploy took them, its files archives."""
    entry = undo.site(site)
    database = entry.database_copy() if entry else None
    if entry is None or database is None:
        return SiteRestore(site, None)
    public, private = entry.files_copies()
    folder = f"{state_root}/backups/{undo.deploy_id}/{site}"
    for copy in (database, public, private):
        if copy is not None:
            what = f"the backup of {site} in deploy {undo.deploy_id}"
            validate.backup_copy(copy.path, folder, what, NotFoundError)
    return SiteRestore(site, database, public, private)


# ---------------------------------------------------------------- the target


def _check_target(runner: Runner, ws: Workspace, plan: RollbackPlan) -> None:
    """Compose, docker, the files of the last up, the image, the backups and the password."""
    ctx = _context(runner, ws, plan)
    recorded = read_last_up(ctx)
    if recorded is None:
        raise NotFoundError(
            f"no usable last-up.json in {ctx.paths.root} on {runner.host}: imagekit does not know the "
            "compose files this stack runs with; bring it back by hand (bench restore, then up)."
        )
    ctx.engine = open_engine(last_up_engine(recorded), runner)  # the engine that deployed
    ctx.report.engine = ctx.engine.name
    running = project_services(ctx)
    plan.down_files = files_for_down(ctx, running)
    ctx.compose_files = list(plan.down_files.files)
    ctx.compose_file = ctx.compose_files[0]
    ctx.opts.where = replace(ctx.opts.where, env_file=plan.down_files.env_file)
    plan.image_on_target = image_present(runner, plan.image_ref)
    if not plan.image_on_target:
        _require_sendable(runner, plan)
    check_config(ctx)
    for site in plan.sites:
        for copy in site.copies if site.backup else []:
            _check_copy(runner, site.site, copy)
    if any(s.backup for s in plan.sites):
        _db_password(ctx, plan)
    plan.ctx = ctx


def _context(runner: Runner, ws: Workspace, plan: RollbackPlan) -> Context:
    opts = plan.opts
    # the deploy's options on the same target: no compose files (those of the last up are read),
    # no env file, and none of the named target's printed-command options (as before Target)
    where = replace(
        opts.where, compose_files=(), env_file=None, name=None, repeat=(), connection=Connection()
    )
    deploy_opts = check_deploy_options(
        DeployOptions(
            where,
            plan.image,
            plan.to_version,
            sites=[s.site for s in plan.sites] or None,
            lock_wait=opts.lock_wait,
            health_check=opts.health_check,
            force=opts.force,
            maintenance=opts.maintenance,
            settle=opts.settle,
            image_digest=plan.image_digest,
        )
    )
    report = DeployReport(
        version=plan.to_version, image=plan.image_ref, project=opts.project, host=runner.host,
        user=getpass.getuser(), started=now_iso(), kind=ROLLBACK, previous_version=plan.undo.version,
        rolled_back_from=plan.undo.version, rollback_of=plan.undo.deploy_id,
    )  # fmt: skip
    for site in plan.sites:
        report.site(site.site).restored = "pending" if site.backup else "skipped"
    paths = state_paths(runner, opts.project, opts.state_dir)
    return Context(runner, ws, deploy_opts, report, paths, lambda _line: None)


def _require_sendable(runner: Runner, plan: RollbackPlan) -> None:
    ref = plan.image_ref
    rebuild = f"run `imagekit rebuild {plan.to_version}` first (it rebuilds the image from its manifest)"
    if isinstance(runner, LocalRunner) and not plan.opts.source_docker_host:
        raise NotFoundError(f"image {ref} is not on this machine: {rebuild}, then roll back again.")
    if not plan.opts.send_image:
        raise NotFoundError(f"image {ref} is not on {runner.host}: load it there, or {rebuild}.")
    if not image_present(LocalRunner(plan.opts.source_docker_host), ref):
        raise NotFoundError(f"image {ref} is neither on {runner.host} nor here: {rebuild}.")


def _check_copy(runner: Runner, site: str, copy: BackupCopy) -> None:
    """The backup copy is on the target and whole (its sha256 is the recorded one)."""
    done = runner.run(["sha256sum", "--", copy.path], timeout=600)
    digest = done.stdout.split()[0] if done.returncode == 0 and done.stdout.split() else None
    if digest is None:
        raise NotFoundError(
            f"the backup of {site} ({copy.path}) is not on {runner.host} any more; "
            "restore it by hand, or pass --no-restore to roll back the image only."
        )
    if digest != copy.sha256:
        raise DeployError(
            f"the backup of {site} ({copy.path}) on {runner.host} is not the file the deploy "
            "copied (its sha256 differs); nothing was stopped: check that file."
        )


def _db_password(ctx: Context, plan: RollbackPlan) -> str:
    """The database root password for ``bench restore``, from the named variable of the env
    file of the last up (on the target); the value is never printed, logged or recorded."""
    var, env_file = plan.opts.db_password_var, plan.down_files.env_file
    text = ctx.runner.read_file(env_file) if env_file else None
    value = benchsite.env_password(text, env_file, var) if text and env_file else None
    if not value:
        where = (
            f"the env file of the last up ({env_file})" if env_file else "no env file (the last up had none)"
        )
        raise UsageError(
            f"bench restore needs the database root password, and {var} is not set in {where}: add it "
            "there, name another variable with --db-password-var, or pass --no-restore (image only)."
        )
    return value


# ---------------------------------------------------------------- what it will do


def _describe(plan: RollbackPlan) -> None:
    undo, opts = plan.undo, plan.opts
    restored = [s for s in plan.sites if s.backup]
    for site in restored:
        assert site.backup is not None
        plan.lost.append(
            f"{site.site}: every change to its database since {undo.started} (when its backup was taken), "
            f"{_age(undo.started)}, including what {undo.version} did to it"
        )
    with_files = [s.site for s in restored if s.public_files or s.private_files]
    if with_files:
        plan.lost.append(
            f"files: the archives of {', '.join(with_files)} are unpacked over their files folders "
            "(the files in them come back as they were; files uploaded since then stay)"
        )
    if restored and not with_files:
        plan.lost.append("files uploaded since then stay (the backups hold the database only)")
    elif len(with_files) < len(restored):
        plan.lost.append("files uploaded since then stay (the backups of the others hold the database only)")
    for site in plan.sites:
        if site.backup is None:
            plan.warnings.append(
                f"{site.site} is not restored (--no-restore): its database stays as {undo.version} left it, "
                f"and its schema may be newer than {plan.to_version}'s code"
            )
    chosen = {s.site for s in plan.sites}
    for entry in undo.sites:
        if entry.site not in chosen:
            plan.warnings.append(
                f"{entry.site} is not restored (not in --sites): its database stays as {undo.version} left "
                f"it, and it runs {plan.to_version}'s code too"
            )
    if opts.to_version and undo.previous_version and opts.to_version != undo.previous_version:
        plan.warnings.append(
            f"the backups were taken while {undo.previous_version} ran; --to {opts.to_version} may not "
            "match the restored databases"
        )
    plan.steps = _steps(plan, restored)


def _steps(plan: RollbackPlan, restored: Sequence[SiteRestore]) -> list[str]:
    opts, files = plan.opts, plan.down_files
    steps = [f"take the deploy lock of {opts.project} on {plan.host}"]
    if not plan.image_on_target:
        steps.append(f"send {plan.image_ref} to {plan.host} (docker save | docker load)")
    names = ", ".join(s.site for s in plan.sites)
    if opts.maintenance:
        steps.append(f"maintenance mode on and scheduler paused for {names} (bench, in the running backend)")
    steps.append(
        "stop and remove the containers of the image's services; MariaDB, Redis and any other "
        f"service keep running (compose down with the files of the last up, {', '.join(files.files)}, "
        "only when no service of the project runs the image)"
    )
    steps.append(f"start {opts.backend_service} on {plan.image_ref} (and the services it depends on)")
    for site in restored:
        assert site.backup is not None
        archives = (
            " and its files archives (--with-public-files/--with-private-files)"
            if len(site.copies) > 1
            else ""
        )
        steps.append(
            f"restore {site.site} from {site.backup.path} ({site.backup.size} bytes){archives}: bench restore"
        )
    steps.append(f"start every service on {plan.image_ref}; no migrate (the databases match its code)")
    if opts.maintenance:
        steps.append(f"maintenance mode off and scheduler resumed for {names} (left on if a step fails)")
    checks = "the image the containers run" + (" and that each site answers" if opts.health_check else "")
    steps.append(f"check {checks}")
    steps.append("record the rollback in deploys/ and the audit log on the target")
    return steps


def _age(started: str | None) -> str:
    try:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(str(started))).total_seconds()
    except ValueError:
        return "at an unknown time"
    hours, minutes = divmod(int(seconds) // 60, 60)
    return f"{hours} h {minutes} min ago" if hours else f"{minutes} min ago"


# ---------------------------------------------------------------- run


def rollback(
    runner: Runner,
    plan: RollbackPlan,
    on_event: EventSink | None = None,
    reporter: progress.Reporter = progress.SILENT,
) -> DeployReport:
    """Run the plan; return the report (recorded locally and on the target on every exit).
    ``reporter`` is told each site's restore.

    Failures raise ``DeployFailed`` carrying the report; Ctrl-C/SIGTERM is recorded as
    interrupted and re-raised. ``report.progress`` says how far it got, ``next_step`` what then.
    """
    ctx = plan.ctx
    if ctx is None or ctx.runner is not runner:
        raise ImagekitError("rollback() needs a plan made by plan_rollback on the same runner.")
    ctx.emit = on_event or (lambda _line: None)
    ctx.reporter = reporter
    ctx.report.started = now_iso()
    try:
        with sigterm_as_interrupt():
            _run(ctx, plan)
    except KeyboardInterrupt:
        _stopped(ctx, plan, INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)")
        raise
    except ImagekitError as exc:
        _stopped(ctx, plan, FAILED, exc.message)
        raise DeployFailed(exc, ctx.report) from None
    ctx.report.result = SUCCEEDED
    finish(ctx)
    return ctx.report


def _run(ctx: Context, plan: RollbackPlan) -> None:
    details = lock.lock_details(plan.to_version, ctx.runner.host)
    with lock.held(ctx.runner, ctx.paths.lock_dir, details, ctx.opts.project, ctx.opts.lock_wait):
        _done(ctx, "locked")
        if not plan.image_on_target:
            send_image(ctx)
            _done(ctx, "image sent")
        ctx.report.image_id = verify.image_id(ctx.runner, plan.image_ref)
        with maintenance_window(ctx):  # ended once every service is up on the old image
            open_window(ctx, compose.service_containers(project_services(ctx)))
            the_window(ctx).stack_changed()  # from down on, a failure leaves the sites in maintenance
            ctx.emit(f"stopping project {ctx.opts.project}")
            down(ctx, plan.down_files, True)
            _done(ctx, "down")
            restore_and_start(ctx, plan)
            check_image(ctx)
            ctx.report.served = True
            _done(ctx, "image checked")
        if ctx.opts.health_check:
            check_health(ctx)
            _done(ctx, "sites answer")


def restore_and_start(ctx: Context, plan: RollbackPlan) -> None:
    """The part in which the sites are down: the backend on the old image, each site's
    database restored, then every service; inside the maintenance window (``_run``)."""
    ctx.emit(f"starting {ctx.opts.backend_service} on {plan.image_ref}")
    _up(ctx, plan, [ctx.opts.backend_service])
    _wait(ctx)
    open_window(ctx)  # no backend ran before down: the window opens in the new one
    password = _db_password(ctx, plan) if any(s.backup for s in plan.sites) else ""
    for site in plan.sites:
        if site.backup is not None:
            ctx.emit(f"restoring {site.site} from {site.backup.name}")
            with progress.task(ctx.reporter, f"restore {site.site}"):
                _restore(ctx, plan, site, password)
            _done(ctx, f"restored {site.site}")
    ctx.emit(f"starting every service on {plan.image_ref}")
    _up(ctx, plan, [])
    _wait(ctx)
    _done(ctx, "up")


def _wait(ctx: Context) -> None:
    """Services running, one-shot services (from the rendered config, as deploy) exited 0."""
    oneshot = ctx.report.oneshot_services or ctx.opts.oneshot_services
    engine_of(ctx).wait(ctx.opts.project, oneshot, ctx.opts.up_timeout, settle=ctx.opts.settle)


def _up(ctx: Context, plan: RollbackPlan, services: Sequence[str]) -> None:
    argv = engine_of(ctx).up_argv(down_stack(ctx, plan.down_files), services)
    done = ctx.runner.run(argv, env=_up_env(ctx, plan), timeout=ctx.opts.up_timeout + 60)
    _record_up(ctx, plan)  # even a failed up may have started containers with these files
    forget_site_folders(ctx)
    if done.returncode != 0:
        raise DeployError(
            f"compose up failed: {last_line(done)}; the project is down: fix it and roll back again."
        )


def _up_env(ctx: Context, plan: RollbackPlan) -> dict[str, str]:
    env = dict(plan.down_files.env)
    env.update({ctx.opts.image_var: plan.image, ctx.opts.tag_var: plan.to_version, "PULL_POLICY": "never"})
    return env


def _restore(ctx: Context, plan: RollbackPlan, site: SiteRestore, password: str) -> None:
    assert site.backup is not None
    runner, backend = ctx.runner, find_backend(ctx)
    entry = ctx.report.site(site.site)
    entry.restored = "failed"
    inside = {copy.name: f"/tmp/imagekit-restore-{plan.undo.deploy_id}-{copy.name}" for copy in site.copies}
    try:
        for copy in site.copies:
            _put(ctx, backend, site.site, copy, inside[copy.name])
        argv = restore_argv(
            backend.id, site.site, inside[site.backup.name],
            public_files=inside[site.public_files.name] if site.public_files else None,
            private_files=inside[site.private_files.name] if site.private_files else None,
        )  # fmt: skip
        done = _run_restore(ctx, backend, site.site, argv, password)
    finally:
        runner.run(["docker", "exec", backend.id, "rm", "-f", *inside.values()], timeout=60)
    if done.returncode != 0 or _RESTORED not in done.stdout:
        last = benchsite.last_words((done.stdout, done.stderr), (password,))
        raise DeployError(
            f"bench restore of {site.site} failed ({last or done.returncode}); the project "
            f"runs the backend only: fix it (is {plan.opts.db_password_var} the database root password?) "
            "and roll back again."
        )
    entry.restored = "ok"
    entry.backup = site.backup.path


def _put(ctx: Context, backend: Any, site: str, copy: BackupCopy, inside: str) -> None:
    """Stream one backup copy into the backend container, checked by its sha256."""
    put = ctx.runner.run(["sh", "-c", _PUT, "put", copy.path, backend.id, inside], timeout=3600)
    check = ctx.runner.run(["docker", "exec", backend.id, "sha256sum", inside], timeout=600)
    if put.returncode != 0 or check.stdout.split()[:1] != [copy.sha256]:
        raise DeployError(
            f"the backup of {site} could not be put into {backend.name} ({last_line(put)}); "
            "the project runs the backend only: check the disk there and roll back again."
        )


def _run_restore(ctx: Context, backend: Any, site: str, argv: list[str], password: str) -> Any:
    """Run bench restore; on Ctrl-C or SIGTERM wait for the restore in the backend (stopping it
    half-way would leave the site's database half loaded), say so, and go on interrupting."""
    try:
        return ctx.runner.run(argv, input_bytes=f"{password}\n".encode(), timeout=3600)
    except KeyboardInterrupt:
        ctx.emit(
            f"interrupted: waiting for the restore of {site} to end in the backend (stopping it half-way "
            "would leave its database half restored); interrupt again to stop waiting."
        )
        how = wait_restore(ctx.runner, backend.id)
        note = interrupted_restore_note(
            site, how, bench_place(ctx).on_host(["docker", "top", backend.id[:12]])
        )
        entry = ctx.report.site(site)
        entry.restored = "ok" if how == "0" else "failed" if how.isdigit() else "unknown"
        if how == "0":
            _done(ctx, f"restored {site}")
        ctx.report.notes.append(note)
        ctx.emit(note)
        raise


def _record_up(ctx: Context, plan: RollbackPlan) -> None:
    """last-up.json describes this up: the kept copies it used (so the containers' config_files
    label matches for the next down) and the old version (the next deploy's previous one)."""
    files = [
        KeptFile(path=path, sha256=sha256_on_target(ctx.runner, path) or "", copy=path)
        for path in plan.down_files.files
    ]
    record = LastUp({
        "config_files": ",".join(item["path"] for item in files),
        "sha256": files[0]["sha256"],
        "files": files,
        "project_dir": plan.down_files.project_dir,
        "env_file": plan.down_files.env_file,
        "env": _up_env(ctx, plan),
        "version": plan.to_version,
        "when": now_iso(),
        "engine": engine_of(ctx).name,
    })  # fmt: skip
    write_last_up(ctx.runner, ctx.paths.last_up, record)


def _done(ctx: Context, step: str) -> None:
    ctx.report.progress.append(step)


def _stopped(ctx: Context, plan: RollbackPlan, result: str, error: str) -> None:
    ctx.report.result, ctx.report.error = result, error
    ctx.report.next_step = next_step(plan, ctx.report.progress)
    finish(ctx)


def next_step(plan: RollbackPlan, progress: Sequence[str]) -> str:
    """What to do after a rollback stopped at ``progress`` (every step can be run again)."""
    again = shlex.join(again_argv(plan))
    if "down" not in progress:
        return f"nothing was stopped; fix the cause, then run `{again}`."
    if "up" not in progress:
        return (
            f"the project is down or runs the backend only; run `{again}` (each step can be repeated: "
            "the backups in the state folder are untouched)."
        )
    return f"{plan.image_ref} runs; check the sites, then run `{again}` if a check must be repeated."


def again_argv(plan: RollbackPlan) -> list[str]:
    """This rollback again, on the same stack: by its target's name, else by project, host and
    state folder; with the options of the command line that name where and how."""
    opts = plan.opts
    argv = ["imagekit", "rollback", *([opts.target] if opts.target else ["--project", opts.project])]
    if plan.host != "local" and not opts.target:
        argv += ["--host", plan.host]
    argv += [item for pair in opts.repeat for item in pair]
    argv += ["--deploy", str(plan.undo.deploy_id), "--to", plan.to_version, "--yes"]
    if opts.state_dir and not opts.target:
        argv += ["--state-dir", opts.state_dir]
    if opts.no_restore:
        argv.append("--no-restore")
    if opts.sites:
        argv += ["--sites", ",".join(opts.sites)]
    return argv
