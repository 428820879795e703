"""What to do about a failed migrate, and the report of ``imagekit migrate-report``.

Next steps are sentences, each followed by the commands it names on lines of their own. Every
command is built as an argv and quoted with ``shlex`` (a ``patches.txt`` line comes from an app
repository and may hold quotes, backticks or ``$``), so pasting one runs exactly that command.
Bench commands are said where they run: on a compose host ``docker compose -p PROJECT -f FILE ...
--env-file ENV exec -T backend bench ...`` (every ``-f`` of the deploy, and ``-T``: pasted without a
terminal, compose v1's ``exec`` refuses with "the input device is not a TTY"), with ``ssh HOST`` in
front for a remote target. From a transcript alone the project is not known; the report says so
once and prints bare ``bench`` commands.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from frappe_imagekit.deploy import migrate_parse as mp
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.ssh import parse_host

SCHEMA_VERSION = 1

# exceptions that mean the site's data is what the patch or schema change refused
DATA_ERRORS = {
    "ValidationError", "LinkValidationError", "MandatoryError", "DuplicateEntryError",
    "UniqueValidationError", "IntegrityError", "DataError", "LinkExistsError",
}  # fmt: skip
# frappe's service names (Service X is not running) -> the service in frappe_docker's compose files
COMPOSE_SERVICES = {"mariadb": "db", "postgres": "db", "redis_cache": "redis-cache",
                    "redis_queue": "redis-queue", "redis": "redis-cache"}  # fmt: skip
UNKNOWN_PLACE = (
    "the bench commands below run where the site's bench is: on a frappe_docker host that is "
    "`docker compose -p PROJECT -f FILE ... exec -T backend bench ...`, with every -f file of the "
    "stack (a transcript does not say which "
    "compose project; put yours in)."
)


@dataclass(frozen=True)
class BenchPlace:
    """Where the operator runs bench; an unknown project gives bare ``bench`` commands.

    ``compose_files`` are every ``-f`` of the deploy, in order (frappe_docker keeps db and redis in
    overrides: a command naming only ``compose.yaml`` finds no service ``db``). ``env`` prefixes
    every command (``DOCKER_HOST`` of a ``--docker-host``); ``up_env`` also prefixes ``up``: the
    image variables of the last up, so that ``up -d SERVICE`` recreates nothing on another image."""

    project: str | None = None
    compose: tuple[str, ...] = ("docker", "compose")
    compose_files: tuple[str, ...] = ()
    env_file: str | None = None
    service: str = "backend"
    ssh: tuple[str, ...] = ()  # e.g. ("ssh", "-p", "2222", "deploy@erp.example.com")
    env: tuple[tuple[str, str], ...] = ()
    up_env: tuple[tuple[str, str], ...] = ()

    def compose_argv(self, *args: str) -> list[str]:
        argv = [*self.compose, "-p", str(self.project)]
        for path in self.compose_files:
            argv += ["-f", path]
        if self.env_file:
            argv += ["--env-file", self.env_file]
        return [*argv, *args]

    def bench(self, *args: str) -> str:
        """A shell line running ``bench ARGS`` in the bench container (or bare, when unknown)."""
        return self.in_container("bench", *args)

    def in_container(self, *argv: str) -> str:
        """A shell line running ``argv`` in the bench container, no terminal needed (``exec -T``)."""
        if self.project is None:
            return shlex.join(argv)
        return self.on_host(self.compose_argv("exec", "-T", self.service, *argv))

    def bench_fed(self, feed: Sequence[str], *args: str) -> str:
        """A shell line piping what ``feed`` prints into ``bench ARGS`` (its stdin), in the bench
        container (``exec -T`` keeps stdin), run where the stack is: the secret ``feed`` reads
        from a file never reaches argv."""
        if self.project is None:
            return f"{shlex.join(feed)} | {shlex.join(['bench', *args])}"
        env = [f"{name}={value}" for name, value in self.env]
        argv = self.compose_argv("exec", "-T", self.service, "bench", *args)
        line = f"{shlex.join(feed)} | {shlex.join(['env', *env, *argv] if env else argv)}"
        return shlex.join([*self.ssh, line]) if self.ssh else line

    def up(self, service: str) -> str:
        """A shell line starting ``service`` (and what it depends on) with the last up's variables."""
        return self.on_host(self.compose_argv("up", "-d", service), self.up_env)

    def on_host(self, argv: Sequence[str], more_env: Sequence[tuple[str, str]] = ()) -> str:
        """A shell line running ``argv`` on the compose host (through ssh for a remote one)."""
        env = [f"{name}={value}" for name, value in (*self.env, *more_env)]
        line = shlex.join(["env", *env, *argv] if env else argv)
        return shlex.join([*self.ssh, line]) if self.ssh else line


