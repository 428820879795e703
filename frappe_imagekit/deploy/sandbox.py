"""``imagekit sandbox``: an old version with an old backup, beside production, touching nothing
of it.

``start`` renders production's compose files under the sandbox's own project name, refuses
(before anything starts) when the sandbox would share a volume, a network, a host folder, a
port or the project name with production, makes sure the image is on the target (rebuilt from
its manifest, or sent, saying so), writes the sandbox's compose file
(``<state>/sandboxes/<name>/compose.yaml``, see ``sandboxconfig``), brings it up, and restores
the backup into the sandbox's site. A failure after ``up`` removes the half-made sandbox.
``list_sandboxes`` reads the sandboxes from their containers' labels; ``down`` removes one with
its volumes and networks, and refuses a project that is not a sandbox.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import backuplist, benchsite, compose, composeconfig, sandboxconfig, send, verify
from frappe_imagekit.deploy.backuplist import Backup
from frappe_imagekit.deploy.engine import DEFAULT_ENGINE, Engine, Stack, open_engine
from frappe_imagekit.deploy.lastup import last_up_engine, parse_last_up
from frappe_imagekit.deploy.record import read_deploys, recorded_digest
from frappe_imagekit.deploy.sandboxconfig import SandboxLabels
from frappe_imagekit.deploy.send import ImageTransfer
from frappe_imagekit.deploy.sequence import DeployOptions, resolve_layout, state_paths
from frappe_imagekit.deploy.target import OnTarget, Target
from frappe_imagekit.envfile import parse_env_text
from frappe_imagekit.errors import ConfigError, DeployError, ImagekitError, NotFoundError, UsageError
from frappe_imagekit.runner import LocalRunner, Runner
from frappe_imagekit.workspace import Workspace

EventSink = Callable[[str], None]
RESTORE_DIR = "/tmp/imagekit-restore"  # in the sandbox's backend container (gone with it)


@dataclass
class SandboxOptions(OnTarget):
    """Which version with which backup beside production; ``where`` is production (the one
    ``Target`` value, deploy/target.py: project, compose files, env file, state folder, image
    variables, backend service ...; its fields read through)."""

    version: str
    backup: str  # a file on the target, or a name from `imagekit backups` (site@deploy-id)
    image: str  # the repository (from the build's manifest or IMAGE_NAME)
    where: Target = field(default_factory=Target)  # production's (project default: COMPOSE_PROJECT_NAME)
    site: str | None = None  # default: the sandbox's name
    port: int = sandboxconfig.DEFAULT_PORT
    name: str | None = None  # default: <project>-sandbox-<version>
    db_password_var: str = "DB_PASSWORD"  # the env file's variable with the database root password
    settle: float = field(default_factory=compose.settle_default)  # after up, as deploy's

    @classmethod
    def of(cls, version: str, backup: str, image: str, **flat: Any) -> SandboxOptions:
        """From the flat names of the target's fields (``project``, ``compose_files`` ...) and its own."""
        own = {k: flat.pop(k) for k in list(flat) if k in _OWN}
        transfer = ImageTransfer(flat.pop("source_docker_host", None))
        return cls(version, backup, image, Target(transfer=transfer, **flat), **own)

    @property
    def image_ref(self) -> str:
        return f"{self.image}:{self.version}"


_OWN = frozenset(f.name for f in fields(SandboxOptions)) - {"where", "version", "backup", "image"}


@dataclass
class SandboxReport:
    name: str
    project: str  # production's
    version: str
    image: str
    site: str
    backup: str  # the name or file given
    database: str  # the dump restored (path on the target)
    url: str
    created: str
    host: str
    compose_file: str  # the sandbox's own file, in the state folder
    image_rebuilt: bool = False
    image_sent: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sandbox:
    """A sandbox found on the target through its containers' labels."""

    name: str
    of: str
    version: str
    backup: str
    site: str
    url: str
    created: str
    containers: int
    running: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DownReport:
    name: str
    containers: list[str]
    volumes: list[str]
    networks: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- options


