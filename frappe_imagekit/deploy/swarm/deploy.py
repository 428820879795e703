"""``imagekit deploy`` on a swarm: the same window, migrate judgement and exit codes as compose.

1. the swarm and the image: this daemon manages a swarm; ``IMAGE:VERSION`` has a registry digest
   (every node pulls that, never another build under the tag); more than one node needs the
   sites on shared storage. Nothing changes before these checks pass.
2. the window, when the stack runs: maintenance on, scheduler paused and a backup of each site
   through a job on the running image; the backups copied off the volume and hashed.
3. one-shot services (the configurator) run as jobs on the new image, judged by exit status.
4. ``docker stack deploy`` of the rendered stack file, then the rollout is waited for.
5. ``bench --site S migrate`` as one job per site on the new image, judged by its output
   through the migrate parser; a failed site stays in maintenance, the others are released.
6. each site answers ``/api/method/ping`` from a job on the stack's network.
"""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import composeconfig, lock, record
from frappe_imagekit.deploy.compose import detect_compose
from frappe_imagekit.deploy.migrate_parse import ERROR, FAILED, OK, SiteResult, parse_migrate_output
from frappe_imagekit.deploy.migrate_report import exit_code_for
from frappe_imagekit.deploy.sequence import state_paths
from frappe_imagekit.deploy.swarm import cli, records, rollout, stack, window
from frappe_imagekit.deploy.swarm.jobs import JobRun, JobStopped, create_argv, run_job
from frappe_imagekit.errors import DeployError, ExitCode, ImagekitError, NotFoundError
from frappe_imagekit.runner import Runner

Emit = Callable[[str], None]
RECORDS = records.RECORDS  # in the project's state folder: one JSON report per deploy
# $1 backend service, $2 port, then the sites: a marker line and the answer of each
_PING = """b=$1; p=$2; shift 2
for s in "$@"; do
  echo "== imagekit: $s"; wget -q -O - --header "Host: $s" "http://$b:$p/api/method/ping"; echo
done
"""


@dataclass(frozen=True)
class SwarmOptions:
    stack: str
    files: tuple[str, ...]
    image: str  # the repository
    version: str  # the tag
    digest: str | None = None  # None: the repo digest the daemon here knows for IMAGE:VERSION
    env_file: str | None = None
    sites: tuple[str, ...] | None = None
    registry_auth: bool = False  # --with-registry-auth even for a loopback registry
    backup: bool = True
    backend_service: str = "backend"
    backend_port: int = 8000
    up_timeout: float = 300
    migrate_timeout: float = 3600
    state_dir: str | None = None
    image_var: str = "CUSTOM_IMAGE"
    tag_var: str = "CUSTOM_TAG"


@dataclass
class SiteOutcome:
    site: str
    result: str = "not-migrated"  # ok | a migrate_parse result | not-migrated
    maintenance: str = "unknown"  # on | off | unknown
    failed_patch: str | None = None
    exception: str | None = None
    output_file: str | None = None
    next_steps: list[str] = field(default_factory=list)


@dataclass
class SwarmReport:
    stack: str
    version: str
    ref: str = ""
    engine: str = records.ENGINE
    kind: str = record.DEPLOY  # or rollback
    deploy_id: str | None = None  # the UTC start stamp: names the record and the backups folder
    host: str = "local"
    started: str | None = None
    finished: str | None = None
    rolled_out: bool = False  # `docker stack deploy` of this version ran: the stack changed
    rollback_of: str | None = None  # rollback: the deploy id it undid
    previous_image: str | None = None
    previous_version: str | None = (
        None  # the version the previous record deployed, when it ran previous_image
    )
    sites: list[SiteOutcome] = field(default_factory=list)
    backups: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Run:
    runner: Runner
    opts: SwarmOptions
    emit: Emit
    report: SwarmReport
    place: window.Place | None = None
    stackfile: stack.StackFile | None = None
    folder: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # what compose config printed
    migrating: str = ""  # the site whose migrate job runs
    root: str = ""  # the project's state folder
    before: Callable[[Run], None] | None = None  # rollback's restores, in the window, before the rollout


