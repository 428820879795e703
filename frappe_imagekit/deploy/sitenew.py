"""The first site of a stack: ``bench new-site`` with every app of the running image.

Runs in the project's running backend (``docker exec -i``), as frappe_docker documents it
(``--mariadb-user-host-login-scope=%``: the database user logs in from the other containers).
The passwords go to bench on stdin, never argv, in the order of the real prompts
(tests/fixtures/frappe-v15-lab/48-new-site-s2): ``MySQL root password: `` first, then, after
frappe's doctypes are installed, ``Set Administrator password: `` and ``Re-enter Administrator
password: `` -- the admin password twice, or click meets EOF and aborts (49-...-once-aborted).
The apps are those of the image's build record (``builds/VERSION.json``), frappe excluded.
Afterwards the site must answer (deploy/health.py), as after a deploy, and the address the
frontend is published on (``docker port``) gives the URL to open.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.deploy import benchsite, compose, composeconfig, health
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.errors import ConfigError, DeployError, NotFoundError, UsageError
from frappe_imagekit.manifest import find_manifest, read_manifest
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

ROOT_VAR = "DB_PASSWORD"  # frappe_docker's: the db service's MYSQL_ROOT_PASSWORD
ADMIN_VAR = "ADMIN_PASSWORD"
NEW_SITE_TIMEOUT = 3600.0  # erpnext's install takes minutes on a small machine
_SITE_EXISTS = 'test -f "sites/$1/site_config.json"'


@dataclass(frozen=True)
class SiteRequest:
    site: str
    project: str
    env_file: str | None
    backend_service: str = "backend"


@dataclass
class SiteResult:
    site: str
    apps: list[str]
    version: str
    health: str = "not checked"
    url: str = ""
    published: str | None = None  # "127.0.0.1:8080": the frontend's address on the host
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Passwords:
    root: str
    admin: str

    def stdin(self) -> bytes:
        """What bench reads, in the order it asks (transcript 48): root, admin, admin again."""
        return benchsite.new_site_stdin(self.root, self.admin)


def passwords(env_text: str | None, env_file: str) -> Passwords:
    """DB_PASSWORD and ADMIN_PASSWORD of the env file (one line each, so stdin can carry them)."""
    if env_text is None:
        raise NotFoundError(f"env file {env_file} cannot be read: site new takes {ROOT_VAR} from it.")
    found = []
    for key in (ROOT_VAR, ADMIN_VAR):
        value = benchsite.env_password(env_text, env_file, key)
        if not value:
            raise ConfigError(
                f"{env_file} has no {key}: set it there (the {_role(key)} password bench new-site asks for)."
            )
        found.append(value)
    return Passwords(root=found[0], admin=found[1])


def _role(key: str) -> str:
    return "database root" if key == ROOT_VAR else "Administrator"


def image_apps(ws: Workspace, image: str) -> tuple[str, list[str]]:
    """(version, apps) of the running image, from its build record in builds/ (frappe excluded)."""
    _, version = composeconfig.split_image(image)
    if version.startswith("@"):
        raise NotFoundError(f"the backend runs {image}, which has no tag: deploy a build of imagekit first.")
    data = read_manifest(find_manifest(ws, version))
    apps = []
    for entry in data.get("apps") or []:
        name = validate.app_name(entry.get("name"), f"builds/{version}.json app", ConfigError)
        if name != "frappe" and name not in apps:
            apps.append(name)
    return version, apps


def running_backend(runner: Runner, project: str, service: str) -> tuple[Container, list[Container]]:
    containers = compose.service_containers(compose.project_containers(runner, project))
    for container in containers:
        if container.service == service and container.state == "running":
            return container, containers
    raise DeployError(
        f"no running {service} container in project {project}: start the stack first "
        "(imagekit deploy TARGET), then create the site."
    )


def backend_image(runner: Runner, container: Container) -> str:
    done = runner.run(["docker", "inspect", "-f", "{{.Config.Image}}", container.id], timeout=60)
    if done.returncode != 0:
        raise DeployError(f"cannot inspect the backend container on {runner.host}: {done.stderr.strip()}")
    return validate.not_an_option(done.stdout.strip(), "the backend's image", DeployError)


def create_site(
    runner: Runner,
    ws: Workspace,
    request: SiteRequest,
    secrets: Passwords,
    emit: Callable[[str], None],
) -> SiteResult:
    """Make the site in the running stack, then check it answers."""
    site = validate.site_name(request.site, "the site name", UsageError)
    backend, containers = running_backend(runner, request.project, request.backend_service)
    version, apps = image_apps(ws, backend_image(runner, backend))
    exists = ["docker", "exec", backend.id, "sh", "-c", _SITE_EXISTS, "sh", site]
    if runner.run(exists, timeout=60).returncode == 0:
        raise UsageError(f"site {site} already exists in project {request.project}: pick another name.")
    emit(f"creating {site} with {', '.join(['frappe', *apps])} ({version}); this takes minutes")
    done = runner.run(
        benchsite.new_site_argv(backend.id, site, apps=apps),
        input_bytes=secrets.stdin(),
        timeout=NEW_SITE_TIMEOUT,
        on_stdout=lambda line: _progress(line, emit),
        on_stderr=lambda line: _progress(line, emit),
    )
    if done.returncode != 0:
        raise DeployError(failure_message(site, done.stdout + "\n" + done.stderr, backend.name, runner.host))
    result = SiteResult(site=site, apps=apps, version=version)
    result.url, asset = _health_target(runner, backend, containers, result)
    emit(f"checking {site} ({result.url})")
    result.health = health.check_site(runner, backend.id, result.url, site, asset)
    result.published = published_address(runner, containers)
    return result


FRONTEND_SERVICE = "frontend"  # frappe_docker's nginx, listening on 8080 in its container
FRONTEND_PORT = "8080/tcp"


def published_address(runner: Runner, containers: Sequence[Container]) -> str | None:
    """Where the frontend's 8080 is published on the host (``docker port``), or None."""
    for container in containers:
        if container.service == FRONTEND_SERVICE and container.state == "running":
            done = runner.run(["docker", "port", container.id, FRONTEND_PORT], timeout=30)
            return first_address(done.stdout) if done.returncode == 0 else None
    return None


