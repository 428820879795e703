"""The sandbox's compose file, as pure functions: its name, what would make it share something
with production (refusals), and the file itself.

The production compose files are rendered by ``compose config`` under the sandbox's project
name (``composeconfig``); ``problems`` reads that rendered config and lists every way the
sandbox would share a volume, a network, a host folder or a port with production;
``sandbox_config`` turns it into the sandbox's own file: no ``ports`` and no ``container_name``
anywhere, one port published on 127.0.0.1 for the web service, imagekit's labels on every
service, volume and network (``--list`` and ``--down`` find sandboxes by them).

A plain override file cannot do this: compose v1 appends ``ports`` of an override to those of
the base file (v2 needs ``!reset``), so production's published ports would come along. The file
written is therefore the rendered config itself, changed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.errors import UsageError

LABEL = "io.imagekit.sandbox"  # value: the production project
LABEL_PREFIX = LABEL + "."  # .version .backup .site .url .created
STAMP = LABEL_PREFIX + "created"  # clean-up removes only what carries the sandbox's own stamp
FIELDS = ("version", "backup", "site", "url", "created")
DEFAULT_PORT = 8081
WEB_PORTS = {"frontend": 8080, "backend": 8000}  # frappe_docker's nginx and gunicorn ports
SITE_HEADER = "FRAPPE_SITE_NAME_HEADER"  # frappe_docker's nginx: which site a request is for

# frappe_docker's variables naming the database and Redis servers (configurator -> common_site_config)
SERVER_VARIABLES = ("DB_HOST", "REDIS_CACHE", "REDIS_QUEUE", "REDIS_SOCKETIO")
LOOPBACK = ("localhost", "127.0.0.1", "::1")  # inside a container: the container itself
# what reverse proxies watching the Docker socket route by: Traefik's and Caddy's labels,
# nginx-proxy's and acme-companion's environment
PROXY_LABELS = (
    "traefik.",
    "caddy",
    "com.github.nginx-proxy.",
    "com.github.jrcs.letsencrypt_nginx_proxy_companion.",
)
PROXY_ENV = ("VIRTUAL_HOST", "VIRTUAL_PORT", "VIRTUAL_PATH", "VIRTUAL_PROTO", "VIRTUAL_DEST",
             "LETSENCRYPT_HOST", "LETSENCRYPT_EMAIL")  # fmt: skip
_NAMESPACES = ("pid", "ipc", "cgroup")  # "host", "container:X", "service:X" join another's
_NOT_NAME = re.compile(r"[^a-z0-9_-]+")
_HOST_PORT = re.compile(r":(\d{1,5})->")


@dataclass(frozen=True)
class SandboxLabels:
    """What a sandbox carries on each of its containers, volumes and networks."""

    of: str  # the production project
    version: str
    backup: str
    site: str
    url: str
    created: str

    def as_dict(self) -> dict[str, str]:
        return {LABEL: self.of, **{LABEL_PREFIX + name: str(getattr(self, name)) for name in FIELDS}}


# ---------------------------------------------------------------- names


def sandbox_name(project: str, version: str) -> str:
    """``<project>-sandbox-<version>`` made a compose project name: lower case, every run of
    other characters a ``-``, at most 63 characters (``erp``, ``V1.2`` -> ``erp-sandbox-v1-2``)."""
    name = _NOT_NAME.sub("-", f"{project}-sandbox-{version}".lower()).strip("-_")[:63].rstrip("-_")
    return validate.project_name(name, "the sandbox name", UsageError)


def site_for(name: str) -> str:
    """The default site of a sandbox: its name as a host name (``_`` is not allowed there)."""
    return validate.site_name(name.replace("_", "-"), "the sandbox's site", UsageError)


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


# ---------------------------------------------------------------- refusals


def problems(config: Mapping[str, Any], sandbox: str, production: str) -> list[str]:
    """Every way the sandbox rendered from ``config`` (under project ``sandbox``) would share
    something with ``production``; empty when it shares nothing."""
    found = []
    if sandbox == production:
        found.append(
            f"the sandbox name {sandbox} is the production project's: give another --name "
            "(the default is <project>-sandbox-<version>)."
        )
    found += _volume_problems(config.get("volumes") or {}, sandbox)
    found += _network_problems(config.get("networks") or {}, sandbox)
    services = _services(config)
    for name, service in sorted(services.items()):
        found += _service_problems(name, service) + _server_problems(name, service, set(services))
    return found


def port_problem(config: Mapping[str, Any], port: int) -> str | None:
    """Why ``port`` cannot be the sandbox's: production's compose files publish it."""
    if port in published_ports(config):
        return (
            f"port {port} is published by the production compose files: pick another --port "
            "(the sandbox publishes only that one, on 127.0.0.1). Nothing was started."
        )
    return None


def _volume_problems(volumes: Mapping[str, Any], sandbox: str) -> list[str]:
    found = []
    for key, body in sorted(volumes.items()):
        body = body if isinstance(body, dict) else {}
        if body.get("external"):
            found.append(
                f"volume {key} is external (it exists outside the project, so the sandbox would "
                "use production's): a sandbox needs compose files whose volumes belong to the project."
            )
        elif body.get("name") not in (None, f"{sandbox}_{key}"):
            found.append(
                f"volume {key} has a fixed name ({str(body['name'])[:64]}), so the sandbox would "
                "use production's: remove its `name:` or run the sandbox from files without it."
            )
        elif body.get("driver") not in (None, "local") or body.get("driver_opts"):
            found.append(
                f"volume {key} has {_storage(body)}: its storage is outside the project (a host "
                "folder, nfs or cifs share or device), so the sandbox would write into production's; "
                "run the sandbox from files whose volumes are plain named volumes."
            )
    return found


def _storage(body: Mapping[str, Any]) -> str:
    """The driver or driver_opts of a volume, for a message: ``type`` and ``device`` with their
    values, other options by name only (``o`` of a cifs share can hold a password)."""
    opts = body.get("driver_opts")
    if isinstance(opts, dict) and opts:
        shown = [f"{k}: {str(opts[k])[:200]}" for k in ("device", "type") if k in opts]
        shown += sorted(str(k)[:20] for k in opts if k not in ("device", "type"))[:5]
        return f"driver_opts ({', '.join(shown)})"
    return f"the volume driver {str(body.get('driver'))[:40]}"


def _network_problems(networks: Mapping[str, Any], sandbox: str) -> list[str]:
    found = []
    for key, body in sorted(networks.items()):
        body = body if isinstance(body, dict) else {}
        if body.get("external") or body.get("name") not in (None, f"{sandbox}_{key}"):
            found.append(
                f"network {key} is external or has a fixed name: production's services would "
                "reach the sandbox's under the same names there; run the sandbox without it."
            )
    return found


def _service_problems(name: str, service: Mapping[str, Any]) -> list[str]:
    found = []
    for mount in service.get("volumes") or []:
        source, kind, read_only = mount_source(mount)
        if kind == "bind" and not read_only:
            found.append(
                f"service {name} mounts the host folder {source[:80]} writable: the sandbox would "
                "write into production's files; use a named volume for it, or mount it read-only."
            )
    if service.get("volumes_from"):
        found.append(f"service {name} uses volumes_from: the sandbox would share those volumes.")
    mode = str(service.get("network_mode") or "")
    if mode == "host" or mode.startswith("container:"):
        found.append(f"service {name} has network_mode {mode}: its ports would collide with production's.")
    for key in _NAMESPACES:
        value = str(service.get(key) or "")
        if value == "host" or value.startswith(("container:", "service:")):
            found.append(
                f"service {name} has {key}: {value[:80]}: the sandbox would join another "
                f"container's {key} namespace; remove it for the sandbox."
            )
    for key in ("userns_mode", "cgroup_parent", "external_links"):
        if service.get(key):
            found.append(
                f"service {name} sets {key}: the sandbox would share it with production; "
                "run the sandbox from files without it."
            )
    return found


def _server_problems(name: str, service: Mapping[str, Any], services: set[str]) -> list[str]:
    """frappe_docker's DB_HOST / REDIS_* naming a server that is not a service of the files (a
    managed database, production's Redis), or extra_hosts pointing a service's name elsewhere."""
    found = []
    env = _env_dict(service.get("environment"))
    for variable in SERVER_VARIABLES:
        host = server_host(env.get(variable, ""))
        if host and host not in services and host not in LOOPBACK:
            found.append(
                f"{variable} of service {name} names the server {host[:80]}, which is not a service "
                "of the compose files: the sandbox would use production's database or Redis; run it "
                f"from files with their own db and redis services and {variable} naming them."
            )
    for entry in _extra_hosts(service.get("extra_hosts")):
        if entry in services:
            found.append(
                f"service {name} has extra_hosts mapping {entry[:80]} (a service of the files) to "
                "another address: the sandbox would reach a server outside it; remove that entry."
            )
    return found


def server_host(value: object) -> str:
    """The host of a DB_HOST / REDIS_* value (``db``, ``db:3306``, ``redis://:pw@cache:6379/0``),
    lower case; empty when there is none."""
    text = str(value or "").strip()
    text = text.split("://", 1)[1] if "://" in text else text
    text = text.split("/", 1)[0].rsplit("@", 1)[-1]
    if text.startswith("["):
        return text.split("]", 1)[0] + "]"
    return text.split(":", 1)[0].lower()


def _extra_hosts(value: object) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value]
    if isinstance(value, list):
        return [re.split(r"[:=]", str(item), maxsplit=1)[0] for item in value]
    return []


def mount_source(mount: object) -> tuple[str, str, bool]:
    """(source, kind, read only) of a service volume in short (``src:dst:ro``) or long form;
    kind is ``bind``, ``volume``, ``anonymous`` or another long-form type."""
    if isinstance(mount, dict):
        kind = str(mount.get("type") or "volume")
        source = str(mount.get("source") or "")
        if kind == "volume" and not source:
            kind = "anonymous"
        return source, kind, bool(mount.get("read_only"))
    parts = str(mount).split(":")
    if len(parts) == 1:
        return "", "anonymous", False
    source, modes = parts[0], parts[2].split(",") if len(parts) > 2 else []
    kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
    return source, kind, "ro" in modes


def published_ports(config: Mapping[str, Any]) -> set[int]:
    """Host ports the rendered config publishes (short ``[ip:]host:container`` or long form)."""
    found: set[int] = set()
    for service in _services(config).values():
        for entry in service.get("ports") or []:
            found |= _host_ports(entry)
    return found


def _host_ports(entry: object) -> set[int]:
    if isinstance(entry, dict):
        published = str(entry.get("published") or "")
    else:
        parts = str(entry).split("/")[0].rsplit(":", 2)
        published = parts[-2] if len(parts) >= 2 else ""
    low, _, high = published.partition("-")
    if not low.isdigit():
        return set()
    return set(range(int(low), int(high or low) + 1)) if (high or low).isdigit() else set()


def ports_in_use(docker_ps_ports: Iterable[str]) -> set[int]:
    """Host ports in the ``{{.Ports}}`` column of ``docker ps`` (``127.0.0.1:8080->8000/tcp``)."""
    return {int(m) for line in docker_ps_ports for m in _HOST_PORT.findall(line)}


# ---------------------------------------------------------------- the file


def web_service(config: Mapping[str, Any], backend: str = "backend") -> str:
    """The service the sandbox publishes: frappe_docker's ``frontend`` (nginx), else the backend."""
    services = _services(config)
    for name in ("frontend", backend):
        if name in services:
            return name
    raise UsageError(
        f"the compose files have neither a frontend nor a {backend} service to publish: "
        "pass --backend-service."
    )


def web_target(service_name: str, service: Mapping[str, Any]) -> int:
    """The container port to publish: the one the service already publishes, else its default."""
    for entry in service.get("ports") or []:
        short = str(entry).split("/")[0].split(":")[-1]
        target = str(entry.get("target") if isinstance(entry, dict) else short)
        if target.isdigit():
            return int(target)
    return WEB_PORTS.get(service_name, 8000)


def sandbox_config(
    config: Mapping[str, Any], labels: SandboxLabels, port: int, backend: str = "backend"
) -> dict[str, Any]:
    """The sandbox's compose file (a new dict): ``config`` without ports and container names,
    ``127.0.0.1:port`` on the web service, imagekit's labels everywhere."""
    data = copy.deepcopy(dict(config))
    data.pop("name", None)  # compose v2 writes the project name; -p gives the sandbox's
    web = web_service(data, backend)
    target = web_target(web, data["services"][web])
    ours = {key: value.replace("$", "$$") for key, value in labels.as_dict().items()}  # as config does
    stamp = {LABEL: ours[LABEL], STAMP: ours[STAMP]}  # volumes and networks: whose, made when
    for service in data["services"].values():
        service.pop("ports", None)
        service.pop("container_name", None)
        kept = {k: v for k, v in _labels_dict(service.get("labels")).items() if not is_proxy_label(k)}
        service["labels"] = {**kept, **ours}
        if "environment" in service:
            env = _env_dict(service["environment"])
            service["environment"] = {k: v for k, v in env.items() if k not in PROXY_ENV}
    data["services"][web]["ports"] = [f"127.0.0.1:{port}:{target}"]
    if web == "frontend":
        _set_env(data["services"][web], SITE_HEADER, labels.site)
    if any(not s.get("network_mode") for s in data["services"].values()):
        data.setdefault("networks", {}).setdefault("default", {})  # labelled like the rest
    for section in ("volumes", "networks"):
        for key, body in list((data.get(section) or {}).items()):
            body = dict(body) if isinstance(body, dict) else {}
            body["labels"] = {**_labels_dict(body.get("labels")), **stamp}
            data[section][key] = body
    return data


def _services(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    services = config.get("services")
    if not isinstance(services, dict):
        return {}
    return {str(k): v for k, v in services.items() if isinstance(v, dict)}


def _labels_dict(labels: object) -> dict[str, str]:
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    if isinstance(labels, list):
        return dict(str(item).partition("=")[::2] for item in labels)
    return {}


def _set_env(service: dict[str, Any], name: str, value: str) -> None:
    service["environment"] = {**_env_dict(service.get("environment")), name: value}


def _env_dict(env: object) -> dict[str, Any]:
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): v for k, v in env.items()} if isinstance(env, dict) else {}


