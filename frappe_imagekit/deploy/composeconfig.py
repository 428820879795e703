"""The compose configuration as compose itself renders it: which services run which image.

``render`` runs ``<compose> config`` (v2: ``--format json``; v1 prints YAML) with every ``-f``
file, the env file and the image variables set, exactly as ``up`` will see them; ``parse_config``
turns the output into ``RenderedConfig``. Pure functions then answer the questions deploy asks
before anything stops: which services get ``IMAGE:VERSION`` (``image_plan``), which are one-shot
(``oneshot_services``), which is frappe_docker's migrator (``migrator_services``), and where the
line that pins an image is (``image_lines``). Every service name read here passes
``validate.service_name``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import compose
from frappe_imagekit.deploy.compose import ComposeCLI
from frappe_imagekit.errors import DeployError
from frappe_imagekit.runner import Runner

COMPLETED = "service_completed_successfully"
# frappe_docker's one-shot services, known by name when nothing else in the config says so.
KNOWN_ONESHOT = frozenset({"configurator", "create-site", "migrator"})
# bench subcommands that keep running (queue workers, scheduler, dev server).
_BENCH_WORD = r"(?:^|[\s;&|(])bench(?:\s|$)"  # the bench command, not "frappe-bench" in a path
_LONG_RUNNING = re.compile(r"\b(worker|schedule|serve|start|watch)\b")
_BENCH = re.compile(_BENCH_WORD)
_MIGRATE = re.compile(r"\bmigrate\b")


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    image: str  # "" when the service only builds
    restart: str | None  # as written; None when the config leaves it out
    command: str  # entrypoint and command joined, for reading what it runs
    depends_on: Mapping[str, str] = field(default_factory=dict)  # service -> condition


@dataclass(frozen=True)
class RenderedConfig:
    services: Mapping[str, ServiceConfig]

    def dependents_completed(self, name: str) -> list[str]:
        """Services that wait for ``name`` to exit 0 (``service_completed_successfully``)."""
        return sorted(s.name for s in self.services.values() if s.depends_on.get(name) == COMPLETED)


@dataclass(frozen=True)
class ImagePlan:
    """Which services get the new image, which pin another tag of its repository."""

    new: list[str]
    pinned: dict[str, str]  # service -> the image it pins instead
    others: dict[str, str]  # services of other repositories (db, redis, nginx)


# ---------------------------------------------------------------- rendering


def config_argv(
    cli: ComposeCLI,
    project: str,
    files: Sequence[str],
    *,
    env_file: str | None = None,
    project_dir: str | None = None,
) -> list[str]:
    """``<compose> -p P -f F... [--env-file E] config`` (v2 asks for JSON)."""
    args = ["config", "--format", "json"] if cli.is_v2 else ["config"]
    return compose.compose_argv(cli, project, files, *args, project_dir=project_dir, env_file=env_file)


def render(
    runner: Runner,
    cli: ComposeCLI,
    project: str,
    files: Sequence[str],
    env: Mapping[str, str],
    env_file: str | None = None,
) -> RenderedConfig:
    """The configuration ``up`` would use with ``env`` set; raise naming compose's complaint."""
    return _parsed(render_data(runner, cli, project, files, env, env_file))


def render_data(
    runner: Runner,
    cli: ComposeCLI,
    project: str,
    files: Sequence[str],
    env: Mapping[str, str],
    env_file: str | None = None,
    *,
    untouched: str = "nothing was stopped",
) -> dict[str, Any]:
    """``compose config`` of ``files`` under ``project`` as compose printed it (v2 JSON, v1 YAML),
    with a ``services`` mapping; ``untouched`` says in an error what the caller had not done yet."""
    argv = config_argv(cli, project, files, env_file=env_file)
    done = runner.run(argv, env=env, timeout=60)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DeployError(
            f"compose cannot read {', '.join(files)} ({lines[-1] if lines else done.returncode}); "
            f"fix the compose files ({untouched})."
        )
    return _loaded(done.stdout)


def parse_config(text: str) -> RenderedConfig:
    """Parse ``config`` output: JSON (compose v2 ``--format json``) or YAML (v1)."""
    return _parsed(_loaded(text))


