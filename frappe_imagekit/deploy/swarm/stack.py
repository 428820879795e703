"""The stack file: the target's compose configuration as ``docker stack deploy`` takes it.

``render_stack`` takes what ``compose config`` printed (every file merged, variables set) and
returns the stack: every Frappe service (the one running ``IMAGE:VERSION``) pinned to
``IMAGE@sha256:DIGEST``, so no node runs another build under the same tag; keys stacks do not
support dropped and named (Docker 26 refuses them, 20.10 ignores them with a warning);
``restart`` turned into ``deploy.restart_policy``; published ports in host mode and services
reached by DNS round robin (``endpoint_mode: dnsrr``: the routing mesh needs IPVS); one-shot
services (the configurator, frappe_docker's migrator) left out, to run as jobs. Pure functions:
they read the configuration and never run docker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError

STACK_VERSION = "3.8"
SITES_SUFFIX = "/sites"
SHARED_TYPES = frozenset({"nfs", "nfs4", "cifs"})
# the service keys `docker stack deploy` takes (compose file format 3.8); the rest is dropped
KEPT_KEYS = frozenset({
    "cap_add", "cap_drop", "command", "configs", "deploy", "dns", "dns_search", "entrypoint",
    "environment", "expose", "extra_hosts", "healthcheck", "hostname", "image", "init", "labels",
    "logging", "networks", "ports", "read_only", "secrets", "stop_grace_period", "stop_signal",
    "sysctls", "tmpfs", "tty", "stdin_open", "ulimits", "user", "volumes", "working_dir",
})  # fmt: skip
_RESTART = {"no": "none", "always": "any", "unless-stopped": "any", "on-failure": "on-failure"}
_VOLUME_KEYS = ("driver", "driver_opts", "labels")
_MOUNT_KEYS = ("type", "source", "target", "read_only")


@dataclass(frozen=True)
class Pin:
    """An image by digest: ``repo@sha256:...``."""

    repo: str
    digest: str

    @property
    def ref(self) -> str:
        return f"{self.repo}@{self.digest}"


def pin(repo: object, digest: object) -> Pin:
    """A checked ``Pin``: a repository name and a sha256 digest, nothing else."""
    name = validate.image_name(repo, "the image repository", DeployError)
    return Pin(name, validate.image_digest(digest, "the image digest", DeployError))


@dataclass(frozen=True)
class StackFile:
    data: dict[str, Any]
    pinned: tuple[str, ...]  # the Frappe services, pinned to the digest
    left_out: tuple[str, ...]  # one-shot services: run as jobs, not as stack services
    notes: tuple[str, ...]  # what was dropped or converted, one sentence each

    def text(self) -> str:
        """The stack file (JSON is YAML: every value is quoted as it must be)."""
        return json.dumps(self.data, indent=1, sort_keys=True) + "\n"


def render_stack(
    config: Mapping[str, Any], image: str, pinned: Pin, oneshot: Iterable[str] = ()
) -> StackFile:
    """The stack of ``config`` with every service running ``image`` (``IMAGE:VERSION``) pinned."""
    left_out = tuple(sorted(set(oneshot)))
    services: dict[str, Any] = {}
    frappe: list[str] = []
    notes: list[str] = []
    for name, body in sorted(_mapping(config.get("services")).items()):
        name = validate.service_name(name, "a service name in the compose config", DeployError)
        if name in left_out:
            continue
        body = _mapping(body)
        ref = pinned.ref if body.get("image") == image else None
        if ref:
            frappe.append(name)
        services[name], said = stack_service(name, body, ref)
        notes += said
    if not frappe:
        raise DeployError(f"no service of the compose files runs {image}: nothing to pin; check the files.")
    data = {"version": STACK_VERSION, "services": services, **_top_level(config)}
    return StackFile(data, tuple(frappe), left_out, tuple(notes))


def stack_service(name: str, body: Mapping[str, Any], ref: str | None) -> tuple[dict[str, Any], list[str]]:
    """One service as a stack takes it, and the notes on what changed."""
    # a null is "not set": Compose v2 (2.26) prints `"entrypoint": null` for a service without
    # one, and Docker 26's stack loader refuses it ("services.backend.entrypoint must be a string")
    kept = {k: v for k, v in body.items() if k in KEPT_KEYS and v is not None}
    dropped = sorted(k for k in body if k not in KEPT_KEYS and k != "restart")
    notes = [f"{name}: {', '.join(dropped)} dropped (stacks do not take them)"] if dropped else []
    if ref:
        kept["image"] = ref
    deploy = dict(_mapping(kept.get("deploy")))
    deploy.setdefault("endpoint_mode", "dnsrr")
    restart = str(body.get("restart") or "").strip('"')
    if restart and "restart_policy" not in deploy:
        deploy["restart_policy"] = {"condition": _RESTART.get(restart.split(":")[0], "any")}
    kept["deploy"] = deploy
    if "ports" in kept:
        kept["ports"], said = host_ports(name, kept["ports"])
        notes += said
    if "volumes" in kept:
        kept["volumes"] = [_mount(v) for v in kept["volumes"]]
    return kept, notes


def host_ports(name: str, ports: object) -> tuple[list[dict[str, Any]], list[str]]:
    """Published ports in host mode (no routing mesh); an address to bind to cannot be kept."""
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for port in ports if isinstance(ports, list) else []:
        entry = _port(port)
        if entry.pop("host_ip", None) not in (None, "", "0.0.0.0"):
            notes.append(f"{name}: port {entry.get('published')} is published on every address of its node")
        if "published" in entry:
            entry["mode"] = "host"
            out.append(entry)
    return out, notes


def _port(port: object) -> dict[str, Any]:
    if isinstance(port, dict):
        entry = {k: port[k] for k in ("target", "published", "protocol", "host_ip") if k in port}
        if "published" in entry:
            entry["published"] = int(entry["published"])
        return entry
    text = str(port)
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return {"target": int(parts[0]), "protocol": proto}
    host_ip = parts[0] if len(parts) == 3 else None
    return {"target": int(parts[-1]), "published": int(parts[-2]), "protocol": proto, "host_ip": host_ip}


def _mount(volume: object) -> object:
    if isinstance(volume, dict):
        return {k: volume[k] for k in _MOUNT_KEYS if k in volume}
    return volume


def _top_level(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("networks", "volumes"):
        entries = {str(n): _top_entry(key, _mapping(v)) for n, v in _mapping(config.get(key)).items()}
        if entries:
            out[key] = entries
    for key in ("secrets", "configs"):
        if config.get(key):
            out[key] = config[key]
    return out


def _top_entry(key: str, body: Mapping[str, Any]) -> dict[str, Any]:
    if body.get("external"):
        return {"external": True, **({"name": body["name"]} if body.get("name") else {})}
    entry = {k: body[k] for k in _VOLUME_KEYS if body.get(k)}
    if key == "networks":
        driver = entry.get("driver")
        entry["driver"] = "overlay" if driver in (None, "bridge", "overlay") else driver
        entry.pop("driver_opts", None)
    return entry


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- the sites volume


@dataclass(frozen=True)
class SitesMount:
    service: str
    kind: str  # bind | volume
    source: str
    shared: bool  # on storage every node sees (NFS, CIFS, a volume plugin)


def sites_mounts(stack: StackFile) -> list[SitesMount]:
    """Where each Frappe service keeps ``sites``."""
    volumes = _mapping(stack.data.get("volumes"))
    found = []
    for name in stack.pinned:
        for mount in _mounts(stack.data["services"][name]):
            if mount["target"].rstrip("/").endswith(SITES_SUFFIX):
                shared = mount["type"] == "volume" and _shared(_mapping(volumes.get(mount["source"])))
                found.append(SitesMount(name, mount["type"], mount["source"], shared))
    return found


def _shared(volume: Mapping[str, Any]) -> bool:
    driver = volume.get("driver") or "local"
    if volume.get("external"):
        return False  # not known from the file: an external volume must be checked by hand
    opts = _mapping(volume.get("driver_opts"))
    return driver != "local" or str(opts.get("type", "")).lower() in SHARED_TYPES


def refuse_local_sites(stack: StackFile, nodes: int) -> None:
    """A stack on more than one node needs ``sites`` on shared storage: each node's local
    volume would be another, empty sites folder."""
    if nodes < 2:
        return
    for mount in sites_mounts(stack):
        if not mount.shared:
            what = "bind mount" if mount.kind == "bind" else "volume using the local driver"
            raise DeployError(
                f"the swarm has {nodes} nodes but {mount.service}'s sites folder is {mount.source!r}, a "
                f"{what}: each node would see its own sites. Put it on shared storage (an NFS volume: "
                "driver_opts type: nfs, o: addr=SERVER, device: ':/export'), or deploy to one node; "
                "nothing was changed."
            )


# ---------------------------------------------------------------- a job beside a service


def _mounts(body: Mapping[str, Any]) -> list[dict[str, str]]:
    out = []
    for volume in body.get("volumes") or []:
        if isinstance(volume, dict):
            out.append({"type": str(volume.get("type", "volume")), "source": str(volume.get("source", "")),
                        "target": str(volume.get("target", ""))})  # fmt: skip
        else:
            parts = str(volume).split(":")
            if len(parts) >= 2:
                kind = "bind" if parts[0].startswith(("/", ".")) else "volume"
                out.append({"type": kind, "source": parts[0], "target": parts[1]})
    return out


def job_mounts(stack_name: str, body: Mapping[str, Any], volumes: Mapping[str, Any]) -> list[str]:
    """``--mount`` values that give a job the service's volumes (stack volumes carry the stack's
    name as prefix); a comma or quote in a path would split the value, so it is refused."""
    values = []
    for mount in _mounts(body):
        source = mount["source"]
        if mount["type"] == "volume" and not _mapping(volumes.get(source)).get("external"):
            source = f"{stack_name}_{source}"
        for part in (source, mount["target"]):
            if any(c in part for c in ',"\n') or not part:
                raise DeployError(f"the mount {part!r} cannot be given to a job: rename it without commas.")
        values.append(f"type={mount['type']},source={source},target={mount['target']}")
    return values


def job_networks(stack_name: str, body: Mapping[str, Any], networks: Mapping[str, Any]) -> list[str]:
    """The networks a job needs to reach what the service reaches (the stack's default network
    when the service names none)."""
    named = body.get("networks")
    names = list(named) if isinstance(named, dict | list) else ["default"]
    out = []
    for name in names:
        entry = _mapping(networks.get(name))
        out.append(str(entry.get("name") or name) if entry.get("external") else f"{stack_name}_{name}")
    return out


def frappe_services(stack: StackFile) -> Sequence[str]:
    return stack.pinned
