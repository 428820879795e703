"""docker compose on a runner: v2 or v1 detection, argv building, containers by label.

Containers are always found through the ``com.docker.compose.project`` label and read with
``docker inspect``, never by name (v1 names them ``erp_backend_1``, v2 ``erp-backend-1``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import LocalRunner, Runner

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
    restart_count: int = 0  # restarts by its restart policy since it was created

    @property
    def generation(self) -> tuple[str, int]:
        """This container in this run of it: a restart makes a new generation."""
        return self.id, self.restart_count

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
            restart_count=int(data.get("RestartCount") or 0),
        )


# This process's answers of detect_compose on this machine, by what decides them: docker-compose
# v1 is a Python program (0.6 s to start at idle, seconds under load), asked once per process.
_DETECTED: dict[tuple[object, ...], ComposeCLI] = {}


def detect_compose(runner: Runner) -> ComposeCLI:
    """Prefer compose v2 (``docker compose``), accept v1 (``docker-compose``); on this machine
    asked once per process for the same PATH, DOCKER_HOST and docker CLI plugins."""
    key = _probe_key(runner)
    if key is not None and key in _DETECTED:
        return _DETECTED[key]
    found = _probe(runner)
    if key is not None:
        _DETECTED[key] = found
    return found


def _probe_key(runner: Runner) -> tuple[object, ...] | None:
    """What the local answer depends on: the programs on PATH, the daemon, the plugins folder
    and config.json of the docker CLI. None for any other runner (SSH, a test's double)."""
    if type(runner) is not LocalRunner:
        return None
    env = {**os.environ, **runner.base_env}
    config = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return (env.get("PATH"), env.get("DOCKER_HOST"), _listing(os.path.join(config, "cli-plugins")),
            _stamp(os.path.join(config, "config.json")))  # fmt: skip


def _listing(folder: str) -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(folder)))
    except OSError:
        return ()


def _stamp(path: str) -> tuple[int, int]:
    """Size and mtime of ``path`` (never its text: config.json may hold registry credentials)."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, 0)
    return (stat.st_size, stat.st_mtime_ns)


def _probe(runner: Runner) -> ComposeCLI:
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


def up_args(cli: ComposeCLI, stop_timeout: int = 10) -> list[str]:
    # compose recreates exactly the services whose image or configuration changed (every
    # service of the new image: its id changed) and leaves MariaDB and Redis running; orphans of
    # an older file go too. No --force-recreate: it would stop the database as `down` does.
    # No --wait on v2: compose 2.26 fails `up --wait` when a one-shot service (frappe_docker's
    # configurator) exits 0, so wait_services does the waiting for v1 and v2 alike.
    return ["up", "-d", "--remove-orphans", "--timeout", str(stop_timeout)]


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


def remove_services(
    runner: Runner, project: str, services: Sequence[str], stop_timeout: int = 10
) -> list[str]:
    """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove the containers of
    ``services`` of ``project``; the services removed. Other services keep running."""
    targets = [c for c in service_containers(project_containers(runner, project)) if c.service in services]
    if not targets:
        return []
    ids = [c.id for c in targets]
    _check(runner.run(["docker", "stop", "--time", str(stop_timeout), *ids], timeout=stop_timeout + 60),
           runner, "docker stop")  # fmt: skip
    _check(runner.run(["docker", "rm", *ids], timeout=60), runner, "docker rm")
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


SETTLE = 3.0  # seconds a service must run without a restart before the wait accepts it


def settle_default() -> float:
    """``SETTLE``, read when deploy, rollback or sandbox options are made: the default of their
    ``settle``, which a test lowers for every in-process run of its own (tests/conftest.py)."""
    return SETTLE


def wait_services(
    runner: Runner,
    project: str,
    oneshot: Sequence[str],
    timeout: float,
    poll: float = 0.3,
    *,
    settle: float = SETTLE,
    before: Mapping[str, int] | None = None,
) -> list[Container]:
    """Wait until long-running services run (healthy if they have a healthcheck) and one-shot
    services exited 0; on a crash, a crash loop or a timeout raise with that service's last log lines.

    A container in a restart loop is ``running`` at moments (real-lab 01b: nginx failing on its
    config passed a one-look wait): each long-running container must keep running for ``settle``
    seconds without a restart, and a restart counted over the wait (``RestartCount`` rising, or
    status ``restarting``) fails it. ``before`` maps the ids of containers that ran before ``up``
    to their restart count then; a container not in it was created by this ``up`` (count 0).
    """
    watch = _RestartWatch(dict(before) if before is not None else None, settle)
    deadline = time.monotonic() + timeout
    while True:
        containers = service_containers(project_containers(runner, project))
        for container in containers:
            problem = watch.problem(container) or service_problem(container, container.service in oneshot)
            if problem:
                raise DeployError(_service_failure(runner, container, problem))
        waiting = [c for c in containers if not _settled(c, c.service in oneshot, watch)]
        if containers and not waiting:
            return containers
        if time.monotonic() > deadline:
            if not containers:
                raise DeployError(f"no container of project {project} started; check `up` output.")
            raise DeployError(_service_failure(runner, waiting[0], f"not ready after {timeout:.0f}s"))
        time.sleep(min(_next_look(waiting, oneshot, watch, poll), max(deadline - time.monotonic(), poll)))


def _settled(container: Container, oneshot: bool, watch: _RestartWatch) -> bool:
    return service_ready(container, oneshot) and (oneshot or watch.ran_long_enough(container))


def _next_look(
    waiting: Sequence[Container], oneshot: Sequence[str], watch: _RestartWatch, poll: float
) -> float:
    """Seconds to the next look: ``poll`` while a container starts; once every container waited
    for runs and only has to keep running, the settle time it has left (a restart meanwhile still
    shows at that look, in its restart count or its state, so looking more often finds nothing
    more: it only costs a ``docker ps`` and a ``docker inspect`` each time)."""
    if not all(service_ready(c, c.service in oneshot) for c in waiting):
        return poll
    return max([poll, *(watch.left(c) for c in waiting)])


class _RestartWatch:
    """Restarts of each container counted over a wait, and how long each has run unrestarted."""

    def __init__(self, before: dict[str, int] | None, settle: float) -> None:
        self.before = before
        self.settle = settle
        self.first: dict[str, int] = {}  # container id -> restart count when first seen
        self.running_since: dict[tuple[str, int], float] = {}
        self.started = time.monotonic()

    def problem(self, container: Container) -> str | None:
        base = self.first.setdefault(container.id, self._base(container))
        restarts = container.restart_count - base
        if restarts <= 0:
            return None
        took = time.monotonic() - self.started
        return (
            f"restarted {restarts} time{'s' if restarts > 1 else ''} in {took:.0f}s (a crash loop: its "
            f"restart policy starts it again each time it exits, last exit code {container.exit_code})"
        )

    def _base(self, container: Container) -> int:
        if self.before is None:
            return container.restart_count
        return self.before.get(container.id, 0)

    def ran_long_enough(self, container: Container) -> bool:
        if container.state != "running":
            return False
        since = self.running_since.setdefault(container.generation, time.monotonic())
        return time.monotonic() - since >= self.settle

    def left(self, container: Container) -> float:
        """Seconds ``container`` must still run unrestarted (``settle`` if not seen running)."""
        since = self.running_since.get(container.generation)
        return self.settle if since is None else max(0.0, self.settle - (time.monotonic() - since))


def restart_counts(containers: Sequence[Container]) -> dict[str, int]:
    """id -> restart count: what ``wait_services(before=...)`` compares with."""
    return {c.id: c.restart_count for c in containers}


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