def ssh_prefix(host: str, options: Sequence[str] = ()) -> tuple[str, ...]:
    """``ssh [OPTIONS] [-p PORT] [USER@]HOST`` for a runner's host; () for this machine. No ``-t``:
    the commands run there need no terminal (``exec -T``), so the line also works where there is
    none. ``options``: the deploy's own (``-i KEY``, ``-o UserKnownHostsFile=FILE``, ``-F FILE``)."""
    if host == "local":
        return ()
    user, server, port = parse_host(host)
    target = f"{user}@{server}" if user else server
    return ("ssh", *options, *(("-p", str(port)) if port and port != 22 else ()), target)


class FailedSite(Protocol):
    """What next steps read: a parsed ``SiteResult`` or deploy's ``SiteReport``."""

    failed_patch: str | None
    failed_module: str | None
    failed_file: str | None
    doctype: str | None
    doctype_file: str | None
    services: list[str]
    lock_path: str | None
    step: str | None
    exception: str | None
    exception_type: str | None
    traceback: list[str]

    @property  # read-only: deploy's ``SiteReport.site`` is a ``str``, a parsed one may be None
    def site(self) -> str | None: ...

    @property
    def result(self) -> str | None: ...


ROOT_PASSWORD_VAR = "DB_PASSWORD"  # frappe_docker's env file: MariaDB's root password


@dataclass(frozen=True)
class StepContext:
    """What next steps may offer besides bench commands."""

    place: BenchPlace = field(default_factory=BenchPlace)
    again: str | None = None  # the command that migrates again (default: bench migrate)
    deploy_new: str | None = None  # the command that deploys a new build
    build: str = "imagekit build"  # the command that builds it (with -w when not the current folder)
    go_back: str | None = None  # deploy: the whole "go back" step (imagekit rollback), or why none
    container_stopped: bool = False  # deploy: the backend container itself went away


def next_steps(site: FailedSite, ctx: StepContext) -> list[str]:
    """What the operator can do about a failed site, most likely first.

    Each step is a sentence, then each command it names on a line of its own, indented by
    four spaces (``step(...)``): a command may hold backticks, so it is never put in prose."""
    name = site.site or "SITE"
    again = ctx.again or ctx.place.bench("--site", name, "migrate")
    handler = _HANDLERS.get(site.result or "", _error_steps)
    steps = handler(site, ctx, again)
    if site.result not in (mp.LOCK_HELD, mp.SERVICES_DOWN, mp.SITE_NOT_FOUND):
        steps.append(_go_back(name, ctx))
    return steps


COMMAND_INDENT = "    "


def step(text: str, *commands: str) -> str:
    """A next step: ``text``, then each command on its own line (indented, ready to paste)."""
    return text + "".join(f"\n{COMMAND_INDENT}{command}" for command in commands)


def step_commands(text: str) -> list[str]:
    """The commands of a next step (the lines after its sentence)."""
    return [line[len(COMMAND_INDENT) :] for line in text.split("\n")[1:]]


def is_data_cause(site: FailedSite) -> bool:
    """The exception says the site's data was refused (a patch that checks its data, a
    unique index over duplicates), not that the code is wrong."""
    return (site.exception_type or "").rsplit(".", 1)[-1] in DATA_ERRORS


def _release(site: FailedSite, ctx: StepContext, what: str) -> str:
    app = _app_of(site) or "the app"
    commands = [ctx.build, *([ctx.deploy_new] if ctx.deploy_new else [])]
    return step(
        f"{what}: the way out is a fixed release of {app}, a new image and a deploy of it (migrating "
        "again with this image fails the same way):",
        *commands,
    )


