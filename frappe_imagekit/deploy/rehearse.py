"""``imagekit rehearse``: the migrate of the next version tried on a copy of today's data.

A rehearsal takes a fresh backup of each site while production keeps serving (``bench --site S
backup`` in production's running backend: no maintenance mode, no restart, nothing stopped),
copies it off the volume into the state folder (``<state>/projects/<project>/rehearsals/<id>/``),
starts VERSION as one sandbox (deploy/sandbox.py) with every site restored into it, runs
``bench --site S migrate`` there as deploy does (the same parser, report and exit codes 0/9/10;
next steps that name the rehearsal, not production), checks each migrated site's health in the
sandbox, removes the sandbox (unless ``keep``; always on Ctrl-C or SIGTERM) and records the
rehearsal (kind ``rehearsal``) in ``deploys/`` where ``imagekit history`` shows it.

``check_last_rehearsal`` is what deploy's preflight asks: a deploy of a version whose last
rehearsal failed is refused unless ``--force``; ``deploy --rehearse`` refuses a version no
rehearsal passed.
"""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from frappe_imagekit import progress, validate
from frappe_imagekit.deploy import (
    backups,
    benchsite,
    health,
    lock,
    maintenance,
    rehearsal_backups,
    sandbox,
)
from frappe_imagekit.deploy import migrate_parse as mp
from frappe_imagekit.deploy.context import LIST_SITES
from frappe_imagekit.deploy.engine import Engine
from frappe_imagekit.deploy.migrate_report import BenchPlace, StepContext, exit_code_for, next_steps, step
from frappe_imagekit.deploy.record import REHEARSAL, DeployRecord, stamp
from frappe_imagekit.deploy.record import now as now_iso
from frappe_imagekit.deploy.rehearsal_gate import PASSED, check_last_rehearsal, last_rehearsal
from frappe_imagekit.deploy.sandbox import SandboxOptions
from frappe_imagekit.deploy.sequence import state_paths
from frappe_imagekit.errors import DeployError, ExitCode, ImagekitError, UsageError
from frappe_imagekit.interrupts import sigterm_as_interrupt
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace, write_json_atomic

EventSink = Callable[[str], None]
FAILED, INTERRUPTED = "failed", "interrupted"
__all__ = ["check_last_rehearsal", "last_rehearsal", "rehearse"]
_BACKUP_LINE = re.compile(r"^Database:\s+(?P<path>\S+)", re.MULTILINE)


@dataclass
class RehearseOptions:
    sandbox: SandboxOptions  # VERSION, the image, production's project, files, env file, port ...
    keep: bool = False  # leave the sandbox up (to look at a failure)
    health_check: bool = True
    backup_files: bool = False  # bench backup --with-files (the files archives restored too)
    again: str = ""  # the command line that rehearses again (printed in next steps)


@dataclass
class RehearsedSite:
    site: str
    status: str = "pending"  # ok | failed | pending (not migrated)
    backup: str | None = None  # the dump copied into the state folder
    backup_files: list[dict[str, Any]] = field(default_factory=list)  # path, size, sha256
    result: str | None = None  # the migrate report's result (migrate_parse)
    failure: str | None = None
    failed_patch: str | None = None
    exception: str | None = None
    health: str | None = None  # ok | failed | None (not checked)
    next_steps: list[str] = field(default_factory=list)
    migrate: dict[str, Any] | None = None  # the whole migrate report of the site


@dataclass
class RehearsalReport:
    version: str
    image: str
    project: str
    host: str
    user: str
    started: str
    sandbox: str  # the sandbox's project name
    finished: str | None = None
    result: str = FAILED
    error: str | None = None
    kept: bool = False  # the sandbox was left up (--keep)
    url: str | None = None  # where the kept sandbox answers
    sites: list[RehearsedSite] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    record: str | None = None
    kind: str = REHEARSAL

    @property
    def exit_code(self) -> ExitCode:
        if self.result == INTERRUPTED:
            return ExitCode.INTERRUPTED
        results = [s.result or mp.ERROR for s in self.sites]
        return exit_code_for(results) if self.result != FAILED or self.sites else ExitCode.DEPLOY_FAILED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("record", None)
        return {"schema_version": 2, **data, "served": False}


