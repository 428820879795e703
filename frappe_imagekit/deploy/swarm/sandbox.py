"""``imagekit sandbox`` of a swarm target: an old version as its own stack beside production
(issue 21 item 6), with the compose sandbox's isolation rules.

The version's image and data come from the newest swarm deploy that replaced it: the record
names the image it replaced by digest and each site's backup in production's sites volume.
``start`` renders production's compose files under the sandbox's name (a stack namespaces its
volumes and networks, so they are its own), refuses what the compose sandbox refuses (a writable
host folder, an external volume or network, a server outside the files), drops every published
port, labels everything (``io.imagekit.sandbox``) and makes the networks attachable; it deploys
the stack, runs the one-shot services as jobs, restores each site by a job on that digest (the
swarm rollback's restore, reading the dump from production's volume mounted read-only), and
starts the one way in: a plain container of the web service on the stack's network, published on
127.0.0.1 only (a swarm port binds every address). ``down`` removes that container, the stack,
then its volumes, and refuses a stack without the sandbox label.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import composeconfig, sandboxconfig
from frappe_imagekit.deploy.compose import detect_compose
from frappe_imagekit.deploy.sequence import state_paths
from frappe_imagekit.deploy.swarm import cli, deploy, records, rollout, stack, window
from frappe_imagekit.deploy.swarm.jobs import run_job
from frappe_imagekit.deploy.swarm.records import SiteBackup, SwarmRecord
from frappe_imagekit.errors import DeployError, ExitCode, NotFoundError, UsageError
from frappe_imagekit.runner import Runner

Emit = Callable[[str], None]
LABEL = sandboxconfig.LABEL  # on the stack's services, volumes and networks: the production stack
WEB_LABEL = "io.imagekit.swarm-sandbox"  # on the way-in container: the sandbox's name
WEB = "-way-in"  # the way-in container is NAME-way-in
PRODUCTION_SITES = "/ik-production-sites"  # production's sites volume in a restore job, read-only
SECRET_TARGET = "imagekit-db-root-password"
# $1 the dump (sites/SITE/private/backups/NAME-database.sql.gz in production's volume), $2 the site:
# its sha256 first; the site's folder made from the backup's site config (frappe v15's restore
# needs an existing site: tests/fixtures/frappe-v15-lab/50-restore-missing-site.txt), refused when
# that config names its own db_host (the restore would drop a database outside the sandbox); the
# dump copied in and restored (password on stdin), maintenance off (the backup was taken in it)
# $3 where production's volume is, $4 the password's file
_RESTORE = r"""set -e
p="$3/${1#sites/}"
echo "sha256 $(sha256sum "$p" | cut -d" " -f1)"
c="${p%-database.sql.gz}-site_config_backup.json"; [ -f "$c" ] || c="$3/$2/site_config.json"
if grep -q '"db_host"' "$c"; then echo "the site config names its own db_host: not restored"; exit 3; fi
mkdir -p "sites/$2/private/backups"; cp "$c" "sites/$2/site_config.json"; cp "$p" "sites/$2/private/backups/"
bench --site "$2" restore "sites/$2/private/backups/${p##*/}" < "$4"
bench --site "$2" set-maintenance-mode off
"""


@dataclass(frozen=True)
class SandboxSpec:
    production: deploy.SwarmOptions  # production's stack, files, env file, state folder
    version: str
    name: str | None = None  # default <stack>-sandbox-<version>
    port: int = sandboxconfig.DEFAULT_PORT
    up_timeout: float = 300


@dataclass
class SwarmSandbox:
    name: str
    production: str
    version: str
    ref: str
    deploy_id: str | None
    sites: list[str]
    url: str
    web: str  # the way-in container
    created: str
    host: str = "local"
    engine: str = records.ENGINE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(spec: SandboxSpec) -> SandboxSpec:
    """``spec`` when every value can be used, else ``UsageError`` (exit 2) naming the option;
    before anything connects."""
    prod = spec.production
    validate.project_name(prod.stack, "the production stack (--project)", UsageError)
    validate.image_tag(spec.version, "VERSION", UsageError)
    if spec.name is not None:
        validate.project_name(spec.name, "--name", UsageError)
    if isinstance(spec.port, bool) or not isinstance(spec.port, int) or not 1 <= spec.port <= 65535:
        raise UsageError(f"--port must be a port number from 1 to 65535, not {spec.port!r}.")
    validate.service_name(prod.backend_service, "--backend-service", UsageError)
    for value, what in ((prod.env_file, "--env-file"), (prod.state_dir, "--state-dir")):
        if value is not None:
            validate.not_an_option(value, what, UsageError)
    return spec


def choose(found: Sequence[SwarmRecord], stack_name: str, version: str) -> SwarmRecord:
    """The newest deploy that replaced ``version`` (its image by digest and backups of its data)."""
    for record in reversed(found):
        if record.previous_version == version and record.previous is not None and record.backups:
            return record
    raise NotFoundError(
        f"no swarm deploy of {stack_name} replaced {version} with a backup of its sites: a sandbox "
        "starts a version a later deploy replaced (`imagekit history` lists them); nothing was started."
    )


def refuse_shared(config: Mapping[str, Any], name: str, production: str) -> None:
    """The compose sandbox's rules on the rendered files: nothing shared with production."""
    found = sandboxconfig.problems(config, name, production)
    if found:
        raise UsageError(" ".join(found) + " Nothing was started.")


