"""docker compose on a runner: v2 or v1 detection, argv building, containers by label.

Containers are always found through the ``com.docker.compose.project`` label and read with
``docker inspect``, never by name (v1 names them ``erp_backend_1``, v2 ``erp-backend-1``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import Runner

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
ONEOFF_LABEL = "com.docker.compose.oneoff"
LOG_TAIL = 20


@dataclass(frozen=True)
class ComposeCLI:
    """Which compose the target has: ``docker compose`` (v2) or ``docker-compose`` (v1)."""

    base: tuple[str, ...]
    version: str

    @property
    def is_v2(self) -> bool:
        return self.base == ("docker", "compose")


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    service: str
    state: str  # created | running | restarting | exited | dead | ...
    exit_code: int
    health: str | None  # None when the service defines no healthcheck
    config_files: str
    working_dir: str
    oneoff: bool

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> Container:
        labels = (data.get("Config") or {}).get("Labels") or {}
        state = data.get("State") or {}
        health = state.get("Health") or {}
        return cls(
            id=data["Id"],
            name=data.get("Name", "").lstrip("/"),
            service=labels.get(SERVICE_LABEL, ""),
            state=state.get("Status", "unknown"),
            exit_code=int(state.get("ExitCode", 0)),
            health=health.get("Status"),
            config_files=labels.get(CONFIG_FILES_LABEL, ""),
            working_dir=labels.get(WORKING_DIR_LABEL, ""),
            oneoff=labels.get(ONEOFF_LABEL, "False") == "True",
        )


def detect_compose(runner: Runner) -> ComposeCLI:
    """Prefer compose v2 (``docker compose``), accept v1 (``docker-compose``)."""
    for base in (("docker", "compose"), ("docker-compose",)):
        done = runner.run([*base, "version", "--short"], timeout=30)
        if done.returncode == 0 and done.stdout.strip():
            return ComposeCLI(base, done.stdout.strip().splitlines()[-1].lstrip("v"))
    raise DeployError(
        f"neither `docker compose` nor `docker-compose` works on {runner.host}; "
        "install the compose plugin (v2) or docker-compose (v1) there."
    )


def compose_argv(
    cli: ComposeCLI,
    project: str,
    files: Sequence[str],
    *args: str,
    project_dir: str | None = None,
    env_file: str | None = None,
) -> list[str]:
    """``<compose> -p P [--project-directory D] -f F... [--env-file E] ARGS``.

    ``project`` must be a name compose uses unchanged (v1 lowercases ``ERP`` to ``erp``, and
    imagekit would then wait for containers labelled ``ERP`` that never appear).
    """
    validate.project_name(project, "the compose project name")
    argv = [*cli.base, "-p", project]
    if project_dir:
        argv += ["--project-directory", project_dir]
    for path in files:
        argv += ["-f", path]
    if env_file:
        argv += ["--env-file", env_file]
    return argv + list(args)


def up_args(cli: ComposeCLI) -> list[str]:
    # Recreate (never restart) after an image change; orphans of an older file go too.
    # No --wait on v2: compose 2.26 fails `up --wait` when a one-shot service (frappe_docker's
    # configurator) exits 0, so wait_services does the waiting for v1 and v2 alike.
    return ["up", "-d", "--force-recreate", "--remove-orphans"]


def down_args(cli: ComposeCLI, stop_timeout: int = 10) -> list[str]:
    return ["down", "--remove-orphans", "--timeout", str(stop_timeout)]


def ps_command(project: str) -> list[str]:
    """argv that lists the ids of every container of ``project`` (by label, running or not)."""
    return ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={project}"]


def inspect_command(ids: Sequence[str]) -> list[str]:
    return ["docker", "inspect", *ids]


def kill_command(ids: Sequence[str]) -> list[str]:
    return ["docker", "kill", "--signal", "KILL", *ids]


def logs_command(container_id: str, tail: int = LOG_TAIL) -> list[str]:
    return ["docker", "logs", "--tail", str(tail), container_id]


def kill_services(runner: Runner, project: str, services: Sequence[str]) -> list[str]:
    """SIGKILL the running containers of ``services`` of ``project``; the services killed.

    For services whose PID 1 ignores SIGTERM and that hold no state (frappe_docker's websocket,
    `node socketio.js`, and scheduler, `bench schedule`): `down` would wait out the stop timeout
    for them while the site is already down.
    """
    targets = [
        c for c in project_containers(runner, project) if c.service in services and c.state == "running"
    ]
    if not targets:
        return []
    done = runner.run(kill_command([c.id for c in targets]), timeout=60)
    _check(done, runner, "docker kill")
    return sorted({c.service for c in targets})


def project_containers(runner: Runner, project: str) -> list[Container]:
    """Every container of ``project`` (running or not), found by its compose label."""
    listed = runner.run(ps_command(project), timeout=60)
    _check(listed, runner, "docker ps")
    ids = listed.stdout.split()
    if not ids:
        return []
    inspected = runner.run(inspect_command(ids), timeout=60)
    if inspected.returncode != 0:  # a container went away between ps and inspect
        return project_containers(runner, project) if "No such" in inspected.stderr else []
    return [Container.from_inspect(item) for item in json.loads(inspected.stdout)]


def service_containers(containers: Sequence[Container]) -> list[Container]:
    """Containers of the project's services (not ``compose run`` one-offs)."""
    return [c for c in containers if not c.oneoff]


