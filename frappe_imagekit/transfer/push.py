"""``docker push`` of a version into the local registry, and what its output says.

The digest is read from push's own last line (``VERSION: digest: sha256:... size: N``), checked
by ``validate.image_digest`` at this boundary, and compared with ``RepoDigests`` when push printed
none. The temporary tag ``127.0.0.1:PORT/NAME:VERSION`` is removed again (only the tag: the image
keeps its own name).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from frappe_imagekit import process, validate
from frappe_imagekit.errors import DeployError, NotFoundError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.transfer.registry import Registry

LineSink = Callable[[str], None]
_DIGEST_LINE = re.compile(r"^\S+: digest: (?P<digest>\S+) size: \d+\s*$")
_LAYER_LINE = re.compile(
    r"^(?P<layer>[0-9a-f]{12}): (?P<state>Pushed|Layer already exists|Mounted from \S+)\s*$"
)
_FULL = "no space left on device"


@dataclass(frozen=True)
class Pushed:
    digest: str  # sha256:<64 hex>, the manifest digest the server pulls by
    image_id: str  # sha256:<64 hex>, the config digest every daemon shows as the image id
    pushed: int  # layers uploaded now
    existing: int  # layers the registry already held


@dataclass
class PushCount:
    pushed: int = 0
    existing: int = 0
    digest: str | None = None

    def feed(self, line: str) -> None:
        layer = _LAYER_LINE.match(line.strip())
        if layer:
            if layer["state"] == "Pushed":
                self.pushed += 1
            else:
                self.existing += 1
        found = _DIGEST_LINE.match(line.strip())
        if found:
            self.digest = found["digest"]


def local_id(docker: LocalRunner, ref: str) -> str:
    done = docker.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], timeout=60)
    if done.returncode != 0:
        raise NotFoundError(f"image {ref} is not on this machine; build it first or pass --version.")
    return validate.image_digest(done.stdout.strip(), f"the id of {ref}", DeployError)


def registry_ref(registry: Registry, name: str, version: str) -> str:
    return f"{registry.address}/{name}:{version}"


def push(
    docker: LocalRunner,
    registry: Registry,
    ref: str,
    name: str,
    version: str,
    on_line: LineSink | None = None,
) -> Pushed:
    """Push ``ref`` as ``NAME:VERSION`` into ``registry``; ``DeployError`` in one sentence if it fails."""
    image_id = local_id(docker, ref)
    target = registry_ref(registry, name, version)
    tagged = docker.run(["docker", "tag", ref, target], timeout=60)
    if tagged.returncode != 0:
        raise DeployError(
            f"`docker tag {ref} {target}` failed ({last_line(tagged.stderr)}); check docker here."
        )
    try:
        done, count = _run_push(docker, registry, target, on_line)
        if done.returncode != 0:
            raise DeployError(push_failure(registry, ref, done.stdout + done.stderr))
        digest = count.digest or _repo_digest(docker, target)
    finally:
        docker.run(["docker", "image", "rm", "--no-prune", target], timeout=60)
    return Pushed(
        validate.image_digest(digest, f"the digest docker push printed for {ref}", DeployError),
        image_id,
        count.pushed,
        count.existing,
    )


def _run_push(
    docker: LocalRunner, registry: Registry, target: str, on_line: LineSink | None
) -> tuple[Completed, PushCount]:
    """``docker push``, stopped at its first retry when the registry's disk is full (docker would
    retry each layer five times, a minute in all, for nothing)."""
    count = PushCount()
    started: list[subprocess.Popen[bytes]] = []

    def line(text: str) -> None:
        count.feed(text)
        if "Retrying in" in text and registry.said(_FULL) and started:
            started[0].kill()
        if on_line:
            on_line(text)

    done = process.run(
        ["docker", "push", target],
        env=docker.base_env,
        on_stdout=line,
        on_stderr=line,
        on_start=started.append,
    )
    return done, count


def push_failure(registry: Registry, ref: str, output: str) -> str:
    """One sentence for a failed push: storage full, the registry gone, or docker's last line.
    Full is what the registry or docker said, or, when the registry answered only HTTP 500,
    a storage disk with almost nothing free."""
    if registry.said(_FULL) or _FULL in output or registry.storage_nearly_full():
        return (
            f"the local registry's storage {registry.storage} is full (no space left on device) while "
            f"pushing {ref}: free space there or set IMAGEKIT_REGISTRY_DIR to a bigger disk; nothing "
            "was stopped."
        )
    if not registry.alive():
        return (
            f"the local registry stopped while {ref} was pushed (see {registry.folder / 'registry.log'}): "
            "run again; nothing was stopped."
        )
    why = last_line(output)
    return f"docker push of {ref} to the local registry failed ({why}): run again; nothing was stopped."


def _repo_digest(docker: LocalRunner, target: str) -> str:
    done = docker.run(
        ["docker", "image", "inspect", "--format", '{{join .RepoDigests "\\n"}}', target], timeout=60
    )
    repo = target.rsplit(":", 1)[0]
    for entry in done.stdout.split():
        if entry.startswith(repo + "@"):
            return entry.split("@", 1)[1]
    return ""


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