def sandbox_stack(stackfile: stack.StackFile, labels: Mapping[str, str]) -> stack.StackFile:
    """The stack of the sandbox (pure): no published port, every service, volume and network
    labelled, every network attachable (the way-in container joins the default one)."""
    data = json.loads(json.dumps(stackfile.data))
    for body in data["services"].values():
        body.pop("ports", None)
        body["labels"] = {**_labels(body.get("labels")), **labels}
        body["deploy"]["labels"] = {**_labels(body["deploy"].get("labels")), **labels}
    networks = data.setdefault("networks", {})
    networks.setdefault("default", {"driver": "overlay"})
    for entry in networks.values():
        entry.update(attachable=True, labels={**_labels(entry.get("labels")), **labels})
    for entry in data.get("volumes", {}).values():
        entry["labels"] = {**_labels(entry.get("labels")), **labels}
    return replace(stackfile, data=data)


def _labels(value: object) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list):
        return dict(str(item).partition("=")[::2] for item in value)
    return {}


def web_argv(
    name: str, stackfile: stack.StackFile, service: str, port: int, env_file: str | None
) -> list[str]:
    """``docker run -d`` of the web service on the stack's network, its port on 127.0.0.1 only
    (pure); its environment comes from ``env_file`` (never in argv)."""
    body = stackfile.data["services"][service]
    data = stackfile.data
    argv = [cli.DOCKER, "run", "-d", "--name", f"{name}{WEB}", "--label", f"{WEB_LABEL}={name}"]
    argv += [
        "--restart",
        "unless-stopped",
        "-p",
        f"127.0.0.1:{port}:{sandboxconfig.web_target(service, body)}",
    ]
    for network in stack.job_networks(name, body, data.get("networks", {})):
        argv += ["--network", validate.not_an_option(network, "a network name", DeployError)]
    for mount in stack.job_mounts(name, body, data.get("volumes", {})):
        argv += ["--mount", mount]
    argv += ["--env-file", env_file] if env_file else []
    words = deploy.words(body.get("entrypoint"))
    argv += ["--entrypoint", words[0]] if words else []
    image = validate.not_an_option(str(body.get("image")), "the web service's image", DeployError)
    return [*argv, image, *words[1:], *deploy.words(body.get("command"))]


def env_text(body: Mapping[str, Any]) -> str:
    """The service's environment as an env file (``--env-file``); a value with a line break
    cannot be given so and is refused."""
    env = body.get("environment") or {}
    pairs = env.items() if isinstance(env, dict) else (str(e).partition("=")[::2] for e in env)
    lines = []
    for key, value in pairs:
        if "\n" in f"{key}{value}":
            raise DeployError(
                f"the web service's variable {key[:40]} holds a line break: it cannot be passed."
            )
        lines.append(f"{key}={'' if value is None else value}")
    return "".join(line + "\n" for line in lines)


