"""``Target``: the one value that says where a stack runs and how imagekit talks to it.

Deploy, rollback, sandbox and rehearse describe the same stack (project, compose files, env
file, state folder, host and SSH options, backend service, image variables, one-shot
services, timeouts, engine); the CLI builds it once (``cli/targetopts.py``) from a named
target of ``imagekit.toml`` or the options, and each command's options hold it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frappe_imagekit.deploy.engine import DEFAULT_ENGINE, Stack
from frappe_imagekit.deploy.send import ImageTransfer


@dataclass(frozen=True)
class Connection:
    """The host (None: this machine) and the SSH and docker options to reach it."""

    host: str | None = None  # user@server[:port]
    known_hosts: str | None = None
    identity_file: str | None = None
    ssh_config: str | None = None
    docker_host: str | None = None  # DOCKER_HOST for the commands on the target
    ssh_flags: tuple[str, ...] = ()  # ssh's own options for printed `ssh HOST '...'` lines


@dataclass(frozen=True)
class Target:
    project: str = ""
    compose_files: tuple[str, ...] = ()  # paths on the target; [0] the main file, then overrides
    env_file: str | None = None  # a path on the target
    state_dir: str | None = None  # default: $XDG_STATE_HOME/imagekit on the target
    connection: Connection = field(default_factory=Connection)
    transfer: ImageTransfer = field(default_factory=ImageTransfer)
    backend_service: str = "backend"
    image_var: str = "CUSTOM_IMAGE"
    tag_var: str = "CUSTOM_TAG"
    oneshot_services: tuple[str, ...] = ("configurator",)
    # services killed (SIGKILL) before they are replaced: PID 1 ignores SIGTERM, no state held
    kill_first: tuple[str, ...] = ("websocket", "scheduler")
    up_timeout: float = 120
    down_timeout: float = 60
    stop_timeout: int = 10
    engine: str = DEFAULT_ENGINE
    name: str | None = None  # the named target of imagekit.toml it was built from
    # the command line's options a printed imagekit command repeats (SSH options; with a named
    # target, what overrode it)
    repeat: tuple[tuple[str, str], ...] = ()

    def stack(self, project_dir: str | None = None) -> Stack:
        return Stack(self.project, self.compose_files, project_dir, self.env_file)

    def image_env(self, image: str, version: str) -> dict[str, str]:
        """The variables the engine renders and starts with: the image to run, never pulled."""
        return {self.image_var: image, self.tag_var: version, "PULL_POLICY": "never"}
