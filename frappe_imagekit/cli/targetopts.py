"""The options that say where a stack runs, written once for deploy, unlock, rollback, sandbox,
backups and rehearse (as pipx's ``add_pip_venv_args``), and the one helper that turns them (or a
named target of imagekit.toml) into a ``deploy.target.Target``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import typer

from frappe_imagekit import validate
from frappe_imagekit.cli.main import workspace_option
from frappe_imagekit.deploy.send import AUTO, ImageTransfer, transfer_method
from frappe_imagekit.deploy.sequence import open_runner
from frappe_imagekit.deploy.target import Connection, Target
from frappe_imagekit.errors import UsageError
from frappe_imagekit.runner import Runner
from frappe_imagekit.targets import check_identity, get_target

WORKSPACE_OPTION = workspace_option("Folder with .env, builds/ and deploys/.")
HOST_OPTION = typer.Option(None, "--host", help="user@server[:port]; run over SSH (default: this machine).")
KNOWN_HOSTS_OPTION = typer.Option(
    None, "--known-hosts", help="known_hosts file (default: the system and user files)."
)
IDENTITY_OPTION = typer.Option(None, "--identity", "-i", help="SSH private key file.")
SSH_CONFIG_OPTION = typer.Option(None, "--ssh-config", help="ssh config file (default ~/.ssh/config).")
DOCKER_HOST_OPTION = typer.Option(
    None, "--docker-host", help="DOCKER_HOST for the commands on the target (e.g. unix:///...)."
)
TRANSFER_OPTION = typer.Option(
    None,
    "--transfer",
    metavar="auto|registry|save",
    help="How an image the SSH target lacks gets there: registry (a local registry and an SSH "
    "tunnel: only missing layers, pulled by digest), save (docker save | docker load) or auto "
    "(default: registry when docker-registry is installed here).",
)
COMPOSE_OPTION = typer.Option(
    None,
    "--compose",
    "-f",
    metavar="FILE",
    help="Compose file on the target; repeat for overrides (default: COMPOSE_FILE).",
)
STATE_DIR_OPTION = typer.Option(
    None,
    "--state-dir",
    help="imagekit state folder on the target (default ~/.local/state/imagekit).",
)


@dataclass
class Where:
    """What the command line says about where the stack is; ``from_target`` fills the rest
    from a named target of imagekit.toml."""

    project: str = ""
    compose_file: list[str] | None = None
    host: str | None = None
    env_file: str | None = None
    sites: str | None = None
    backend_service: str | None = None
    up_timeout: float | None = None
    docker_host: str | None = None
    state_dir: str | None = None
    known_hosts: Path | str | None = None
    identity: Path | str | None = None
    ssh_config: Path | str | None = None
    engine: str | None = None  # --engine, else the target's (compose when neither says)
    transfer: str | None = None  # --transfer auto|registry|save (None: auto)


WHERE_KEYS = tuple(f.name for f in fields(Where))
_FROM_TARGET = ("host", "env_file", "backend_service", "up_timeout", "docker_host", "state_dir",
                "known_hosts", "identity", "ssh_config", "engine")  # fmt: skip


def from_target(root: Path, name: str | None, where: Where) -> Where:
    """``where`` with the named target's values where the command line gave none; a --project
    or --compose that differs from the target's is refused (a target's identity)."""
    if name is None:
        return where
    target = get_target(root, name)
    check_identity(target, where.project or None, where.compose_file or None)
    filled = replace(where, project=target.project, compose_file=list(target.compose))
    for key in _FROM_TARGET:
        if getattr(filled, key) is None:
            setattr(filled, key, getattr(target, key))
    if filled.sites is None and target.sites is not None:
        filled.sites = ",".join(target.sites)
    return filled


def check_connection_options(host: str | None, docker_host: str | None, version: str | None) -> None:
    """Usage errors (exit 2) for --host, --docker-host and --version before anything runs."""
    if host is not None:
        validate.host_spec(host, "--host", UsageError)
    if docker_host is not None:
        validate.not_an_option(docker_host, "--docker-host", UsageError)
    if version is not None:
        validate.image_tag(version, "--version", UsageError)


def connection(where: Where) -> Connection:
    return Connection(
        host=where.host,
        known_hosts=path_str(where.known_hosts),
        identity_file=path_str(where.identity),
        ssh_config=path_str(where.ssh_config),
        docker_host=where.docker_host,
        ssh_flags=ssh_flags(where.known_hosts, where.identity, where.ssh_config),
    )


def build_target(
    where: Where,
    *,
    name: str | None = None,
    repeat: tuple[tuple[str, str], ...] = (),
    image_var: str = "CUSTOM_IMAGE",
    tag_var: str = "CUSTOM_TAG",
    oneshot: tuple[str, ...] = ("configurator",),
    kill_first: tuple[str, ...] = ("websocket", "scheduler"),
) -> Target:
    """The one ``Target`` of a command line (after ``from_target``)."""
    return Target(
        project=where.project,
        compose_files=tuple(where.compose_file or ()),
        env_file=where.env_file,
        state_dir=where.state_dir,
        connection=connection(where),
        transfer=ImageTransfer(method=transfer_method(where.transfer or AUTO)),
        backend_service=where.backend_service or "backend",
        image_var=image_var,
        tag_var=tag_var,
        oneshot_services=oneshot,
        kill_first=kill_first,
        up_timeout=120 if where.up_timeout is None else where.up_timeout,
        name=name,
        repeat=repeat,
    )


def open_target_runner(target: Target) -> Runner:
    """The runner of ``target``'s connection, its --host and --docker-host checked first."""
    where = target.connection
    check_connection_options(where.host, where.docker_host, None)
    return open_runner(
        where.host,
        known_hosts=where.known_hosts,
        identity_file=where.identity_file,
        ssh_config=where.ssh_config,
        docker_host=where.docker_host,
    )