def check_options(opts: SandboxOptions) -> SandboxOptions:
    """``opts`` when every value can be used, else ``UsageError`` (exit 2) naming the option."""
    validate.image_tag(opts.version, "VERSION", UsageError)
    validate.image_name(opts.image, "the image name (IMAGE_NAME or the build's manifest)", UsageError)
    validate.not_an_option(opts.backup, "--backup", UsageError)
    if opts.name is not None:
        validate.project_name(opts.name, "--name", UsageError)
    if opts.site is not None:
        validate.site_name(opts.site, "--site", UsageError)
    if isinstance(opts.port, bool) or not isinstance(opts.port, int) or not 1 <= opts.port <= 65535:
        raise UsageError(f"--port must be a port number from 1 to 65535, not {opts.port!r}.")
    for name, what in ((opts.image_var, "--image-var"), (opts.tag_var, "--tag-var"),
                       (opts.db_password_var, "--db-password-var")):  # fmt: skip
        validate.env_name(name, what, UsageError)
    validate.service_name(opts.backend_service, "--backend-service", UsageError)
    for value, what in ((opts.env_file, "--env-file"), (opts.state_dir, "--state-dir")):
        if value is not None:
            validate.not_an_option(value, what, UsageError)
    return opts


def with_layout(runner: Runner, opts: SandboxOptions) -> SandboxOptions:
    """Production's project and compose files as deploy finds them (options, COMPOSE_*)."""
    files = opts.compose_files
    deploy = resolve_layout(runner, DeployOptions.of(
        project=opts.project, compose_file=files[0] if files else "", compose_overrides=files[1:],
        image=opts.image, version=opts.version, env_file=opts.env_file, state_dir=opts.state_dir,
    ))  # fmt: skip
    files = (deploy.compose_file, *deploy.compose_overrides)
    return replace(opts, where=replace(opts.where, project=deploy.project, compose_files=files))


def production_engine(runner: Runner, opts: SandboxOptions) -> Engine:
    """The engine production's last up ran on (last-up.json; none or unreadable: compose)."""
    text = runner.read_file(state_paths(runner, opts.project, opts.state_dir).last_up)
    try:
        name = last_up_engine(parse_last_up(text)) if text is not None else DEFAULT_ENGINE
    except (ValueError, ImagekitError):
        name = DEFAULT_ENGINE
    return open_engine(name, runner)


def sandbox_root(runner: Runner, state_dir: str | None) -> str:
    return f"{(state_dir or runner.state_home() + '/imagekit').rstrip('/')}/sandboxes"


# ---------------------------------------------------------------- start


@dataclass
class _Start:
    runner: Runner
    ws: Workspace
    opts: SandboxOptions
    report: SandboxReport
    emit: EventSink
    engine: Engine  # production's (the one its last up ran on)
    backup: Backup


def start(
    runner: Runner, ws: Workspace, opts: SandboxOptions, on_event: EventSink | None = None
) -> SandboxReport:
    """Start the sandbox and restore the backup into it; return where it is."""
    opts = with_layout(runner, check_options(opts))
    name = opts.name or sandboxconfig.sandbox_name(opts.project, opts.version)
    site = opts.site or sandboxconfig.site_for(name)
    _refuse_name(name, opts.project)
    engine = production_engine(runner, opts)
    backup = resolve_backup(runner, ws, opts)
    report = SandboxReport(
        name=name, project=opts.project, version=opts.version, image=opts.image_ref, site=site,
        backup=opts.backup, database=backup.database, url=sandboxconfig.url(opts.port),
        created=datetime.now(UTC).isoformat(timespec="seconds"), host=runner.host,
        compose_file=f"{sandbox_root(runner, opts.state_dir)}/{name}/compose.yaml",
    )  # fmt: skip
    run = _Start(runner, ws, opts, report, on_event or (lambda _line: None), engine, backup)
    data = _checked_config(run)
    _ensure_image(run)
    written = sandboxconfig.sandbox_config(data, _labels(report), opts.port, opts.backend_service)
    runner.write_file(report.compose_file, _dump(sandboxconfig.unset_secrets(written, _secrets(run))))
    try:
        _up(run, composeconfig.parse_config(json.dumps(data)))
        _restore(run)
    except (ImagekitError, KeyboardInterrupt):
        run.emit(f"removing the unfinished sandbox {name}")
        _remove(runner, name, report.compose_file, report.created)
        raise
    return report


