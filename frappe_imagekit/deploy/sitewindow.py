"""The sites' maintenance window during a deploy or a rollback, read back at the end, and the
place and ``imagekit`` call the printed next steps name (deploy/nextsteps.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from frappe_imagekit.deploy import (
    health,
    maintenance,
    nextsteps,
)
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.context import (
    MIGRATOR_SITES,
    Context,
    DeployOptions,
    absolute,
    find_backend,
    no_site_yet,
    project_services,
    site_names,
    up_env,
)
from frappe_imagekit.deploy.lastup import parse_last_up
from frappe_imagekit.deploy.maintenance import SiteWindow
from frappe_imagekit.deploy.migrate_report import BenchPlace, ssh_prefix
from frappe_imagekit.deploy.record import (
    DeployRecord,
    describe_since,
    maintenance_since,
    place_records,
    read_deploys,
    stamp,
)
from frappe_imagekit.errors import (
    DeployError,
    ImagekitError,
)
from frappe_imagekit.interrupts import interrupts_held
from frappe_imagekit.runner import Runner


@contextmanager
def maintenance_window(ctx: Context) -> Iterator[None]:
    """Sites in maintenance from before the backup to after a successful migrate
    (deploy/maintenance.py); what it left on is reported, with the commands that end it."""
    try:
        with maintenance.window(ctx.runner, lambda: find_backend(ctx).id, ctx.emit,
                                enabled=ctx.opts.maintenance) as ctx.window:  # fmt: skip
            yield
    finally:
        report_window(ctx)


def the_window(ctx: Context) -> maintenance.Window:
    assert ctx.window is not None
    return ctx.window


def open_window(ctx: Context, running: Sequence[Container] | None = None) -> None:
    """Open the window in the running backend, once: before the backup, or before migrate
    when no backend ran before the deploy. No backend or no site yet: nothing to open."""
    window = the_window(ctx)
    if not window.enabled or window.sites:
        return
    try:
        backend = find_backend(ctx, running)
    except DeployError:
        return
    sites = [] if no_site_yet(ctx, backend) else site_names(ctx, backend)
    _found_states(ctx, window, backend, sites)
    for site in window.open(backend.id, sites):
        ctx.report.site(site.site).maintenance = site


def _found_states(ctx: Context, window: maintenance.Window, backend: Container, sites: list[str]) -> None:
    """What the sites are in before the window opens, read from them: one already in
    maintenance (an earlier deploy left it) is left as found if this one stops early."""
    states = maintenance.read_states(ctx.runner, backend.id, sites)
    why = {name: _maintenance_since(ctx, name) for name, state in states.items() if state.maintenance}
    window.found(states, why)
    for name, since in why.items():
        ctx.emit(f"{name} is in maintenance mode already ({since})")


def _maintenance_since(ctx: Context, site: str) -> str:
    """Since which deploy ``site`` is in maintenance, from the deploy records (``deploys/`` and
    the target's audit log, which has the deploys of other workspaces too)."""
    records = records_here(ctx)
    return describe_since(
        maintenance_since(records, ctx.opts.project, ctx.runner.host, site, ctx.report.daemon_id)
    )


def records_here(ctx: Context) -> list[DeployRecord]:
    """The records of this project at this place (``record.at_place``, keyed by the daemon's
    ID): this workspace's ``deploys/`` and the target's audit log (every workspace's deploys
    of it: they ran here, whatever host name they used)."""
    local = read_deploys(ctx.ws).records
    audit = ctx.runner.read_file(ctx.paths.audit_log) or ""
    return place_records(local, audit, ctx.opts.project, ctx.runner.host, lambda: ctx.report.daemon_id)


def read_back_maintenance(ctx: Context) -> None:
    """Each site's real maintenance state at the end (whatever the options), read from the
    site; one in maintenance that the window did not report gets the commands that end it."""
    names = [s.site for s in ctx.report.sites if s.site != MIGRATOR_SITES]
    states: dict[str, maintenance.SiteState] = {}
    try:
        with interrupts_held():
            states = maintenance.read_states(ctx.runner, find_backend(ctx).id, names) if names else {}
    except (ImagekitError, KeyboardInterrupt):
        pass  # no backend runs (or it cannot be asked): unknown
    for name in names:
        state = states.get(name)
        ctx.report.site(name).maintenance_now = state.word if state else None
        if state and state.maintenance:
            _say_still_on(ctx, name)


def _say_still_on(ctx: Context, name: str) -> None:
    site = ctx.report.site(name)
    if ctx.window is not None and name in ctx.window.open_sites():
        return  # the window's own report said it (report_window)
    why = f"read back from the site at the end; {_maintenance_since(ctx, name)}"
    step = maintenance.end_step(bench_place(ctx), SiteWindow(name, left_on=why))
    if step in site.next_steps:
        return
    site.next_steps.append(step)
    ctx.report.notes.append(f"{name} is in maintenance mode ({why}); its next steps end it.")
    ctx.emit(step)


def keep_unmigrated_in_maintenance(ctx: Context) -> None:
    """A site whose migrate failed is broken, one not migrated is not on the new version yet:
    both stay in maintenance; the others leave it as the window ends."""
    window = the_window(ctx)
    window.stack_changed()
    for name in window.open_sites():
        status = ctx.report.site(name).status
        if status != "ok":
            window.keep([name], "its migrate failed" if status == "failed" else "it was not migrated")


def report_window(ctx: Context) -> None:
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


def live_and_broken(ctx: Context) -> None:
    """A site that failed its health check after its window ended: its migrate succeeded, so the
    fault is a service; say so, with how to fix it, and the way back (nextsteps.py)."""
    place, call = bench_place(ctx), imagekit_call(ctx)
    services = ctx.config.services if ctx.config else {c.service: c for c in project_services(ctx)}
    service = "frontend" if health.base_url(services) == health.FRONTEND_URL else ctx.opts.backend_service
    read_back_maintenance(ctx)  # "live" only when the site says so
    for site in ctx.report.sites:
        in_window = site.maintenance_now == maintenance.ON
        if site.health == "failed" and not in_window:
            site.next_steps += [
                nextsteps.health_failed_step(place, call, site.site, service, ctx.opts.version),
                nextsteps.redeploy_step(call, ctx.opts.version),
                go_back_step(ctx, call),
            ]


def bench_place(ctx: Context) -> BenchPlace:
    """Where printed compose commands run: every -f of the deploy, its env file, the daemon."""
    runner, opts = ctx.runner, ctx.opts
    env = [("DOCKER_HOST", host) for host in [getattr(runner, "base_env", {}).get("DOCKER_HOST")] if host]
    return BenchPlace(
        project=opts.project,
        compose=ctx.engine.command_base() if ctx.engine else ("docker", "compose"),
        compose_files=tuple(ctx.compose_files) or (opts.compose_file, *opts.compose_overrides),
        env_file=_printed_path(runner, opts.env_file),
        service=opts.backend_service,
        ssh=ssh_prefix(runner.host, opts.ssh_flags),
        env=tuple(env),
        up_env=tuple(sorted(_running_env(ctx).items())),
    )


def _running_env(ctx: Context) -> dict[str, str]:
    """The variables of the up the stack now runs from: this deploy's, or the last up's (none
    when last-up.json cannot be read or used: next steps are built on the way out of failures)."""
    if ctx.report.served:
        return up_env(ctx.opts)
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
        return absolute(runner, path)
    except (ImagekitError, OSError):
        return path


def imagekit_call(ctx: Context) -> nextsteps.ImagekitCall:
    """``imagekit deploy|rollback`` naming this deploy's stack (nextsteps.py)."""
    runner, opts = ctx.runner, ctx.opts
    options = list(opts.repeat)
    if Path.cwd().resolve() != ctx.ws.root:
        options.append(("-w", str(ctx.ws.root)))
    if opts.sites:
        options.append(("--sites", ",".join(opts.sites)))
    defaults = DeployOptions.of("", "", "", "")
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


def go_back_step(ctx: Context, call: nextsteps.ImagekitCall) -> str:
    sites = ctx.report.sites
    return nextsteps.go_back_step(
        call,
        deploy_id=stamp(ctx.report.started),
        version=ctx.opts.version,
        replaced=ctx.report.served,
        backed_up=bool(sites) and all(s.backup for s in sites),
        previous=ctx.report.previous_version,
    )