def restore_argv(backup: SiteBackup) -> list[str]:
    secret = f"/run/secrets/{SECRET_TARGET}"
    return ["sh", "-c", _RESTORE, "restore", backup.volume_path, backup.site, PRODUCTION_SITES, secret]


def production_sites(production: str, stackfile: stack.StackFile, backend: str) -> str:
    """The ``--mount`` of production's sites volume, read-only, for a restore job."""
    body = stackfile.data["services"][backend]
    for mount in stack.job_mounts(production, body, stackfile.data.get("volumes", {})):
        fields = dict(part.split("=", 1) for part in mount.split(","))
        if fields["target"].rstrip("/").endswith(stack.SITES_SUFFIX) and fields["type"] == "volume":
            return f"type=volume,source={fields['source']},target={PRODUCTION_SITES},readonly"
    raise UsageError(f"{backend} keeps its sites in no volume: the sandbox has no backup to read.")


# ---------------------------------------------------------------- start


@dataclass(frozen=True)
class _Plan:
    name: str
    chosen: SwarmRecord
    pin: stack.Pin
    config: dict[str, Any]  # what compose config printed, under the sandbox's name
    stackfile: stack.StackFile  # the sandbox's (sandbox_stack)
    backend: str
    production_sites: str  # the --mount of production's sites volume, read-only
    folder: str  # <state>/sandboxes: the stack file and the way in's env file, while they are used

    def place(self, node_id: str) -> window.Place:
        body, data = self.stackfile.data["services"][self.backend], self.stackfile.data
        mounts = stack.job_mounts(self.name, body, data.get("volumes", {}))
        networks = stack.job_networks(self.name, body, data.get("networks", {}))
        return window.Place(self.name, tuple(mounts), tuple(networks), node_id)


def plan(runner: Runner, spec: SandboxSpec, created: str) -> _Plan:
    """What the sandbox will be; every refusal comes here, before anything starts."""
    prod = spec.production
    root = state_paths(runner, prod.stack, prod.state_dir).root
    found = [r for _, r in records.read_state(runner, root) if isinstance(r, SwarmRecord)]
    chosen = choose(found, prod.stack, spec.version)
    assert chosen.previous is not None
    name = spec.name or sandboxconfig.sandbox_name(prod.stack, spec.version)
    pinned = chosen.previous
    opts = replace(prod, stack=name, image=pinned.repo, version=spec.version, digest=pinned.digest)
    env = deploy.image_env(opts)
    data = composeconfig.render_data(runner, detect_compose(runner), name, opts.files, env, opts.env_file)
    refuse_shared(data, name, prod.stack)
    oneshot = composeconfig.oneshot_services(composeconfig.parse_config(json.dumps(data)))
    rendered = stack.render_stack(data, f"{pinned.repo}:{spec.version}", pinned, oneshot)
    backend = prod.backend_service if prod.backend_service in rendered.pinned else rendered.pinned[0]
    if cli.stack_services(runner, name):
        raise UsageError(f"a stack named {name} runs already: remove it or give another --name.")
    labels = sandboxconfig.SandboxLabels(of=prod.stack, version=spec.version, backup=chosen.deploy_id or "",
                                         site=",".join(b.site for b in chosen.backups),
                                         url=sandboxconfig.url(spec.port), created=created)  # fmt: skip
    return _Plan(name, chosen, pinned, data, sandbox_stack(rendered, labels.as_dict()), backend,
                 production_sites(prod.stack, rendered, backend), f"{root}/sandboxes")  # fmt: skip