def resolve_pin(runners: Sequence[Runner], opts: SwarmOptions) -> stack.Pin:
    """``IMAGE@sha256:...``: the digest given, or the registry digest of ``IMAGE:VERSION`` known
    to the first daemon of ``runners`` that pushed or pulled it (the build machine's first)."""
    if opts.digest:
        return stack.pin(opts.image, opts.digest)
    ref = f"{opts.image}:{opts.version}"
    for runner in runners:
        done = runner.run(
            [cli.DOCKER, "image", "inspect", "--format", "{{json .RepoDigests}}", ref], timeout=60
        )
        text = done.stdout.strip() if done.returncode == 0 else ""
        for entry in json.loads(text) if text.startswith("[") else []:
            repo, _, digest = str(entry).partition("@")
            if repo == opts.image:
                return stack.pin(repo, digest)
    raise NotFoundError(
        f"{ref} has no digest from a registry, so the swarm's nodes could run other builds under "
        f"its tag: push it first (`docker push {ref}`), or pass its digest; nothing was changed."
    )


def deploy(
    runner: Runner,
    opts: SwarmOptions,
    emit: Emit,
    pinned: stack.Pin | None = None,
    before: Callable[[Run], None] | None = None,
    rollback_of: str | None = None,
) -> SwarmReport:
    """Deploy ``opts`` on the swarm ``runner`` talks to. Checks raise before anything changes;
    after that every failure is in the report (error, exit code, each site's state)."""
    validate.project_name(opts.stack, "the stack name", DeployError)
    run = Run(runner, opts, emit, SwarmReport(opts.stack, opts.version, host=runner.host), before=before)
    if rollback_of:
        run.report.kind, run.report.rollback_of = record.ROLLBACK, rollback_of
    paths = state_paths(runner, opts.stack, opts.state_dir)
    swarm = cli.swarm_here(runner)
    pinned = pinned or resolve_pin([runner], opts)
    run.report.ref = pinned.ref
    _render(run, pinned, swarm)
    details = lock.lock_details(opts.version, opts.stack)
    lock.acquire(runner, paths.lock_dir, details, opts.stack)
    try:
        run.report.started = record.now()
        deploy_id = run.report.deploy_id = record.stamp(run.report.started)
        run.folder = f"{paths.root}/backups/{deploy_id}-{secrets.token_hex(2)}"
        run.root = paths.root
        try:
            _sequence(run)
        finally:
            _write_record(run, paths.root, deploy_id)
    except ImagekitError as exc:
        run.report.error, run.report.exit_code = exc.message, int(exc.exit_code)
    except KeyboardInterrupt as exc:
        run.report.exit_code = int(ExitCode.INTERRUPTED)
        _interrupted(run, exc if isinstance(exc, JobStopped) else None)
    finally:
        lock.release(runner, paths.lock_dir, details)
    return run.report


def _render(run: Run, pinned: stack.Pin, swarm: cli.Swarm) -> None:
    opts = run.opts
    data = composeconfig.render_data(
        run.runner, detect_compose(run.runner), opts.stack, opts.files, image_env(opts), opts.env_file
    )
    run.config = data
    parsed = composeconfig.parse_config(json.dumps(data))
    oneshot = composeconfig.oneshot_services(parsed)
    run.stackfile = stack.render_stack(data, f"{opts.image}:{opts.version}", pinned, oneshot)
    stack.refuse_local_sites(run.stackfile, swarm.nodes)
    run.report.notes += list(run.stackfile.notes)
    backend = (
        opts.backend_service if opts.backend_service in run.stackfile.pinned else run.stackfile.pinned[0]
    )
    body = run.stackfile.data["services"][backend]
    volumes, networks = run.stackfile.data.get("volumes", {}), run.stackfile.data.get("networks", {})
    run.place = window.Place(
        opts.stack,
        tuple(stack.job_mounts(opts.stack, body, volumes)),
        tuple(stack.job_networks(opts.stack, body, networks)),
        swarm.node_id,
    )


