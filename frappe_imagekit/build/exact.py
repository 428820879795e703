"""Exact builds: imagekit's generated Containerfile, its secret, and the commit read-back.

``prepare`` turns imagekit's own Containerfile into the generated one (``benchfile``) for a plan's
frappe and apps, with the tiers it builds on (``tiers.plan_tiers``; ``execute`` builds them); a
user's own Containerfile is left alone and gets a note instead. After the
build ``verify_commits`` reads ``.imagekit/commits/*`` from the image and fails the build when
any app is at another commit than planned. ``missing_commits`` is rebuild's check that every
recorded commit still exists on its remote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frappe_imagekit import dockerapi, gitremote
from frappe_imagekit.appsjson import PLACEHOLDER, InjectedApps, repo_identity
from frappe_imagekit.build import benchfile, tiers
from frappe_imagekit.build.containerfile import Containerfile, default_containerfile, parse_containerfile
from frappe_imagekit.build.tiers import Tier
from frappe_imagekit.errors import ConfigError, DockerError, DriftError
from frappe_imagekit.pins import Pin

OWN_CONTAINERFILE_NOTE = (
    "this Containerfile is not imagekit's, so it is built as written: exact commits (each app "
    "fetched at its resolved commit and checked in the image) and one cached step per app need "
    "imagekit's Containerfile (leave out --containerfile and CONTAINERFILE)."
)


@dataclass
class Exact:
    """What an exact build adds to a plan. ``secret`` is SECRET: never print it."""

    containerfile: Containerfile
    build_args: dict[str, str]
    secret: benchfile.GitSecret
    tiers: tuple[Tier, ...]  # in build order; the app layers build FROM the last


def is_imagekit_containerfile(containerfile: Containerfile) -> bool:
    """imagekit's shipped production Containerfile, or a Containerfile generated from it."""
    if benchfile.is_generated(containerfile.text):
        return True
    return containerfile.path is not None and Path(containerfile.path).resolve() == default_containerfile()


def prepare(
    containerfile: Containerfile,
    frappe: Mapping[str, Any],
    apps: Sequence[Mapping[str, Any]],
    injected: InjectedApps,
    env: Mapping[str, str],
) -> Exact | None:
    """The exact-build parts for imagekit's Containerfile; None for a user's own one."""
    if not is_imagekit_containerfile(containerfile):
        return None
    template = benchfile.split_template(default_containerfile().read_text())
    text = containerfile.text
    if not benchfile.is_generated(text):
        text = benchfile.render([str(a["name"]) for a in apps], benchfile.split_template(text))
    injected_urls = _injected_urls(injected)
    urls = {str(a["name"]): injected_urls.get(repo_identity(str(a["url"]))) for a in apps}
    missing = [name for name, url in urls.items() if url is None]
    if missing:
        raise ConfigError(f"no URL for {', '.join(missing)} in apps.json: list it there to build it.")
    secret = benchfile.git_secret(
        {"frappe": _expand(str(frappe["url"]), env), **{name: str(url) for name, url in urls.items()}}
    )
    planned = tiers.plan_tiers(template, env)
    args = {benchfile.BASE_ARG: tiers.top(planned).ref, **benchfile.commit_args(frappe, apps)}
    return Exact(parse_containerfile(text, None), args, secret, planned)


def _expand(url: str, env: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: env.get(m.group(1), ""), url)


def _injected_urls(injected: InjectedApps) -> dict[str, str]:
    """Each repository's URL with its token in place, by ``repo_identity`` (an app is named by
    its package, read from the repository, not by its URL)."""
    entries = json.loads(injected.text)
    return {repo_identity(str(e["url"])): str(e["url"]) for e in entries}


# ---------------------------------------------------------------- after the build


def commit_mismatches(planned: Mapping[str, str], found: Mapping[str, bytes] | None) -> list[str]:
    """One phrase per repository whose recorded commit in the image differs from the plan."""
    found = found or {}
    problems = []
    for name, sha in planned.items():
        got = found.get(name, b"").decode(errors="replace").strip()
        if got != sha:
            problems.append(f"{name} is at {got[:40] or 'no recorded commit'}, planned {sha}")
    return problems


def planned_commits(frappe: Mapping[str, Any], apps: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {str(p["name"]): str(p["sha"]) for p in [frappe, *apps]}


def verify_commits(image_id: str, ref: str, planned: Mapping[str, str]) -> dict[str, str]:
    """Read ``.imagekit/commits`` back from the built (still untagged) image; ``DockerError``
    on a mismatch, and the build then never gives it the version tag ``ref``."""
    found = dockerapi.image_folder_files(image_id, benchfile.COMMITS_DIR)
    problems = commit_mismatches(planned, found)
    if problems:
        raise DockerError(
            f"the image built for {ref} does not hold the planned commits ({'; '.join(problems)}); "
            "it was not tagged: read the build log for the fetch of those apps."
        )
    return dict(planned)


# ---------------------------------------------------------------- rebuild


def missing_commits(pins: Sequence[Pin], env: Mapping[str, str], timeout: float) -> DriftError | None:
    """A ``DriftError`` naming the first recorded commit its remote no longer has, else None."""
    for pin in pins:
        if not gitremote.commit_exists(pin.url, env, pin.token_var, str(pin.sha), timeout):
            return DriftError(
                f"{pin.name} commit {pin.sha} (recorded from {pin.ref}) is no longer on its remote "
                "(its history was rewritten): push that commit to a branch or tag again, or build "
                "a new version with `imagekit build`."
            )
    return None