def start(runner: Runner, spec: SandboxSpec, password: str, emit: Emit) -> SwarmSandbox:
    """Start the sandbox; a failure (or an interrupt) after the checks removes what was made."""
    swarm = cli.swarm_here(runner)
    made = plan(runner, spec, datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        _deploy(runner, made.stackfile, made.name, made.folder, spec.up_timeout, emit)
        place = made.place(swarm.node_id)
        for service in made.stackfile.left_out:
            _oneshot(runner, place, made.config, service, made.pin.ref, emit)
        _restore_all(runner, place, made.chosen, made.production_sites, password, emit)
        _web(runner, made, spec.port, emit)
    except BaseException:
        emit(f"removing the unfinished sandbox {made.name}")
        remove(runner, made.name)
        raise
    sites = [b.site for b in made.chosen.backups]
    return SwarmSandbox(made.name, spec.production.stack, spec.version, made.pin.ref, made.chosen.deploy_id,
                        sites, sandboxconfig.url(spec.port), f"{made.name}{WEB}",
                        made.stackfile.data["services"][made.backend]["labels"][sandboxconfig.STAMP],
                        runner.host)  # fmt: skip


def _deploy(
    runner: Runner, sandbox: stack.StackFile, name: str, folder: str, timeout: float, emit: Emit
) -> None:
    services = sandbox.data["services"]
    image = str(services[sandbox.pinned[0]]["image"])
    want = rollout.Want(name, {f"{name}_{s}": image if s in sandbox.pinned else "" for s in services})
    runner.run(["mkdir", "-p", "-m", "700", folder], timeout=60)
    path = f"{folder}/{name}.stack.json"
    runner.write_file(path, sandbox.text().encode())
    emit(f"docker stack deploy {name} (sandbox, {len(want.services)} services)")
    try:
        cli.check(
            runner, cli.stack_deploy_argv(path, name, cli.needs_registry_auth(image)), "docker stack deploy"
        )
    finally:
        runner.run(["rm", "-f", path], timeout=60)
    rollout.wait_rollout(runner, want, set(), timeout)


def _oneshot(runner: Runner, place: window.Place, data: Mapping[str, Any], service: str, ref: str,
             emit: Emit) -> None:  # fmt: skip
    if service == "migrator" or service.endswith("migrate"):
        return
    emit(f"Running {service} as a job on {ref}")
    job = run_job(runner, place.job(service, ref, deploy.oneshot_argv(data, service)), timeout=600)
    if job.exit_code != 0:
        raise DeployError(f"the one-shot service {service} failed as a job (exit {job.exit_code}).",
                          ExitCode.DEPLOY_FAILED)  # fmt: skip


def _restore_all(runner: Runner, place: window.Place, chosen: SwarmRecord, prod_sites: str, password: str,
                 emit: Emit) -> None:  # fmt: skip
    """Each site from its backup, by a job on the old digest that checks the dump's sha256 first."""
    assert chosen.previous is not None
    secret = f"{place.stack}_ik-rootpw-{secrets.token_hex(3)}"
    done = runner.run([cli.DOCKER, "secret", "create", secret, "-"], input_bytes=f"{password}\n".encode(),
                      timeout=60)  # fmt: skip
    if done.returncode != 0:
        raise DeployError(
            f"the root password could not be given to docker as a secret ({done.stderr[-120:]})."
        )
    try:
        for backup in chosen.backups:
            emit(f"Restoring {backup.site} from {backup.volume_path} (job on {chosen.previous.ref})")
            spec = place.job("restore", chosen.previous.ref, restore_argv(backup), extra=[prod_sites])
            spec = replace(spec, secrets=(f"source={secret},target={SECRET_TARGET},mode=0400",))
            job = run_job(runner, spec, 3600)
            said = next(
                (line[7:].strip() for line in job.output.splitlines() if line.startswith("sha256 ")), ""
            )
            if said != backup.sha256 or job.exit_code != 0 or "has been restored" not in job.output:
                last = [line for line in job.output.splitlines() if line.strip()][-1:] or [job.state]
                why = (
                    "the backup in the volume is not the one imagekit copied; "
                    if said != backup.sha256
                    else ""
                )
                raise DeployError(f"restoring {backup.site} in the sandbox failed (exit {job.exit_code}): "
                                  f"{why}{last[0]}.", ExitCode.DEPLOY_FAILED)  # fmt: skip
    finally:
        runner.run([cli.DOCKER, "secret", "rm", secret], timeout=60)


def _web(runner: Runner, made: _Plan, port: int, emit: Emit) -> None:
    service = sandboxconfig.web_service(made.config, made.backend)
    text = env_text(made.stackfile.data["services"][service])
    env_file = f"{made.folder}/{made.name}.web.env" if text else None
    if env_file:
        runner.run(["sh", "-c", 'umask 077; : > "$1"', "env", env_file], timeout=60)
        runner.write_file(env_file, text.encode())
    emit(f"starting the way in: {service} on 127.0.0.1:{port}")
    try:
        argv = web_argv(made.name, made.stackfile, service, port, env_file)
        cli.check(runner, argv, "starting the sandbox's way in")
    finally:
        if env_file:
            runner.run(["rm", "-f", env_file], timeout=60)


# ---------------------------------------------------------------- list and down


def list_sandboxes(runner: Runner) -> list[dict[str, str]]:
    """The swarm sandboxes here, from their services' labels."""
    ids = cli.check(
        runner, [cli.DOCKER, "service", "ls", "-q", "--filter", f"label={LABEL}"], "docker service ls"
    )
    found: dict[str, dict[str, str]] = {}
    for service in _inspect(runner, "service", ids.split()):
        labels = _labels((service.get("Spec") or {}).get("Labels"))
        name = labels.get(cli.NAMESPACE, "")
        read = sandboxconfig.read_labels(labels)
        if name and read is not None:
            found.setdefault(name, {"name": name, **{k: str(v) for k, v in asdict(read).items()}})
    return [found[n] for n in sorted(found)]


def remove(runner: Runner, name: str, timeout: float = 120) -> dict[str, list[str]]:
    """The way-in container (with its anonymous volumes), the stack, then its volumes (once
    its containers are gone)."""
    web = runner.run(
        [cli.DOCKER, "ps", "-aq", "--filter", f"label={WEB_LABEL}={name}"], timeout=60
    ).stdout.split()
    if web:
        runner.run([cli.DOCKER, "rm", "-f", "-v", *web], timeout=60)
    runner.run([cli.DOCKER, "stack", "rm", name], timeout=120)
    namespace = f"label={cli.NAMESPACE}={name}"
    deadline = time.monotonic() + timeout
    volumes: list[str] = []
    while time.monotonic() < deadline:
        left = runner.run([cli.DOCKER, "ps", "-aq", "--filter", namespace], timeout=60).stdout.split()
        volumes = runner.run(
            [cli.DOCKER, "volume", "ls", "-q", "--filter", namespace], timeout=60
        ).stdout.split()
        if not left and (
            not volumes or runner.run([cli.DOCKER, "volume", "rm", *volumes], timeout=60).returncode == 0
        ):
            return {"containers": web, "volumes": volumes}
        time.sleep(0.5)
    raise DeployError(
        f"the sandbox {name} was removed but its volumes {', '.join(volumes)} are still in use."
    )


def down(runner: Runner, name: str) -> dict[str, list[str]]:
    """Remove the sandbox ``name``; refuse a stack that is not one."""
    name = validate.project_name(name, "--down", UsageError)
    ids = cli.check(runner, [cli.DOCKER, "service", "ls", "-q", "--filter", f"label={cli.NAMESPACE}={name}"],
                    "docker service ls").split()  # fmt: skip
    services = _inspect(runner, "service", ids)
    if not services:
        raise NotFoundError(
            f"no swarm stack named {name} runs here: `imagekit sandbox --list` names the sandboxes."
        )
    if any(LABEL not in _labels((s.get("Spec") or {}).get("Labels")) for s in services):
        raise UsageError(
            f"the stack {name} is not a sandbox of imagekit (no {LABEL} label): it was not removed."
        )
    return remove(runner, name)


def _inspect(runner: Runner, kind: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    text = cli.check(runner, [cli.DOCKER, kind, "inspect", *ids], f"docker {kind} inspect")
    data = json.loads(text) if text.strip().startswith("[") else []
    return [item for item in data if isinstance(item, dict)]


def down_line(argv: Sequence[str], name: str) -> str:
    return shlex.join([*argv, "--down", name])
