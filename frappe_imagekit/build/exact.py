"""Exact builds: imagekit's generated Containerfile, its secret, and the commit read-back.

``prepare`` turns imagekit's own Containerfile into the generated one (``benchfile``) for a plan's
frappe and apps; a user's own Containerfile is left alone and gets a note instead. After the
build ``verify_commits`` reads ``.imagekit/commits/*`` from the image and fails the build when
any app is at another commit than planned. ``missing_commits`` is rebuild's check that every
recorded commit still exists on its remote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frappe_imagekit import benchfile, dockerapi, dockercli, downloads, gitremote, validate
from frappe_imagekit.appsjson import PLACEHOLDER, InjectedApps, repo_identity
from frappe_imagekit.containerfile import Containerfile, default_containerfile, parse_containerfile
from frappe_imagekit.errors import ConfigError, DockerError, DriftError
from frappe_imagekit.pins import Pin
from frappe_imagekit.workspace import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover - build imports this module
    from frappe_imagekit.build import BuildPlan

OWN_CONTAINERFILE_NOTE = (
    "this Containerfile is not imagekit's, so it is built as written: exact commits (each app "
    "fetched at its resolved commit and checked in the image) and one cached step per app need "
    "imagekit's Containerfile (leave out --containerfile and CONTAINERFILE)."
)


# the .env values the system tier is built with; CA_CERTS_SHA256 is set by build from CA_CERTS_FILE
TIER_ARGS = ("PYTHON_VERSION", "NODE_VERSION", "CA_CERTS_SHA256", *downloads.MIRROR_ARGS)
BASE_KEY_LABEL = "io.imagekit.base-key"


@dataclass
class BaseTier:
    """The system tier image: ``IMAGE_NAME:base-<key>``; ``built`` is set when the build ran."""

    ref: str
    key: str
    text: str
    build_args: dict[str, str]
    built: bool | None = None  # True: built by this build; False: reused; None: not yet known

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "key": self.key, "built": self.built, "containerfile": self.text,
                "build_args": dict(self.build_args)}  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BaseTier:
        """A tier as a manifest recorded it (rebuild uses the recorded one, not today's)."""
        ref = validate.not_an_option(record.get("ref"), "the recorded base tier")
        args = {validate.env_name(k): str(v) for k, v in dict(record.get("build_args") or {}).items()}
        downloads.check(args, "the manifest's system tier build arg")
        text = str(record.get("containerfile") or "")
        if not text.startswith(benchfile.TIER_MARK):
            raise ConfigError("the manifest records no base tier Containerfile: build a new version instead.")
        return cls(ref, str(record.get("key") or ""), text, args)


@dataclass
class Exact:
    """What an exact build adds to a plan. ``secret`` is SECRET: never print it."""

    containerfile: Containerfile
    build_args: dict[str, str]
    secret: benchfile.GitSecret
    base: BaseTier


def base_tier(template: benchfile.Template, env: Mapping[str, str]) -> BaseTier:
    """The tier for this template and .env: its key hashes the text and the build args."""
    text = benchfile.render_tier(template)
    args = {name: env[name] for name in TIER_ARGS if env.get(name)}
    digest = tier_key(text, args)
    image = validate.image_name(env.get("IMAGE_NAME"), "IMAGE_NAME in .env")
    return BaseTier(f"{image}:base-{digest}", digest, text, args)


def tier_key(text: str, args: Mapping[str, str]) -> str:
    """The tier's key: a hash of its Containerfile text and its build args."""
    return hashlib.sha256((text + json.dumps(dict(args), sort_keys=True)).encode()).hexdigest()[:16]


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
    base = base_tier(template, env)
    args = {benchfile.BASE_ARG: base.ref, **benchfile.commit_args(frappe, apps)}
    return Exact(parse_containerfile(text, None), args, secret, base)


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


# ---------------------------------------------------------------- the system tier


def ensure_base(plan: BuildPlan, sink: Callable[[str], None]) -> BaseTier:
    """Reuse ``IMAGE_NAME:base-<key>`` when it exists, else build it (its lines go to ``sink``)."""
    assert plan.exact is not None
    tier = plan.exact.base
    if dockerapi.image_exists(tier.ref):
        tier.built = False
        return tier
    folder = (plan.containerfile_file or plan.iidfile or Path(".")).parent
    path, iid = folder / f".{plan.version}.base.Containerfile", folder / f".{plan.version}.base.iid"
    write_text_atomic(path, tier.text)
    request = dockercli.BuildRequest(
        cli=plan.cli, context=plan.context, containerfile=path, tag=tier.ref, iidfile=iid,
        build_args=tier.build_args, labels={BASE_KEY_LABEL: tier.key}, pull=plan.pull, network=plan.network,
    )  # fmt: skip
    request = plan.with_ca_certs(request)
    try:
        code = dockercli.run_build(
            dockercli.build_command(request), plan.child_env(plan.cli.env()), sink, None
        )
    finally:
        path.unlink(missing_ok=True)
        iid.unlink(missing_ok=True)
    if code != 0:
        raise DockerError(
            f"docker build of the system tier {tier.ref} failed (exit {code}): read the build log "
            "for the failing step (apt, Node, wkhtmltopdf or bench) and fix it or the .env versions."
        )
    tier.built = True
    return tier


def use_recorded_base(plan: BuildPlan, original: Mapping[str, Any]) -> BuildPlan:
    """A rebuild uses the tier the original build recorded (its text and args, its tag)."""
    record = original.get("base_tier")
    if plan.exact is None or not record:
        return plan
    base = BaseTier.from_record(record)
    args = plan.build_args | {benchfile.BASE_ARG: base.ref}
    return replace(plan, exact=replace(plan.exact, base=base), build_args=args)