def _labels(report: SandboxReport) -> SandboxLabels:
    return SandboxLabels(of=report.project, version=report.version, backup=report.backup,
                         site=report.site, url=report.url, created=report.created)  # fmt: skip


def resolve_backup(runner: Runner, ws: Workspace, opts: SandboxOptions) -> Backup:
    """``--backup``: a name from ``imagekit backups``, else a dump file on the target."""
    if backuplist.is_short_name(opts.backup):
        root = state_paths(runner, opts.project, opts.state_dir).root
        listing = backuplist.list_backups(runner, ws, root, opts.project)
        return backuplist.find(listing.backups, opts.backup)
    path = validate.not_an_option(opts.backup, "--backup", UsageError)
    if not path.endswith((".sql.gz", ".sql")):
        raise UsageError(
            f"--backup {path[:80]} is neither a backup name (<site>@<deploy id>) nor a database dump "
            "(*.sql.gz): `imagekit backups` lists the names."
        )
    if runner.run(["test", "-f", path], timeout=30).returncode != 0:
        raise NotFoundError(f"backup file {path} does not exist on {runner.host}: pass a dump that does.")
    return Backup(name=path, site="", deploy_id="", version=None, when="", database=path)


def _checked_config(run: _Start) -> dict[str, Any]:
    """Production's files rendered under the sandbox's name; every refusal raised here, before
    anything starts."""
    opts, report = run.opts, run.report
    _refuse_busy_port(run.runner, opts.port)
    env = {opts.image_var: opts.image, opts.tag_var: opts.version, "PULL_POLICY": "never"}
    stack = Stack(report.name, tuple(opts.compose_files), env_file=opts.env_file)
    data = run.engine.render(stack, env, untouched="nothing was started")
    _refuse_existing(run.runner, report.name, data)
    found = sandboxconfig.problems(data, report.name, opts.project)
    if found:
        raise ConfigError(" ".join(found) + " Nothing was started.")
    port = sandboxconfig.port_problem(data, opts.port)
    if port:
        raise UsageError(port)
    images = composeconfig.image_plan(composeconfig.parse_config(json.dumps(data)), opts.image, opts.version)
    verify.require_image_plan(images, opts.image_ref, [], opts.image_var, opts.tag_var)
    routes = sandboxconfig.proxy_routes(data)
    if routes:
        report.notes.append(
            f"reverse-proxy labels and variables removed ({', '.join(routes)[:300]}): the sandbox "
            f"answers on {report.url} only."
        )
    return data


def _refuse_name(name: str, production: str) -> None:
    if name == production:
        raise UsageError(
            f"the sandbox name {name} is the production project's: give another --name "
            "(the default is <project>-sandbox-<version>). Nothing was started."
        )


def _refuse_existing(runner: Runner, name: str, config: Mapping[str, Any]) -> None:
    """Refuse a name under which a container, volume or network exists (a stopped project
    counts): compose would take them over, and a failed start would remove them."""
    project = f"label={compose.PROJECT_LABEL}={name}"
    containers = _inspect(runner, _ids(runner, "ps", project))
    if containers and all(sandboxconfig.read_labels(_container_labels(c)) for c in containers):
        raise UsageError(
            f"the sandbox {name} already exists: remove it with `imagekit sandbox --down {name}` "
            "or give another --name."
        )
    taken = [f"container {n}" for n in _names(containers)]
    for kind in ("volume", "network"):
        keys = set((config.get(f"{kind}s") or {}).keys()) | ({"default"} if kind == "network" else set())
        wanted = {f"{name}_{key}" for key in keys}
        taken += [f"{kind} {n}" for n in _object_names(runner, kind) if n in wanted]
        taken += [f"{kind} {n}" for n in _object_names(runner, kind, "--filter", project)]
    if taken:
        shown = ", ".join(sorted(set(taken))[:5])
        raise UsageError(
            f"{name} is taken on {runner.host} ({shown}): a sandbox needs a name under which no "
            "container, volume or network exists; give another --name. Nothing was started."
        )


