"""frappe_docker's migrator service: waited for after ``up``, reported from its logs.

``overrides/compose.migrator.yaml`` adds a service that runs ``bench --site all migrate`` on every
start and restarts on failure. A second migrate started by imagekit beside it would meet the
migrate lock, so deploy waits for it instead (``docker logs -f`` until it exits), parses its
output like its own migrate, and stops it when it failed so that its restart policy does not run
migrate again unseen after deploy has exited.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.engine import Engine
from frappe_imagekit.errors import DeployError
from frappe_imagekit.runner import Runner

LineSink = Callable[[str], None]
WAIT_SECONDS = 3600.0  # a migrate of a large site takes many minutes


@dataclass(frozen=True)
class MigratorRun:
    service: str
    container: str  # its name
    exit_code: int
    restarts: int
    output: str  # stdout then stderr of its logs
    stopped: bool  # imagekit stopped it after a failure

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


def wait_for(
    engine: Engine, project: str, service: str, emit: LineSink, timeout: float = WAIT_SECONDS
) -> MigratorRun:
    """Follow the logs of ``service``'s container (as ``engine`` lists the project's services)
    until it exits; stop it if it failed."""
    runner = engine.runner
    container = _started(engine, project, service, min(timeout, 120))
    logs = runner.run(["docker", "logs", "-f", container.id], on_stdout=emit, on_stderr=emit, timeout=timeout)
    exit_code, restarts = _exit_state(runner, container)
    stopped = False
    if exit_code != 0:
        runner.run(["docker", "stop", "-t", "5", container.id], timeout=60)
        stopped = True
    return MigratorRun(service, container.name, exit_code, restarts, logs.stdout + logs.stderr, stopped)


def _started(engine: Engine, project: str, service: str, timeout: float) -> Container:
    deadline = time.monotonic() + timeout
    while True:
        for container in engine.services(project):
            if container.service == service and container.state != "created":
                return container
        if time.monotonic() > deadline:
            raise DeployError(
                f"the {service} service (migrate on start) did not start within {timeout:.0f}s; "
                f"check `docker logs` of it."
            )
        time.sleep(0.3)


def _exit_state(runner: Runner, container: Container) -> tuple[int, int]:
    for _ in range(50):  # `logs -f` can return a moment before the state is written
        done = runner.run(["docker", "inspect", container.id], timeout=30)
        data = json.loads(done.stdout)[0] if done.returncode == 0 else {}
        state = data.get("State") or {}
        restarts = int(data.get("RestartCount", 0))
        if state.get("Status") != "running" or restarts:  # restarted: it failed (on-failure)
            return int(state.get("ExitCode", 0)) or (1 if restarts else 0), restarts
        time.sleep(0.1)
    return 0, 0
