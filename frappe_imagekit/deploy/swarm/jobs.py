"""One-off jobs on a swarm: ``docker service create --mode replicated-job --restart-condition none``.

A job runs one command once, with a service's volumes and networks, on an image given by digest.
Its output is read back with ``docker service logs`` (stdout and stderr merged by timestamp, as
they were printed) and judged by the caller: the task state alone says nothing about what a
``bench migrate`` did. The job service is removed when it ends, and when imagekit is stopped
while it runs (removing the service stops its task).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from frappe_imagekit import validate
from frappe_imagekit.deploy.maintenance import STOP_GRACE
from frappe_imagekit.deploy.swarm import cli
from frappe_imagekit.errors import DeployError, ExitCode
from frappe_imagekit.runner import Runner

ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned"})
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z ?")


@dataclass(frozen=True)
class JobSpec:
    stack: str
    kind: str  # migrate | window | configurator | ping ...
    image: str
    argv: tuple[str, ...]
    mounts: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    node_id: str | None = None  # run on this node (where imagekit's files are)
    user: str | None = None  # the image's user unless given (copying into a root-owned folder)
    secrets: tuple[str, ...] = ()  # --secret values (source=NAME,target=FILE,mode=0400)

    def name(self, token: str) -> str:
        return f"{self.stack}_ik-{self.kind}-{token}"[:63]


@dataclass
class JobRun:
    name: str
    state: str  # complete | failed | ...
    exit_code: int | None
    output: str
    error: str = ""


def create_argv(spec: JobSpec, name: str) -> list[str]:
    argv = [cli.DOCKER, "service", "create", "--detach", "--name", name, "--mode", "replicated-job"]
    argv += ["--restart-condition", "none", "--label", f"{cli.JOB_LABEL}={spec.stack}"]
    argv += ["--with-registry-auth"] if cli.needs_registry_auth(spec.image) else []
    # tini as PID 1 passes the stop signal on; SIGINT lets frappe unwind as on compose's stop
    # (deploy/maintenance.py: click prints "Aborted!"), SIGKILL after STOP_GRACE seconds
    argv += ["--init", "--stop-signal", "SIGINT", "--stop-grace-period", f"{STOP_GRACE}s"]
    for mount in spec.mounts:
        argv += ["--mount", mount]
    for network in spec.networks:
        argv += ["--network", validate.not_an_option(network, "a network name", DeployError)]
    if spec.user:
        argv += ["--user", spec.user]
    for secret in spec.secrets:
        argv += ["--secret", secret]
    if spec.node_id:
        argv += ["--constraint", f"node.id=={spec.node_id}"]
    return [*argv, validate.not_an_option(spec.image, "the job image", DeployError), *spec.argv]


class JobStopped(KeyboardInterrupt):
    """imagekit was interrupted while a job ran; the job was removed. ``stopped``: its task's
    container is gone from this node (False: it may still be stopping, e.g. on another node)."""

    def __init__(self, name: str, kind: str, stopped: bool) -> None:
        super().__init__(name)
        self.name, self.kind, self.stopped = name, kind, stopped


def run_job(runner: Runner, spec: JobSpec, timeout: float, poll: float = 0.5) -> JobRun:
    """Run the job to its end and read its output; remove it whatever happens. An interrupt
    (Ctrl-C, SIGTERM) removes it, waits for its task to stop, and raises ``JobStopped``."""
    name = spec.name(secrets.token_hex(3))
    cli.check(runner, create_argv(spec, name), f"starting the {spec.kind} job")
    try:
        task = _wait_ended(runner, name, timeout, poll)
        return JobRun(name, task.state, _exit_code(runner, task.id), read_output(runner, name), task.error)
    except KeyboardInterrupt:
        raise JobStopped(name, spec.kind, stop_job(runner, name)) from None
    finally:
        remove_job(runner, name)


def remove_job(runner: Runner, name: str) -> None:
    """Remove the job service and its ended containers on this node (Docker 20.10 keeps a
    removed job's tasks: moby/moby#42789), with the anonymous volumes the image's VOLUME lines
    gave them (``--volumes``: named volumes, the stack's sites, are never removed by it)."""
    runner.run(cli.service_rm_argv([name]), timeout=60)
    ended = _local_containers(runner, name, every=True)
    if ended:
        runner.run([cli.DOCKER, "rm", "--force", "--volumes", *ended], timeout=60)


def _local_containers(runner: Runner, name: str, every: bool = False) -> list[str]:
    argv = [
        cli.DOCKER,
        "ps",
        *(["-a"] if every else []),
        "-q",
        "--filter",
        f"label=com.docker.swarm.service.name={name}",
    ]
    done = runner.run(argv, timeout=60)
    return done.stdout.split() if done.returncode == 0 else []


def stop_job(runner: Runner, name: str, grace: float = STOP_GRACE) -> bool:
    """Stop the job's task and remove the job; True when no container of it runs here after.

    ``docker service rm`` of a ``replicated-job`` leaves its running task alone on Docker 20.10
    (moby/moby#44312, fixed in 24), so the task's container on this node gets SIGINT (frappe
    unwinds, as on compose's stop) and SIGKILL after ``grace`` seconds; then the job is removed."""
    ids = _local_containers(runner, name)
    for cid in ids:
        runner.run([cli.DOCKER, "kill", "--signal", "SIGINT", cid], timeout=60)
    deadline = time.monotonic() + grace
    while ids and _local_containers(runner, name) and time.monotonic() < deadline:
        time.sleep(0.5)
    for cid in _local_containers(runner, name):
        runner.run([cli.DOCKER, "kill", cid], timeout=60)
    stopped = bool(ids) and not _local_containers(runner, name)
    remove_job(runner, name)
    return stopped


def _wait_ended(runner: Runner, name: str, timeout: float, poll: float) -> cli.TaskRow:
    deadline = time.monotonic() + timeout
    while True:
        ended = [t for t in cli.tasks(runner, [name]) if t.state in ENDED]
        if ended:
            return ended[0]
        if time.monotonic() > deadline:
            raise DeployError(
                f"the job {name} did not end within {timeout:.0f}s; it was removed.", ExitCode.DEPLOY_FAILED
            )
        time.sleep(poll)


def _exit_code(runner: Runner, task_id: str) -> int | None:
    done = runner.run(cli.task_exit_argv(task_id), timeout=60)
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.lstrip("-").isdigit() else None


def read_output(runner: Runner, name: str) -> str:
    """Everything the job printed, stdout and stderr in the order of their timestamps."""
    done = runner.run(cli.service_logs_argv(name, timestamps=True), timeout=120)
    return merge_streams([done.stdout, done.stderr])


def merge_streams(streams: Sequence[str]) -> str:
    """Lines of each stream ("TIMESTAMP text"), merged by time (stable), timestamps removed."""
    keyed: list[tuple[str, int, int, str]] = []
    for number, text in enumerate(streams):
        for seq, line in enumerate(text.splitlines()):
            match = _STAMP.match(line)
            stamp = f"{match[1]}.{(match[2] or '').ljust(9, '0')}" if match else ""
            keyed.append((stamp, number, seq, line[match.end() :] if match else line))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    return "".join(k[3] + "\n" for k in keyed)
