"""The tiers an exact build stands on, in the order they are built.

A tier is an image ``IMAGE_NAME:<name>-<key>`` built from its own Containerfile text and build
args; its key hashes both, so it is built once and reused while neither changes. Today there
is one tier, the system tier (apt packages, Node, wkhtmltopdf, bench: ``benchfile.render_tier``);
a dependencies tier would follow it in the list. The app layers build ``FROM`` the last tier.

Building a tier needs a ``TierRequest`` (the docker CLI, the context, where to write its files,
the network, the CA certificates), never the whole build plan. A manifest records the system
tier under ``base_tier`` (``records.TierRecord``); ``from_manifest`` reads it back into the list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from frappe_imagekit import dockerapi, dockercli, validate
from frappe_imagekit.build import benchfile, downloads
from frappe_imagekit.build.records import BuildManifest, ManifestTier, TierRecord
from frappe_imagekit.errors import ConfigError, DockerError
from frappe_imagekit.workspace import write_text_atomic

# the .env values the system tier is built with; CA_CERTS_SHA256 is set by build from CA_CERTS_FILE
TIER_ARGS = ("PYTHON_VERSION", "NODE_VERSION", "CA_CERTS_SHA256", *downloads.MIRROR_ARGS)
BASE_KEY_LABEL = "io.imagekit.base-key"
SYSTEM = "system"
MANIFEST_FIELD: Final = "base_tier"  # where a manifest records the system tier


@dataclass
class Tier:
    """One tier image; ``built`` is set when the build ran (True: built now, False: reused)."""

    ref: str
    key: str
    text: str
    build_args: dict[str, str]
    built: bool | None = None
    name: str = SYSTEM

    def to_dict(self) -> TierRecord:
        return {"ref": self.ref, "key": self.key, "built": self.built, "containerfile": self.text,
                "build_args": dict(self.build_args)}  # fmt: skip

    @classmethod
    def from_record(cls, record: ManifestTier | TierRecord) -> Tier:
        """A tier as a manifest recorded it (rebuild uses the recorded one, not today's)."""
        ref = validate.not_an_option(record.get("ref"), "the recorded base tier")
        recorded = record.get("build_args") or {}
        if not isinstance(recorded, Mapping):
            raise ConfigError(
                "the manifest's base_tier.build_args is not an object: restore the manifest from git."
            )
        args = {validate.env_name(k): str(v) for k, v in recorded.items()}
        downloads.check(args, "the manifest's system tier build arg")
        text = str(record.get("containerfile") or "")
        if not text.startswith(benchfile.TIER_MARK):
            raise ConfigError("the manifest records no base tier Containerfile: build a new version instead.")
        return cls(ref, str(record.get("key") or ""), text, args)


@dataclass(frozen=True)
class TierRequest:
    """What building a tier needs from the build. ``env`` is the child environment (the CA
    certificates the ca_certs secret reads included); ``secrets`` the extra BuildKit secrets."""

    cli: dockercli.DockerCli
    context: Path
    folder: Path  # where the tier's Containerfile and iidfile are written (and removed)
    stem: str  # names those files: ``.<stem>.base.Containerfile``
    env: dict[str, str]
    pull: bool = False
    network: str | None = None
    secrets: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def tier_key(text: str, args: Mapping[str, str]) -> str:
    """The tier's key: a hash of its Containerfile text and its build args."""
    return hashlib.sha256((text + json.dumps(dict(args), sort_keys=True)).encode()).hexdigest()[:16]


def system_tier(template: benchfile.Template, env: Mapping[str, str]) -> Tier:
    """The system tier for this template and .env: its key hashes the text and the build args."""
    text = benchfile.render_tier(template)
    args = {name: env[name] for name in TIER_ARGS if env.get(name)}
    digest = tier_key(text, args)
    image = validate.image_name(env.get("IMAGE_NAME"), "IMAGE_NAME in .env")
    return Tier(f"{image}:base-{digest}", digest, text, args)


def plan_tiers(template: benchfile.Template, env: Mapping[str, str]) -> tuple[Tier, ...]:
    """Every tier of an exact build, in build order (today: the system tier)."""
    return (system_tier(template, env),)


def top(tiers: Sequence[Tier]) -> Tier:
    """The tier the app layers build ``FROM``: the last one."""
    return tiers[-1]


def system(tiers: Sequence[Tier]) -> Tier:
    """The system tier of ``tiers`` (the one a manifest records as ``base_tier``)."""
    return next(tier for tier in tiers if tier.name == SYSTEM)


def to_manifest(tiers: Sequence[Tier]) -> TierRecord:
    """What a manifest records of ``tiers``: the system tier, under ``base_tier``."""
    return system(tiers).to_dict()


def from_manifest(manifest: BuildManifest) -> tuple[Tier, ...] | None:
    """The tiers a manifest recorded (None when it records none: not an exact build)."""
    record = manifest.get(MANIFEST_FIELD)
    if not record:
        return None
    return (Tier.from_record(record),)


# ---------------------------------------------------------------- building


def ensure_tiers(tiers: Sequence[Tier], request: TierRequest, sink: Callable[[str], None]) -> None:
    """Each tier in order: reused when its image exists, else built (its lines go to ``sink``)."""
    for tier in tiers:
        ensure_tier(tier, request, sink)


def ensure_tier(tier: Tier, request: TierRequest, sink: Callable[[str], None]) -> Tier:
    """Reuse ``tier.ref`` when it exists, else build it; sets ``tier.built``."""
    if dockerapi.image_exists(tier.ref):
        tier.built = False
        return tier
    path = request.folder / f".{request.stem}.base.Containerfile"
    iid = request.folder / f".{request.stem}.base.iid"
    write_text_atomic(path, tier.text)
    build = dockercli.BuildRequest(
        cli=request.cli, context=request.context, containerfile=path, tag=tier.ref, iidfile=iid,
        build_args=tier.build_args, labels={BASE_KEY_LABEL: tier.key}, pull=request.pull,
        network=request.network, secrets=request.secrets,
    )  # fmt: skip
    try:
        code = dockercli.run_build(dockercli.build_command(build), request.env, sink, None)
    finally:
        path.unlink(missing_ok=True)
        iid.unlink(missing_ok=True)
    if code != 0:
        raise DockerError(
            f"docker build of the {tier.name} tier {tier.ref} failed (exit {code}): read the build log "
            "for the failing step (apt, Node, wkhtmltopdf or bench) and fix it or the .env versions."
        )
    tier.built = True
    return tier
