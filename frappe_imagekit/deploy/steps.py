"""The public deploy steps: preflight, send_image, backup, replace (down/up), check_image,
check_health, finish. ``deploy`` (sequence.py) and ``rollback`` are short lists of them; each
takes the ``Context`` (deploy/context.py)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from frappe_imagekit import progress, validate
from frappe_imagekit.deploy import (
    backups,
    compose,
    composeconfig,
    health,
    maintenance,
    place,
    send,
    verify,
)
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.context import (
    HEALTH_MAINTENANCE,
    Context,
    DeployReport,
    absolute,
    all_containers,
    engine_of,
    exec_in,
    find_backend,
    forget_site_folders,
    no_site_yet,
    project_services,
    site_names,
    timed,
    up_env,
    where_named,
)
from frappe_imagekit.deploy.engine import Stack, open_engine, rendered
from frappe_imagekit.deploy.lastup import (
    DownFiles,
    check_services_kept,
    files_for_down,
    keep_copy,
    last_up_version,
    needs_full_down,
    note_changed_files,
)
from frappe_imagekit.deploy.migratesteps import follow_migrator
from frappe_imagekit.deploy.record import (
    DeployRecord,
    stamp,
)
from frappe_imagekit.deploy.record import now as now_iso
from frappe_imagekit.deploy.send import image_present, last_line, missing_images
from frappe_imagekit.deploy.sitewindow import open_window, read_back_maintenance, records_here, the_window
from frappe_imagekit.errors import (
    DeployError,
    ImagekitError,
    NotFoundError,
)
from frappe_imagekit.runner import LocalRunner, Runner
from frappe_imagekit.workspace import write_json_atomic

_BACKUP_LINE = re.compile(r"^Database:\s+(?P<path>\S+)", re.MULTILINE)


def replace_services(ctx: Context) -> None:
    running = project_services(ctx)
    down_files = files_for_down(ctx, running)
    full = bool(running) and needs_full_down(ctx, running)
    if running:
        ctx.report.previous_version = last_up_version(ctx)
    open_window(ctx, running)
    if ctx.opts.backup and running:
        timed(ctx, "backup", lambda c: backup_sites(c, running))
    the_window(ctx).stack_changed()  # from down on, a failure leaves the sites in maintenance
    ctx.report.stack_changed = True  # rollback's default target, even if up or its wait fails
    note_changed_files(ctx, down_files, full)
    if full:
        ctx.emit(f"stopping project {ctx.opts.project}")
        timed(ctx, "down", lambda c: compose_down(c, down_files, bool(running)))
    else:
        kill_first(ctx)
    ctx.emit(f"starting {ctx.opts.image_ref}")
    timed(ctx, "up", _up)
    timed(ctx, "image_check", check_image)
    ctx.report.served = True


def preflight(ctx: Context) -> None:
    runner, opts = ctx.runner, ctx.opts
    ctx.engine = open_engine(opts.engine, runner)
    ctx.report.engine = ctx.engine.name
    ctx.report.compose = ctx.engine.describe()
    ctx.report.notes.extend(ctx.engine.notes())
    docker = runner.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    if docker.returncode != 0:
        raise DeployError(
            f"docker does not answer on {runner.host} ({last_line(docker)}); start the Docker daemon there."
        )
    ctx.report.daemon_id = place.daemon_of(runner)
    ctx.compose_files = [absolute(runner, p) for p in (opts.compose_file, *opts.compose_overrides)]
    ctx.compose_file = ctx.compose_files[0]
    for path in ctx.compose_files:
        if runner.run(["test", "-f", path]).returncode != 0:
            raise NotFoundError(
                f"compose file {path} does not exist on {where_named(runner)}: pass the file "
                "the site runs with (--compose, a path on the target)."
            )
    if opts.env_file and runner.run(["test", "-f", opts.env_file]).returncode != 0:
        raise NotFoundError(
            f"env file {opts.env_file} does not exist on {where_named(runner)}: fix --env-file "
            "(a path on the target) or leave it out."
        )
    if not image_present(runner, opts.image_ref):
        send_image(ctx)
    if not opts.migrate_only:
        check_config(ctx)
        check_services_kept(ctx)
        check_image_apps(ctx)


def check_config(ctx: Context) -> None:
    """Render the config `up` will use; refuse it unless services get IMAGE:VERSION."""
    opts, files = ctx.opts, ctx.compose_files
    ctx.config = rendered(engine_of(ctx).render(up_stack(ctx), up_env(opts)))
    images = composeconfig.image_plan(ctx.config, opts.image, opts.version)
    contents = {path: ctx.runner.read_file(path) or "" for path in files}
    lines = composeconfig.image_lines(contents, images.pinned.values())
    verify.require_image_plan(images, opts.image_ref, lines, opts.image_var, opts.tag_var)
    ctx.report.image_services = images.new
    ctx.report.services = {name: svc.image for name, svc in sorted(ctx.config.services.items())}
    ctx.report.oneshot_services = composeconfig.oneshot_services(ctx.config, opts.oneshot_services)
    ctx.report.migrator = next(iter(composeconfig.migrator_services(ctx.config)), None)
    ctx.report.notes.extend(missing_image_notes(ctx.runner, images.others))


def missing_image_notes(runner: Runner, others: Mapping[str, str]) -> list[str]:
    """A note per image of the other services (MariaDB, Redis...) the daemon lacks: `up` pulls
    it, which fails on a machine that cannot reach its registry (real lab, issue 24)."""
    by_image: dict[str, list[str]] = {}
    for service, image in sorted(others.items()):
        if image:
            by_image.setdefault(image, []).append(service)
    missing = missing_images(runner, sorted(by_image))
    return [
        f"{', '.join(by_image[image])} use {image}, which is not on {where_named(runner)}: up pulls it "
        "from its registry, which must be reachable from there (or load the image there first)."
        for image in missing
    ]


def check_image_apps(ctx: Context) -> None:
    """Every app installed on a site must be in the new image (read from the running backend)."""
    runner, opts = ctx.runner, ctx.opts
    if not image_present(runner, opts.image_ref):  # dry run: it would be sent
        return
    ctx.report.image_id = verify.image_id(runner, opts.image_ref)
    try:
        backend = find_backend(ctx)
    except DeployError:
        backend = None
    if backend is None or no_site_yet(ctx, backend):
        ctx.report.notes.append("no running backend or no site yet: the apps of the sites were not checked.")
        return
    sites = site_names(ctx, backend)
    installed = verify.site_apps(runner, backend.id, sites)
    in_image = verify.manifest_apps(ctx.ws, opts.version, ctx.report.image_id)
    if in_image is None:
        in_image = verify.bench_version_apps(runner, opts.image_ref)
    verify.require_apps(installed, in_image, opts.image_ref)


def check_image(ctx: Context) -> None:
    if not ctx.report.image_id:
        return
    running = verify.running_images(ctx.runner, engine_of(ctx).services(ctx.opts.project))
    verify.require_running_image(running, ctx.report.image_services, ctx.report.image_id, ctx.opts.image_ref)


def send_image(ctx: Context) -> None:
    """Stream ``docker save`` (here) into ``docker load`` (there), before anything stops."""
    runner, opts = ctx.runner, ctx.opts
    if isinstance(runner, LocalRunner) and not opts.source_docker_host:
        raise NotFoundError(
            f"image {opts.image_ref} is not on this machine; build it first or pass --version."
        )
    if not opts.send_image:
        raise NotFoundError(f"image {opts.image_ref} is not on {runner.host}; load it there first.")
    if not image_present(LocalRunner(opts.source_docker_host), opts.image_ref):
        raise NotFoundError(f"image {opts.image_ref} is neither on {runner.host} nor here; build it first.")
    if opts.dry_run:
        ctx.report.notes.append(f"{opts.image_ref} is not on {runner.host}: it would be sent.")
        return
    sent = send.send_image(
        runner, opts.image_ref, opts.where.transfer, ctx.emit, digest=opts.image_digest, reporter=ctx.reporter
    )
    ctx.report.image_sent = True
    ctx.report.image_digest = sent.digest
    ctx.report.notes.extend(sent.notes)
    ctx.report.timings["send_image"] = sent.seconds


def backup_sites(ctx: Context, running: Sequence[Container]) -> None:
    try:
        backend = find_backend(ctx, running)
    except DeployError:
        ctx.report.notes.append("no running backend before the deploy: no backup taken.")
        return
    if no_site_yet(ctx, backend):
        ctx.report.notes.append("no site yet: no backup taken.")
        return
    for site in site_names(ctx, backend):
        ctx.emit(f"backing up {site}")
        with progress.task(ctx.reporter, f"backup {site}"):
            _backup_site(ctx, backend, site)
    prune_backups(ctx)


def _backup_site(ctx: Context, backend: Container, site: str) -> None:
    argv = ["bench", "--site", site, "backup", *(["--with-files"] if ctx.opts.backup_files else [])]
    done = exec_in(ctx, backend, argv, timeout=3600)
    match = _BACKUP_LINE.search(done.stdout)
    if done.returncode != 0 or not match:
        raise DeployError(
            f"backup of {site} failed ({last_line(done)}); nothing was stopped: fix it, "
            "or deploy with --no-backup."
        )
    ctx.report.site(site).backup = _site_path(match["path"])
    _keep_backup(ctx, backend, site, done.stdout)


def prune_backups(ctx: Context) -> None:
    """Only the last --keep-backups deploys' backups stay, but never a failed deploy's nor the
    newest copy of a version's data (deploy/backups.py ``plan_prune``), as the records say: the
    target's audit log (every workspace's deploys of it), then this workspace's ``deploys/``."""
    facts = backups.deploy_facts(records_here(ctx))
    current = stamp(ctx.report.started)
    facts[current] = backups.DeployFacts(False, ctx.report.previous_version)
    pruned = backups.prune(ctx.runner, f"{ctx.paths.root}/backups", ctx.opts.keep_backups, facts, current)
    ctx.report.notes.extend(backups.describe(pruned, ctx.opts.keep_backups))


