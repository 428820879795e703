"""`imagekit init`: the files of a new workspace, from nothing to a stack imagekit can deploy.

Everything here is a pure function of the choices (Frappe major, apps, site, pins) except
``resolve_pins`` (``git ls-remote`` through gitremote) and ``write_files`` (which refuses to
overwrite a file that exists unless forced). The annotated schema is the repository's own
``de-example.env``, shipped as package data (``templates/de-example.env``; the repository's
root file is a link to it), so the two cannot drift; init drops its private-app token block
and appends the keys of the stack.

The compose layout has frappe_docker's shape (``compose.yaml`` plus ``overrides/`` for MariaDB,
Redis and the published port), every Frappe service on ``${CUSTOM_IMAGE}:${CUSTOM_TAG}``, the
frontend published on 127.0.0.1 only, and no ``$$host`` default (compose v1 leaves it literal and
nginx fails, FACTS.md): FRAPPE_SITE_NAME_HEADER comes from .env, single-quoted (``'$host'``), which
compose v1 and v2 both pass on literally. Left empty, the image's nginx entrypoint does not fill
it in (imagekit's Containerfile expands its ``$host`` default as a shell variable): nginx then
fails on ``server_name ;`` -- seen on the lab's real image.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from frappe_imagekit import gitremote, validate
from frappe_imagekit.check import git_timeout
from frappe_imagekit.errors import ExitCode, GitError, ImagekitError, UsageError
from frappe_imagekit.versions import PAIRINGS

GIT_BASE_ENV = "IMAGEKIT_INIT_GIT_BASE"  # where frappe's repositories are (tests: a local mirror)
DEFAULT_GIT_BASE = "https://github.com/frappe"
DEFAULT_SITE = "erp.localhost"
DEFAULT_APPS = ("erpnext",)
DEFAULT_PORT = 8080
TARGET = "local"
COMPOSE_FILES = (
    "compose.yaml",
    "overrides/compose.mariadb.yaml",
    "overrides/compose.redis.yaml",
    "overrides/compose.noproxy.yaml",
)
PLACEHOLDER = "generated_by_imagekit_init"  # the example's value of a generated secret
TOKEN_KEY = "DE_MACRS_PAT"  # the private-app token block of the repository's example
REQUIRES = {"hrms": "erpnext", "lending": "erpnext", "india_compliance": "erpnext"}


class FilesExistError(ImagekitError):
    """init would overwrite files; nothing was written."""

    exit_code = ExitCode.TAG_EXISTS


@dataclass(frozen=True)
class Pin:
    name: str
    url: str
    ref: str
    kind: str  # "tag" (newest release of the major) or "branch"


@dataclass(frozen=True)
class Choices:
    folder: Path
    major: int
    apps: tuple[str, ...]
    site: str
    offline: bool
    git_base: str = DEFAULT_GIT_BASE


@dataclass
class Plan:
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    private: set[str] = field(default_factory=set)  # written with mode 0600
    notes: list[str] = field(default_factory=list)
    project: str = "erp"


# ---------------------------------------------------------------- choices


def parse_apps(text: str) -> tuple[str, ...]:
    """``erpnext,hrms`` -> the app names, checked (frappe itself is not an app of apps.json)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--apps names no app: pass e.g. --apps erpnext,hrms.")
    apps: list[str] = []
    for name in names:
        validate.app_name(name, "--apps entry", UsageError, "use the app's package name, e.g. erpnext")
        if name == "frappe":
            raise UsageError("--apps lists frappe: frappe is always in the image; leave it out of --apps.")
        if name not in apps:
            apps.append(name)
    for app, needs in REQUIRES.items():
        if app in apps and needs not in apps:
            raise UsageError(f"--apps has {app} without {needs}, which it needs: add {needs} before {app}.")
    return tuple(apps)


def check_major(major: int) -> int:
    if major not in PAIRINGS:
        known = " or ".join(str(m) for m in sorted(PAIRINGS))
        raise UsageError(f"--frappe {major} is not a Frappe major imagekit knows: use {known}.")
    return major