def _patch_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    name, line = site.site or "SITE", site.failed_patch or ""
    run_patch = ctx.place.bench("--site", name, "run-patch", line, "--force")
    if is_data_cause(site):
        return [
            step(f"the patch refused the site's data ({_kind(site)}): fix the records its message "
                 "names, then migrate again:", again),
            step("or, once the data is fixed, run only that patch, then migrate for the rest:",
                 run_patch, again),
            _release(site, ctx, "if the patch is wrong rather than the data"),
        ]  # fmt: skip
    where = f" in {site.failed_file}" if site.failed_file else ""
    return [_release(site, ctx, f"the patch itself failed ({_kind(site)}{where})")]


def _import_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    module = site.failed_module or "its module"
    return [_release(site, ctx, f"the patch module {module} cannot be imported ({_kind(site)})")]


def _doctype_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    if site.doctype_file:
        return [_release(site, ctx, f"the doctype file {site.doctype_file} is not valid JSON")]
    doctype = site.doctype or "a doctype"
    if is_data_cause(site):
        return [
            step(f"the schema change of {doctype} conflicts with the site's data ({_kind(site)}; the "
                 "failed ALTER TABLE is shown above): fix the data (e.g. remove the duplicates), then:",
                 again),
            _release(site, ctx, f"or, if {doctype} should not change that way"),
        ]  # fmt: skip
    return [_release(site, ctx, f"the sync of {doctype} failed ({_kind(site)})")]


def _patches_txt_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    return [_release(site, ctx, f"an app's patches.txt cannot be read ({_kind(site)})")]


def _hook_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    what = f"the {site.step or 'migrate step'} failed ({_kind(site)})"
    if is_data_cause(site):
        return [
            step(f"{what}: fix the data it names, then:", again),
            _release(site, ctx, "if the code is wrong"),
        ]
    return [_release(site, ctx, what)]


def _lock_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    name = site.site or "SITE"
    steps = [
        step(f"another migrate of {name} holds the lock (a migrator service, or one started by hand): "
             "wait until it has finished, then:", again)
    ]  # fmt: skip
    if site.lock_path:
        remove = _in_container(ctx.place, "rm", "-f", site.lock_path)
        steps.append(step("only if no migrate is running, remove the stale lock:", remove))
    return steps


def _services_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    if ctx.container_stopped or not site.services:
        return [
            step(f"the {ctx.place.service} container stopped during migrate: check `docker logs` of "
                 "it, then run:", again)
        ]  # fmt: skip
    steps = []
    for service in site.services:
        compose_name = COMPOSE_SERVICES.get(service, service)
        if ctx.place.project is not None:
            start = step(f"{service} is not running: start it (frappe_docker's service {compose_name}):",
                         ctx.place.up(compose_name))  # fmt: skip
        else:
            start = step(
                f"{service} is not running: start it; with frappe_docker that is the service "
                f"{compose_name}, started on the compose host with `docker compose -p PROJECT up -d "
                f"{compose_name}` (the project is not known from a transcript)"
            )
        steps.append(start)
    steps.append(step("then migrate again:", again))
    return steps


def _in_container(place: BenchPlace, *argv: str) -> str:
    """A shell line running ``argv`` in the bench container (bare when the project is unknown)."""
    return place.in_container(*argv)


def _site_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    listing = _in_container(ctx.place, "ls", "sites")
    return [step(f"the site {site.site} does not exist on this bench: check its name:", listing)]


def _error_steps(site: FailedSite, ctx: StepContext, again: str) -> list[str]:
    return [step("read the exception and the output above, fix the cause, then:", again)]


_HANDLERS = {
    mp.PATCH_FAILED: _patch_steps,
    mp.IMPORT_FAILED: _import_steps,
    mp.DOCTYPE_FAILED: _doctype_steps,
    mp.PATCHES_TXT_INVALID: _patches_txt_steps,
    mp.HOOK_FAILED: _hook_steps,
    mp.SYNC_FAILED: _hook_steps,
    mp.LOCK_HELD: _lock_steps,
    mp.SERVICES_DOWN: _services_steps,
    mp.SITE_NOT_FOUND: _site_steps,
}