def _object_names(runner: Runner, kind: str, *filters: str) -> list[str]:
    done = runner.run(["docker", kind, "ls", *filters, "--format", "{{.Name}}"], timeout=60)
    if done.returncode != 0:
        raise DeployError(f"docker {kind} ls failed on {runner.host} ({_last(done)}); is docker running?")
    return done.stdout.split()


def _refuse_busy_port(runner: Runner, port: int) -> None:
    listed = runner.run(["docker", "ps", "--format", _PS_PORTS], timeout=60)
    holders = [line.split("\t") for line in listed.stdout.splitlines() if line.count("\t") == 2]
    holder = next((h for h in holders if port in sandboxconfig.ports_in_use([h[2]])), None)
    if holder is None and isinstance(runner, LocalRunner) and not _port_free(port):
        holder = ["a process of this machine"]
    if holder is not None:
        by = (
            holder[0]
            if len(holder) == 1
            else f"container {holder[0][:80]} of project {holder[1][:64] or '-'}"
        )
        raise UsageError(
            f"port {port} on 127.0.0.1 is in use on {runner.host} ({by}): pick another --port. "
            "Nothing was started."
        )


_PS_PORTS = '{{.Names}}\t{{.Label "com.docker.compose.project"}}\t{{.Ports}}'


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _dump(data: Mapping[str, Any]) -> bytes:
    import yaml

    text: str = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)
    return text.encode()


# ---------------------------------------------------------------- image


def _ensure_image(run: _Start) -> None:
    """The image on the target: there already, else rebuilt here from its manifest and/or sent."""
    runner, ref = run.runner, run.opts.image_ref
    if _present(runner, ref):
        return
    here = runner if isinstance(runner, LocalRunner) else LocalRunner(run.opts.source_docker_host)
    if not _present(here, ref):
        run.emit(f"{ref} is not on this machine: rebuilding it from its manifest (imagekit rebuild)")
        _rebuild(run)
        run.report.image_rebuilt = True
        run.report.notes.append(f"{ref} was rebuilt from builds/ (imagekit rebuild {run.opts.version}).")
    if not _present(runner, ref):
        _send(run)


def _rebuild(run: _Start) -> None:
    from frappe_imagekit.build import rebuild

    plan = rebuild.plan_rebuild(run.ws, run.opts.version, rebuild.RebuildOptions())
    rebuild.execute_rebuild(run.ws, plan, on_line=run.emit)


def _send(run: _Start) -> None:
    ref, runner = run.opts.image_ref, run.runner
    transfer = run.opts.where.transfer  # --transfer (deploy/send.py; default auto)
    digest = recorded_digest(read_deploys(run.ws).records, run.opts.version)
    send.send_image(runner, ref, transfer, run.emit, progress=False, digest=digest)
    run.report.image_sent = True
    run.report.notes.append(f"{ref} was sent to {runner.host}.")


def _present(runner: Runner, ref: str) -> bool:
    return runner.run(["docker", "image", "inspect", ref], timeout=60).returncode == 0


# ---------------------------------------------------------------- up and restore


def _up(run: _Start, config: composeconfig.RenderedConfig) -> None:
    name, file = run.report.name, run.report.compose_file
    run.emit(f"starting sandbox {name} ({run.opts.image_ref})")
    # the env file gives back the secrets the written file keeps as ${VAR} (unset_secrets)
    argv = run.engine.up_argv(Stack(name, (file,), env_file=_env_path(run)), orphans=False)
    done = run.runner.run(argv, timeout=run.opts.up_timeout + 60)
    if done.returncode != 0:
        raise DeployError(
            f"compose up of the sandbox failed: {_last(done)}; fix it and start the sandbox again."
        )
    oneshot = composeconfig.oneshot_services(config, run.opts.oneshot_services)
    run.engine.wait(name, oneshot, run.opts.up_timeout, settle=run.opts.settle)