def git_base(value: str) -> str:
    """The base URL of frappe's repositories (``https://github.com/frappe``), checked as a git URL."""
    base = value.rstrip("/")
    validate.repo_url(base + "/frappe", f"{GIT_BASE_ENV} ({base})", UsageError)
    return base


def project_name(folder: Path) -> str:
    """A compose project name from the folder's name (lower-case letters, digits, '-', '_')."""
    name = re.sub(r"[^a-z0-9_-]+", "-", folder.resolve().name.lower()).strip("-_")
    name = name if name and name[0].isalnum() else f"erp{name}"
    return validate.project_name(name[:40] or "erp", "the project name", UsageError)


# ---------------------------------------------------------------- pins


def newest_release(refs: Mapping[str, str], major: int) -> str | None:
    """The newest ``vMAJOR.x.y`` tag among ``refs`` (``refs/tags/v15.17.3`` ...), or None."""
    pattern = re.compile(rf"refs/tags/v{major}\.(\d+)\.(\d+)")
    found = [(int(m.group(1)), int(m.group(2))) for ref in refs if (m := pattern.fullmatch(ref))]
    if not found:
        return None
    minor, patch = max(found)
    return f"v{major}.{minor}.{patch}"


def release_ref(refs: Mapping[str, str], major: int) -> tuple[str, str] | None:
    """``(ref, kind)`` of ``major`` on a remote: its newest ``vMAJOR.x.y`` tag (``"tag"``), else
    its ``version-MAJOR`` branch (``"branch"``); None when it has neither (init, upgrade-plan)."""
    tag = newest_release(refs, major)
    if tag:
        return tag, "tag"
    branch = f"version-{major}"
    return (branch, "branch") if f"refs/heads/{branch}" in refs else None


def pin_from_refs(name: str, url: str, refs: Mapping[str, str], major: int) -> Pin:
    found = release_ref(refs, major)
    if found:
        return Pin(name, url, *found)
    branch = f"version-{major}"
    raise UsageError(
        f"{url} has neither a v{major}.x.y release tag nor a {branch} branch: {name} has no release "
        f"for Frappe {major}; leave it out of --apps or pick another --frappe."
    )


Lister = Callable[[str], Mapping[str, str]]


def ls_remote(url: str) -> Mapping[str, str]:
    return gitremote.ls_remote(url, {}, None, git_timeout())


def resolve_pins(
    names: Sequence[str], base: str, major: int, offline: bool, lister: Lister = ls_remote
) -> list[Pin]:
    """frappe and every app: the newest release tag of ``major`` on its remote, or (offline, or
    a repository without release tags) the ``version-MAJOR`` branch."""
    urls = [f"{base}/{name}" for name in names]
    if offline:
        return [Pin(n, u, f"version-{major}", "branch") for n, u in zip(names, urls, strict=True)]
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        found = list(pool.map(lambda url: _refs(url, lister), urls))
    return [pin_from_refs(n, u, r, major) for n, u, r in zip(names, urls, found, strict=True)]


def _refs(url: str, lister: Lister) -> Mapping[str, str]:
    try:
        return lister(url)
    except GitError as exc:
        offline = "or run imagekit init --offline to write branch refs."
        raise GitError(f"{exc.message.rstrip('.')}, {offline}") from None


# ---------------------------------------------------------------- de-example.env and .env


def example_template() -> str:
    """The repository's annotated de-example.env (package data)."""
    return (resources.files("frappe_imagekit") / "templates" / "de-example.env").read_text(encoding="utf-8")


def blocks(text: str) -> list[tuple[list[str], str | None]]:
    """Split an example into (comment lines, KEY=VALUE line or None for trailing comments)."""
    out: list[tuple[list[str], str | None]] = []
    pending: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            out.append((pending, line))
            pending = []
        else:
            pending.append(line)
    if pending:
        out.append((pending, None))
    return out