def first_address(text: str) -> str | None:
    """The first IPv4 ``ADDRESS:PORT`` of ``docker port``'s output (an IPv6 one if that is all);
    0.0.0.0 is every address of the host, 127.0.0.1 among them."""
    found: list[tuple[str, int]] = []
    for line in text.splitlines():
        host, _, port = line.strip().rpartition(":")
        try:
            parsed = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            continue
        if port.isdigit() and 0 < int(port) < 65536:
            found.append((str(parsed), int(port)))
    found.sort(key=lambda pair: ":" in pair[0])  # IPv4 first
    if not found:
        return None
    address, number = found[0]
    shown = "127.0.0.1" if address == "0.0.0.0" else f"[{address}]" if ":" in address else address  # noqa: S104
    return f"{shown}:{number}"


def open_line(site: str, published: str | None, host: str = "local") -> str:
    """What to open once the site is made: its URL on the published port, or why there is none."""
    if published is None:
        return "no frontend port is published: publish the frontend's 8080 to reach the site from a browser."
    port = published.rpartition(":")[2]
    url = f"http://{site}:{port}/"
    if host != "local":
        return f"the frontend is published on {published} of {host}: open {url} there or through a tunnel."
    if site == "localhost" or site.endswith(".localhost"):
        return f"open {url} (the frontend is published on {published})."
    return (
        f"open {url} (the frontend is published on {published}); {site} must resolve to this machine: "
        f"a line `127.0.0.1 {site}` in /etc/hosts does it."
    )


def _progress(line: str, emit: Callable[[str], None]) -> None:
    """bench's lines, progress bars collapsed to their last state (they redraw with \\r)."""
    shown = benchsite.redrawn(line)
    if shown and "Password input may be echoed" not in shown:
        emit(shown)


def failure_message(site: str, output: str, container: str, host: str = "local") -> str:
    """One sentence: what bench said (its last line), what to do, and -- when new-site may have
    left the site half-made (its folder, perhaps its database: 53, 53b) -- the ``drop-site``
    command to paste first, which asks for the root password (53c)."""
    last = benchsite.last_words([output]) or "no output"
    if "already exists" in last:
        return f"bench new-site {site} failed ({last}): a site of that name is there; pick another name."
    if "Access denied" in output:
        fix = f"set {ROOT_VAR} in the env file to the database's root password"
    else:
        fix = "fix what bench's output above names"
    where = "" if host == "local" else f" on {host}"
    container = shlex.quote(container)  # docker's name for it, pasted into a shell
    return (
        f"bench new-site {site} failed ({last}), which can leave {site} half-made (its folder and "
        f"database): {fix}, then drop it{where} with `docker exec -i {container} bench drop-site {site} "
        f"--no-backup` (it asks for the database root password, {ROOT_VAR} of the env file, on its input) "
        "and create it again."
    )


def _health_target(
    runner: Runner, backend: Container, containers: Sequence[Container], result: SiteResult
) -> tuple[str, str | None]:
    services: Mapping[str, Any] = {c.service: c for c in containers}
    url = health.base_url(services)
    if url != health.FRONTEND_URL:
        result.notes.append("no frontend service: the check asked ping only (gunicorn serves no assets).")
        return url, None
    cat = runner.run(["docker", "exec", backend.id, "cat", health.ASSETS_MANIFEST], timeout=30)
    return url, health.first_asset(cat.stdout if cat.returncode == 0 else None)


def result_dict(result: SiteResult) -> dict[str, Any]:
    return dataclasses.asdict(result)