def _sequence(run: Run) -> None:
    assert run.place and run.stackfile
    running = {r.name: r for r in cli.stack_services(run.runner, run.opts.stack)}
    old = running.get(f"{run.opts.stack}_{run.opts.backend_service}")
    run.report.previous_image = old.image if old else None
    if old:
        run.report.previous_version = _previous_version(run.runner, run.root, old.image)
    sites = list(run.opts.sites or list_sites(run.runner, run.place, run.report.ref))
    run.report.sites = [SiteOutcome(s) for s in sites]
    if old and sites:
        _window(run, old.image, sites)
    if run.before:
        run.before(run)
    cli.ensure_networks(run.runner, run.opts.stack, run.place.networks)
    _configure(run)
    _roll_out(run)
    _migrate_all(run)
    _release(run)
    _ping(run)


def _previous_version(runner: Runner, root: str, image: str) -> str | None:
    """The version of the newest usable record that rolled ``image`` out."""
    found = [r for _, r in records.read_state(runner, root) if isinstance(r, records.SwarmRecord)]
    return records.version_running(found, image)


def _write_record(run: Run, root: str, deploy_id: str) -> None:
    path = f"{root}/{RECORDS}/{validate.deploy_id(deploy_id, 'the deploy id', DeployError)}.json"
    run.runner.run(["mkdir", "-p", "-m", "700", f"{root}/{RECORDS}"], timeout=60)
    run.report.finished = record.now()
    run.runner.write_file(path, (json.dumps(run.report.to_dict(), indent=1) + "\n").encode())


def list_sites(runner: Runner, place: window.Place, image: str) -> list[str]:
    """The sites of the sites folder (each folder holding a site_config.json)."""
    argv = ["sh", "-c", 'for f in sites/*/site_config.json; do [ -f "$f" ] && echo "${f%/*}"; done; true']
    job = run_job(runner, replace(place.job("sites", image, argv), networks=()), timeout=300)
    found = [line.strip().removeprefix("sites/") for line in job.output.splitlines() if line.strip()]
    return sorted(validate.site_name(s, "a site in the sites folder", DeployError) for s in found)


def _window(run: Run, image: str, sites: list[str]) -> None:
    assert run.place
    what = "Maintenance on and backups of" if run.opts.backup else "Maintenance on for"
    run.emit(f"{what} {', '.join(sites)} (job on {image})")
    files = window.open_window(run.runner, run.place, image, sites, run.opts.backup)
    for outcome in run.report.sites:
        outcome.maintenance = "on"
    paths = [path for site in sites for path in files[site]]
    copies = window.copy_off(run.runner, run.place, image, paths, run.folder) if paths else []
    owner = {path.rsplit("/", 1)[-1]: site for site in sites for path in files[site]}
    where = {path.rsplit("/", 1)[-1]: path for site in sites for path in files[site]}
    for copy in copies:
        name = copy.path.rsplit("/", 1)[-1]
        run.report.backups.append({"site": owner[name], "volume_path": where[name], **asdict(copy)})


def _configure(run: Run) -> None:
    """One-shot services (the configurator) as jobs on the new image; migrators are imagekit's."""
    assert run.place and run.stackfile
    config = run.stackfile.left_out
    for name in config:
        if name == "migrator" or name.endswith("migrate"):
            continue
        run.emit(f"Running {name} as a job on {run.report.ref}")
        job = run_job(run.runner, run.place.job(name, run.report.ref, _oneshot_argv(run, name)), timeout=600)
        if job.exit_code != 0:
            raise DeployError(
                f"the one-shot service {name} failed as a job (exit {job.exit_code}); the stack "
                "was not changed.",
                ExitCode.DEPLOY_FAILED,
            )


