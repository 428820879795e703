"""pytest fixtures shared by the deploy integration tests (import them into a test module).

``bench_image``: the fake bench image (session). ``project``: a compose project in tmp_path with
two sites, an image repository with tags v1 and v2, a workspace with IMAGE_NAME in .env and a
state folder; everything it started (containers, tags) is removed after the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from frappe_imagekit import process
from tests.support.benchimage import build_fake_bench, write_project

DOCKER = "docker"  # the CLI deploy itself uses (first on PATH)


def docker(*args: str, check: bool = True, docker_host: str | None = None) -> process.Completed:
    env = {"DOCKER_HOST": docker_host} if docker_host else None
    done = process.run([DOCKER, *args], env=env, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done


def containers(project: str, docker_host: str | None = None) -> list[dict]:
    ids = docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
        docker_host=docker_host,
    ).stdout.split()  # fmt: skip
    if not ids:
        return []
    return json.loads(docker("inspect", *ids, docker_host=docker_host).stdout)


def remove_project(project: str, docker_host: str | None = None) -> None:
    """Remove the project's containers, then its networks and volumes (compose labels them): a
    network left behind holds one of the daemon's ~30 default address pools (Docker 20.10): each
    run of the suite left two, and after 14 runs on one machine ``up`` found no pool left."""
    ids = [c["Id"] for c in containers(project, docker_host)]
    if ids:
        docker("rm", "-f", *ids, check=False, docker_host=docker_host)
    label = f"label=com.docker.compose.project={project}"
    for kind in ("network", "volume"):
        listed = docker(kind, "ls", "-q", "--filter", label, check=False, docker_host=docker_host)
        names = listed.stdout.split()
        if names:
            docker(kind, "rm", *names, check=False, docker_host=docker_host)


@dataclass
class Project:
    name: str
    folder: Path
    compose: Path
    repo: str
    ws: Path
    state: Path
    sites: list[str] = field(default_factory=lambda: ["a.local", "b.local"])

    @property
    def sites_dir(self) -> Path:
        return self.folder / "sites"

    def site_file(self, site: str, name: str) -> Path:
        return self.sites_dir / site / name

    @property
    def lock_dir(self) -> Path:
        return self.state / "projects" / self.name / "lock"

    @property
    def audit_log(self) -> Path:
        return self.state / "projects" / self.name / "audit.log"

    def records(self) -> list[dict]:
        folder = self.ws / "deploys"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def services(self, docker_host: str | None = None) -> dict[str, dict]:
        return {
            c["Config"]["Labels"]["com.docker.compose.service"]: c for c in containers(self.name, docker_host)
        }

    def interrupt_during_migrate(self, sig: int, *extra: str) -> tuple[int, bytes]:
        """Run a real `imagekit deploy` process, send ``sig`` once migrate has started on
        a.local (made slow), and return its exit code and stderr."""
        import subprocess
        import sys
        import time

        self.site_file("a.local", "slow_migrate").write_text("30\n")
        argv = [sys.executable, "-m", "frappe_imagekit", *self.cli_args("--version", "v1", *extra)]
        root = Path(__file__).resolve().parents[3]
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root)
        assert proc.stderr is not None
        deadline = time.monotonic() + 180  # a wait for an event, not a time limit: CI may be loaded
        for raw in proc.stderr:
            if b"Migrating a.local" in raw or time.monotonic() > deadline:
                break
        assert self.lock_dir.is_dir()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=90)
        return proc.returncode, err

    def cli_args(self, *extra: str) -> list[str]:
        return [
            "deploy", "--project", self.name, "--compose", str(self.compose),
            "--state-dir", str(self.state), "-w", str(self.ws), "--up-timeout", "30", *extra,
        ]  # fmt: skip


@pytest.fixture(scope="session")
def bench_image(busybox_image: str, docker_daemon: str) -> str:
    return build_fake_bench(docker_daemon)


PRIVATE_HOME = (
    ("HOME", "home"),
    ("XDG_STATE_HOME", "state-home"),
    ("XDG_CONFIG_HOME", "config"),
    ("XDG_CACHE_HOME", "cache"),
    ("DOCKER_CONFIG", "docker"),
)


@contextlib.contextmanager
def new_project(tmp: Path, name: str, bench_image: str) -> Iterator[Project]:
    """The project in ``tmp`` (srv/, ws/, state/) with tags v1 and v2 of the fake bench; its
    containers and tags are removed afterwards."""
    folder = tmp / "srv"
    compose = write_project(folder)
    repo = f"{name}/bench"
    for tag in ("v1", "v2"):
        docker("tag", bench_image, f"{repo}:{tag}")
    ws = tmp / "ws"
    ws.mkdir()
    (ws / ".env").write_text(f"IMAGE_NAME={repo}\n")
    try:
        yield Project(name, folder, compose, repo, ws, tmp / "state")
    finally:
        remove_project(name)
        docker("rmi", f"{repo}:v1", f"{repo}:v2", check=False)


@pytest.fixture
def project(tmp_path: Path, unique_name: Callable[[str], str], bench_image: str) -> Iterator[Project]:
    with new_project(tmp_path, unique_name("deploy"), bench_image) as proj:
        yield proj


@pytest.fixture(scope="module")
def deployed_v1(tmp_path_factory: pytest.TempPathFactory, bench_image: str) -> Iterator[Project]:
    """One project per test module with v1 deployed (in-process, as ``options`` gives), for the
    tests that only read it: refusals that must stop and record nothing. Made once per module
    instead of once per test; tests/conftest.py keeps its users on one xdist worker. A test that
    changes the stack (deploys, locks, edits its files) takes ``project`` instead."""
    from frappe_imagekit.deploy.sequence import deploy
    from frappe_imagekit.runner import LocalRunner

    tmp = tmp_path_factory.mktemp("deployed")
    with new_project(tmp, f"ik-deploy-{secrets.token_hex(4)}", bench_image) as proj:
        with pytest.MonkeyPatch.context() as env:  # no test's isolated_home runs yet: a private one
            for var, sub in PRIVATE_HOME:
                (tmp / sub).mkdir()
                env.setenv(var, str(tmp / sub))
            report = deploy(LocalRunner(), workspace(proj), options(proj, "v1"))
        assert report.result == "succeeded", report.error
        yield proj


# The fake bench's services start in milliseconds and none of them restarts unless a test makes
# it crash-loop (that test takes `product_settle`, the product's 3 s): one second of settle
# (DeployOptions.settle, docs/DESIGN.md) still sees a restart, and saves 2 s per deploy. The
# tests' own in-process runs get it from tests/conftest.py (`short_settle`); `deployed_v1`, made
# before that fixture, from here.
SETTLE = 1.0


def options(project: Project, version: str = "v1", **kwargs):  # type: ignore[no-untyped-def]
    from frappe_imagekit.deploy.sequence import DeployOptions

    kwargs.setdefault("settle", SETTLE)
    return DeployOptions.of(
        project=project.name,
        compose_file=str(project.compose),
        image=project.repo,
        version=version,
        state_dir=str(project.state),
        up_timeout=30,
        **kwargs,
    )


def workspace(project: Project):  # type: ignore[no-untyped-def]
    from frappe_imagekit.workspace import Workspace

    return Workspace.at(project.ws)


__all__ = ["bench_image", "deployed_v1", "project", "Project", "options", "workspace", "os"]