def _keep_backup(ctx: Context, backend: Container, site: str, output: str) -> None:
    """Copy the site's backup off the volume into the state folder, checked and hashed."""
    site = validate.site_name(site, "a site of the backend", DeployError)
    folder = f"{ctx.paths.root}/backups/{stamp(ctx.report.started)}/{site}"
    files = backups.copy_off(ctx.runner, backend.id, backups.files_in_output(output), folder)
    ctx.report.site(site).backup_files = [asdict(f) for f in files]


def _site_path(path: str) -> str:
    """bench prints backup paths relative to sites/; make them bench-relative."""
    return path if path.startswith("/") else "sites/" + path.removeprefix("./")


def down(ctx: Context, files: DownFiles, anything: bool) -> None:
    """Stop and remove the containers of the image's services before they start again on
    another image (rollback): MariaDB and Redis keep running (README "What deploy stops");
    everything (compose down) with --full-down."""
    if ctx.opts.full_down or not ctx.report.image_services:
        compose_down(ctx, files, anything)
        return
    kill_first(ctx)
    removed = engine_of(ctx).remove(ctx.opts.project, ctx.report.image_services,
                                      ctx.opts.stop_timeout)  # fmt: skip
    if removed:
        ctx.emit(f"stopped {', '.join(removed)}; {_kept_running(ctx)} keep running")