STACK_KEYS = """
# ---- The stack: compose.yaml and overrides/ (written by imagekit init), read by compose ----

# Compose project of this stack (imagekit.toml's target "local" uses the same name).
# @required
# @pattern [a-z0-9][a-z0-9_-]*
COMPOSE_PROJECT_NAME={project}

# The compose files, ':'-separated, so that docker compose commands in this folder use the stack.
# @required
COMPOSE_FILE={compose_file}

# MariaDB root password (the db service's MYSQL_ROOT_PASSWORD); imagekit site new gives it to
# bench on stdin. Changing it here does not change it in an existing database.
# @secret
DB_PASSWORD={placeholder}

# Administrator password of the sites imagekit site new creates (sent to bench on stdin).
# @secret
ADMIN_PASSWORD={placeholder}

# Port on 127.0.0.1 where the frontend (nginx) answers: http://SITE:PORT (SITE.localhost works
# in browsers).
# @required
# @pattern [1-9][0-9]{{1,4}}
HTTP_PUBLISH_PORT={port}

# Which site nginx serves: '$host' (single quotes: compose v1 and v2 keep it literal) serves the
# site the Host header names; a site name serves that one site whatever the Host header says.
# @required
FRAPPE_SITE_NAME_HEADER='$host'

# The database and Redis images of the stack (Docker Hub's by default): name a mirror or a local
# image where Docker Hub cannot be reached. Pulled by `docker compose pull`, not built by imagekit.
# @required
# @pattern [a-z0-9][a-z0-9._/:@-]*
MARIADB_IMAGE=mariadb:10.11

# @required
# @pattern [a-z0-9][a-z0-9._/:@-]*
REDIS_IMAGE=redis:6.2-alpine
"""


def example_text(project: str) -> str:
    """de-example.env of a new workspace: the repository's schema without the private-app token
    block (init lists only public apps), plus the stack's keys."""
    kept: list[str] = []
    for comments, line in blocks(example_template()):
        if line is not None and line.split("=", 1)[0].strip() == TOKEN_KEY:
            continue
        kept.extend(comments)
        if line is not None:
            kept.append(line)
    stack = STACK_KEYS.format(
        project=project, compose_file=":".join(COMPOSE_FILES), placeholder=PLACEHOLDER, port=DEFAULT_PORT
    )
    return "\n".join(kept).rstrip("\n") + "\n" + stack


def env_text(example: str, values: Mapping[str, str]) -> str:
    """.env from the example: the same lines, with ``values`` for the keys it names."""
    lines = []
    for line in example.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else ""
        lines.append(f"{key}={values[key]}" if key in values else line)
    return "\n".join(lines) + "\n"


def new_secret() -> str:
    """A generated password: 32 URL-safe characters (no quoting needed in .env or compose)."""
    return secrets.token_urlsafe(24)


def env_values(choices: Choices, frappe: Pin, project: str) -> dict[str, str]:
    pairing = PAIRINGS[choices.major]
    return {
        "IMAGE_NAME": f"local/{project}",
        "FRAPPE_PATH": frappe.url,
        "FRAPPE_BRANCH": frappe.ref,
        "PYTHON_VERSION": pairing.python,
        "NODE_VERSION": pairing.nodes[0],
        "DB_PASSWORD": new_secret(),
        "ADMIN_PASSWORD": new_secret(),
    }


# ---------------------------------------------------------------- compose layout