def _restore(run: _Start) -> None:
    """Create the sandbox's site from the backup as frappe supports it: copy the dump (and files
    archives) into the backend, ``bench new-site S --source-sql DUMP`` (frappe v15's ``restore``
    needs an existing site: ``Site S does not exist!`` on a fresh stack, real-lab 07b), the
    backup's ``encryption_key`` into the new site's ``site_config.json``, then the files archives
    unpacked into the site's folder as frappe's ``extract_files`` does (no second import of the
    database by ``bench restore``, whose downgrade confirm would eat the password line: 65)."""
    backend = _backend(run)
    found = backup_files(run.runner, run.backup)
    inside = {
        kind: f"{RESTORE_DIR}/{path.rsplit('/', 1)[-1]}" for kind, path in found.items() if kind != "config"
    }
    for kind, dest in inside.items():
        _copy_in(run.runner, backend, found[kind], dest)
    if run.backup.sha256:
        _check_hash(run, backend, inside["database"])
    root = _root_password(run)
    run.emit(f"creating {run.report.site} from {run.report.backup} (bench new-site --source-sql)")
    argv = benchsite.new_site_argv(backend, run.report.site, source_sql=inside["database"])
    done = run.runner.run(argv, input_bytes=benchsite.new_site_stdin(root, new_admin_password()),
                          timeout=3600, on_stdout=run.emit)  # fmt: skip
    if done.returncode != 0:
        last = benchsite.last_words((done.stderr, done.stdout), (root,)) or f"exit status {done.returncode}"
        raise DeployError(restore_failure("bench new-site --source-sql", last, run.opts.db_password_var))
    key = encryption_key(run.runner.read_file(found["config"])) if "config" in found else None
    if key:
        _set_config_value(run, backend, "encryption_key", key)
    for kind in ("public", "private"):
        if kind in inside:
            _unpack_files(run, backend, inside[kind], kind)


def backup_files(runner: Runner, backup: Backup) -> dict[str, str]:
    """The backup's files on the target: ``database`` always; ``public``, ``private`` and
    ``config`` (``*-site_config_backup.json``) when it has them (a dump given as a file: the
    files frappe writes beside it, ``<stamp>-<site>-files.tar`` and so on, when they exist)."""
    found = {"database": backup.database}
    if backup.public_files:
        found["public"] = backup.public_files
    if backup.private_files:
        found["private"] = backup.private_files
    config = next((p for p in backup.others if p.endswith(CONFIG_SUFFIX)), None)
    if backup.deploy_id == "":  # a dump given by path: look beside it
        stem = backup.database.removesuffix(".gz").removesuffix(".sql").removesuffix("-database")
        beside = {
            "public": stem + "-files.tar",
            "private": stem + "-private-files.tar",
            "config": stem + CONFIG_SUFFIX,
        }
        for kind, path in beside.items():
            if runner.run(["test", "-f", path], timeout=30).returncode == 0:
                found[kind] = path
        return found
    if config:
        found["config"] = config
    return found


CONFIG_SUFFIX = "-site_config_backup.json"


def new_admin_password() -> str:
    """The new site's Administrator password: random, never printed nor stored (the restored
    database keeps the backup's own users)."""
    return secrets.token_urlsafe(24)


def restore_failure(step: str, last: str, password_var: str) -> str:
    """What to say when bench could not make the sandbox's site, naming the cause it printed."""
    if "Access denied for user" in last:
        cause = (f"the sandbox's database refused the root password: name the env file's variable "
                 f"that holds it with --db-password-var (now {password_var})")  # fmt: skip
    elif "does not exist" in last:
        cause = "the site is missing in the sandbox; this is a bug in imagekit, please report it"
    elif "already exists" in last:
        cause = "the sandbox's sites volume already had that site: give another --name or --site"
    else:
        cause = "check that the backup is a whole frappe database dump (`imagekit backups`)"
    return f"{step} of the backup into the sandbox failed ({last}); the sandbox was removed: {cause}."


