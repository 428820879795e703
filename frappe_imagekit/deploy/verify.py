"""Checks that make a deploy tell the truth: before anything stops, that the compose config
puts ``IMAGE:VERSION`` on the services and that the image holds every app the sites have;
after ``up``, that every container of those services runs that image id.

Functions take a ``Runner`` and plain values, return data, and raise ``DeployError`` (exit 13)
with a sentence naming the services, sites or apps and what to change.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from frappe_imagekit.deploy import compose
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.composeconfig import ImagePlan
from frappe_imagekit.errors import DeployError
from frappe_imagekit.manifest import list_manifests
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

# ---------------------------------------------------------------- the compose config


def require_image_plan(
    plan: ImagePlan, image_ref: str, lines: Sequence[str], image_var: str, tag_var: str
) -> None:
    """Refuse a config where no service gets ``image_ref`` or one pins another tag of it."""
    variables = f"${{{image_var}}}:${{{tag_var}}}"
    where = f" ({', '.join(lines)})" if lines else ""
    if plan.pinned:
        pinned = ", ".join(f"{name} ({image})" for name, image in sorted(plan.pinned.items()))
        raise DeployError(
            f"services {pinned} pin another tag of the image instead of {image_ref}: the compose file "
            f"looks generated (`compose config`); change the image line{where} to {variables} "
            "(or pass --image-var/--tag-var naming the variables it uses). Nothing was stopped."
        )
    if not plan.new:
        images = ", ".join(f"{name}={image or '(build)'}" for name, image in sorted(plan.others.items()))
        raise DeployError(
            f"no service of the compose files would run {image_ref} (their images: {images or 'none'}); "
            f"set the image of the Frappe services to {variables}, or pass --image-var/--tag-var "
            "naming the variables the file uses. Nothing was stopped."
        )


# ---------------------------------------------------------------- apps


def image_id(runner: Runner, ref: str) -> str:
    done = runner.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], timeout=60)
    if done.returncode != 0:
        raise DeployError(f"cannot inspect {ref} on {runner.host}: {done.stderr.strip()}")
    return done.stdout.strip()


def manifest_apps(ws: Workspace, version: str, ident: str) -> list[str] | None:
    """Apps of the build recorded for ``version`` whose image id is ``ident`` (else None)."""
    for manifest in list_manifests(ws)[0]:
        image = manifest.get("image") or {}
        if manifest.get("version") == version and image.get("id") == ident:
            apps = [a.get("name") for a in manifest.get("apps") or [] if isinstance(a, dict)]
            return ["frappe", *(str(a) for a in apps if a)]
    return None


def bench_version_apps(runner: Runner, ref: str) -> list[str]:
    """Apps of image ``ref`` by ``bench version --format json`` in a one-off container."""
    argv = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "bench", ref,
            "version", "--format", "json"]  # fmt: skip
    done = runner.run(argv, timeout=180)
    data = first_json(done.stdout)
    if done.returncode != 0 or not isinstance(data, list):
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DeployError(
            f"cannot list the apps of {ref} (`bench version` in a one-off container: "
            f"{lines[-1] if lines else done.returncode}); nothing was stopped: check the image."
        )
    return [str(a["app"]) for a in data if isinstance(a, dict) and a.get("app")]


def site_apps(runner: Runner, container_id: str, sites: Sequence[str]) -> dict[str, list[str]]:
    """Apps installed on each site, read from the running backend (``bench list-apps``)."""
    apps: dict[str, list[str]] = {}
    for site in sites:
        argv = ["docker", "exec", container_id, "bench", "--site", site, "list-apps", "--format", "json"]
        data = first_json(runner.run(argv, timeout=120).stdout)
        listed = data.get(site) if isinstance(data, dict) else None
        if isinstance(listed, list):
            apps[site] = [str(a) for a in listed]
    return apps


def require_apps(installed: Mapping[str, Sequence[str]], in_image: Iterable[str], image_ref: str) -> None:
    """Refuse when a site has an app the new image lacks (migrate would fail importing it)."""
    have = set(in_image)
    missing = {site: [a for a in apps if a not in have] for site, apps in sorted(installed.items())}
    missing = {site: apps for site, apps in missing.items() if apps}
    if missing:
        named = "; ".join(f"site {site} has {', '.join(apps)}" for site, apps in missing.items())
        raise DeployError(
            f"{image_ref} lacks apps installed on the sites ({named}): build the image with those apps "
            "in apps.json, or uninstall them from the site first. Nothing was stopped."
        )


_NEWLINE = re.compile("\n")
_JSON_TRIES = 16  # bench prints a few lines before its JSON (a warning, an app's traceback)


def first_json(text: str) -> Any:
    """The JSON document that fills the rest of a command's output from the start of a line
    (bench may print other lines first). At most ``_JSON_TRIES`` line starts are tried, so a
    long output costs linear time (issue 19 item 10)."""
    decoder = json.JSONDecoder()
    starts = itertools.chain((0,), (m.end() for m in _NEWLINE.finditer(text)))
    tries = (s for s in starts if text[s : s + 1] in ("[", "{"))
    for start in itertools.islice(tries, _JSON_TRIES):
        try:
            data, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            continue
        if not text[end:].strip():
            return data
    return None


# ---------------------------------------------------------------- after up


def running_images(runner: Runner, services: Sequence[Container]) -> dict[str, dict[str, str]]:
    """service -> {container name: image id} for the project's service containers (``services``:
    what the engine that runs the stack lists, ``Engine.services``)."""
    ids = [c.id for c in services]
    if not ids:
        return {}
    done = runner.run(["docker", "inspect", *ids], timeout=60)
    return images_by_service(json.loads(done.stdout) if done.returncode == 0 else [])


def images_by_service(inspected: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for item in inspected:
        labels = (item.get("Config") or {}).get("Labels") or {}
        service = labels.get(compose.SERVICE_LABEL, "")
        name = str(item.get("Name", "")).lstrip("/")
        found.setdefault(service, {})[name] = str(item.get("Image", ""))
    return found


def require_running_image(
    running: Mapping[str, Mapping[str, str]], services: Sequence[str], ident: str, image_ref: str
) -> None:
    """Fail (exit 13) when a container of ``services`` runs another image id than ``ident``."""
    wrong = sorted(
        f"{service} ({name}: {image[:19]})"
        for service in services
        for name, image in running.get(service, {}).items()
        if image != ident
    )
    if wrong:
        raise DeployError(
            f"after up, containers do not run {image_ref} ({ident[:19]}): {', '.join(wrong)}; the tag "
            "moved during the deploy or the services were not recreated: check `docker inspect` of "
            "them and deploy again."
        )