# ---------------------------------------------------------------- the rehearsal


def rehearse(
    runner: Runner,
    ws: Workspace,
    opts: RehearseOptions,
    on_event: EventSink | None = None,
    reporter: progress.Reporter = progress.SILENT,
) -> RehearsalReport:
    """Rehearse the deploy of ``opts.sandbox.version``; return the report (also recorded).
    ``reporter`` is told each site's backup and migrate."""
    sbx = sandbox.with_layout(runner, sandbox.check_options(replace(opts.sandbox, backup="rehearsal.sql.gz")))
    name = sbx.name or rehearsal_name(sbx.project, sbx.version)
    report = RehearsalReport(version=sbx.version, image=sbx.image_ref, project=sbx.project, host=runner.host,
                             user=getpass.getuser(), started=now_iso(), sandbox=name)  # fmt: skip
    emit = on_event or (lambda _line: None)
    paths = state_paths(runner, sbx.project, sbx.state_dir)
    # production's deploy lock for the whole rehearsal: no deploy starts mid-rehearsal, and no
    # rehearsal mid-deploy (exit 8 naming the holder, before anything is taken or recorded)
    details = lock.lock_details(f"{sbx.version} (rehearsal)", runner.host)
    with lock.held(runner, paths.lock_dir, details, sbx.project):
        _recorded(
            runner, ws, replace(opts, sandbox=replace(sbx, name=name)), report, emit, paths.root, reporter
        )
    return report


def _recorded(
    runner: Runner,
    ws: Workspace,
    opts: RehearseOptions,
    report: RehearsalReport,
    emit: EventSink,
    root: str,
    reporter: progress.Reporter,
) -> None:
    """Run the rehearsal and record it, however it ends; older rehearsals' backups pruned."""
    try:
        with sigterm_as_interrupt():
            _run(runner, ws, opts, report, emit, reporter)
    except KeyboardInterrupt:
        report.result, report.error = INTERRUPTED, "interrupted (Ctrl-C or SIGTERM); the sandbox was removed"
        _finish(ws, report)
        raise
    except ImagekitError as exc:
        report.result, report.error = FAILED, exc.message
        report.notes += rehearsal_backups.prune(runner, ws, root, report.project, stamp(report.started))
        _finish(ws, report)
        raise RehearsalFailed(exc, report) from None
    report.notes += rehearsal_backups.prune(runner, ws, root, report.project, stamp(report.started))
    _finish(ws, report)


class RehearsalFailed(ImagekitError):
    """The rehearsal stopped before its migrate report; ``report`` says how far it got."""

    def __init__(self, error: ImagekitError, report: RehearsalReport) -> None:
        super().__init__(error.message, error.exit_code)
        self.report = report


def rehearsal_name(project: str, version: str) -> str:
    """The sandbox project of a rehearsal: ``<project>-rehearsal-<version>`` (a valid project name)."""
    raw = re.sub(r"[^a-z0-9_-]", "-", f"{project}-rehearsal-{version}".lower())[:63].strip("-_")
    return validate.project_name(raw, "the rehearsal's sandbox name", UsageError)


def _run(
    runner: Runner,
    ws: Workspace,
    opts: RehearseOptions,
    report: RehearsalReport,
    emit: EventSink,
    reporter: progress.Reporter,
) -> None:
    sbx = opts.sandbox
    started = time.monotonic()
    engine = sandbox.production_engine(runner, sbx)  # production's, which the sandbox runs on too
    taken = _timed(
        report, "backup", lambda: take_backups(engine, sbx, report, opts.backup_files, emit, reporter)
    )
    if not taken:
        raise DeployError(f"no site found in production's {sbx.backend_service}: nothing to rehearse.")
    with _sandbox_removed(runner, sbx, report, opts.keep, emit):
        _timed(report, "sandbox", lambda: _start_sandbox(runner, ws, sbx, report, taken, emit))
        backend = _sandbox_backend(engine, report.sandbox, sbx.backend_service)
        _timed(report, "migrate", lambda: _migrate_all(runner, backend, report, opts, emit, reporter))
        if opts.health_check and all(s.status == "ok" for s in report.sites):
            _timed(report, "health", lambda: _check_health(engine, backend, report, emit))
    report.timings["total"] = round(time.monotonic() - started, 3)
    failed = [s for s in report.sites if s.status != "ok" or s.health == "failed"]
    report.result = PASSED if not failed else FAILED