COMPOSE_YAML = """\
# The Frappe services in frappe_docker's shape (compose.yaml + overrides/), written by imagekit init.
# Every Frappe service runs ${CUSTOM_IMAGE}:${CUSTOM_TAG}: imagekit deploy sets both (and
# PULL_POLICY=never) to the build it deploys. FRAPPE_SITE_NAME_HEADER has no default here (compose
# v1 leaves an escaped nginx-variable default literal): .env sets it.
x-frappe-image: &frappe_image
  image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}
  pull_policy: ${PULL_POLICY:-never}
  restart: unless-stopped
  volumes:
    - sites:/home/frappe/frappe-bench/sites

services:
  configurator:
    <<: *frappe_image
    restart: "no"
    entrypoint: ["bash", "-c"]
    command:
      - >
        ls -1 apps > sites/apps.txt;
        bench set-config -g db_host $$DB_HOST;
        bench set-config -gp db_port $$DB_PORT;
        bench set-config -g redis_cache "redis://$$REDIS_CACHE";
        bench set-config -g redis_queue "redis://$$REDIS_QUEUE";
        bench set-config -g redis_socketio "redis://$$REDIS_QUEUE";
        bench set-config -gp socketio_port $$SOCKETIO_PORT;
    environment:
      DB_HOST: ${DB_HOST:-}
      DB_PORT: ${DB_PORT:-}
      REDIS_CACHE: ${REDIS_CACHE:-}
      REDIS_QUEUE: ${REDIS_QUEUE:-}
      SOCKETIO_PORT: "9000"

  backend:
    <<: *frappe_image
    depends_on:
      configurator:
        condition: service_completed_successfully

  frontend:
    <<: *frappe_image
    command: ["nginx-entrypoint.sh"]
    environment:
      BACKEND: backend:8000
      SOCKETIO: websocket:9000
      FRAPPE_SITE_NAME_HEADER: ${FRAPPE_SITE_NAME_HEADER:?set FRAPPE_SITE_NAME_HEADER in .env}
      UPSTREAM_REAL_IP_ADDRESS: ${UPSTREAM_REAL_IP_ADDRESS:-127.0.0.1}
      UPSTREAM_REAL_IP_HEADER: ${UPSTREAM_REAL_IP_HEADER:-X-Forwarded-For}
      UPSTREAM_REAL_IP_RECURSIVE: ${UPSTREAM_REAL_IP_RECURSIVE:-off}
      PROXY_READ_TIMEOUT: ${PROXY_READ_TIMEOUT:-120}
      CLIENT_MAX_BODY_SIZE: ${CLIENT_MAX_BODY_SIZE:-50m}
    depends_on:
      - backend
      - websocket

  websocket:
    <<: *frappe_image
    command: ["node", "/home/frappe/frappe-bench/apps/frappe/socketio.js"]
    depends_on:
      configurator:
        condition: service_completed_successfully

  queue-short:
    <<: *frappe_image
    command: ["bench", "worker", "--queue", "short,default"]
    depends_on:
      configurator:
        condition: service_completed_successfully

  queue-long:
    <<: *frappe_image
    command: ["bench", "worker", "--queue", "long,default,short"]
    depends_on:
      configurator:
        condition: service_completed_successfully

  scheduler:
    <<: *frappe_image
    command: ["bench", "schedule"]
    depends_on:
      configurator:
        condition: service_completed_successfully

volumes:
  sites:
"""

MARIADB_YAML = """\
# MariaDB for the stack (frappe_docker's overrides/compose.mariadb.yaml shape).
# The root password comes from DB_PASSWORD in .env; it is never on a command line (mysqladmin
# ping answers 0 while the server runs, even without a password).
services:
  configurator:
    environment:
      DB_HOST: db
      DB_PORT: "3306"
    depends_on:
      - db

  db:
    image: ${MARIADB_IMAGE:-mariadb:10.11}
    restart: unless-stopped
    healthcheck:
      test: ["CMD-SHELL", "mysqladmin ping -h localhost"]
      interval: 2s
      retries: 30
    command:
      - --character-set-server=utf8mb4
      - --collation-server=utf8mb4_unicode_ci
      - --skip-character-set-client-handshake
      - --skip-innodb-read-only-compressed
    environment:
      MYSQL_ROOT_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD in .env}
    volumes:
      - db-data:/var/lib/mysql

volumes:
  db-data:
"""

REDIS_YAML = """\
# Redis for the stack (frappe_docker's overrides/compose.redis.yaml shape).
services:
  configurator:
    environment:
      REDIS_CACHE: redis-cache:6379
      REDIS_QUEUE: redis-queue:6379
    depends_on:
      - redis-cache
      - redis-queue

  redis-cache:
    image: ${REDIS_IMAGE:-redis:6.2-alpine}
    restart: unless-stopped

  redis-queue:
    image: ${REDIS_IMAGE:-redis:6.2-alpine}
    restart: unless-stopped
    volumes:
      - redis-queue-data:/data

volumes:
  redis-queue-data:
"""