def _go_back(name: str, ctx: StepContext) -> str:
    """The way back: deploy's own (``imagekit rollback``, database and image together), else, from
    a transcript, the manual one (bench restore asks for the MariaDB root password)."""
    if ctx.go_back:
        return ctx.go_back
    env_file = ctx.place.env_file or "ENV_FILE"
    feed = ["sed", "-n", f"s/^{ROOT_PASSWORD_VAR}=//p", env_file]
    return step(
        "or go back (frappe has no reverse migrations): restore the backup you took before migrating, "
        "then run the image that ran before it. bench restore asks for the MariaDB root password and "
        "reads it from standard input; typed there (exec -T, no terminal) the password is echoed on "
        f"the screen, so feed it from the env file ({ROOT_PASSWORD_VAR}, frappe_docker's, unquoted) "
        "as below, never as an option. Put the backup's path in the sites volume for BACKUP"
        f"{'' if ctx.place.env_file else ' and your env file for ENV_FILE'}:",
        ctx.place.bench_fed(feed, "--site", name, "restore", "BACKUP"),
    )


def _kind(site: FailedSite) -> str:
    return (site.exception or "no exception printed").split("\n", 1)[0]


def _app_of(site: FailedSite) -> str | None:
    for candidate in (site.failed_patch, site.failed_module):
        if candidate and not candidate.startswith("execute:"):
            return candidate.split(".", 1)[0]
    for text in (site.failed_file, site.doctype_file):
        if text and "/apps/" in text:
            return text.split("/apps/", 1)[1].split("/", 1)[0]
    return None


# ---------------------------------------------------------------- imagekit migrate-report


@dataclass
class MigrateReport:
    """The report of one transcript (docs/DESIGN.md, "Migrate report")."""

    sites: list[mp.SiteResult]
    run_exit_code: int | None = None
    where: str | None = UNKNOWN_PLACE

    @property
    def result(self) -> str:
        failed = [s.result for s in self.sites if s.status == mp.FAILED]
        return failed[0] if failed else mp.OK

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for([s.result for s in self.sites])

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "result": self.result,
            "exit_code": int(self.exit_code),
            "run_exit_code": self.run_exit_code,
            "where": self.where,
            "sites": [s.to_dict() for s in self.sites],
        }


def exit_code_for(results: Sequence[str]) -> ExitCode:
    """0 when every site is ok, 9 for a failed patch, 10 otherwise (as deploy)."""
    if all(r == mp.OK for r in results):
        return ExitCode.OK
    return ExitCode.PATCH_FAILED if mp.PATCH_FAILED in results else ExitCode.MIGRATE_FAILED


def report_transcript(text: str, *, site: str | None = None, exit_code: int | None = None) -> MigrateReport:
    """Parse a saved ``bench migrate`` / ``run-patch`` transcript and add next steps."""
    results = mp.parse_migrate_output(text, sites=[site] if site else [], exit_code=exit_code)
    for result in results:
        if result.status == mp.FAILED:
            result.next_steps = next_steps(result, StepContext())
    return MigrateReport(results, exit_code)


# ---------------------------------------------------------------- patches.txt


def patches_txt_lines(text: str) -> list[tuple[str, str]]:
    """(section, line) for each patch line of a patches.txt, as frappe reads it: an INI-like
    file with ``[pre_model_sync]``/``[post_model_sync]``, or the old one-line-per-patch form
    (all pre_model_sync). Blank and ``#``/``;`` comment lines are not patches."""
    section, lines = mp.PRE_MODEL_SYNC, []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        lines.append((section, line))
    return lines


def pending_patch_line(
    text: str, executed: Sequence[str], module: str | None, section: str | None = None
) -> str | None:
    """The first line of a patches.txt not in the Patch Log (``executed``) whose module is
    ``module`` or lies under it (a missing package names a prefix), in ``section`` if known."""
    if not module:
        return None
    done = set(executed)
    for where, line in patches_txt_lines(text):
        if section and where != section:
            continue
        name = line.removeprefix("finally:").split(maxsplit=1)[0]
        if line not in done and line.removeprefix("finally:") not in done and _under(name, module):
            return line
    return None


def _under(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".") or module.startswith(name + ".")