@contextmanager
def _sandbox_removed(
    runner: Runner, sbx: SandboxOptions, report: RehearsalReport, keep: bool, emit: EventSink
) -> Iterator[None]:
    """Remove the sandbox at the end (kept with ``keep``, unless interrupted)."""
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if keep and not interrupted and report.url:
            report.kept = True
        elif report.url:  # it was started (a failed start removes itself)
            emit(f"removing the rehearsal's sandbox {report.sandbox}")
            _timed(report, "remove", lambda: sandbox.down(runner, report.sandbox, sbx.state_dir))


# ---------------------------------------------------------------- backups


def take_backups(
    engine: Engine,
    sbx: SandboxOptions,
    report: RehearsalReport,
    with_files: bool,
    emit: EventSink,
    reporter: progress.Reporter = progress.SILENT,
) -> dict[str, str]:
    """``bench --site S backup`` of every site in production's running backend, with no
    maintenance mode (production keeps serving), each copied off the volume into the state
    folder and hashed; return site -> the dump's copy."""
    runner = engine.runner
    backend = _production_backend(engine, sbx)
    sites = sorted(
        runner.run(maintenance.exec_argv(backend, ["sh", "-c", LIST_SITES]), timeout=60).stdout.split()
    )
    folder = f"{state_paths(runner, sbx.project, sbx.state_dir).root}/rehearsals/{stamp(report.started)}"
    taken = {}
    for site in sites:
        site = validate.site_name(site, "a site of production's backend", DeployError)
        emit(f"backing up {site} (production keeps serving: no maintenance mode)")
        with progress.task(reporter, f"backup {site}"):
            files = _backup_site(runner, backend, site, with_files, f"{folder}/{site}")
        dump = next(f.path for f in files if f.path.endswith((".sql.gz", ".sql")))
        report.sites.append(RehearsedSite(site, backup=dump, backup_files=[asdict(f) for f in files]))
        taken[site] = dump
    return taken


def _backup_site(
    runner: Runner, backend: str, site: str, with_files: bool, folder: str
) -> list[backups.BackupFile]:
    """``bench backup`` of ``site`` in production's backend, copied off into ``folder``."""
    argv = ["bench", "--site", site, "backup", *(["--with-files"] if with_files else [])]
    done = runner.run(maintenance.exec_argv(backend, argv), timeout=3600)
    if done.returncode != 0 or not _BACKUP_LINE.search(done.stdout):
        raise DeployError(
            f"backup of {site} failed ({_last(done)}); nothing was started: fix it and rehearse again."
        )
    return backups.copy_off(runner, backend, backups.files_in_output(done.stdout), folder)


def _production_backend(engine: Engine, sbx: SandboxOptions) -> str:
    backend = engine.backend(sbx.project, sbx.backend_service)
    if backend is not None:
        return backend.id
    raise DeployError(
        f"no running {sbx.backend_service} container in project {sbx.project}: a rehearsal backs up "
        "the running production; deploy it first, or pass --backend-service."
    )


# ---------------------------------------------------------------- sandbox


def _start_sandbox(
    runner: Runner, ws: Workspace, sbx: SandboxOptions, report: RehearsalReport, taken: dict[str, str],
    emit: EventSink,
) -> None:  # fmt: skip
    """One sandbox with every site: started with the first, the others restored into it."""
    (first, dump), *others = taken.items()
    started = sandbox.start(runner, ws, replace(sbx, backup=dump, site=first), on_event=emit)
    report.url = started.url
    report.notes.extend(started.notes)
    for site, other in others:
        sandbox.add_site(runner, ws, started, replace(sbx, backup=other, site=site), on_event=emit)


def _sandbox_backend(engine: Engine, name: str, service: str) -> str:
    backend = engine.backend(name, service)
    if backend is not None:
        return backend.id
    raise DeployError(f"no running {service} container in the rehearsal's sandbox {name}.")


# ---------------------------------------------------------------- migrate and health


