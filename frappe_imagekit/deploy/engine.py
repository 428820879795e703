"""The engine a stack runs on, behind one interface: compose (v1 or v2) today, more by name.

A step of deploy, rollback or sandbox never calls compose itself: it asks the ``Engine`` to
render the configuration, list the project's containers, find the backend, exec in it, stop,
replace and start services and wait for them, and each operation has its argv (``*_argv``) so
that ``--dry-run`` prints the commands that would run. An engine is chosen by name
(``open_engine("compose", runner)``, as pipx's ``get_backend``) and the name is recorded in
``last-up.json`` and the deploy record, so that rollback and sandbox use the engine that
deployed (a record without the name is ``compose``: every record before engines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from frappe_imagekit import validate
from frappe_imagekit.deploy import compose, composeconfig
from frappe_imagekit.deploy.compose import ComposeCLI, Container
from frappe_imagekit.deploy.composeconfig import RenderedConfig
from frappe_imagekit.errors import DeployError, ImagekitError, UsageError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import Runner

COMPOSE = "compose"
DEFAULT_ENGINE = COMPOSE  # what a last-up.json or a deploy record without "engine" ran on


@dataclass(frozen=True)
class Stack:
    """What the engine reads a project's configuration from: its name, its files (``-f`` each,
    in order), the folder relative paths resolve from and the env file (paths on the target)."""

    project: str
    files: tuple[str, ...]
    project_dir: str | None = None
    env_file: str | None = None


class Engine(Protocol):
    """One way to run a stack. Containers come back as ``compose.Container`` (id, service,
    state, health, restart count): an engine of tasks (Swarm) reports each task's container."""

    @property
    def name(self) -> str:
        """Its name, recorded in last-up.json and the deploy record (``compose``)."""
        ...

    @property
    def runner(self) -> Runner:
        """Where its commands run (this machine or an SSH host)."""
        ...

    def describe(self) -> str:
        """What runs the stack, for the report: ``docker-compose 1.29.2``."""
        ...

    def notes(self) -> list[str]:
        """Warnings about this engine for the report (compose v1 is unmaintained ...)."""
        ...

    def command_base(self) -> tuple[str, ...]:
        """The words printed commands for this stack start with (``docker compose``)."""
        ...

    def config_argv(self, stack: Stack) -> list[str]: ...

    def render(self, stack: Stack, env: Mapping[str, str], *, untouched: str = ...) -> dict[str, Any]:
        """The configuration the engine would start, as it printed it (a ``services`` mapping);
        ``untouched`` says in an error what the caller had not done yet."""
        ...

    def containers(self, project: str) -> list[Container]:
        """Every container of ``project``, running or not, one-offs included."""
        ...

    def services(self, project: str) -> list[Container]:
        """The containers of ``project``'s services (not one-off runs)."""
        ...

    def backend(
        self, project: str, service: str, containers: Sequence[Container] | None = None
    ) -> Container | None:
        """The running container of ``service`` (the one that runs bench), or None."""
        ...

    def exec_argv(self, container: str, argv: Sequence[str], *, stdin: bool = False) -> list[str]: ...

    def exec(self, container: str, argv: Sequence[str], **kwargs: Any) -> Completed: ...

    def up_argv(
        self,
        stack: Stack,
        services: Sequence[str] = (),
        *,
        stop_timeout: int | None = None,
        orphans: bool = True,
    ) -> list[str]:
        """Start (or replace what changed of) ``services`` of the stack, every one when empty."""
        ...

    def down_argv(self, stack: Stack, *, stop_timeout: int = 10) -> list[str]: ...

    def kill(self, project: str, services: Sequence[str]) -> list[str]:
        """SIGKILL the running containers of ``services``; the services killed."""
        ...

    def remove(self, project: str, services: Sequence[str], stop_timeout: int = 10) -> list[str]:
        """Stop and remove the containers of ``services`` (the others keep running); the services removed."""
        ...

    def wait(
        self,
        project: str,
        oneshot: Sequence[str],
        timeout: float,
        *,
        settle: float = compose.SETTLE,
        before: Mapping[str, int] | None = None,
    ) -> list[Container]:
        """Until every service runs (healthy when it has a check) and one-shot ones exited 0;
        raise ``DeployError`` naming a crash, a crash loop or a timeout with its last log lines."""
        ...

    def wait_gone(self, project: str, timeout: float) -> None: ...


