"""A single-node Docker Swarm for tests, on a second dockerd 20.10 (TESTENV.md, "Docker Swarm on
one machine" and "A second Docker host"), with a registry for digests.

``SwarmLab.start(folder)`` starts the second daemon (tests/support/dockerhost.py), runs
``docker swarm init --advertise-addr 127.0.0.1`` there (no download, under a second) and starts
Debian's docker-registry on 127.0.0.1 (tests/support/registry.py). ``push(base, repo, version)``
makes a one-label image FROM ``base`` on the main daemon, pushes it to the registry and returns
its digest: the swarm's daemon pulls it by that digest, as a node of a real swarm would.
``stop()`` removes what it started (daemon and registry, by pid).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frappe_imagekit import process
from frappe_imagekit.errors import ExitCode
from tests.support.cli import invoke
from tests.support.dockerhost import DockerHost
from tests.support.registry import LocalRegistry, free_port
from tests.support.workspace import CANARY

DOCKER = "/usr/bin/docker"  # the main daemon's CLI for builds and pushes (BuildKit-less builds)


@dataclass
class SwarmLab:
    host: DockerHost
    registry: LocalRegistry
    node_id: str
    manager_addr: str  # 127.0.0.1:PORT, where workers join

    @classmethod
    def start(cls, folder: Path) -> SwarmLab:
        host = DockerHost.start()
        try:
            port = free_port()  # 2377 may be another swarm's on this machine
            done = host.docker("swarm", "init", "--advertise-addr", f"127.0.0.1:{port}",
                               "--listen-addr", f"127.0.0.1:{port}")  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"docker swarm init failed: {done.stderr}")
            node = host.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
            registry = LocalRegistry.start(folder / "registry")
        except BaseException:
            host.stop()
            raise
        return cls(host, registry, node, f"127.0.0.1:{port}")

    @property
    def url(self) -> str:
        return self.host.url

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.host.docker(*args)

    def repo(self, name: str) -> str:
        return f"{self.registry.address}/{name}"

    def push(self, base: str, name: str, version: str) -> str:
        """Build ``REGISTRY/name:version`` FROM ``base`` (a label makes each version its own
        image), push it and return its registry digest."""
        return push_version(self.repo(name), base, version)

    def services(self, stack: str) -> dict[str, str]:
        """service name -> its spec image."""
        done = self.docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                           "--format", "{{.Name}} {{.Image}}")  # fmt: skip
        return dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.strip())

    def task_images(self, stack: str) -> dict[str, set[str]]:
        """service -> images of its running tasks."""
        found: dict[str, set[str]] = {}
        for service in self.services(stack):
            done = self.docker("service", "ps", "--no-trunc", "--filter", "desired-state=running",
                               "--format", "{{.Image}} {{.CurrentState}}", service)  # fmt: skip
            found[service] = {line.split(" ")[0] for line in done.stdout.splitlines() if " Running" in line}
        return found

    def join_worker(self) -> DockerHost:
        """A third dockerd joined as a worker over loopback (TESTENV.md: a second Docker host).
        Enough for `docker node ls` to count two nodes; its overlay traffic cannot work here (the
        gossip port 7946 is the manager's), so nothing may be scheduled on it."""
        worker = DockerHost.start()
        token = self.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        port = free_port()
        done = worker.docker("swarm", "join", "--token", token, "--listen-addr", f"127.0.0.1:{port}",
                             "--advertise-addr", f"127.0.0.1:{port}", self.manager_addr)  # fmt: skip
        if done.returncode != 0:
            worker.stop()
            raise RuntimeError(f"docker swarm join failed: {done.stderr}")
        return worker

    def drop_worker(self, worker: DockerHost) -> None:
        node = worker.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        worker.docker("swarm", "leave", "--force")
        worker.stop()
        self.docker("node", "rm", "--force", node)

    def job_services(self) -> list[str]:
        done = self.docker("service", "ls", "--filter", "label=io.imagekit.job", "--format", "{{.Name}}")
        return done.stdout.split()

    def leftover_jobs(self) -> list[str]:
        """imagekit's job services, and containers of jobs (Docker 20.10 keeps a removed job's
        tasks: moby/moby#42789; imagekit removes them)."""
        names = self.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        return self.job_services() + [n for n in names if "_ik-" in n]

    def remove_stack(self, stack: str, timeout: float = 60) -> None:
        self.docker("stack", "rm", stack)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout
            nets = self.docker(
                "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}"
            ).stdout
            if not left.strip() and not nets.strip():
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Leave the swarm first (its overlay sandboxes are network namespaces mounted under the
        daemon's exec root; one left mounted keeps a vxlan device, and the next swarm on this
        machine then fails with "error creating vxlan interface: file exists"), then stop."""
        try:
            self.registry.stop()
            self.docker("swarm", "leave", "--force")
        finally:
            self.host.stop()
            for line in Path("/proc/mounts").read_text().splitlines():
                mount = line.split(" ")[1]
                if mount.startswith(f"{self.host.folder}/"):
                    subprocess.run(["umount", mount], capture_output=True)
            shutil.rmtree(self.host.folder, ignore_errors=True)


def push_version(repo: str, base: str, version: str) -> str:
    """Build ``repo:version`` FROM ``base`` on the main daemon (a label makes each version its
    own image), push it and return its registry digest."""
    ref = f"{repo}:{version}"
    dockerfile = f"FROM {base}\nLABEL io.imagekit.test.version={version}\n".encode()
    built = process.run([DOCKER, "build", "-q", "-t", ref, "-"], input_bytes=dockerfile,
                        env={"DOCKER_BUILDKIT": "0"}, timeout=300)  # fmt: skip
    if built.returncode != 0:
        raise RuntimeError(f"building {ref} failed: {built.stderr}")
    pushed = process.run([DOCKER, "push", ref], timeout=300)
    if pushed.returncode != 0:
        raise RuntimeError(f"pushing {ref} failed: {pushed.stderr}")
    inspect = process.run([DOCKER, "image", "inspect", "--format", "{{json .RepoDigests}}", ref], timeout=60)
    digests = [
        d for d in inspect.stdout.strip()[1:-1].replace('"', "").split(",") if d.startswith(repo + "@")
    ]
    return digests[0].split("@", 1)[1]


Docker = Callable[..., "subprocess.CompletedProcess[str]"]  # docker ARGS... on the swarm's manager


def job_names(docker: Docker) -> list[str]:
    """imagekit's job services on the swarm ``docker`` talks to."""
    done = docker("service", "ls", "--filter", "label=io.imagekit.job", "--format", "{{.Name}}")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def wait_for_job(docker: Docker, prefix: str, proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """The name of the job service starting with ``prefix`` once its task runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for name in job_names(docker):
            state = docker("service", "ps", "--format", "{{.CurrentState}}", name).stdout
            if name.startswith(prefix) and state.startswith("Running"):
                return name
        time.sleep(0.5)
    raise AssertionError(f"no job {prefix}* ran within {timeout}s")


def sigterm_during_migrate(
    docker: Docker, argv: list[str], site: Path, prefix: str
) -> tuple[dict[str, Any], str]:
    """Run the deploy ``argv`` (imagekit as a program) with ``site``'s migrate slowed to 60 s
    (the fake bench's ``slow_migrate``), SIGTERM it once its migrate job ``prefix``* runs, and
    check what every engine must say: exit 130, the site interrupted, the job named as removed,
    the other site not migrated. Returns the JSON report and the job's name."""
    slow = site / "slow_migrate"
    slow.write_text("60\n")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        job = wait_for_job(docker, prefix, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        slow.unlink()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED == 130, err
    report: dict[str, Any] = json.loads(out)
    site_a, site_b = report["sites"]
    assert (site_a["result"], site_a["exception"]) == (
        "interrupted",
        "the migrate job was stopped: its task stopped",
    )
    assert report["error"] == f"interrupted; the migrate job {job} was removed: its task stopped"
    assert site_b["result"] == "not-migrated"
    assert job_names(docker) == []
    assert docker("ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={job}").stdout == ""
    return report, job


def rollback_prod(folder: Path, ws: Path, project: str, state: Path, where: str) -> Any:
    """`imagekit rollback prod --yes --json` of a swarm target written to ``ws``'s imagekit.toml
    (``where``: its ``docker_host = ...`` or ``host = ...`` lines), the database root password the
    canary: in the sites folder for the fake bench, in the env file for imagekit."""
    (folder / "sites" / ".db_root_password").write_text(CANARY)
    env_file = folder / "erp.env"
    env_file.write_text(f"DB_PASSWORD={CANARY}\n")
    (ws / "imagekit.toml").write_text(
        f'[targets.prod]\nproject = "{project}"\ncompose = ["{folder / "compose.yaml"}"]\n'
        f'engine = "swarm"\n{where}state_dir = "{state}"\nenv_file = "{env_file}"\n'
    )
    try:
        return invoke("rollback", "prod", "--yes", "--json", "-w", str(ws))
    finally:
        (folder / "sites" / ".db_root_password").unlink()


def check_failed_patch(report: dict[str, Any], failing: str) -> dict[str, Any]:
    """What a deploy whose patch ``failing`` failed on a.local must report on every engine: a.local
    patch-failed and b.local not migrated, both left in maintenance, the patch and its traceback
    in a.local's log. Returns a.local's entry."""
    site_a, site_b = report["sites"]
    assert (site_a["result"], site_a["failed_patch"], site_a["maintenance"]) == (
        "patch-failed",
        failing,
        "on",
    )
    assert (site_b["result"], site_b["maintenance"]) == ("not-migrated", "on")
    log = Path(site_a["output_file"]).read_text()
    assert "Executing " + failing in log and "Traceback" in log
    return dict(site_a)