def _loaded(text: str) -> dict[str, Any]:
    try:
        data = _json_or_yaml(text)
    except RecursionError:  # an x- field nested thousands deep (json and yaml recurse per level)
        raise DeployError(
            "compose config printed a document nested too deeply: check the x- fields."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise DeployError("compose config printed no services: check the compose files.")
    return data


def _json_or_yaml(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DeployError(f"compose config printed something that is not YAML ({exc}).") from None


def parsed(data: dict[str, Any]) -> RenderedConfig:
    """The services of ``render_data``'s output (``engine.rendered``)."""
    return _parsed(data)


def _parsed(data: dict[str, Any]) -> RenderedConfig:
    parsed = [_service(name, body) for name, body in data["services"].items()]
    return RenderedConfig({s.name: s for s in parsed})


def _service(name: object, body: object) -> ServiceConfig:
    name = validate.service_name(name, "a service name in the compose config", DeployError)
    body = body if isinstance(body, dict) else {}
    restart = body.get("restart")
    return ServiceConfig(
        name=name,
        image=str(body.get("image") or ""),
        restart=str(restart) if restart is not None else None,
        command=" ".join([*_words(body.get("entrypoint")), *_words(body.get("command"))]),
        depends_on=_depends_on(body.get("depends_on")),
    )


def _words(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _depends_on(value: object) -> dict[str, str]:
    if isinstance(value, list):  # short form: started only
        return {str(v): "service_started" for v in value}
    if isinstance(value, dict):
        return {
            str(k): str((v or {}).get("condition", "service_started")) if isinstance(v, dict) else ""
            for k, v in value.items()
        }
    return {}


# ---------------------------------------------------------------- questions


def split_image(ref: str) -> tuple[str, str]:
    """(repository, tag or @digest) of an image reference; the tag is "latest" when left out."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, "@" + digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def image_plan(config: RenderedConfig, image: str, version: str) -> ImagePlan:
    """Sort the services by image: ``image:version``, another tag of ``image``, or other."""
    plan = ImagePlan([], {}, {})
    for service in sorted(config.services.values(), key=lambda s: s.name):
        repo, tag = split_image(service.image) if service.image else ("", "")
        if repo == image and tag == version:
            plan.new.append(service.name)
        elif repo == image:
            plan.pinned[service.name] = service.image
        else:
            plan.others[service.name] = service.image
    return plan


def oneshot_services(config: RenderedConfig, listed: Iterable[str] = ()) -> list[str]:
    """Services meant to exit: ``listed`` (``--oneshot``), those another service waits for with
    ``service_completed_successfully``, those with ``restart: "no"`` written out, frappe_docker's
    known names, and those whose command runs a bench command that ends (not worker/schedule)."""
    found = {name for name in listed if name in config.services}
    for service in config.services.values():
        if (
            config.dependents_completed(service.name)
            or service.restart in ("no", '"no"')
            or service.name in KNOWN_ONESHOT
            or _bench_command_that_ends(service.command)
        ):
            found.add(service.name)
    return sorted(found)


def _bench_command_that_ends(command: str) -> bool:
    return bool(_BENCH.search(command)) and not bench_then(_LONG_RUNNING, command)


def migrator_services(config: RenderedConfig) -> list[str]:
    """Services that run ``bench ... migrate`` when they start (frappe_docker's migrator)."""
    return sorted(s.name for s in config.services.values() if bench_then(_MIGRATE, s.command))


def bench_then(word: re.Pattern[str], command: str) -> bool:
    """``bench`` and then ``word`` on the rest of its line: what the regex ``bench.*word`` finds,
    in one pass (that regex is quadratic on a long line of "bench bench ..."). A later bench on a
    line already looked at has a shorter rest, so it is skipped."""
    looked_to = -1
    for match in _BENCH.finditer(command):
        if match.end() <= looked_to:
            continue
        looked_to = command.find("\n", match.end())
        looked_to = len(command) if looked_to < 0 else looked_to
        if word.search(command, match.end(), looked_to):
            return True
    return False


def image_lines(files: Mapping[str, str], images: Iterable[str]) -> list[str]:
    """``file:line`` of each ``image:`` line in ``files`` (path -> content) naming one of ``images``."""
    wanted = set(images)
    found = []
    for path, text in files.items():
        for number, line in enumerate(text.splitlines(), 1):
            match = re.match(r"\s*image:\s*['\"]?([^'\"\s#]+)", line)
            if match and match[1] in wanted:
                found.append(f"{path}:{number}")
    return found


# ---------------------------------------------------------------- files and project name


def resolve_config_files(label: str, working_dir: str) -> str:
    """A ``config_files`` label with every path absolute (compose v1 records them relative to
    the ``working_dir`` label; v2 records absolute paths)."""
    if not label:
        return label
    parts = [p if p.startswith("/") or not working_dir else f"{working_dir.rstrip('/')}/{p}"
             for p in label.split(",")]  # fmt: skip
    return ",".join(_normal(p) for p in parts)


def _normal(path: str) -> str:
    import posixpath

    return posixpath.normpath(path)


def compose_env(environ: Mapping[str, str], env_text: str | None) -> dict[str, str]:
    """COMPOSE_FILE, COMPOSE_PATH_SEPARATOR and COMPOSE_PROJECT_NAME as compose reads them: the
    environment first, then the env file."""
    from io import StringIO

    from dotenv import dotenv_values

    names = ("COMPOSE_FILE", "COMPOSE_PATH_SEPARATOR", "COMPOSE_PROJECT_NAME")
    from_file = dotenv_values(stream=StringIO(env_text)) if env_text else {}
    found = {}
    for name in names:
        value = environ.get(name) or from_file.get(name)
        if value:
            found[name] = value
    return found


def layout_from_env(found: Mapping[str, str], base_dir: str) -> tuple[list[str], str | None]:
    """(compose files, project name) from ``compose_env``; relative files are taken from
    ``base_dir`` (the env file's folder, or the working directory), as compose does."""
    separator = found.get("COMPOSE_PATH_SEPARATOR") or ":"
    files = [f for f in (found.get("COMPOSE_FILE") or "").split(separator) if f]
    files = [f if f.startswith("/") else _normal(f"{base_dir.rstrip('/')}/{f}") for f in files]
    return files, found.get("COMPOSE_PROJECT_NAME")