def _kept_running(ctx: Context) -> str:
    kept = sorted(set(ctx.report.services) - set(ctx.report.image_services))
    return ", ".join(kept) or "no other service"


def kill_first(ctx: Context) -> None:
    killed = engine_of(ctx).kill(ctx.opts.project, ctx.opts.kill_first)
    if killed:
        ctx.report.notes.append(
            f"killed {', '.join(killed)} at once before they were replaced: they ignore SIGTERM and hold "
            "no state (--kill-first)."
        )


def compose_down(ctx: Context, files: DownFiles, anything: bool) -> None:
    if not anything and not all_containers(ctx):
        return
    kill_first(ctx)
    engine = engine_of(ctx)
    argv = engine.down_argv(down_stack(ctx, files), stop_timeout=ctx.opts.stop_timeout)
    done = ctx.runner.run(argv, env=files.env or None, timeout=ctx.opts.down_timeout + 30)
    if done.returncode != 0:
        raise DeployError(
            f"compose down failed ({last_line(done)}); run `{shlex.join(argv)}` by hand to see why."
        )
    engine.wait_gone(ctx.opts.project, ctx.opts.down_timeout)


def _up(ctx: Context) -> None:
    opts, engine = ctx.opts, engine_of(ctx)
    env = up_env(opts)
    argv = engine.up_argv(up_stack(ctx), stop_timeout=opts.stop_timeout)
    before = compose.restart_counts(project_services(ctx))
    done = ctx.runner.run(argv, env=env, timeout=opts.up_timeout + 60)
    keep_copy(ctx, env)  # even a failed up may have started containers with this file
    forget_site_folders(ctx)
    if done.returncode != 0:
        raise DeployError(
            f"compose up failed: {last_line(done)}; fix the compose file or the image and deploy again."
        )
    if ctx.report.migrator:
        timed(ctx, "migrate", follow_migrator)
        if ctx.migrator_run and ctx.migrator_run.failed:
            return  # reported as a migrate failure; the other services are up
    oneshot = ctx.report.oneshot_services or opts.oneshot_services
    engine.wait(opts.project, oneshot, opts.up_timeout, settle=opts.settle, before=before)


def up_stack(ctx: Context) -> Stack:
    """The stack this deploy starts: its compose files and env file."""
    return Stack(ctx.opts.project, tuple(ctx.compose_files), env_file=ctx.opts.env_file)


def down_stack(ctx: Context, files: DownFiles) -> Stack:
    """The stack ``down`` stops: the files (kept copies) of the last up (lastup.files_for_down)."""
    return files.stack(ctx.opts.project)


def check_health(ctx: Context) -> None:
    """Each migrated site answers ping (and one asset through the frontend), from inside."""
    if not ctx.report.sites:
        return
    backend = find_backend(ctx)
    services = ctx.config.services if ctx.config else {c.service: c for c in project_services(ctx)}
    url = health.base_url(services)
    asset = None
    if url == health.FRONTEND_URL:
        asset = health.first_asset(exec_in(ctx, backend, ["cat", health.ASSETS_MANIFEST], timeout=30).stdout)
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


def finish(ctx: Context) -> None:
    read_back_maintenance(ctx)
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