def _migrate_all(
    runner: Runner,
    backend: str,
    report: RehearsalReport,
    opts: RehearseOptions,
    emit: EventSink,
    reporter: progress.Reporter,
) -> None:
    for site in report.sites:
        emit(f"migrating {site.site} in the sandbox")
        task = f"migrate {site.site}"
        with progress.task(reporter, task) as ended:
            result = migrate_site(runner, backend, site.site, _telling(emit, reporter, task))
            fill_site(site, result, _step_context(report, opts))
            ended.outcome = progress.DONE if site.status == "ok" else progress.FAILED


def _telling(emit: EventSink, reporter: progress.Reporter, task: str) -> EventSink:
    """``emit``, and the patch or DocTypes update each migrate line names, to ``reporter``."""

    def line(text: str) -> None:
        emit(benchsite.redrawn(text))  # a progress bar's last state, not every redraw
        if (detail := mp.progress_detail(text)) is not None:
            reporter.advance(task, detail=detail)

    return line


def migrate_site(runner: Runner, backend: str, site: str, emit: EventSink) -> mp.SiteResult:
    """``bench --site S migrate`` in the sandbox's backend, as deploy runs it; its report."""
    done = runner.run(maintenance.migrate_argv(backend, site), on_stdout=emit)
    (result, *_) = mp.parse_migrate_output(done.stdout + done.stderr, sites=[site], exit_code=done.returncode)
    return result


def fill_site(site: RehearsedSite, result: mp.SiteResult, ctx: StepContext) -> None:
    """The site's part of the rehearsal from its migrate report; next steps for a failure."""
    site.status = "ok" if result.status == mp.OK else "failed"
    site.result, site.failure, site.failed_patch = result.result, result.failure, result.failed_patch
    site.exception = result.exception
    if site.status == "failed":
        result.next_steps = site.next_steps = next_steps(result, ctx)
    site.migrate = result.to_dict()


def _step_context(report: RehearsalReport, opts: RehearseOptions) -> StepContext:
    """Next steps of a rehearsal: bench commands in the kept sandbox (bare when it is removed),
    rehearse again after a fix, and no way back to take: production was not touched."""
    files = (sandbox_compose_file(opts.sandbox, report.sandbox),) if opts.keep else ()
    place = BenchPlace(project=report.sandbox if opts.keep else None, compose_files=files,
                       service=opts.sandbox.backend_service)  # fmt: skip
    again = opts.again or f"imagekit rehearse {report.version}"
    back = step(
        f"production was not touched by this rehearsal of {report.version} (no maintenance, no restart): "
        "nothing to go back from; after a fix, build and rehearse again:",
        again,
    )
    return StepContext(place=place, again=again, deploy_new=None, go_back=back)


def sandbox_compose_file(sbx: SandboxOptions, name: str) -> str:
    root = sbx.state_dir.rstrip("/") + "/sandboxes" if sbx.state_dir else "~/.local/state/imagekit/sandboxes"
    return f"{root}/{name}/compose.yaml"


def _check_health(engine: Engine, backend: str, report: RehearsalReport, emit: EventSink) -> None:
    """Each migrated site answers ping in the sandbox (from inside its backend)."""
    runner = engine.runner
    services = {c.service: c for c in engine.containers(report.sandbox)}
    url = health.base_url(services)
    for site in report.sites:
        emit(f"checking {site.site} in the sandbox ({url})")
        try:
            site.health = health.check_site(runner, backend, url, site.site, None)
        except DeployError as exc:
            site.health = "failed"
            report.notes.append(f"{site.site}: {exc.message}")


# ---------------------------------------------------------------- record and the deploy check


def _finish(ws: Workspace, report: RehearsalReport) -> None:
    report.finished = now_iso()
    record = DeployRecord.from_dict(report.to_dict()).to_dict()
    path = ws.deploys_dir / f"{stamp(report.started)}-{report.project}-rehearsal.json"
    write_json_atomic(path, record)
    report.record = str(path)


# ---------------------------------------------------------------- helpers


def _timed(report: RehearsalReport, name: str, step_fn: Callable[[], Any]) -> Any:
    started = time.monotonic()
    try:
        return step_fn()
    finally:
        report.timings[name] = round(time.monotonic() - started, 3)


def _last(done: Any) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1][:300] if lines else f"exit status {done.returncode}"
