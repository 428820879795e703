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


class OnTarget:
    """The ``Target``'s fields read through ``where``, for the options that hold one (deploy,
    rollback, sandbox): ``opts.project``, ``opts.state_dir`` ... as before the Target."""

    where: Target

    @property
    def project(self) -> str:
        return self.where.project

    @property
    def compose_files(self) -> tuple[str, ...]:
        return self.where.compose_files

    @property
    def compose_file(self) -> str:  # a path on the target
        return self.where.compose_files[0] if self.where.compose_files else ""

    @property
    def compose_overrides(self) -> tuple[str, ...]:  # more -f files (frappe_docker overrides/)
        return self.where.compose_files[1:]

    @property
    def env_file(self) -> str | None:
        return self.where.env_file

    @property
    def state_dir(self) -> str | None:
        return self.where.state_dir

    @property
    def image_var(self) -> str:
        return self.where.image_var

    @property
    def tag_var(self) -> str:
        return self.where.tag_var

    @property
    def backend_service(self) -> str:
        return self.where.backend_service

    @property
    def oneshot_services(self) -> tuple[str, ...]:
        return self.where.oneshot_services

    @property
    def kill_first(self) -> tuple[str, ...]:
        return self.where.kill_first

    @property
    def up_timeout(self) -> float:
        return self.where.up_timeout

    @property
    def down_timeout(self) -> float:
        return self.where.down_timeout

    @property
    def stop_timeout(self) -> int:
        return self.where.stop_timeout

    @property
    def send_image(self) -> bool:  # remote target without the image: send it (deploy/send.py)
        return self.where.transfer.allowed

    @property
    def source_docker_host(self) -> str | None:  # the daemon the image is sent from
        return self.where.transfer.source_docker_host

    @property
    def target(self) -> str | None:  # the named target it was started from (printed next steps)
        return self.where.name

    @property
    def repeat(self) -> tuple[tuple[str, str], ...]:
        return self.where.repeat

    @property
    def ssh_flags(self) -> tuple[str, ...]:
        return self.where.connection.ssh_flags

    @property
    def engine(self) -> str:
        return self.where.engine