def container_logs(runner: Runner, container: Container, tail: int = LOG_TAIL) -> list[str]:
    done = runner.run(logs_command(container.id, tail), timeout=30)
    return (done.stdout + done.stderr).splitlines()[-tail:]


def wait_gone(runner: Runner, project: str, timeout: float, poll: float = 0.3) -> None:
    """Wait until no container of ``project`` remains."""
    deadline = time.monotonic() + timeout
    while True:
        left = project_containers(runner, project)
        if not left:
            return
        if time.monotonic() > deadline:
            names = ", ".join(sorted(c.name for c in left))
            raise DeployError(
                f"containers of project {project} still exist {timeout:.0f}s after down: {names}; "
                "stop them with `docker rm -f` and deploy again."
            )
        time.sleep(poll)


def service_problem(container: Container, oneshot: bool) -> str | None:
    """Why ``container`` has failed, or None (it may still be starting)."""
    if container.state in {"exited", "dead"}:
        if oneshot and container.exit_code == 0:
            return None
        return f"exited with code {container.exit_code}"
    if container.state == "restarting":
        return f"is restarting (last exit code {container.exit_code})"
    if container.health == "unhealthy":
        return "is unhealthy"
    return None


def service_ready(container: Container, oneshot: bool) -> bool:
    if oneshot:
        return container.state == "exited" and container.exit_code == 0
    return container.state == "running" and container.health in (None, "healthy")


def wait_services(
    runner: Runner,
    project: str,
    oneshot: Sequence[str],
    timeout: float,
    poll: float = 0.3,
) -> list[Container]:
    """Wait until long-running services run (healthy if they have a healthcheck) and one-shot
    services exited 0; on a crash or timeout raise with that service's last log lines."""
    deadline = time.monotonic() + timeout
    while True:
        containers = service_containers(project_containers(runner, project))
        for container in containers:
            problem = service_problem(container, container.service in oneshot)
            if problem:
                raise DeployError(_service_failure(runner, container, problem))
        waiting = [c for c in containers if not service_ready(c, c.service in oneshot)]
        if containers and not waiting:
            return containers
        if time.monotonic() > deadline:
            if not containers:
                raise DeployError(f"no container of project {project} started; check `up` output.")
            raise DeployError(_service_failure(runner, waiting[0], f"not ready after {timeout:.0f}s"))
        time.sleep(poll)


def _service_failure(runner: Runner, container: Container, problem: str) -> str:
    logs = container_logs(runner, container)
    shown = "\n    ".join(logs) if logs else "(no log output)"
    return (
        f"service {container.service} ({container.name}) {problem}; its last log lines:\n"
        f"    {shown}\nfix the service and deploy again."
    )


def _check(done: Completed, runner: Runner, what: str) -> None:
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DeployError(
            f"`{what}` failed on {runner.host}: {detail[-1] if detail else done.returncode}; "
            "is docker installed and the daemon running there?"
        )