def _oneshot_argv(run: Run, name: str) -> list[str]:
    return oneshot_argv(run.config, name)


def oneshot_argv(config: Mapping[str, Any], name: str) -> list[str]:
    """What the one-shot service ``name`` of the compose config runs (entrypoint, command)."""
    body = config["services"][name]
    return [*words(body.get("entrypoint")), *words(body.get("command"))] or ["true"]


def words(value: object) -> list[str]:
    """An entrypoint or command (a string is split as a shell would, a list taken as it is)."""
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value] if isinstance(value, list) else []


def _roll_out(run: Run) -> None:
    assert run.stackfile
    name = run.opts.stack
    want = rollout.Want(name, {
        f"{name}_{s}": run.report.ref if s in run.stackfile.pinned else ""
        for s in run.stackfile.data["services"]
    })  # fmt: skip
    before = rollout.task_ids(run.runner, want)
    path = f"{run.folder}.stack.json"
    run.runner.run(["mkdir", "-p", "-m", "700", run.folder.rsplit("/", 1)[0]], timeout=60)
    run.runner.write_file(path, run.stackfile.text().encode())
    try:
        run.emit(f"docker stack deploy {name} ({len(want.services)} services, {run.report.ref})")
        cli.check(
            run.runner,
            cli.stack_deploy_argv(path, name, registry_auth(run.opts, run.report.ref)),
            "docker stack deploy",
        )
        run.report.rolled_out = True
    finally:
        run.runner.run(["rm", "-f", path], timeout=60)
    rollout.wait_rollout(run.runner, want, before, run.opts.up_timeout)


def registry_auth(opts: SwarmOptions, ref: str) -> bool:
    """``--with-registry-auth`` for a user's registry (not imagekit's on loopback), or when asked."""
    return opts.registry_auth or cli.needs_registry_auth(ref)


def _migrate_all(run: Run) -> None:
    for outcome in run.report.sites:
        _migrate(run, outcome)
        if outcome.result != OK:
            run.report.exit_code = int(exit_code_for([outcome.result]))
            return


def _migrate(run: Run, outcome: SiteOutcome) -> None:
    assert run.place
    run.emit(f"Migrating {outcome.site} (job on {run.report.ref})")
    run.migrating = outcome.site
    spec = run.place.job("migrate", run.report.ref, ["bench", "--site", outcome.site, "migrate"])
    job = run_job(run.runner, spec, timeout=run.opts.migrate_timeout)
    outcome.output_file = _keep_output(run, outcome.site, job)
    result = judge(job, outcome.site)
    outcome.result = result.result
    outcome.failed_patch, outcome.exception = result.failed_patch, result.exception
    if result.status == FAILED:
        outcome.next_steps = next_steps(run, outcome)


def judge(job: JobRun, site: str) -> SiteResult:
    """The site's migrate result from the job's output alone: a traceback fails the site even
    when the task completed (a wrapper shell, like the chart's and castlecraft's, exits 0 after a
    failed migrate); a non-zero exit fails it even without one; and a job that printed no
    ``Migrating SITE`` did not show a migrate, whatever its task state says."""
    (result, *_) = parse_migrate_output(job.output, sites=[site], exit_code=None)
    if result.status == OK and job.exit_code != 0:
        (result, *_) = parse_migrate_output(job.output, sites=[site], exit_code=job.exit_code or 1)
    if result.status == OK and f"Migrating {site}" not in job.output:
        said = f"the migrate job ended {job.state} without printing `Migrating {site}`"
        return SiteResult(site, status=FAILED, result=ERROR, exception=said)
    return result


def _keep_output(run: Run, site: str, job: JobRun) -> str:
    path = f"{run.folder}/migrate-{site}.log"
    run.runner.run(["mkdir", "-p", "-m", "700", run.folder], timeout=60)
    run.runner.write_file(path, job.output.encode())
    return path


