"""Find a BuildKit-capable docker CLI and tell whether a Docker daemon answers.

Used by tests/conftest.py. scripts/test.sh has the same CLI rule in bash (``pick_docker_cli``):
a CLI can build with BuildKit when ``docker buildx version`` works, or when its major version
is below 23 (CLI 18.09-22.x carries its own BuildKit client; 23+ needs the buildx plugin).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from frappe_imagekit import dockerapi, process

ENV_VAR = "IMAGEKIT_TEST_DOCKER"
_FALLBACKS = ("/usr/bin/docker", "/usr/local/bin/docker")


def cli_major_version(cli: str) -> int | None:
    """The client's major version from ``docker --version`` (no daemon needed), or None."""
    try:
        done = process.run([cli, "--version"], timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"version (\d+)\.", done.stdout)
    return int(match.group(1)) if done.returncode == 0 and match else None


def can_buildkit(cli: str) -> bool:
    """True when ``cli`` can run ``DOCKER_BUILDKIT=1 docker build --secret ...``."""
    major = cli_major_version(cli)
    if major is None:
        return False
    if major < 23:
        return True
    try:
        return process.run([cli, "buildx", "version"], timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _candidates() -> Iterable[str]:
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(folder or ".") / "docker"
        if path.is_file() and os.access(path, os.X_OK):
            yield str(path)
    yield from _FALLBACKS


def find_buildkit_docker() -> str | None:
    """``$IMAGEKIT_TEST_DOCKER`` if set, else the first BuildKit-capable docker CLI found."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return shutil.which(chosen) or chosen
    seen: set[str] = set()
    for cli in _candidates():
        real = os.path.realpath(cli)
        if real in seen or not os.path.exists(real):
            continue
        seen.add(real)
        if can_buildkit(cli):
            return cli
    return None


def daemon_problem(cli: str, timeout: float = 20) -> str | None:
    """None when the daemon answers ``docker info``; otherwise why it does not."""
    try:
        done = process.run([cli, "info", "--format", "{{.ServerVersion}}"], timeout=timeout)
    except FileNotFoundError:
        return f"docker CLI {cli} does not exist"
    except subprocess.TimeoutExpired:
        return f"`{cli} info` did not answer within {timeout:.0f} s"
    if done.returncode != 0 or not done.stdout.strip():
        reason = (done.stderr or done.stdout).strip().splitlines()
        return f"`{cli} info` failed: {reason[-1] if reason else 'no output'}"
    return None


def docker(cli: str, *args: str, check: bool = True, **kwargs) -> process.Completed:
    """Run ``cli args...``; with ``check`` raise AssertionError (with stderr) when it fails."""
    done = process.run([cli, *args], **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(done.argv)} exited {done.returncode}: {done.stderr}")
    return done


def image_file(cli: str, ref: str, path: str) -> str:
    """The content of ``path`` inside image ``ref`` (via a throwaway container)."""
    return docker(cli, "run", "--rm", ref, "cat", path, timeout=60).stdout


def image_tags(cli: str, repository: str) -> list[str]:
    """Every ``repository:tag`` of ``repository``, sorted."""
    done = docker(cli, "images", "--format", "{{.Repository}}:{{.Tag}}", repository, timeout=60)
    return sorted(done.stdout.split())


def forget_docker_clients() -> None:
    """Close and drop the SDK clients dockerapi cached (tests that change ``DOCKER_HOST``)."""
    with dockerapi._lock:
        for made in dockerapi._clients.values():
            with contextlib.suppress(Exception):  # closing a dead client is best effort
                made.close()
        dockerapi._clients.clear()
