"""The docker CLI for BuildKit builds: pick a capable binary, build argv (pure), run it.

docker-py cannot build with BuildKit (no ``RUN --mount``, no secrets), so builds go through the
docker CLI. A CLI can build with BuildKit when ``docker buildx version`` works (we then run
``docker buildx build --load``) or when its major version is below 23 (its own BuildKit client,
``DOCKER_BUILDKIT=1 docker build``). CLI 23+ without buildx cannot.

Secrets never reach argv: the injected apps.json travels in the child's environment only, named by
``--secret id=...,env=VAR`` or ``--build-arg NAME`` (no ``=value``).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from frappe_imagekit import process
from frappe_imagekit.errors import DockerError

ENV_VAR = "IMAGEKIT_DOCKER"
SECRET_ENV = "IMAGEKIT_APPS_JSON"  # the env var the apps_json secret is read from
FALLBACKS = ("/usr/bin/docker", "/usr/local/bin/docker")
BUILDX = "buildx"
BUILDKIT = "buildkit"
_PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class DockerCli:
    """A docker binary that can build with BuildKit, and how to ask it to."""

    path: str
    version: str  # client version, e.g. "20.10.24+dfsg1"
    mode: str  # BUILDX: "docker buildx build --load"; BUILDKIT: "DOCKER_BUILDKIT=1 docker build"
    note: str | None = None  # why this binary was chosen when it is not the obvious one
    buildx: str | None = None  # `docker buildx version` output, in BUILDX mode

    @property
    def builder(self) -> str:
        return "docker buildx build" if self.mode == BUILDX else "docker build (BuildKit)"

    def env(self) -> dict[str, str]:
        """Environment the CLI needs for BuildKit (not secret)."""
        return {"DOCKER_BUILDKIT": "1"} if self.mode == BUILDKIT else {}


@dataclass(frozen=True)
class BuildRequest:
    """Everything ``build_command`` needs; nothing secret (secrets are named, not carried)."""

    cli: DockerCli
    context: Path
    containerfile: Path
    tag: str | None  # None: the image is only known by its id (tagged after the leak scan)
    iidfile: Path
    build_args: Mapping[str, str] = field(default_factory=dict)  # values go into argv
    env_build_args: tuple[str, ...] = ()  # names only: values come from the child's environment
    secrets: tuple[tuple[str, str], ...] = ()  # (secret id, env var holding it)
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    network: str | None = None  # --network (host: reach git servers on the loopback)
    metadata_file: Path | None = None  # buildx only: --metadata-file (holds containerimage.digest)


def build_command(req: BuildRequest) -> list[str]:
    """The exact docker argv for ``req`` (pure; token-free by construction)."""
    argv = [req.cli.path, BUILDX, "build", "--load"] if req.cli.mode == BUILDX else [req.cli.path, "build"]
    argv += ["--progress", "plain", "--file", str(req.containerfile)]
    argv += ["--tag", req.tag] if req.tag else []
    argv += ["--iidfile", str(req.iidfile)]
    if req.metadata_file is not None and req.cli.mode == BUILDX:
        argv += ["--metadata-file", str(req.metadata_file)]
    for name, value in req.build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    for name in req.env_build_args:
        argv += ["--build-arg", name]
    for secret_id, env_name in req.secrets:
        argv += ["--secret", f"id={secret_id},env={env_name}"]
    for key, value in req.labels.items():
        argv += ["--label", f"{key}={value}"]
    if req.no_cache:
        argv.append("--no-cache")
    if req.pull:
        argv.append("--pull")
    if req.network:
        argv += ["--network", req.network]
    argv.append(str(req.context))
    return argv


def parse_client_version(text: str) -> tuple[str, int] | None:
    """``("20.10.24+dfsg1", 20)`` from ``docker --version`` output, or None."""
    match = re.search(r"Docker version (v?(\d+)\.[^\s,]+)", text)
    return (match.group(1), int(match.group(2))) if match else None


def _run_quiet(argv: list[str]) -> process.Completed | None:
    try:
        return process.run(argv, timeout=_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


_probed: dict[tuple[str, int, int], tuple[DockerCli | None, str]] = {}
_probe_lock = threading.Lock()


def probe(path: str) -> tuple[DockerCli | None, str]:
    """``(DockerCli, "")`` when ``path`` can build with BuildKit, else ``(None, why not)``.

    Remembered per binary (path, mtime, size) for the life of the process.
    """
    try:
        info = os.stat(path)
    except OSError:
        return _probe(path)
    key = (os.path.realpath(path), info.st_mtime_ns, info.st_size)
    with _probe_lock:
        if key not in _probed:
            found, why = _probe(path)
            _probed[key] = (found, why)
        cached, why = _probed[key]
    if cached is not None and cached.path != path:
        cached = DockerCli(path, cached.version, cached.mode, buildx=cached.buildx)
    return cached, why if cached is None else ""


def _probe(path: str) -> tuple[DockerCli | None, str]:
    done = _run_quiet([path, "--version"])
    parsed = parse_client_version(done.stdout) if done and done.returncode == 0 else None
    if parsed is None:
        return None, f"{path} is not a working docker CLI"
    version, major = parsed
    buildx = _run_quiet([path, BUILDX, "version"])
    if buildx is not None and buildx.returncode == 0:
        return DockerCli(path, version, BUILDX, buildx=buildx.stdout.strip()[:200]), ""
    if major < 23:
        return DockerCli(path, version, BUILDKIT), ""
    return None, f"{path} is docker CLI {version} without the buildx plugin"


def _candidates(search_path: str) -> Iterable[str]:
    for folder in search_path.split(os.pathsep):
        candidate = Path(folder or ".") / "docker"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            yield str(candidate)
    yield from FALLBACKS


def find_docker(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> DockerCli:
    """The docker CLI to build with: ``explicit``, ``$IMAGEKIT_DOCKER``, then PATH and fallbacks."""
    environ = os.environ if environ is None else environ
    named = explicit or environ.get(ENV_VAR)
    if named:
        return _explicit(named, "--docker" if explicit else ENV_VAR)
    reasons: list[str] = []
    seen: set[str] = set()
    first: str | None = None
    for candidate in _candidates(environ.get("PATH", "")):
        real = os.path.realpath(candidate)
        if real in seen or not os.path.exists(real):
            continue
        seen.add(real)
        first = first or candidate
        cli, why = probe(candidate)
        if cli is not None:
            if candidate == first:
                return cli
            note = f"{reasons[0]}; using {candidate} (CLI {cli.version}, {cli.builder})"
            return DockerCli(cli.path, cli.version, cli.mode, note, cli.buildx)
        reasons.append(why)
    raise DockerError(_no_cli_message(reasons))


def _explicit(named: str, source: str) -> DockerCli:
    path = process.which(named) or named
    cli, why = probe(path)
    if cli is None:
        raise DockerError(
            f"{source} names {named}, which cannot build with BuildKit ({why}): install the "
            f"docker buildx plugin for it or point {ENV_VAR} at a docker CLI that has buildx."
        )
    return cli


def _no_cli_message(reasons: list[str]) -> str:
    found = "; ".join(reasons) if reasons else "no docker CLI on PATH"
    return (
        f"no docker CLI here can build with BuildKit ({found}): install the docker buildx plugin "
        f"(Debian: apt-get install docker-buildx) or set {ENV_VAR} to a docker CLI that has it."
    )


def read_metadata_digest(path: Path | None) -> str | None:
    """``containerimage.digest`` from a buildx ``--metadata-file``, or None when there is none."""
    import json

    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = data.get("containerimage.digest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else None


def run_build(
    argv: list[str],
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> int:
    """Run a build command; every output line (stdout and stderr) goes to ``on_line``.

    The CLI leads its own process group, so Ctrl-C kills the buildx plugin with it (docker 23+
    runs ``docker-buildx`` as a child; killed alone, the CLI leaves it building for a while).
    """
    try:
        done = process.run(
            argv, env=env, on_stdout=on_line, on_stderr=on_line, on_start=on_start, own_group=True
        )
    except FileNotFoundError:
        raise DockerError(
            f"{argv[0]} does not exist: install docker or set {ENV_VAR} to the docker CLI."
        ) from None
    return done.returncode
