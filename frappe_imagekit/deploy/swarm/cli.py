"""What imagekit says to ``docker`` about a swarm, and how it reads the answers.

Every command is an argv built here (what a dry run prints is what runs); every answer is read
with ``--format '{{json .}}'`` into a small dataclass, its names checked before they are used.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError, ExitCode
from frappe_imagekit.runner import Runner

DOCKER = "docker"
JSON = "{{json .}}"
NAMESPACE = "com.docker.stack.namespace"
JOB_LABEL = "io.imagekit.job"
LOG_TAIL = 20


@dataclass(frozen=True)
class ServiceRow:
    id: str
    name: str
    image: str
    replicas: str  # "2/2"


@dataclass(frozen=True)
class TaskRow:
    id: str
    name: str
    image: str
    desired: str  # Running | Shutdown | Complete
    current: str  # "Running 5 seconds ago", "Failed 2 seconds ago"
    error: str

    @property
    def state(self) -> str:
        return self.current.split(" ", 1)[0].lower()


def swarm_state_argv() -> list[str]:
    return [
        DOCKER,
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}",
    ]


def node_ls_argv() -> list[str]:
    return [DOCKER, "node", "ls", "--format", "{{.ID}}"]


def needs_registry_auth(image: str) -> bool:
    """Whether the nodes need the client's registry login to pull ``image``: any registry but
    one on a loopback address (imagekit's own, transfer/registry.py, which has no login); Docker
    Hub (no registry host in the name) too, since the repository may be private."""
    first, slash, _ = image.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return True  # Docker Hub
    host = first.rsplit(":", 1)[0] if not first.endswith("]") else first
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True


def stack_deploy_argv(file: str, stack: str, registry_auth: bool = False) -> list[str]:
    """``docker stack deploy``; ``registry_auth``: ``--with-registry-auth`` (the client's login
    for the image's registry goes to the swarm's agents, read from its config, never in argv)."""
    auth = ["--with-registry-auth"] if registry_auth else []
    return [
        DOCKER,
        "stack",
        "deploy",
        *auth,
        "-c",
        file,
        validate.project_name(stack, "the stack name", DeployError),
    ]


def service_ls_argv(stack: str) -> list[str]:
    return [DOCKER, "service", "ls", "--filter", f"label={NAMESPACE}={stack}", "--format", JSON]


def service_ps_argv(services: Sequence[str]) -> list[str]:
    return [DOCKER, "service", "ps", "--no-trunc", "--format", JSON, *services]


def service_logs_argv(service: str, tail: int | None = None, timestamps: bool = False) -> list[str]:
    extra = [*(["--tail", str(tail)] if tail else []), *(["--timestamps"] if timestamps else [])]
    return [DOCKER, "service", "logs", "--raw", "--no-task-ids", *extra, service]


def service_rm_argv(services: Sequence[str]) -> list[str]:
    return [DOCKER, "service", "rm", *services]


def task_exit_argv(task_id: str) -> list[str]:
    return [DOCKER, "inspect", "--format", "{{.Status.ContainerStatus.ExitCode}}", task_id]


def check(runner: Runner, argv: Sequence[str], what: str, timeout: float = 120) -> str:
    """Run ``argv``; its stdout, or a DeployError naming ``what`` and docker's last line."""
    done = runner.run(argv, timeout=timeout)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DeployError(f"{what} failed: {lines[-1] if lines else done.returncode}", ExitCode.DEPLOY_FAILED)
    return done.stdout


@dataclass(frozen=True)
class Swarm:
    node_id: str
    nodes: int


def swarm_here(runner: Runner) -> Swarm:
    """The swarm this docker manages; refuse a daemon that is no swarm manager."""
    words = check(runner, swarm_state_argv(), "docker info").split()
    if len(words) < 3 or words[0] != "active" or words[1] != "true":
        raise DeployError(
            "this docker daemon is not a swarm manager: run `docker swarm init` there, or point "
            "the target's docker_host at a manager; nothing was changed.",
            ExitCode.DEPLOY_FAILED,
        )
    nodes = check(runner, node_ls_argv(), "docker node ls").split()
    return Swarm(words[2], len(nodes))


def _rows(text: str) -> list[dict[str, object]]:
    rows = []
    for line in text.splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DeployError(f"docker printed a line that is not JSON: {line[:120]!r}") from None
            if isinstance(row, dict):
                rows.append(row)
    return rows


def parse_services(text: str) -> list[ServiceRow]:
    return [
        ServiceRow(
            str(r.get("ID", "")), _name(r.get("Name")), str(r.get("Image", "")), str(r.get("Replicas", ""))
        )
        for r in _rows(text)
    ]


def parse_tasks(text: str) -> list[TaskRow]:
    return [
        TaskRow(
            str(r.get("ID", "")),
            str(r.get("Name", "")),
            str(r.get("Image", "")),
            str(r.get("DesiredState", "")),
            str(r.get("CurrentState", "")),
            str(r.get("Error", "")).strip('"'),
        )  # fmt: skip
        for r in _rows(text)
    ]


def _name(value: object) -> str:
    return validate.service_name(value, "a swarm service name", DeployError)


def stack_services(runner: Runner, stack: str) -> list[ServiceRow]:
    return parse_services(check(runner, service_ls_argv(stack), "docker service ls"))


def tasks(runner: Runner, services: Sequence[str]) -> list[TaskRow]:
    if not services:
        return []
    return parse_tasks(check(runner, service_ps_argv(services), "docker service ps"))


def last_logs(runner: Runner, service: str, tail: int = LOG_TAIL) -> list[str]:
    done = runner.run(service_logs_argv(service, tail), timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()][-tail:]


def network_create_argv(stack: str, name: str) -> list[str]:
    """An overlay network as ``stack deploy`` would make it (same name and namespace label), so
    a job can join it before the stack's first deploy; stack deploy then keeps it."""
    return [DOCKER, "network", "create", "--driver", "overlay", "--label", f"{NAMESPACE}={stack}", name]


def ensure_networks(runner: Runner, stack: str, networks: Sequence[str]) -> None:
    for name in networks:
        if (
            name.startswith(f"{stack}_")
            and runner.run([DOCKER, "network", "inspect", name], timeout=60).returncode
        ):
            check(runner, network_create_argv(stack, name), f"creating the network {name}")