def next_steps(run: Run, outcome: SiteOutcome) -> list[str]:
    """Steps that work pasted where imagekit ran docker: read the output, release the site."""
    assert run.place
    release = run.place.job("manual", run.report.ref, window.bench_script(
        [outcome.site], ["scheduler", "resume"], ["set-maintenance-mode", "off"]))  # fmt: skip
    name = f"{run.opts.stack}_ik-release-{outcome.site.replace('.', '-')}"[:63]
    create = [a for a in create_argv(release, name) if a != "--detach"]
    return [
        f"Read the whole migrate output: cat {shlex.quote(outcome.output_file or '')}",
        f"{outcome.site} stays in maintenance. Once the data is fixed, release it: "
        f"{shlex.join(create)} && {shlex.join(cli.service_rm_argv([name]))}",
    ]


def _release(run: Run) -> None:
    assert run.place
    done = [o for o in run.report.sites if o.result == OK and o.maintenance != "off"]
    for outcome in run.report.sites:
        if outcome.result != OK and outcome.maintenance == "on":
            run.emit(f"{outcome.site} stays in maintenance")
    job = window.close_window(run.runner, run.place, run.report.ref, [o.site for o in done])
    released = window.per_site(job.output, [o.site for o in done]) if job else {}
    for outcome in done:
        ok = job is not None and job.exit_code == 0 and outcome.site in released
        outcome.maintenance = "off" if ok else "unknown"


def _ping(run: Run) -> None:
    """Every site answers ``/api/method/ping`` through the backend service, from one job."""
    assert run.place
    sites = [o.site for o in run.report.sites]
    if run.report.exit_code or not sites:
        return
    backend, port = run.opts.backend_service, str(run.opts.backend_port)
    argv = ["sh", "-c", _PING, "ping", backend, port, *sites]
    job = run_job(run.runner, run.place.job("ping", run.report.ref, argv), timeout=120)
    answered = window.per_site(job.output, sites)
    silent = [s for s in sites if "pong" not in answered.get(s, "")]
    if silent:
        raise DeployError(f"{', '.join(silent)} did not answer /api/method/ping after the deploy "
                          f"({job.output.strip()[-200:] or job.state}).", ExitCode.DEPLOY_FAILED)  # fmt: skip


def _interrupted(run: Run, stopped: JobStopped | None) -> None:
    """Say what the interrupt stopped: the job that ran (removed; its task stopped or not) and
    which sites stay in maintenance."""
    task = "" if stopped is None else _task_said(stopped)
    run.report.error = "interrupted" + (
        f"; the {stopped.kind} job {stopped.name} was removed: {task}" if stopped else ""
    )
    for outcome in run.report.sites:
        if outcome.result != "not-migrated":
            continue
        if stopped is not None and stopped.kind == "migrate" and outcome.site == run.migrating:
            outcome.result, outcome.exception = "interrupted", f"the migrate job was stopped: {task}"
        if outcome.maintenance == "on":
            outcome.next_steps.append(f"{outcome.site} stays in maintenance: the deploy was stopped.")
    run.emit(f"Stopped: {run.report.error}.")


def _task_said(stopped: JobStopped) -> str:
    if stopped.stopped:
        return "its task stopped"
    return "its task may still be stopping on another node (see `docker ps` there)"


def summary(report: SwarmReport) -> list[str]:
    """The lines the CLI prints at the end."""
    lines = [f"Swarm deploy of {report.stack} {report.version} ({report.ref}): exit {report.exit_code}"]
    lines += [f"note: {n}" for n in report.notes]
    for site in report.sites:
        what = f"{site.result}" + (f" in {site.failed_patch}" if site.failed_patch else "")
        lines.append(f"  {site.site}: {what}; maintenance {site.maintenance}")
        lines += [f"    next: {step}" for step in site.next_steps]
    if report.error:
        lines.append(f"error: {report.error}")
    return lines


def image_env(opts: SwarmOptions) -> Mapping[str, str]:
    return {opts.image_var: opts.image, opts.tag_var: opts.version}