@dataclass(frozen=True)
class ComposeEngine:
    """docker compose v2 (``docker compose``) or v1 (``docker-compose``) on ``runner``."""

    runner: Runner
    cli: ComposeCLI
    name: str = COMPOSE

    def describe(self) -> str:
        return f"{' '.join(self.cli.base)} {self.cli.version}"

    def notes(self) -> list[str]:
        if self.cli.is_v2:
            return []
        return [
            f"compose v1 ({self.describe()}) is unmaintained upstream; it works, but install the "
            "compose v2 plugin (`docker compose`) on the target."
        ]

    def command_base(self) -> tuple[str, ...]:
        return tuple(self.cli.base)

    def argv(self, stack: Stack, *args: str) -> list[str]:
        """``<compose> -p P [--project-directory D] -f F... [--env-file E] ARGS``."""
        return compose.compose_argv(self.cli, stack.project, stack.files, *args,
                                    project_dir=stack.project_dir, env_file=stack.env_file)  # fmt: skip

    def config_argv(self, stack: Stack) -> list[str]:
        return composeconfig.config_argv(self.cli, stack.project, stack.files, env_file=stack.env_file,
                                         project_dir=stack.project_dir)  # fmt: skip

    def render(
        self, stack: Stack, env: Mapping[str, str], *, untouched: str = "nothing was stopped"
    ) -> dict[str, Any]:
        return composeconfig.render_data(self.runner, self.cli, stack.project, stack.files, env,
                                         stack.env_file, untouched=untouched)  # fmt: skip

    def containers(self, project: str) -> list[Container]:
        return compose.project_containers(self.runner, project)

    def services(self, project: str) -> list[Container]:
        return compose.service_containers(self.containers(project))

    def backend(
        self, project: str, service: str, containers: Sequence[Container] | None = None
    ) -> Container | None:
        found = self.containers(project) if containers is None else containers
        return running_service(compose.service_containers(found), service)

    def exec_argv(self, container: str, argv: Sequence[str], *, stdin: bool = False) -> list[str]:
        return ["docker", "exec", *(["-i"] if stdin else []), container, *argv]

    def exec(self, container: str, argv: Sequence[str], **kwargs: Any) -> Completed:
        return self.runner.run(self.exec_argv(container, argv), **kwargs)

    def up_argv(
        self,
        stack: Stack,
        services: Sequence[str] = (),
        *,
        stop_timeout: int | None = None,
        orphans: bool = True,
    ) -> list[str]:
        args = ["up", "-d", *(["--remove-orphans"] if orphans else [])]
        if stop_timeout is not None:
            args += ["--timeout", str(stop_timeout)]  # as compose.up_args
        return self.argv(stack, *args, *services)

    def down_argv(self, stack: Stack, *, stop_timeout: int = 10) -> list[str]:
        return self.argv(stack, *compose.down_args(self.cli, stop_timeout))

    def kill(self, project: str, services: Sequence[str]) -> list[str]:
        return compose.kill_services(self.runner, project, services)

    def remove(self, project: str, services: Sequence[str], stop_timeout: int = 10) -> list[str]:
        return compose.remove_services(self.runner, project, services, stop_timeout)

    def wait(
        self,
        project: str,
        oneshot: Sequence[str],
        timeout: float,
        *,
        settle: float = compose.SETTLE,
        before: Mapping[str, int] | None = None,
    ) -> list[Container]:
        return compose.wait_services(self.runner, project, oneshot, timeout, settle=settle, before=before)

    def wait_gone(self, project: str, timeout: float) -> None:
        compose.wait_gone(self.runner, project, timeout)


def running_service(containers: Sequence[Container], service: str) -> Container | None:
    """The first running container of ``service`` among ``containers``."""
    return next((c for c in containers if c.service == service and c.state == "running"), None)


def rendered(data: dict[str, Any]) -> RenderedConfig:
    """``Engine.render``'s output as the services deploy checks (images, one-shot, migrator)."""
    return composeconfig.parsed(data)


def _open_compose(runner: Runner) -> Engine:
    return ComposeEngine(runner, compose.detect_compose(runner))


# name -> how to open it on a runner (pre-commit's all_languages, pipx's get_backend)
ENGINES: dict[str, Callable[[Runner], Engine]] = {COMPOSE: _open_compose}


def engine_name(value: object, what: str = "the engine", error: type[ImagekitError] = UsageError) -> str:
    """``value`` when it names a known engine (a missing one is ``compose``), else ``error``."""
    if value is None:
        return DEFAULT_ENGINE
    name = validate.not_an_option(value, what, error)
    if name not in ENGINES:
        raise error(f"{what} {name[:40]!r} is not one imagekit knows ({', '.join(sorted(ENGINES))}).")
    return name


def open_engine(name: str, runner: Runner) -> Engine:
    """The engine called ``name`` on ``runner`` (it checks that the engine answers there)."""
    return ENGINES[engine_name(name, "the engine", DeployError)](runner)
