"""`imagekit prune`: remove the images of IMAGE_NAME that nothing needs, and optionally build cache.

Kept: the image of every container on the daemon (running or stopped, by image id: after a
``build --force`` a running container's image carries only its ``-replaced-`` tag), every image
a successful build or rebuild manifest names (by tag or id), the system tier it used, and the
image of each of the last ``keep_deploys`` deploy records per project (swarm deploys' per stack,
from ``deploys/swarm/``). Every other tag of
IMAGE_NAME goes (old ``-replaced-`` tags included); an image id that a kept tag also carries
stays. ``plan_prune`` returns data (``--dry-run`` prints it); ``execute_prune`` removes every
planned tag, and a removal the daemon refuses is reported with the others done, never a stop
half-way. A manifest or deploy record that cannot be read stops the prune before anything goes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from frappe_imagekit import dockerapi, dockercli, process, validate
from frappe_imagekit import manifest as manifests
from frappe_imagekit.deploy.record import iter_deploy_records
from frappe_imagekit.deploy.swarm import records as swarm_records
from frappe_imagekit.errors import ConfigError, DockerError
from frappe_imagekit.workspace import Workspace

_STORAGE = re.compile(r"[0-9]+(\.[0-9]+)?([kKmMgGtT][bB]?|[bB])?")


@dataclass
class PruneItem:
    ref: str
    image_id: str
    size: int
    why: str  # why it is kept, or "nothing needs it"

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "id": self.image_id, "size": self.size, "why": self.why}


@dataclass
class PrunePlan:
    image_name: str
    remove: list[PruneItem] = field(default_factory=list)
    keep: list[PruneItem] = field(default_factory=list)
    builder_command: list[str] | None = None  # docker builder prune argv, when asked
    failed: list[dict[str, str]] = field(default_factory=list)  # {"ref", "error"}: refused removals

    @property
    def frees(self) -> int:
        """Bytes freed: each removed image id counted once, none that a kept tag still holds."""
        kept = {item.image_id for item in self.keep} | {self._id_of(f["ref"]) for f in self.failed}
        gone = {item.image_id: item.size for item in self.remove if item.image_id not in kept}
        return sum(gone.values())

    def _id_of(self, ref: str) -> str:
        return next((item.image_id for item in self.remove if item.ref == ref), "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_name": self.image_name,
            "remove": [i.to_dict() for i in self.remove],
            "keep": [i.to_dict() for i in self.keep],
            "failed": list(self.failed),
            "frees_bytes": self.frees,
            "builder_command": self.builder_command,
        }


def needed(ws: Workspace, keep_deploys: int) -> dict[str, str]:
    """Image refs and ids that must stay -> why."""
    why: dict[str, str] = {}
    for path, item in manifests.iter_manifests(ws):
        if isinstance(item, manifests.BrokenManifest):
            raise ConfigError(
                f"builds/{path.name} cannot be read ({item.reason}) and could name an image: fix or "
                "move it, then prune again."
            )
        if item.get("status") != "succeeded":
            continue
        image = item.get("image") or {}
        label = f"{item.get('kind') or 'build'} {item.get('version')} ({path.name})"
        for key in (image.get("ref"), image.get("id")):
            if key:
                why.setdefault(str(key), label)
        tier = (item.get("base_tier") or {}).get("ref")
        if tier:
            why.setdefault(str(tier), f"system tier of {label}")
    for ref, label in [*_deployed(ws, keep_deploys).items(), *_swarm_deployed(ws, keep_deploys).items()]:
        why.setdefault(ref, label)
    return why


def _deployed(ws: Workspace, keep: int) -> dict[str, str]:
    """The image of each of the last ``keep`` deploy records of every project."""
    by_project: dict[str, list[tuple[str, str]]] = {}
    for path, record in iter_deploy_records(ws):
        if isinstance(record, manifests.BrokenManifest):
            raise ConfigError(
                f"deploys/{path.name} cannot be read ({record.reason}) and could name an image: fix "
                "or move it, then prune again."
            )
        if record.image:
            by_project.setdefault(record.project, []).append((path.name, record.image))
    result: dict[str, str] = {}
    for project, records in by_project.items():
        for name, image in sorted(records, reverse=True)[:keep]:
            result.setdefault(image, f"deploy of {project} ({name})")
    return result


def _swarm_deployed(ws: Workspace, keep: int) -> dict[str, str]:
    """The same rule for swarm deploys (their copies in ``deploys/swarm/``, read by
    ``deploy/swarm/records.py``): the image of each of the last ``keep`` records of every stack,
    by its tag ``REPO:VERSION`` and by digest."""
    found, broken = swarm_records.read_workspace(ws.deploys_dir)
    if broken:
        raise ConfigError(
            f"deploys/{swarm_records.WORKSPACE_FOLDER}/{broken[0].path.name} cannot be read "
            f"({broken[0].reason}) and could name an image: fix or move it, then prune again."
        )
    by_stack: dict[str, list[swarm_records.SwarmRecord]] = {}
    for record in found:  # oldest first: the files are named ID-STACK.json, ID a time stamp
        by_stack.setdefault(record.stack, []).append(record)
    result: dict[str, str] = {}
    for stack, runs in by_stack.items():
        for record in reversed(runs[-keep:]):
            if record.pin is not None:
                label = f"swarm deploy of {stack} ({record.deploy_id or record.version})"
                result.setdefault(f"{record.pin.repo}:{record.version}", label)
                result.setdefault(record.pin.ref, label)
    return result


def classify(
    images: Sequence[Mapping[str, Any]],
    why: Mapping[str, str],
    image_name: str,
    in_use: Mapping[str, str] | None = None,
) -> PrunePlan:
    """Split IMAGE_NAME's tags (``{"ref", "id", "size"}``) into kept and removed (pure);
    ``in_use`` maps the image id of each container on the daemon to the container's name."""
    plan = PrunePlan(image_name)
    used = in_use or {}
    for image in sorted(images, key=lambda i: str(i["ref"])):
        ref, image_id, size = str(image["ref"]), str(image["id"]), int(image.get("size") or 0)
        container = used.get(image_id)
        reason = f"container {container} uses it" if container else why.get(ref) or why.get(image_id)
        item = PruneItem(ref, image_id, size, reason or "nothing needs it")
        (plan.keep if reason else plan.remove).append(item)
    return plan