def encryption_key(config_text: str | None) -> str | None:
    """The ``encryption_key`` of a site-config backup (a Fernet key: 44 URL-safe base64
    characters), or None when there is none or it is not one."""
    try:
        data = json.loads(config_text or "")
    except (ValueError, RecursionError):
        return None
    key = data.get("encryption_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and _FERNET_KEY.fullmatch(key) else None


_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")

# $1 the site's config file (relative to the bench): replaced by stdin, as frappe's user
_WRITE_CONFIG = r"""
cat > "$1.imagekit" && mv -f "$1.imagekit" "$1"
"""


def _set_config_value(run: _Start, container: str, key: str, value: str) -> None:
    """Set ``key`` in the sandbox site's ``site_config.json`` through stdin (never argv)."""
    path = f"sites/{run.report.site}/site_config.json"
    current = run.runner.run(["docker", "exec", container, "cat", path], timeout=60)
    try:
        data = json.loads(current.stdout) if current.returncode == 0 else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise DeployError(
            f"the sandbox's {path} is not a JSON object after new-site; the sandbox was removed."
        )
    text = json.dumps({**data, key: value}, indent=1, sort_keys=True)  # as frappe's update_site_config
    argv = ["docker", "exec", "-i", container, "sh", "-c", _WRITE_CONFIG, "write-config", path]
    if run.runner.run(argv, input_bytes=text.encode(), timeout=60).returncode != 0:
        raise DeployError(f"could not write {key} into the sandbox's {path}; the sandbox was removed.")
    run.emit(f"{key} of the backup's site config set in {run.report.site}")


# $1 the site's folder (relative to the bench), $2 the archive: frappe's extract_files
# (frappe/installer.py: `tar xf ARCHIVE --strip 2` in the site's folder;
# tests/fixtures/frappe-v15-lab/63-restore-other-site-dump-with-files)
_UNPACK = r"""
cd "$1" && exec tar -xf "$2" --strip-components 2
"""


def _unpack_files(run: _Start, container: str, archive: str, folder: str) -> None:
    """Unpack a files archive of the backup into the sandbox site's ``folder`` (public or
    private), its members checked first (``benchsite.archive_problem``)."""
    names = run.runner.run(["docker", "exec", container, "tar", "-tf", archive], timeout=600)
    listing = run.runner.run(["docker", "exec", container, "tar", "-tvf", archive], timeout=600)
    types = [line[:1] for line in listing.stdout.splitlines()]
    problem = (
        f"tar cannot read it ({_last(names)})"
        if names.returncode != 0 or listing.returncode != 0
        else benchsite.archive_problem(names.stdout.splitlines(), types, folder)
    )
    if problem:
        raise DeployError(
            f"the {folder} files archive of {run.report.backup} cannot go into the sandbox: {problem}; "
            "the sandbox was removed: pick a backup whose archives frappe wrote (imagekit backups)."
        )
    run.emit(f"unpacking the {folder} files of {run.report.backup} into {run.report.site}")
    argv = ["docker", "exec", container, "sh", "-c", _UNPACK, "unpack", f"sites/{run.report.site}", archive]
    done = run.runner.run(argv, timeout=3600)
    if done.returncode != 0:
        raise DeployError(
            f"unpacking the {folder} files into the sandbox failed ({_last(done)}); the sandbox was "
            "removed: check the disk space on the target."
        )


# $1 container, $2 path in it, $3 file on the target: copied as the container's user (readable by it)
_COPY_IN = r"""
exec docker exec -i "$1" sh -c 'mkdir -p "$(dirname "$1")" && cat > "$1"' copy-in "$2" < "$3"
"""


def _copy_in(runner: Runner, container: str, source: str, dest: str) -> None:
    done = runner.run(["sh", "-c", _COPY_IN, "copy-in", container, dest, source], timeout=3600)
    if done.returncode != 0:
        raise DeployError(f"could not copy {source} into the sandbox ({_last(done)}); check the file.")


def _check_hash(run: _Start, container: str, path: str) -> None:
    done = run.runner.run(["docker", "exec", container, "sha256sum", path], timeout=600)
    if done.stdout.split()[:1] != [run.backup.sha256]:
        raise DeployError(
            f"{run.backup.database} is not the file its deploy recorded (sha256 differs): it changed "
            "since; pick another backup (imagekit backups)."
        )


def _root_password(run: _Start) -> str:
    """The database root password from the env file's variable (for bench's prompt on stdin),
    or an empty answer when there is none."""
    if not run.opts.env_file:
        return ""
    text = run.runner.read_file(run.opts.env_file) or ""
    return benchsite.env_password(text, run.opts.env_file, run.opts.db_password_var)


def _env_path(run: _Start) -> str | None:
    """The env file compose read: --env-file, else the ``.env`` beside the first compose file
    (compose's default) when there is one."""
    if run.opts.env_file:
        return run.opts.env_file
    first = run.opts.compose_files[0] if run.opts.compose_files else ""
    beside = (first.rsplit("/", 1)[0] if "/" in first else ".") + "/.env"
    return beside if run.runner.read_file(beside) is not None else None


def _secrets(run: _Start) -> dict[str, str]:
    """The env file's secret-bearing values (the sandbox's compose file keeps them as ${VAR})."""
    path = _env_path(run)
    text = run.runner.read_file(path) if path else None
    if not text or not path:
        return {}
    return sandboxconfig.env_secrets(parse_env_text(text, path).values, (run.opts.db_password_var,))


def _backend(run: _Start) -> str:
    backend = run.engine.backend(run.report.name, run.opts.backend_service)
    if backend is not None:
        return backend.id
    raise DeployError(
        f"no running {run.opts.backend_service} container in the sandbox {run.report.name}; "
        "pass --backend-service naming the service that runs bench."
    )


# ---------------------------------------------------------------- list and down


def list_sandboxes(runner: Runner) -> list[Sandbox]:
    """Every sandbox on the target (containers labelled by imagekit), by name."""
    containers = _inspect(runner, _ids(runner, "ps", f"label={sandboxconfig.LABEL}"))
    found: dict[str, list[dict[str, Any]]] = {}
    for container in containers:
        project = _container_labels(container).get(compose.PROJECT_LABEL)
        if isinstance(project, str):
            found.setdefault(project, []).append(container)
    sandboxes = []
    for name, members in sorted(found.items()):
        labels = sandboxconfig.read_labels(_container_labels(members[0]))
        if labels is None or not _valid_project(name):
            continue
        running = sum(1 for c in members if (c.get("State") or {}).get("Status") == "running")
        sandboxes.append(Sandbox(name, labels.of, labels.version, labels.backup, labels.site,
                                 labels.url, labels.created, len(members), running))  # fmt: skip
    return sandboxes


def down(runner: Runner, name: str, state_dir: str | None = None) -> DownReport:
    """Remove the sandbox ``name`` with its volumes and networks; refuse anything else."""
    name = validate.project_name(name, "--down", UsageError)
    project = f"label={compose.PROJECT_LABEL}={name}"
    containers = _inspect(runner, _ids(runner, "ps", project))
    volumes = _inspect(runner, _ids(runner, "volume", project), "volume")
    networks = _inspect(runner, _ids(runner, "network", project), "network")
    everything = [(c, _container_labels(c)) for c in containers]
    everything += [(v, v.get("Labels") or {}) for v in (*volumes, *networks)]
    if not everything:
        raise NotFoundError(
            f"no sandbox named {name} on {runner.host}: `imagekit sandbox --list` lists them."
        )
    stamps = {labels.get(sandboxconfig.STAMP) for _, labels in everything}
    if any(labels.get(sandboxconfig.LABEL) in (None, "") for _, labels in everything) or len(stamps) != 1:
        raise UsageError(
            f"{name} is not a sandbox (not everything of that project carries imagekit's "
            f"{sandboxconfig.LABEL} label and one creation stamp): imagekit removes only "
            "sandboxes; nothing was removed."
        )
    file = f"{sandbox_root(runner, state_dir)}/{name}/compose.yaml"
    _remove(runner, name, file, str(stamps.pop()))
    return DownReport(name, sorted(_names(containers)), sorted(v.get("Name", "") for v in volumes),
                      sorted(n.get("Name", "") for n in networks))  # fmt: skip


def _remove(runner: Runner, name: str, file: str, created: str) -> None:
    """Remove the containers, volumes and networks of the project ``name`` that carry the
    sandbox's own label and creation stamp (nothing else, whatever the compose file says),
    then the sandbox's folder in the state folder."""
    mine = [f"label={compose.PROJECT_LABEL}={name}", f"label={sandboxconfig.STAMP}={created}"]
    for kind, rm in (("ps", ["rm", "-f", "-v"]), ("volume", ["volume", "rm", "-f"]),
                     ("network", ["network", "rm"])):  # fmt: skip
        ids = _ids(runner, kind, *mine)
        if ids:
            runner.run(["docker", *rm, *ids], timeout=120)
    runner.run(["rm", "-rf", "--", file.rsplit("/", 1)[0]], timeout=60)


def _ids(runner: Runner, kind: str, *label_filters: str) -> list[str]:
    filters = [arg for f in label_filters for arg in ("--filter", f)]
    argv = {
        "ps": ["docker", "ps", "-aq", "--no-trunc", *filters],
        "volume": ["docker", "volume", "ls", "-q", *filters],
        "network": ["docker", "network", "ls", "-q", "--no-trunc", *filters],
    }[kind]
    done = runner.run(argv, timeout=60)
    if done.returncode != 0:
        raise DeployError(f"`{shlex.join(argv)}` failed on {runner.host} ({_last(done)}); is docker running?")
    return [i for i in done.stdout.split() if validate.not_an_option(i, "an id docker printed", DeployError)]


def _inspect(runner: Runner, ids: Sequence[str], kind: str = "container") -> list[dict[str, Any]]:
    if not ids:
        return []
    base = {"container": ["docker", "inspect"], "volume": ["docker", "volume", "inspect"],
            "network": ["docker", "network", "inspect"]}[kind]  # fmt: skip
    done = runner.run([*base, *ids], timeout=60)
    try:
        data = json.loads(done.stdout) if done.stdout.strip() else []
    except json.JSONDecodeError:
        raise DeployError(f"docker {kind} inspect printed something that is not JSON.") from None
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _container_labels(container: Mapping[str, Any]) -> dict[str, Any]:
    labels = (container.get("Config") or {}).get("Labels") or {}
    return labels if isinstance(labels, dict) else {}


def _names(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(c.get("Name", "")).lstrip("/") for c in containers]


def _valid_project(name: str) -> bool:
    try:
        validate.project_name(name)
    except ImagekitError:
        return False
    return True


def _last(done: Any) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def add_site(
    runner: Runner,
    ws: Workspace,
    started: SandboxReport,
    opts: SandboxOptions,
    on_event: EventSink | None = None,
) -> None:
    """Restore ``opts.backup`` into one more site ``opts.site`` of the running sandbox ``started``
    (``imagekit rehearse``: one sandbox with every site). A public wrapper of ``_restore``; the
    caller removes the sandbox when it raises."""
    opts = check_options(opts)
    backup = resolve_backup(runner, ws, opts)
    report = replace(started, site=opts.site or started.site, backup=opts.backup, database=backup.database)
    engine = production_engine(runner, opts)
    _restore(_Start(runner, ws, opts, report, on_event or (lambda _line: None), engine, backup))