# options a printed imagekit command repeats as given: with a target, what overrode the target's
_REPEATED_WITH_TARGET = (("--host", "host"), ("--env-file", "env_file"), ("--state-dir", "state_dir"))
_REPEATED_SSH = (("--known-hosts", "known_hosts"), ("--identity", "identity"),
                 ("--ssh-config", "ssh_config"), ("--docker-host", "docker_host"),
                 ("--transfer", "transfer"))  # fmt: skip


def repeated_options(
    target: str | None, given: Where | Mapping[str, object], *, where: bool | None = None
) -> tuple[tuple[str, str], ...]:
    """The command line's options that printed ``imagekit deploy|rollback`` commands repeat:
    the SSH options (their files, on this machine, made absolute), and with a target (or
    ``where``) --host, --env-file and --state-dir as given (paths on the target)."""
    where = target is not None if where is None else where
    wanted = (*(_REPEATED_WITH_TARGET if where else ()), *_REPEATED_SSH)
    pairs = []
    for option, key in wanted:
        value = given.get(key) if isinstance(given, Mapping) else getattr(given, key)
        if value is None:
            continue
        pairs.append((option, os.path.abspath(value) if isinstance(value, Path) else str(value)))
    return tuple(pairs)


def ssh_flags(
    known_hosts: Path | str | None, identity: Path | str | None, ssh_config: Path | str | None
) -> tuple[str, ...]:
    """The deploy's SSH files as OpenSSH's options, for the printed ``ssh HOST '...'`` lines."""
    flags: list[str] = []
    if ssh_config:
        flags += ["-F", os.path.abspath(os.path.expanduser(ssh_config))]
    if identity:
        flags += ["-i", os.path.abspath(os.path.expanduser(identity))]
    if known_hosts:
        flags += ["-o", f"UserKnownHostsFile={os.path.abspath(os.path.expanduser(known_hosts))}"]
    return tuple(flags)


def parse_sites(sites: str | None) -> list[str] | None:
    if sites is None or sites.strip() == "all":
        return None
    return [s.strip() for s in sites.split(",") if s.strip()]


def path_str(path: Path | str | None) -> str | None:
    return str(path) if path else None