def builder_prune_command(docker_cli: str, keep_storage: str) -> list[str]:
    """``docker builder prune -f --keep-storage SIZE`` (pure)."""
    if not _STORAGE.fullmatch(keep_storage):
        raise ConfigError(f"--keep-storage {keep_storage!r} is not a size: use e.g. 10GB or 512MB.")
    return [docker_cli, "builder", "prune", "-f", "--keep-storage", keep_storage]


def plan_prune(
    ws: Workspace, env: Mapping[str, str], *, keep_deploys: int = 3, keep_storage: str | None = None,
    docker: str | None = None,
) -> PrunePlan:  # fmt: skip
    """What a prune would remove and keep (nothing is removed)."""
    if keep_deploys < 1:
        raise ConfigError("--keep-deploys must be at least 1: the running image must stay.")
    image_name = validate.image_name(env.get("IMAGE_NAME"), "IMAGE_NAME in .env")
    why = needed(ws, keep_deploys)
    images = dockerapi.repository_images(image_name)
    plan = classify(images, why, image_name, dockerapi.container_images())
    if keep_storage is not None:
        plan.builder_command = builder_prune_command(dockercli.find_docker(docker).path, keep_storage)
    return plan


def execute_prune(plan: PrunePlan) -> dict[str, Any]:
    """Untag every removed ref (the daemon deletes an image with its last tag), then the cache.
    A removal the daemon refuses (a container made from the image since the plan) goes to
    ``plan.failed`` and the others go on; the caller reports them."""
    for item in plan.remove:
        try:
            dockerapi.remove_tag(item.ref)
        except DockerError as exc:
            plan.failed.append({"ref": item.ref, "error": exc.message})
    result = plan.to_dict()
    if plan.builder_command:
        done = process.run(plan.builder_command, timeout=3600)
        result["builder_output"] = done.stdout.strip().splitlines()[-1:] if done.stdout else []
        if done.returncode != 0:
            detail = done.stderr.strip()[:200]
            raise DockerError(f"docker builder prune failed (exit {done.returncode}): {detail}")
    return result


def failure_message(failed: Sequence[Mapping[str, str]]) -> str:
    """One sentence for the removals the daemon refused (the rest were done)."""
    refs = ", ".join(f["ref"] for f in failed[:5]) + (
        f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    )
    return (
        f"{len(failed)} image tag(s) could not be removed ({refs}; each reason is listed above); "
        "every other planned removal was done: check with docker ps -a whether a container uses "
        "them, then prune again."
    )