NOPROXY_YAML = """\
# The frontend published on this machine only (127.0.0.1); put a TLS proxy in front for others.
services:
  frontend:
    ports:
      - "127.0.0.1:${HTTP_PUBLISH_PORT:-8080}:8080"
"""


def targets_toml(project: str) -> str:
    compose = ", ".join(f'"{name}"' for name in COMPOSE_FILES)
    return (
        '# Named deploy targets (README, "Named targets"); run imagekit in this folder.\n'
        f"[targets.{TARGET}]\n"
        f'project = "{project}"\n'
        f"compose = [{compose}]\n"
        'env_file = ".env"\n'
        'description = "this machine: the stack of this folder, frontend on 127.0.0.1"\n'
    )


GITIGNORE = """\
# secrets: the database root and Administrator passwords, tokens
.env
# build logs (the manifests in builds/ and the records in deploys/ are history: keep them)
builds/*.log
"""

DOCKERIGNORE = """\
# The workspace is the build context: nothing of it is needed in the image, secrets least of all.
.env
*.env
!de-example.env
.git
builds/
deploys/
"""


# ---------------------------------------------------------------- the plan


def apps_json(pins: Sequence[Pin]) -> str:
    lines = [f'  {{"url": "{p.url}", "branch": "{p.ref}"}}' for p in pins]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def plan(choices: Choices, pins: Sequence[Pin]) -> Plan:
    """Every file of the workspace (``pins``: frappe first, then the apps)."""
    project = project_name(choices.folder)
    frappe, apps = pins[0], list(pins[1:])
    example = example_text(project)
    result = Plan(project=project)
    result.files = {
        "de-example.env": example,
        ".env": env_text(example, env_values(choices, frappe, project)),
        "apps.json": apps_json(apps),
        "compose.yaml": COMPOSE_YAML,
        "overrides/compose.mariadb.yaml": MARIADB_YAML,
        "overrides/compose.redis.yaml": REDIS_YAML,
        "overrides/compose.noproxy.yaml": NOPROXY_YAML,
        "imagekit.toml": targets_toml(project),
        ".gitignore": GITIGNORE,
        ".dockerignore": DOCKERIGNORE,
    }
    result.private = {".env"}
    branches = [p.name for p in pins if p.kind == "branch"]
    if choices.offline:
        result.notes.append(
            f"--offline: apps.json and FRAPPE_BRANCH name the branch version-{choices.major}, not a "
            "release: a branch moves; write release tags there before a production build."
        )
    elif branches:
        result.notes.append(
            f"{', '.join(branches)}: no v{choices.major}.x.y release tag on the remote; "
            f"pinned to the branch version-{choices.major}."
        )
    return result


def plan_names() -> tuple[str, ...]:
    """Every file init writes (what it checks before asking any remote)."""
    return (
        "de-example.env",
        ".env",
        "apps.json",
        *COMPOSE_FILES,
        "imagekit.toml",
        ".gitignore",
        ".dockerignore",
    )


def existing(folder: Path, names: Sequence[str]) -> list[str]:
    return [name for name in names if (folder / name).exists() or (folder / name).is_symlink()]


def exists_message(folder: Path, taken: Sequence[str]) -> str:
    return (
        f"{folder} already has {', '.join(taken)}: nothing was written; pass --force to overwrite "
        "them (a new .env has new passwords), or init another folder."
    )


def write_files(folder: Path, result: Plan, force: bool) -> list[str]:
    """Write every file of ``result``; refuse (before writing anything) to overwrite one."""
    taken = existing(folder, list(result.files))
    if taken and not force:
        raise FilesExistError(exists_message(folder, taken))
    for name, text in result.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        _write(path, text, 0o600 if name in result.private else 0o644)
    return taken


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(text)


def next_commands(folder: Path, cwd: Path, site: str) -> list[str]:
    """The commands after init (a ``cd`` first when the workspace is not the current folder)."""
    commands = []
    if folder.resolve() != cwd.resolve():
        commands.append(f"cd {_quoted(str(folder))}")
    commands.append(f"imagekit build && imagekit deploy {TARGET}")
    commands.append(f"imagekit site new {site} {TARGET}")
    return commands


def _quoted(text: str) -> str:
    return shlex.quote(text)
