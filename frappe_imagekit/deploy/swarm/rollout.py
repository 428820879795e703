"""Wait for a stack deploy: every service up on its image, or the first failure, named.

Debian 12's docker CLI has no ``--detach=false`` for ``stack deploy``, so imagekit polls
``docker service ls/ps``. A service is up when as many tasks run as it wants replicas, every one
on the image the stack file gave it (the Frappe services: the pinned digest), and it stays so for
``steady`` seconds. A task of this rollout that failed, was rejected, or ended although its
service keeps running is a restart: the rollout fails naming the service, the task's error and
its last log lines.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from frappe_imagekit.deploy.swarm import cli
from frappe_imagekit.errors import DeployError, ExitCode
from frappe_imagekit.runner import Runner

FAILED = frozenset({"failed", "rejected", "complete", "orphaned"})


@dataclass(frozen=True)
class Want:
    stack: str
    services: Mapping[str, str]  # full service name -> the image its tasks must run ("" any)


def task_ids(runner: Runner, want: Want) -> set[str]:
    """Tasks that exist before the rollout (their endings are not this rollout's)."""
    known = {s.name for s in cli.stack_services(runner, want.stack)}
    return {t.id for t in cli.tasks(runner, sorted(known & set(want.services)))}


def problem(
    want: Want, rows: Sequence[cli.ServiceRow], tasks: Sequence[cli.TaskRow], before: set[str]
) -> str | None:
    """The first failed task of this rollout, as ``service: error``; None when none failed."""
    for task in tasks:
        if task.id not in before and task.state in FAILED:
            service = task.name.split(".", 1)[0]
            if service in want.services:
                return f"{service}: task {task.state} ({task.error or task.current})"
    return None


def ready(want: Want, rows: Sequence[cli.ServiceRow], tasks: Sequence[cli.TaskRow]) -> list[str]:
    """The services not up yet (empty: all up on their images)."""
    wanted = {r.name: _replicas(r.replicas) for r in rows}
    waiting = []
    for service, image in sorted(want.services.items()):
        running = [t for t in tasks if t.name.split(".", 1)[0] == service and t.desired == "Running"]
        up = [t for t in running if t.state == "running" and (not image or t.image == image)]
        if service not in wanted or len(up) < wanted[service] or len(up) != len(running):
            waiting.append(service)
    return waiting


def _replicas(text: str) -> int:
    wanted = text.split("(", 1)[0].split("/")[-1].strip()
    return int(wanted) if wanted.isdigit() else 1


def wait_rollout(
    runner: Runner, want: Want, before: set[str], timeout: float, steady: float = 3.0, poll: float = 1.0
) -> None:
    """Poll until every wanted service is up for ``steady`` seconds; raise on a failure or timeout."""
    deadline = time.monotonic() + timeout
    up_since: float | None = None
    while True:
        rows = [r for r in cli.stack_services(runner, want.stack) if r.name in want.services]
        tasks = cli.tasks(runner, [r.name for r in rows])
        failed = problem(want, rows, tasks, before)
        if failed:
            raise _failure(runner, failed)
        waiting = ready(want, rows, tasks)
        now = time.monotonic()
        up_since = (up_since or now) if not waiting else None
        if up_since is not None and now - up_since >= steady:
            return
        if now > deadline:
            raise DeployError(
                f"the stack was not up within {timeout:.0f}s: {', '.join(waiting) or 'unsteady'} not running "
                "on the new image; see `docker service ps` of them.",
                ExitCode.DEPLOY_FAILED,
            )
        time.sleep(poll)


def _failure(runner: Runner, failed: str) -> DeployError:
    service = failed.split(":", 1)[0]
    logs = cli.last_logs(runner, service)
    shown = "\n".join(f"  {line}" for line in logs) or "  (no log lines)"
    return DeployError(
        f"{failed}: a task of this rollout stopped, so the service restarts; its last log lines:\n{shown}",
        ExitCode.DEPLOY_FAILED,
    )
