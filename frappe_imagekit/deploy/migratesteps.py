"""Migrate each site in the backend (or follow frappe_docker's migrator), fill the report from
its output (deploy/migrate_parse.py), and list what the operator can do about a failure."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace

from frappe_imagekit import progress, validate
from frappe_imagekit.deploy import (
    benchsite,
    maintenance,
    migrator,
    nextsteps,
    verify,
)
from frappe_imagekit.deploy import migrate_parse as mp
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.context import (
    INTERRUPTED,
    MIGRATOR_SITES,
    Context,
    SiteReport,
    engine_of,
    exec_in,
    find_backend,
    site_names,
)
from frappe_imagekit.deploy.migrate_parse import SiteResult, parse_migrate_output
from frappe_imagekit.deploy.migrate_report import BenchPlace, StepContext, pending_patch_line
from frappe_imagekit.deploy.migrate_report import next_steps as migrate_next_steps
from frappe_imagekit.deploy.migrator import MigratorRun
from frappe_imagekit.deploy.send import last_line
from frappe_imagekit.deploy.sitewindow import bench_place, go_back_step, imagekit_call
from frappe_imagekit.errors import (
    DeployError,
    ImagekitError,
    MigrateError,
)

# docker's own words when the backend container went away during migrate
_CONTAINER_GONE = re.compile(r"No such container|is restarting|Container \S+ is not running")


def follow_migrator(ctx: Context) -> None:
    assert ctx.report.migrator is not None
    ctx.emit(f"waiting for the {ctx.report.migrator} service (bench migrate on start)")
    ctx.migrator_run = migrator.wait_for(engine_of(ctx), ctx.opts.project, ctx.report.migrator, ctx.emit)


def report_migrator(ctx: Context, run: MigratorRun) -> None:
    """Sites' results from the migrator's logs (imagekit does not start a second migrate)."""
    results = parse_migrate_output(run.output, exit_code=run.exit_code)
    for result in results:
        # output that names no site (`bench: not found` before any `Migrating`) is the result of
        # the migrator's own `--site all`
        fill_site(ctx, ctx.report.site(result.site or MIGRATOR_SITES), result)
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


def migrate_all(ctx: Context) -> None:
    try:
        backend = find_backend(ctx)
    except DeployError as exc:
        raise MigrateError(f"services down: {exc.message}") from None
    for site in site_names(ctx, backend):
        ctx.emit(f"migrating {site}")
        with progress.task(ctx.reporter, f"migrate {site}") as ended:
            _migrate(ctx, backend, site)
            ended.outcome = progress.DONE if ctx.report.site(site).status == "ok" else progress.FAILED


def _migrate(ctx: Context, backend: Container, site: str) -> None:
    seen: list[str] = []  # the output so far: what an interrupted migrate had done

    def line(text: str) -> None:
        seen.append(text)
        ctx.emit(benchsite.redrawn(text))  # a progress bar's last state, not every redraw
        if (detail := mp.progress_detail(text)) is not None:
            ctx.reporter.advance(f"migrate {site}", detail=detail)

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
        result.exception = result.exception or last_line(done)
    if result.result == mp.IMPORT_FAILED and not stopped:
        _find_patch_line(ctx, backend, site, result)
    fill_site(ctx, ctx.report.site(site), result, stopped)


def _interrupted_site(site: SiteReport, output: str, note: str) -> None:
    """The record of a migrate interrupted on ``site``: the patches that completed (a
    ``Success`` after their ``Executing`` line: committed) and the one it was in."""
    seen = parse_migrate_output(output, sites=[site.site])
    result = seen[-1] if seen else SiteResult(site=site.site)
    site.status = INTERRUPTED
    site.patches_run = list(result.patches_run)
    site.interrupted_in = mp.running_patch(output, site.site)
    site.migrate_notes.append(note)


def _running(ctx: Context, container: Container) -> bool:
    done = ctx.runner.run(["docker", "inspect", "-f", "{{.State.Running}}", container.id])
    return done.stdout.strip() == "true"


# Patch Log rows that count as run (frappe's run_all: skipped = 0), as a JSON list on stdout
_PATCH_LOG_KWARGS = (
    "{'doctype': 'Patch Log', 'filters': {'skipped': 0}, 'pluck': 'patch', 'limit_page_length': 0}"
)


def _find_patch_line(ctx: Context, backend: Container, site: str, result: SiteResult) -> None:
    """An import failure prints no Executing line: find the line in the app's patches.txt
    (in the backend container) that is not yet in the site's Patch Log and names the module."""
    try:
        app = validate.python_module(result.failed_module, "the module named by migrate").split(".")[0]
    except ImagekitError:
        return
    patches = exec_in(ctx, backend, ["cat", f"apps/{app}/{app}/patches.txt"], timeout=60)
    logged = exec_in(ctx, backend, ["bench", "--site", site, "execute", "frappe.get_all",
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


def fill_site(ctx: Context, site: SiteReport, result: SiteResult, stopped: bool = False) -> None:
    site.status = "ok" if result.status == "ok" else "failed"
    for name in _REPORTED:
        setattr(site, name, getattr(result, name))
    site.migrate_notes = list(result.notes)
    if site.status == "failed":
        call = imagekit_call(ctx)
        site.next_steps = next_steps(site, bench_place(ctx), call, ctx.opts.version,
                                     go_back=go_back_step(ctx, call), container_stopped=stopped)  # fmt: skip


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


def check_apps(ctx: Context) -> None:
    ok_sites = [s for s in ctx.report.sites if s.status == "ok"]
    if not ok_sites:
        return
    backend = find_backend(ctx)
    version = exec_in(ctx, backend, ["bench", "version", "--format", "json"], timeout=120)
    image_apps = verify.first_json(version.stdout)
    names = [a.get("app") for a in image_apps if isinstance(a, dict)] if isinstance(image_apps, list) else []
    for site in ok_sites:
        listed = exec_in(
            ctx,
            backend,
            ["bench", "--site", site.site, "list-apps", "--format", "json"],
            timeout=120,
        )
        installed = verify.first_json(listed.stdout)
        apps = installed.get(site.site, []) if isinstance(installed, dict) else []
        site.apps_not_installed = [n for n in names if n and n not in apps]