def is_proxy_label(key: str) -> bool:
    return key.lower().startswith(PROXY_LABELS)


def proxy_routes(config: Mapping[str, Any]) -> list[str]:
    """``service: label or variable`` for every reverse-proxy label and variable in ``config``
    (what ``sandbox_config`` removes)."""
    found = []
    for name, service in sorted(_services(config).items()):
        found += [f"{name}: {k}" for k in _labels_dict(service.get("labels")) if is_proxy_label(k)]
        found += [f"{name}: {k}" for k in _env_dict(service.get("environment")) if k in PROXY_ENV]
    return found


def read_labels(labels: Mapping[str, object]) -> SandboxLabels | None:
    """A container's sandbox labels (remote: checked), or None when it is not a sandbox's."""
    of = labels.get(LABEL)
    if not isinstance(of, str) or not of:
        return None
    values = {name: labels.get(LABEL_PREFIX + name) for name in FIELDS}
    if not all(isinstance(v, str) and v.isprintable() and len(v) <= 300 for v in values.values()):
        return None
    return SandboxLabels(of=validate.project_name(of, "a sandbox label"), **values)  # type: ignore[arg-type]


# an env file's variables whose values are kept out of the sandbox's compose file
_SECRET_NAME = re.compile(r"PASSW|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)


def env_secrets(values: Mapping[str, str], also: Iterable[str] = ()) -> dict[str, str]:
    """The env file's secret-bearing variables (a name with PASSWORD, SECRET, TOKEN, KEY or
    CREDENTIAL, and those of ``also``) that have a value."""
    wanted = set(also)
    return {k: v for k, v in values.items() if v and (k in wanted or _SECRET_NAME.search(k))}


def unset_secrets(data: Any, secrets: Mapping[str, str]) -> Any:
    """``data`` (a rendered compose config) with each secret's value, wherever it appears in a
    string, put back as the ``${VAR}`` reference it came from: compose interpolates it again
    from the env file at ``up``, and the file written keeps no secret. compose printed ``$`` as
    ``$$``, so the value is looked for in that form first."""
    order = sorted(secrets.items(), key=lambda item: -len(item[1]))
    if isinstance(data, str):
        for name, value in order:
            data = data.replace(value.replace("$", "$$"), "${" + name + "}")
            if "$" not in value:
                continue
            data = data.replace(value, "${" + name + "}")
        return data
    if isinstance(data, Mapping):
        return {key: unset_secrets(item, secrets) for key, item in data.items()}
    if isinstance(data, list):
        return [unset_secrets(item, secrets) for item in data]
    return data
