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
# its sha256 first; the site's folder made from the backup's site config (frappe's restore needs
# an existing site), the dump copied in, restored (password on stdin), maintenance off
_RESTORE = (
    "set -e; p=" + PRODUCTION_SITES + '/${1#sites/}; echo "sha256 $(sha256sum "$p" | cut -d" " -f1)"; '
    'c="${p%-database.sql.gz}-site_config_backup.json"; [ -f "$c" ] || c=' + PRODUCTION_SITES
    + '/$2/site_config.json; mkdir -p "sites/$2/private/backups"; cp "$c" "sites/$2/site_config.json"; '
    '[ -f sites/common_site_config.json ] || [ ! -f ' + PRODUCTION_SITES + "/common_site_config.json ] "
    "|| cp " + PRODUCTION_SITES + "/common_site_config.json sites/; "
    '[ ! -f ' + PRODUCTION_SITES + '/$2/apps.txt ] || cp ' + PRODUCTION_SITES + '/$2/apps.txt "sites/$2/"; '
    'cp "$p" "sites/$2/private/backups/"; '
    f'bench --site "$2" restore "sites/$2/private/backups/${{p##*/}}" < /run/secrets/{SECRET_TARGET}; '
    'bench --site "$2" set-maintenance-mode off'
)  # fmt: skip


@dataclass(frozen=True)
class SandboxSpec:
    production: deploy.SwarmOptions  # production's stack, files, env file, state folder
    version: str
    name: str | None = None  # default <stack>-sandbox-<version>
    port: int = sandboxconfig.DEFAULT_PORT
    db_password_var: str = "DB_PASSWORD"
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
    return ["sh", "-c", _RESTORE, "restore", backup.volume_path, backup.site]


def production_sites(production: str, stackfile: stack.StackFile, backend: str) -> str:
    """The ``--mount`` of production's sites volume, read-only, for a restore job."""
    body = stackfile.data["services"][backend]
    for mount in stack.job_mounts(production, body, stackfile.data.get("volumes", {})):
        fields = dict(part.split("=", 1) for part in mount.split(","))
        if fields["target"].rstrip("/").endswith(stack.SITES_SUFFIX) and fields["type"] == "volume":
            return f"type=volume,source={fields['source']},target={PRODUCTION_SITES},readonly"
    raise UsageError(f"{backend} keeps its sites in no volume: the sandbox has no backup to read.")


# ---------------------------------------------------------------- start


def start(runner: Runner, spec: SandboxSpec, password: str, emit: Emit) -> SwarmSandbox:
    """Start the sandbox; a failure after the stack deploy removes what was made."""
    prod = spec.production
    swarm = cli.swarm_here(runner)
    root = state_paths(runner, prod.stack, prod.state_dir).root
    chosen = choose([r for _, r in records.read_state(runner, root) if isinstance(r, SwarmRecord)],
                    prod.stack, spec.version)  # fmt: skip
    assert chosen.previous is not None
    name = spec.name or sandboxconfig.sandbox_name(prod.stack, spec.version)
    pinned = chosen.previous
    opts = replace(prod, stack=name, image=pinned.repo, version=spec.version, digest=pinned.digest)
    data = composeconfig.render_data(runner, detect_compose(runner), name, opts.files,
                                     deploy.image_env(opts), opts.env_file)  # fmt: skip
    refuse_shared(data, name, prod.stack)
    oneshot = composeconfig.oneshot_services(composeconfig.parse_config(json.dumps(data)))
    rendered = stack.render_stack(data, f"{pinned.repo}:{spec.version}", pinned, oneshot)
    backend = prod.backend_service if prod.backend_service in rendered.pinned else rendered.pinned[0]
    prod_sites = production_sites(prod.stack, rendered, backend)
    if cli.stack_services(runner, name):
        raise UsageError(f"a stack named {name} runs already: remove it or give another --name.")
    made = SwarmSandbox(name, prod.stack, spec.version, pinned.ref, chosen.deploy_id,
                        [b.site for b in chosen.backups], sandboxconfig.url(spec.port), f"{name}{WEB}",
                        datetime.now(UTC).isoformat(timespec="seconds"), runner.host)  # fmt: skip
    labels = sandboxconfig.SandboxLabels(
        of=prod.stack,
        version=spec.version,
        backup=chosen.deploy_id or "",
        site=",".join(made.sites),
        url=made.url,
        created=made.created,
    )
    sandbox = sandbox_stack(rendered, labels.as_dict())
    try:
        _deploy(runner, sandbox, name, f"{root}/sandboxes", spec.up_timeout, emit)
        place = window.Place(
            name,
            tuple(stack.job_mounts(name, sandbox.data["services"][backend], sandbox.data.get("volumes", {}))),
            tuple(
                stack.job_networks(name, sandbox.data["services"][backend], sandbox.data.get("networks", {}))
            ),
            swarm.node_id,
        )
        for service in sandbox.left_out:
            _oneshot(runner, place, data, service, pinned.ref, emit)
        _restore_all(runner, place, chosen, prod_sites, password, emit)
        _web(runner, sandbox, name, data, backend, spec.port, f"{root}/sandboxes", emit)
    except BaseException:
        emit(f"removing the unfinished sandbox {name}")
        remove(runner, name)
        raise
    return made


def _deploy(
    runner: Runner, sandbox: stack.StackFile, name: str, folder: str, timeout: float, emit: Emit
) -> None:
    ref = next(iter(sandbox.pinned))
    want = rollout.Want(name, {f"{name}_{s}": sandbox.data["services"][s]["image"] if s in sandbox.pinned
                               else "" for s in sandbox.data["services"]})  # fmt: skip
    runner.run(["mkdir", "-p", "-m", "700", folder], timeout=60)
    path = f"{folder}/{name}.stack.json"
    runner.write_file(path, sandbox.text().encode())
    emit(f"docker stack deploy {name} (sandbox, {len(want.services)} services)")
    try:
        image = str(sandbox.data["services"][ref]["image"])
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


def _web(runner: Runner, sandbox: stack.StackFile, name: str, data: Mapping[str, Any], backend: str,
         port: int, folder: str, emit: Emit) -> None:  # fmt: skip
    service = sandboxconfig.web_service(data, backend)
    text = env_text(sandbox.data["services"][service])
    env_file = f"{folder}/{name}.web.env" if text else None
    if env_file:
        runner.run(["sh", "-c", 'umask 077; : > "$1"', "env", env_file], timeout=60)
        runner.write_file(env_file, text.encode())
    emit(f"starting the way in: {service} on 127.0.0.1:{port}")
    try:
        cli.check(runner, web_argv(name, sandbox, service, port, env_file), "starting the sandbox's way in")
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
    """The way-in container, the stack, then its volumes (once its containers are gone)."""
    web = runner.run(
        [cli.DOCKER, "ps", "-aq", "--filter", f"label={WEB_LABEL}={name}"], timeout=60
    ).stdout.split()
    if web:
        runner.run([cli.DOCKER, "rm", "-f", *web], timeout=60)
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
