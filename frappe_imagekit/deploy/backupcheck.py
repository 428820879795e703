"""``imagekit backups --verify``: a kept backup proven restorable.

For each backup: its files checked on the target (the dump a whole gzip file, ``gzip -t``; its
sha256 the one its deploy recorded; each files archive readable, ``tar -tf``), then restored into a
throw-away sandbox (deploy/sandbox.py) on the version whose data it holds, the restored site asked
for ping there, the rows of frappe's core tables counted in the restored database (``bench --site S
execute frappe.db.count --args '["User"]'``, as real frappe 15.55.1 answers it: transcripts
71-71d in tests/fixtures/frappe-v15-lab/), and the sandbox removed. Each result is appended to
``<state>/projects/<project>/backup-checks.jsonl`` on the target. A failure names the file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import benchsite, health, sandbox
from frappe_imagekit.deploy.backuplist import Backup
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.engine import Engine
from frappe_imagekit.deploy.sandbox import SandboxOptions
from frappe_imagekit.errors import DeployError, ImagekitError, UsageError
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

EventSink = Callable[[str], None]
CORE_DOCTYPES = ("User", "DocType")  # every frappe site has rows in their tables (tabUser, tabDocType)
OK, FAILED = "ok", "failed"


@dataclass
class BackupCheck:
    name: str
    site: str
    version: str | None  # the version it was restored on (whose data it holds)
    result: str = FAILED
    problem: str | None = None  # the sentence naming the file
    file: str | None = None
    checks: list[str] = field(default_factory=list)  # what passed
    started: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    runner: Runner, ws: Workspace, backup: Backup, base: SandboxOptions, log: str, emit: EventSink
) -> BackupCheck:
    """Check ``backup`` (its files, then a restore in a throw-away sandbox); append the result to
    ``log`` on the target and return it."""
    check = BackupCheck(backup.name, backup.site, backup.data_of or backup.version,
                        started=datetime.now(UTC).isoformat(timespec="seconds"))  # fmt: skip
    began = time.monotonic()
    try:
        file_problems(runner, backup, check)
        if check.problem is None:
            _restore_and_ask(runner, ws, backup, base, check, emit)
    finally:
        check.seconds = round(time.monotonic() - began, 3)
        runner.append_file(log, (json.dumps(check.to_dict(), separators=(",", ":")) + "\n").encode())
    return check


def file_problems(runner: Runner, backup: Backup, check: BackupCheck) -> None:
    """The files of ``backup`` on the target: set ``check.problem`` and ``check.file`` at the first
    that is not whole, else note each check that passed."""
    dump = backup.database
    if dump.endswith(".gz") and runner.run(["gzip", "-t", dump], timeout=3600).returncode != 0:
        return _fail(check, dump, f"the database dump {dump} is truncated or not a gzip file")
    check.checks.append("database dump is whole (gzip -t)")
    if backup.sha256:
        done = runner.run(["sha256sum", dump], timeout=3600)
        if done.stdout.split()[:1] != [backup.sha256]:
            return _fail(check, dump, f"{dump} is not the file its deploy recorded (sha256 differs)")
        check.checks.append("sha256 as recorded")
    for archive in (backup.public_files, backup.private_files):
        if archive and runner.run(["tar", "-tf", archive], timeout=3600).returncode != 0:
            return _fail(check, archive, f"the files archive {archive} is corrupt (tar cannot list it)")
        if archive:
            check.checks.append(f"{archive.rsplit('/', 1)[-1]} readable (tar -tf)")
    return None


def _fail(check: BackupCheck, path: str, problem: str) -> None:
    check.problem, check.file = problem, path


def _restore_and_ask(
    runner: Runner, ws: Workspace, backup: Backup, base: SandboxOptions, check: BackupCheck, emit: EventSink
) -> None:
    if check.version is None:
        check.problem = f"the version whose data {backup.name} holds is unknown (no deploy record of it)"
        return
    name = verify_name(base.project, check.version)
    opts = replace(base, version=check.version, backup=backup.name, name=name, site=backup.site)
    try:
        started = sandbox.start(runner, ws, opts, on_event=emit)
    except ImagekitError as exc:
        check.problem, check.file = f"{backup.name} could not be restored: {exc.message}", backup.database
        return
    try:
        backend = _sandbox_backend(sandbox.production_engine(runner, base), started.name, base)
        health.check_site(runner, backend.id, health.base_url(backend.services), backup.site, None)
        check.checks.append(f"restored on {check.version}: {backup.site} answers ping")
        _count_core_rows(runner, backend.id, backup, check)
    except DeployError as exc:
        check.problem = f"{backup.name} restored, but the site does not answer: {exc.message}"
    finally:
        emit(f"removing the throw-away sandbox {started.name}")
        sandbox.down(runner, started.name, base.state_dir)


@dataclass(frozen=True)
class _Backend:
    id: str
    services: dict[str, Container]  # service -> a container of the sandbox (health's base URL)


def _sandbox_backend(engine: Engine, name: str, base: SandboxOptions) -> _Backend:
    """The running backend of the sandbox ``name``, as the engine production runs on lists it."""
    containers = engine.containers(name)
    backend = engine.backend(name, base.backend_service, containers)
    if backend is None:
        raise DeployError(f"no running {base.backend_service} container in the sandbox {name}")
    return _Backend(backend.id, {c.service: c for c in containers})


def _count_core_rows(runner: Runner, backend: str, backup: Backup, check: BackupCheck) -> None:
    counts = {doctype: row_count(runner, backend, backup.site, doctype) for doctype in CORE_DOCTYPES}
    problem = rows_problem(counts, backup.site, backup.database)
    if problem:
        return _fail(check, backup.database, problem)
    check.checks.append(
        "restored database has rows in " + ", ".join(f"tab{d} ({n})" for d, n in counts.items())
    )
    check.result = OK
    return None


def count_argv(container_id: str, site: str, doctype: str) -> list[str]:
    """``bench --site S execute frappe.db.count --args '["D"]'`` in the backend (71-db-count-user)."""
    site = validate.site_name(site, "the backup's site", UsageError)
    bench = ["bench", "--site", site, "execute", "frappe.db.count", "--args", json.dumps([doctype])]
    return ["docker", "exec", "-i", "-e", "PYTHONUNBUFFERED=1", container_id, *bench]


def parse_count(returncode: int, stdout: str) -> int | None:
    """The rows bench's ``frappe.db.count`` printed: ``264`` -> 264; exit 0 with nothing printed
    -> 0 (71d-db-count-empty-table: execute prints only a truthy result); None when bench failed
    or printed something else (71c-db-count-missing-table: a missing table, exit 1)."""
    text = stdout.strip()
    if returncode != 0:
        return None
    if not text:
        return 0
    last = text.splitlines()[-1].strip()
    return int(last) if last.isdigit() else None


def row_count(runner: Runner, container_id: str, site: str, doctype: str) -> int | str:
    """The rows of ``doctype``'s table in ``site``, or bench's last words when it could not count."""
    done = runner.run(count_argv(container_id, site, doctype), timeout=600)
    rows = parse_count(done.returncode, done.stdout)
    return rows if rows is not None else (benchsite.last_words([done.stderr, done.stdout]) or "no output")


def rows_problem(counts: Mapping[str, int | str], site: str, dump: str) -> str | None:
    """The sentence naming the dump when a core table of the restored site is missing or empty."""
    for doctype, rows in counts.items():
        if isinstance(rows, str):
            return f"the database restored from {dump} could not be counted (tab{doctype} of {site}: {rows})"
    empty = [f"tab{d}" for d, n in counts.items() if n == 0]
    if empty:
        return f"the database restored from {dump} has no rows in {', '.join(empty)} ({site})"
    return None


def verify_name(project: str, version: str) -> str:
    raw = re.sub(r"[^a-z0-9_-]", "-", f"{project}-verify-{version}".lower())[:63].strip("-_")
    return validate.project_name(raw, "the verify sandbox's name", UsageError)
