"""`imagekit build`: plan a BuildKit build from a checked workspace, run it, record a manifest.

``plan_build`` runs every check, reads the Containerfile to learn how apps.json reaches the build
(BuildKit secret or base64 build arg), and returns a ``BuildPlan`` holding everything the build
needs (the injected apps.json is the only secret in it). ``execute_build`` guards the tag, runs
docker, scans the image for leaks and writes the manifest; it returns the manifest dict.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frappe_imagekit import (
    appslock,
    benchfile,
    cacerts,
    dockerapi,
    dockercli,
    downloads,
    exactbuild,
    leakscan,
    manifest,
    versions,
)
from frappe_imagekit.appsjson import InjectedApps
from frappe_imagekit.cacerts import CaCerts
from frappe_imagekit.check import Secrets, run_check
from frappe_imagekit.containerfile import Containerfile, default_containerfile, parse_containerfile
from frappe_imagekit.errors import (
    ConfigError,
    DockerError,
    ImagekitError,
    LeakError,
    TagExistsError,
)
from frappe_imagekit.exactbuild import Exact
from frappe_imagekit.gitremote import workspace_commit
from frappe_imagekit.interrupts import interrupts_held
from frappe_imagekit.leakscan import cache as scancache
from frappe_imagekit.manifest import ImageRecord, Manifest
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace, write_text_atomic

ENV_BUILD_ARGS = ("FRAPPE_PATH", "FRAPPE_BRANCH", "PYTHON_VERSION", "NODE_VERSION", *downloads.MIRROR_ARGS)
CACHE_BUST = "CACHE_BUST"
BASE64_ARG = "APPS_JSON_BASE64"
LABEL_PREFIX = "org.opencontainers.image."
APPS_LABEL = "io.imagekit.apps"
FINGERPRINT_LABEL = "io.imagekit.fingerprint"
_TAG_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MAX_FREE_VERSION_PROBES = 50


@dataclass
class BuildOptions:
    containerfile: Path | None = None
    context: Path | None = None
    docker: str | None = None
    no_cache: bool = False
    pull: bool = False
    force: bool = False
    leak_scan: bool = True
    dry_run: bool = False
    progress: str = "auto"  # "auto" | "plain" | "tty"
    strict: bool = False
    offline: bool = False
    frozen: bool = False  # refuse a missing or stale apps.lock.json


@dataclass(frozen=True)
class BuildPlan:
    """Everything one build needs. ``secrets`` (the injected apps.json, the redactor) and
    ``exact.secret`` are secret-bearing: never print them. A rebuild is a variant of this
    value (``dataclasses.replace``), never an edit of it; ``labels`` follow the final values."""

    kind: str  # "build" | "rebuild"
    rebuild_of: str | None
    version: str
    image_name: str
    tag: str
    containerfile: Containerfile
    context: Path
    build_args: dict[str, str]  # non-secret, CACHE_BUST included when declared
    frappe: dict[str, Any]
    apps: list[dict[str, Any]]  # name, url (token-free), ref, ref_kind, sha
    apps_json_text: str  # as written: placeholders, no token
    secrets: Secrets  # SECRET
    cli: dockercli.DockerCli
    options: BuildOptions
    fingerprint: str = ""
    created: str = ""
    source: str = ""  # org.opencontainers.image.source
    revision: str | None = None  # the workspace commit
    iidfile: Path | None = None
    containerfile_file: Path | None = None  # where docker reads the Containerfile from
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # informational (e.g. which docker CLI)
    exact: Exact | None = None  # imagekit's generated Containerfile (its secret is SECRET)
    network: str | None = None  # docker build --network (BUILD_NETWORK in .env)
    ca_certs: CaCerts | None = None  # CA_CERTS_FILE, passed as the ca_certs secret
    daemon: str = ""  # which daemon the CLI builds on and the SDK scans, and why (dockerapi.Daemon)
    record_name: str = ""  # names the manifest and log: the version, or "<version>.rebuild-<UTC>"
    drift: list[dict[str, Any]] | None = None  # a rebuild's drift check, recorded in its manifest

    @property
    def injected(self) -> InjectedApps:
        assert self.secrets.injected is not None
        return self.secrets.injected

    @property
    def redactor(self) -> Redactor:
        return self.secrets.redactor

    @property
    def no_cache(self) -> bool:
        return self.options.no_cache

    @property
    def pull(self) -> bool:
        return self.options.pull

    @property
    def force(self) -> bool:
        return self.options.force

    @property
    def leak_scan(self) -> bool:
        return self.options.leak_scan

    @property
    def docker_cli(self) -> str:
        return self.cli.path

    @property
    def docker_version(self) -> str:
        return self.cli.version

    @property
    def buildx_version(self) -> str | None:
        return self.cli.buildx

    @property
    def labels(self) -> dict[str, str]:
        """Every OCI key and ours, from the plan's final values."""
        return make_labels(
            version=self.version,
            created=self.created,
            revision=self.revision,
            source=self.source,
            title=self.image_name,
            description=_description(self.frappe, self.apps),
            base_name=base_name(self.containerfile, self.build_args),
            frappe=self.frappe,
            apps=self.apps,
            fingerprint_value=self.fingerprint,
        )

    @property
    def ref(self) -> str:
        return f"{self.image_name}:{self.tag}"

    @property
    def apps_json_mode(self) -> str:
        if self.exact is not None:
            return "exact"
        mode = self.containerfile.apps_json_mode
        return str(mode) if mode is not None else ""

    @property
    def metadata_file(self) -> Path | None:
        """buildx's ``--metadata-file`` (beside the iidfile); None for the classic BuildKit client."""
        if self.cli.mode != dockercli.BUILDX or self.iidfile is None:
            return None
        return self.iidfile.with_name(self.iidfile.name.removesuffix(".iid") + ".metadata.json")

    def request(self) -> dockercli.BuildRequest:
        secret_mode = self.apps_json_mode in ("secret", "exact")
        secret_id = self.containerfile.secret_id or "apps_json"
        if self.exact is not None:
            secret_id, secret_var = benchfile.SECRET_ID, benchfile.SECRET_ENV
        else:
            secret_var = dockercli.SECRET_ENV
        request = dockercli.BuildRequest(
            cli=self.cli,
            context=self.context,
            containerfile=self.containerfile_file or Path(str(self.containerfile.path)),
            tag=None,  # the version tag comes only after a clean leak scan (execute_build)
            iidfile=self.iidfile or Path(f".{self.tag}.iid"),
            build_args=self.build_args,
            env_build_args=() if secret_mode else (BASE64_ARG,),
            secrets=((secret_id, secret_var),) if secret_mode else (),
            labels=self.labels,
            no_cache=self.no_cache,
            pull=self.pull,
            network=self.network,
            metadata_file=self.metadata_file,
        )
        return self.with_ca_certs(request)

    def with_ca_certs(self, request: dockercli.BuildRequest) -> dockercli.BuildRequest:
        """``request`` plus the ca_certs secret, when CA_CERTS_FILE is set."""
        if self.ca_certs is None:
            return request
        return replace(request, secrets=(*request.secrets, (cacerts.SECRET_ID, cacerts.SECRET_ENV)))

    def child_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` plus the CA certificates the ca_certs secret reads (public, not secret)."""
        return env | ({cacerts.SECRET_ENV: self.ca_certs.text} if self.ca_certs else {})

    def command(self) -> list[str]:
        """The docker argv (token-free: the secret travels in ``secret_env``). It names no tag:
        the image gets ``ref`` only after a clean leak scan, so no interrupt can leave an
        unscanned or leaky image under the version."""
        return dockercli.build_command(self.request())

    def secret_env(self) -> dict[str, str]:
        """The child-only environment: BuildKit switch plus the injected apps.json (SECRET)."""
        env = self.child_env(self.cli.env())
        if self.exact is not None:
            env[benchfile.SECRET_ENV] = self.exact.secret.text
        elif self.apps_json_mode == "secret":
            env[dockercli.SECRET_ENV] = self.injected.text
        else:
            env[BASE64_ARG] = self.injected.base64
        return env

    def command_env(self) -> dict[str, str]:
        """The child environment the command needs, secret values replaced by a description."""
        described = {
            dockercli.SECRET_ENV: "<the injected apps.json: secret, never shown>",
            BASE64_ARG: "<base64 of the injected apps.json: secret, never shown>",
            "IMAGEKIT_GIT_SECRET": "<URLs and credentials of every repository: secret, never shown>",
            cacerts.SECRET_ENV: f"<the CA certificates of {self.ca_certs.path if self.ca_certs else ''}>",
        }
        return {k: described.get(k, v) for k, v in self.secret_env().items()}

    def to_dict(self) -> dict[str, Any]:
        """The plan without secrets (for --dry-run and --json)."""
        return {
            "kind": self.kind,
            "rebuild_of": self.rebuild_of,
            "version": self.version,
            "image": self.ref,
            "containerfile": str(self.containerfile.path) if self.containerfile.path else None,
            "apps_json_mode": self.apps_json_mode,
            "context": str(self.context),
            "docker": {
                "cli": self.docker_cli,
                "version": self.docker_version,
                "builder": self.cli.builder,
                "daemon": self.daemon,
                "note": "; ".join(n for n in self.notes if not n.startswith("this Containerfile")) or None,
            },
            "build_args": dict(self.build_args),
            "fingerprint": self.fingerprint,
            "frappe": dict(self.frappe),
            "apps": [dict(app) for app in self.apps],
            "labels": dict(self.labels),
            "leak_scan": self.leak_scan,
            "warnings": list(self.warnings),
            "command": self.command(),
            "command_env": self.command_env(),
            "exact_commits": self.exact is not None,
            "notes": list(self.notes),
            "generated_containerfile": self.containerfile.text if self.exact is not None else None,
            "base_tier": self.exact.base.ref if self.exact is not None else None,
        }


# ---------------------------------------------------------------- pure helpers


def fingerprint(frappe_sha: str, apps: list[dict[str, Any]]) -> str:
    """CACHE_BUST: a hash of the resolved SHAs of frappe and every app (order-independent)."""
    lines = [f"frappe={frappe_sha}"] + sorted(f"{app['name']}={app['sha']}" for app in apps)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def next_version(version: str, taken: set[str]) -> str:
    """The next free version after ``version`` (bumps the last number: v1.1.5 -> v1.1.6)."""
    return versions.next_version(version, taken)


def select_build_args(
    declared: dict[str, str | None], env: dict[str, str], cache_bust: str
) -> dict[str, str]:
    """The .env build args the Containerfile declares, plus CACHE_BUST when it declares it."""
    args = {name: env[name] for name in ENV_BUILD_ARGS if name in declared and env.get(name)}
    if CACHE_BUST in declared:
        args[CACHE_BUST] = cache_bust
    return args


def apps_label(frappe: dict[str, Any], apps: list[dict[str, Any]]) -> str:
    """Compact JSON for the ``io.imagekit.apps`` label: name, ref and sha of frappe and each app."""
    entries = [{"name": a["name"], "ref": a["ref"], "sha": a["sha"]} for a in [frappe, *apps]]
    return json.dumps(entries, separators=(",", ":"))


def make_labels(
    *,
    version: str,
    created: str,
    revision: str | None,
    source: str,
    title: str,
    description: str,
    base_name: str,
    frappe: dict[str, Any],
    apps: list[dict[str, Any]],
    fingerprint_value: str,
) -> dict[str, str]:
    """Every OCI key set explicitly (base-image labels are inherited otherwise), plus ours."""
    oci = {
        "version": version,
        "created": created,
        "revision": revision or "",
        "source": source,
        "title": title,
        "description": description,
        "base.name": base_name,
    }
    labels = {LABEL_PREFIX + key: value for key, value in oci.items()}
    labels[APPS_LABEL] = apps_label(frappe, apps)
    labels[FINGERPRINT_LABEL] = fingerprint_value
    return labels


def base_name(containerfile: Containerfile, build_args: dict[str, str]) -> str:
    """The final stage's base image with ARG defaults substituted, following stage names."""
    stages = containerfile.stages
    if not stages:
        return ""
    by_name = {s.name.lower(): s for s in stages if s.name}
    stage = stages[-1]
    for _ in range(len(stages)):
        parent = by_name.get(stage.base.lower())
        if parent is None or parent is stage:
            break
        stage = parent
    values = {k: v or "" for k, v in containerfile.global_args.items()} | build_args
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), stage.base)


def mode_warning(containerfile: Containerfile) -> str | None:
    if containerfile.apps_json_mode is None or str(containerfile.apps_json_mode) != "build-arg":
        return None
    return (
        f"{_cf_name(containerfile)} passes apps.json as ARG {BASE64_ARG}, which stores the token "
        "in the image history of every RUN in that stage: switch to a BuildKit secret mount "
        "(RUN --mount=type=secret,id=apps_json,...), as imagekit's containerfiles/Containerfile "
        "does."
    )


def _daemon_description() -> str:
    """Which daemon builds and is scanned (DOCKER_HOST, DOCKER_CONTEXT or the CLI's context)."""
    return dockerapi.resolve_daemon().describe()


def _cf_name(containerfile: Containerfile) -> str:
    return str(containerfile.path) if containerfile.path else "this Containerfile"


def build_seconds(record: Mapping[str, Any]) -> float:
    """The seconds a recorded build spent outside its leak scan (the scan is timed apart)."""
    total = float(record.get("duration_seconds") or 0.0)
    scan = float((record.get("leak_scan") or {}).get("seconds") or 0.0)
    return max(0.0, total - scan)


# ---------------------------------------------------------------- planning


def plan_build(ws: Workspace, options: BuildOptions) -> BuildPlan:
    """Check the workspace and return the build plan; ``ConfigError`` when check finds errors."""
    warm_up = _warm_up_docker(options.docker)
    report = run_check(ws, offline=options.offline, strict=options.strict, check_version_is_new=False)
    if report.has_errors:
        first = report.errors[0].message.rstrip(".")
        raise ConfigError(
            f"imagekit check found {len(report.errors)} error(s), first: {first} "
            "(run `imagekit check` for all of them and fix them before building)."
        )
    config = report.config
    env = config.values
    version = _required(env, "DE_SITE_VERSION")
    _required(env, "IMAGE_NAME")
    if not _TAG_OK.match(version):
        raise ConfigError(
            f"DE_SITE_VERSION={version!r} is not a valid docker tag: use letters, digits, '.', "
            "'_' and '-' only (e.g. v1.1.5)."
        )
    containerfile = load_containerfile(ws, options.containerfile, env)
    frappe = config.frappe.record() if config.frappe else None
    apps = [pin.record() for pin in config.apps]
    unresolved = [p["name"] for p in ([frappe] if frappe else []) + apps if not p.get("sha")]
    if frappe is None or unresolved or config.secrets.injected is None:
        raise ConfigError(
            "cannot build without resolved commits (unresolved: "
            f"{', '.join(unresolved) or 'frappe'}): run `imagekit build` without --offline "
            "so every ref is resolved."
        )
    tags = {pin.name for pin in config.all_pins if pin.is_tag}
    locked = _use_lock(ws, containerfile, frappe, apps, options, tags)
    warm_up.join()
    sources = Sources(env, containerfile, locked.frappe, locked.apps, config.apps_json_text, config.secrets)
    plan = assemble_plan(ws, options, sources, dockercli.find_docker(options.docker))
    return replace(
        plan,
        warnings=plan.warnings + [w.message for w in report.warnings],
        notes=plan.notes + ([locked.note] if locked.note else []),
    )


def _use_lock(
    ws: Workspace, containerfile: Containerfile, frappe: dict[str, Any], apps: list[dict[str, Any]],
    options: BuildOptions, tags: set[str],
) -> Any:  # fmt: skip
    """apps.lock.json's commits where it matches apps.json (imagekit's Containerfile only);
    ``tags``: the pins whose ref is a tag on the remote (their locked commit must be the tag's)."""
    exact = exactbuild.is_imagekit_containerfile(containerfile)
    return appslock.use_lock(
        ws, frappe, apps, exact=exact, frozen=options.frozen, dry_run=options.dry_run, tags=tags
    )


def _warm_up_docker(explicit: str | None) -> threading.Thread:
    """Probe the docker CLI and load the docker SDK while check waits on git remotes.

    Returns the probe thread (join it before ``find_docker``); the SDK import is not waited
    for. Errors are left for the main thread to meet (and report) again.
    """

    def probe() -> None:
        with contextlib.suppress(Exception):
            dockercli.find_docker(explicit)

    def connect() -> None:
        with contextlib.suppress(Exception):
            dockerapi.client()

    threading.Thread(target=connect, name="imagekit-docker-sdk", daemon=True).start()
    thread = threading.Thread(target=probe, name="imagekit-docker-cli", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class Sources:
    """What a plan is made from: check's workspace config for a build, the manifest for a rebuild."""

    env: Mapping[str, str]  # the .env values the build reads (SECRET: tokens may be among them)
    containerfile: Containerfile
    frappe: dict[str, Any]
    apps: list[dict[str, Any]]
    apps_json_text: str  # as written: placeholders, no token
    secrets: Secrets  # SECRET: the injected apps.json and the redactor

    @property
    def injected(self) -> InjectedApps:
        if self.secrets.injected is None:
            raise ConfigError("cannot build without apps.json: run `imagekit check` and fix what it reports.")
        return self.secrets.injected


def assemble_plan(
    ws: Workspace, options: BuildOptions, sources: Sources, cli: dockercli.DockerCli
) -> BuildPlan:
    """The ``BuildPlan`` for resolved sources (a build's; rebuild makes a variant of it)."""
    env = dict(sources.env)
    downloads.check(env)  # mirror URLs and sources become build args: one check at the boundary
    ca_certs = cacerts.load(ws.root, env)
    if ca_certs is not None:
        env |= {cacerts.SHA_ARG: ca_certs.sha256}
    frappe, apps, injected = sources.frappe, sources.apps, sources.injected
    redactor = sources.secrets.redactor
    containerfile, exact = _containerfile_and_exact(sources, env)
    version, image_name = _required(env, "DE_SITE_VERSION"), _required(env, "IMAGE_NAME")
    redactor.add(injected.text, whole_document=True)
    redactor.add(injected.base64)
    fp = fingerprint(frappe["sha"], apps)
    build_args = select_build_args(containerfile.declared_args, env, fp)
    build_args |= exact.build_args if exact is not None else {}
    if ca_certs is not None and containerfile.declares(cacerts.SHA_ARG):
        build_args[cacerts.SHA_ARG] = ca_certs.sha256
    context = (options.context or ws.root).resolve()
    checks = (
        mode_warning(containerfile),
        _ca_certs_warning(containerfile, ca_certs, exact),
        _cache_bust_warning(containerfile) if exact is None else None,
        _context_warning(context),
    )
    return BuildPlan(
        kind="build",
        rebuild_of=None,
        version=version,
        image_name=image_name,
        tag=version,
        containerfile=containerfile,
        context=context,
        build_args=build_args,
        frappe=frappe,
        apps=apps,
        apps_json_text=sources.apps_json_text,
        secrets=sources.secrets,
        cli=cli,
        options=options,
        fingerprint=fp,
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        source=env.get("IMAGE_SOURCE") or frappe["url"],
        revision=workspace_commit(ws.root)[0],
        iidfile=ws.builds_dir / f".{version}.iid",
        containerfile_file=containerfile.path or ws.builds_dir / f".{version}.Containerfile",
        warnings=[n for n in checks if n],
        notes=[n for n in (cli.note, None if exact else exactbuild.OWN_CONTAINERFILE_NOTE) if n],
        daemon=_daemon_description(),
        exact=exact,
        network=_build_network(env),
        ca_certs=ca_certs,
        record_name=version,
    )


def _containerfile_and_exact(sources: Sources, env: Mapping[str, str]) -> tuple[Containerfile, Exact | None]:
    """imagekit's Containerfile becomes the generated one of an exact build (its secret joins the
    redactor); any other Containerfile must read apps.json."""
    containerfile, redactor, injected = sources.containerfile, sources.secrets.redactor, sources.injected
    exact = exactbuild.prepare(containerfile, sources.frappe, sources.apps, injected, env)
    if exact is not None:
        redactor.add(exact.secret.text, whole_document=True)
        for value in exact.secret.secrets:
            redactor.add(value)
        return exact.containerfile, exact
    if containerfile.apps_json_mode is None:
        raise ConfigError(
            f"this Containerfile never reads apps.json ({_cf_name(containerfile)} has neither "
            "RUN --mount=type=secret,id=apps_json nor ARG APPS_JSON_BASE64): use "
            "imagekit's containerfiles/Containerfile or add the secret mount."
        )
    return containerfile, None


def _build_network(env: dict[str, str]) -> str | None:
    """BUILD_NETWORK=host lets the build reach git servers on this machine's loopback."""
    value = (env.get("BUILD_NETWORK") or "").strip()
    if value in ("", "default"):
        return None
    if value not in ("host", "none"):
        raise ConfigError(f"BUILD_NETWORK={value!r} in .env is not one of default, host, none: fix it.")
    return value


def load_containerfile(ws: Workspace, chosen: Path | None, env: dict[str, str]) -> Containerfile:
    """``--containerfile``, else .env CONTAINERFILE (relative to the workspace), else ours."""
    if chosen is not None:
        path = Path(chosen)
    elif env.get("CONTAINERFILE"):
        path = ws.root / env["CONTAINERFILE"]
    else:
        path = default_containerfile()
    path = path.expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the Containerfile {path} ({exc.strerror}): pass an existing file with "
            "--containerfile or fix CONTAINERFILE in .env."
        ) from None
    return parse_containerfile(text, path)


def _required(env: dict[str, str], key: str) -> str:
    value = (env.get(key) or "").strip()
    if not value:
        raise ConfigError(f"{key} is not set in .env: add it (see de-example.env).")
    return value


def _description(frappe: dict[str, Any], apps: list[dict[str, Any]]) -> str:
    names = ", ".join(f"{a['name']} {a['ref']}" for a in apps) or "no apps"
    return f"Frappe {frappe['ref']} with {names}"


def _context_warning(context: Path) -> str | None:
    """The workspace .env (tokens) must not be COPY-able into the image."""
    if not (context / ".env").exists():
        return None
    ignore = context / ".dockerignore"
    try:
        patterns = {line.strip().lstrip("/") for line in ignore.read_text().splitlines()}
    except OSError:
        patterns = set()
    if patterns & {".env", ".env*", "*", "**", "**/.env"}:
        return None
    return (
        f"the build context {context} holds .env (your tokens) and .dockerignore does not "
        "exclude it, so a COPY could put it in the image: add a line `.env` to .dockerignore."
    )


def _ca_certs_warning(
    containerfile: Containerfile, ca_certs: CaCerts | None, exact: Exact | None = None
) -> str | None:
    """Certificates passed to a build that installs them nowhere. An exact build installs them
    in its system tier (built by the same build, from the tier's own text)."""
    installers = [containerfile] + ([parse_containerfile(exact.base.text)] if exact is not None else [])
    if ca_certs is None or any(m.id == cacerts.SECRET_ID for cf in installers for m in cf.secret_mounts):
        return None
    return (
        f"{cacerts.ENV_KEY} is set, but {_cf_name(containerfile)} has no "
        f"RUN --mount=type=secret,id={cacerts.SECRET_ID}: the certificates are passed but not "
        "installed; imagekit's containerfiles/Containerfile installs them."
    )


def _cache_bust_warning(containerfile: Containerfile) -> str | None:
    if CACHE_BUST in containerfile.declared_args:
        return None
    return (
        f"{_cf_name(containerfile)} does not declare ARG {CACHE_BUST}, so an app branch that moved "
        "upstream will not rebuild bench init: add `ARG CACHE_BUST` before the bench init RUN."
    )


# ---------------------------------------------------------------- tag guard


def guard_tag(ws: Workspace, plan: BuildPlan) -> str | None:
    """Refuse a taken version (``TagExistsError``); with ``force`` return the old image id."""
    old = dockerapi.inspect_image(plan.ref)
    in_history = plan.kind == "build" and plan.version in manifest.succeeded_versions(ws)
    if old is None and not in_history:
        return None
    if not plan.force:
        where = "exists locally" if old is not None else "is in the build history"
        free = suggest_free_version(ws, plan)
        raise TagExistsError(
            f"{plan.ref} {where}: set DE_SITE_VERSION={free} in .env (next free version), "
            "or pass --force to rebuild it (the old image keeps a -replaced- tag)."
        )
    return old["Id"] if old is not None else None


def suggest_free_version(ws: Workspace, plan: BuildPlan) -> str:
    taken = manifest.succeeded_versions(ws) | {plan.version}
    candidate = next_version(plan.version, taken)
    for _ in range(_MAX_FREE_VERSION_PROBES):
        if not dockerapi.image_exists(f"{plan.image_name}:{candidate}"):
            return candidate
        taken.add(candidate)
        candidate = next_version(plan.version, taken)
    return candidate


def replaced_tag(version: str, image_id: str) -> str:
    """``v1.1.5-replaced-0123456789ab``: where ``--force`` keeps the image it replaces."""
    return f"{version}-replaced-{image_id.removeprefix('sha256:')[:12]}"


# ---------------------------------------------------------------- execution


@dataclass
class _Run:
    """Mutable state of one execution (for the failure record)."""

    started: datetime
    started_clock: float
    log: list[str] = field(default_factory=list)
    replaced: str | None = None
    old_id: str | None = None
    image_id: str | None = None
    tagged: bool = False  # the new image holds the version tag (after a clean scan)
    digest: str | None = None  # containerimage.digest from buildx --metadata-file
    leak_scan: dict[str, Any] = field(default_factory=lambda: {"status": "skipped"})


def execute_build(
    ws: Workspace,
    plan: BuildPlan,
    on_line: Callable[[str], None] | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Guard, build, scan, tag, record. Returns the manifest written; on failure (an interrupt
    included) writes a failed one, and the version tag stays where it was before the build."""
    run = _Run(datetime.now(UTC), time.monotonic())
    run.old_id = guard_tag(ws, plan)
    try:
        _prepare_files(ws, plan)
        with keeping_replaced(plan, run):
            if plan.exact is not None:
                exactbuild.ensure_base(plan, lambda line: _log_line(plan, run, on_line, line))
            run.image_id = _docker_build(plan, run, on_line, on_start)
            if plan.exact is not None:
                planned = exactbuild.planned_commits(plan.frappe, plan.apps)
                exactbuild.verify_commits(run.image_id, plan.ref, planned)
            run.digest = dockercli.read_metadata_digest(plan.metadata_file)
            run.leak_scan = _leak_scan(plan, run)
            _tag_scanned(plan, run)
            record = _manifest(ws, plan, run, status="succeeded", error=None)
            _retire_previous(ws, plan, run)
            record.log_file = _write_log(ws, plan, run, f"{plan.record_name}.log")
            record.write(ws.builds_dir / f"{plan.record_name}.json", plan.redactor)
        return record.to_dict()
    except BaseException as exc:
        _record_failure(ws, plan, run, exc)
        raise
    finally:
        _remove_build_outputs(plan)
        if plan.containerfile.path is None and plan.containerfile_file is not None:
            plan.containerfile_file.unlink(missing_ok=True)


@contextlib.contextmanager
def keeping_replaced(plan: BuildPlan, run: _Run) -> Iterator[None]:
    """The "replaced image" rule of build and rebuild alike: an image that ``--force`` replaces
    keeps a ``<tag>-replaced-<id>`` spare tag; on any failure (Ctrl-C included) the version tag
    goes back where it was and the spare tag is dropped."""
    if run.old_id:
        run.replaced = _keep_old_image(plan, run.old_id)
    try:
        yield
    except BaseException:
        with contextlib.suppress(ImagekitError), interrupts_held():  # a second Ctrl-C cannot cut it short
            _restore_on_failure(plan, run)
        raise


def _log_line(plan: BuildPlan, run: _Run, on_line: Callable[[str], None] | None, line: str) -> None:
    safe = plan.redactor.redact(line)
    run.log.append(safe)
    if on_line is not None:
        on_line(safe)


def _prepare_files(ws: Workspace, plan: BuildPlan) -> None:
    ws.builds_dir.mkdir(parents=True, exist_ok=True)
    _remove_build_outputs(plan)
    if plan.containerfile.path is None and plan.containerfile_file is not None:
        # A rebuild from a stored copy: docker reads it from a file next to the manifests.
        write_text_atomic(plan.containerfile_file, plan.containerfile.text)


def _remove_build_outputs(plan: BuildPlan) -> None:
    """The iidfile and metadata file docker writes (stale ones must never be read)."""
    for path in (plan.iidfile, plan.metadata_file):
        if path is not None:
            path.unlink(missing_ok=True)


def _keep_old_image(plan: BuildPlan, old_id: str) -> str:
    tag = replaced_tag(plan.tag, old_id)
    dockerapi.tag_image(old_id, plan.image_name, tag)
    return tag


def _docker_build(
    plan: BuildPlan,
    run: _Run,
    on_line: Callable[[str], None] | None,
    on_start: Callable[[Any], None] | None,
) -> str:
    def sink(line: str) -> None:
        safe = plan.redactor.redact(line)
        run.log.append(safe)
        if on_line is not None:
            on_line(safe)

    code = dockercli.run_build(plan.command(), plan.secret_env(), sink, on_start)
    if code != 0:
        raise DockerError(
            f"docker build of {plan.ref} failed (exit {code}) at: {_failure_line(run.log)} - "
            f"read builds/{_failed_name(plan, run)}.log and fix the Containerfile or the refs."
        )
    image_id = plan.iidfile.read_text().strip() if plan.iidfile and plan.iidfile.exists() else ""
    if not image_id:
        raise DockerError(
            f"docker build of {plan.ref} wrote no image id: check that {plan.docker_cli} "
            "supports --iidfile (docker 18.09+)."
        )
    return image_id


def _failure_line(log: list[str]) -> str:
    """The most telling line of a failed BuildKit log."""
    for pattern in (r"^(ERROR|error|failed to solve)", r"(?i)error"):
        hits = [line.strip() for line in log if re.search(pattern, line.strip())]
        if hits:
            return hits[-1][:300]
    tail = [line.strip() for line in log if line.strip()]
    return tail[-1][:300] if tail else "no output"


def _leak_scan(plan: BuildPlan, run: _Run) -> dict[str, Any]:
    """Scan the untagged image (by id); a leak is a ``LeakError`` and it never gets a tag."""
    if not plan.leak_scan:
        return {"status": "skipped", "findings": [], "seconds": 0.0}
    assert run.image_id is not None
    run.leak_scan = {"status": "unfinished", "findings": []}  # what a failed record says if interrupted
    summary = scan_built_image(run.image_id, plan.redactor)
    if summary["status"] == "clean":
        return summary
    run.leak_scan = summary
    first = summary["findings"][0]
    raise LeakError(
        f"the leak scan found a secret in the image built for {plan.ref} "
        f"({len(summary['findings'])} finding(s), first in {first.get('where')} "
        f"{first.get('location')}: {first.get('detail')}); it was not tagged: pass apps.json as "
        "a BuildKit secret and never copy it or its ARG into the final stage."
    )


def _tag_scanned(plan: BuildPlan, run: _Run) -> None:
    """Give the scanned (or, with --no-leak-scan, unscanned by request) image its version tag."""
    assert run.image_id is not None
    run.tagged = True  # set first: an interrupt inside tag_image must still be undone
    dockerapi.tag_image(run.image_id, plan.image_name, plan.tag)


def scan_built_image(ref: str, redactor: Redactor) -> dict[str, Any]:
    """Leak-scan ``ref``; layers already scanned clean for these secrets are not read again.

    History, Config.Env and labels are always scanned. When every layer's diff_id (a hash of
    its content) is known clean for exactly this secret set, ``docker save`` is skipped.
    """
    started = time.perf_counter()
    attrs = dockerapi.inspect_image(ref)
    layers = list(((attrs or {}).get("RootFS") or {}).get("Layers") or [])
    forms = redactor.forms
    if attrs is not None and layers and set(layers) <= scancache.known_clean(forms):
        needles = leakscan.Needles.from_forms(forms)
        found = leakscan.scan_metadata(attrs, dockerapi.image_history(ref), needles)
        return _scan_summary(found, redactor, started, layers_from_cache=len(layers))
    result = leakscan.scan_image(ref, redactor)
    if result.clean:
        scancache.remember_clean(forms, layers)
    return _scan_summary(result.findings, redactor, started, layers_from_cache=0)


def _scan_summary(
    findings: list[Any], redactor: Redactor, started: float, *, layers_from_cache: int
) -> dict[str, Any]:
    safe = [
        {k: redactor.redact(v) if isinstance(v, str) else v for k, v in _finding_dict(f).items()}
        for f in findings
    ]
    return {
        "status": "leak" if safe else "clean",
        "findings": safe,
        "seconds": round(time.perf_counter() - started, 3),
        "layers_from_cache": layers_from_cache,
    }


def _finding_dict(finding: Any) -> dict[str, Any]:
    if hasattr(finding, "to_dict"):
        return dict(finding.to_dict())
    keys = ("where", "location", "form", "detail")
    return {k: str(getattr(finding, k, "")) for k in keys}


def _restore_on_failure(plan: BuildPlan, run: _Run) -> None:
    """A failed build leaves the version tag where it was before: on the image a --force build
    replaced (its spare -replaced- tag dropped), or on nothing."""
    if run.tagged:
        if run.old_id:
            dockerapi.tag_image(run.old_id, plan.image_name, plan.tag)
        else:
            dockerapi.remove_tag(plan.ref)
        run.tagged = False
    if not (run.old_id and run.replaced):
        return
    current = dockerapi.inspect_image(plan.ref)
    if current is not None and current.get("Id") == run.old_id:
        dockerapi.remove_tag(f"{plan.image_name}:{run.replaced}")
        run.replaced = None


def _manifest(ws: Workspace, plan: BuildPlan, run: _Run, *, status: str, error: str | None) -> Manifest:
    commit, dirty = workspace_commit(ws.root)
    server = _server_version()
    inspected = _inspect_safely(run.image_id) if run.image_id else None
    cf = plan.containerfile
    image = ImageRecord(
        name=plan.image_name,
        tag=plan.tag,
        id=run.image_id,
        repo_digests=list((inspected or {}).get("RepoDigests") or []),
        digest=run.digest,
        replaced=f"{plan.image_name}:{run.replaced}" if run.replaced else None,
    )
    tools = {
        "docker_client": plan.docker_version,
        "docker_server": server,
        "builder": plan.cli.builder,
        "buildkit": plan.buildx_version or f"BuildKit built into dockerd {server}",
        "docker_cli": plan.docker_cli,
    }
    return Manifest(
        kind=plan.kind,
        rebuild_of=plan.rebuild_of,
        version=plan.version,
        status=status,
        error=error,
        image=image,
        created=run.started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_seconds=round(time.monotonic() - run.started_clock, 3),
        tools=tools,
        containerfile={
            "path": str(cf.path) if cf.path else None,
            "sha256": cf.sha256,
            "content": cf.text,
            "apps_json_mode": plan.apps_json_mode,
        },  # fmt: skip
        build_args=dict(plan.build_args),
        labels=plan.labels,
        frappe=dict(plan.frappe),
        apps=[dict(app) for app in plan.apps],
        apps_json_sha256=hashlib.sha256(plan.apps_json_text.encode()).hexdigest(),
        fingerprint=plan.fingerprint,
        workspace={"git_commit": commit, "dirty": dirty},
        leak_scan=run.leak_scan,
        base_tier=plan.exact.base.to_dict() if plan.exact is not None else None,
        drift=plan.drift,
    )


def _inspect_safely(image_id: str) -> dict[str, Any] | None:
    try:
        return dockerapi.inspect_image(image_id)
    except DockerError:
        return None


def _server_version() -> str | None:
    try:
        return dockerapi.server_version()
    except DockerError:
        return None


def _retire_previous(ws: Workspace, plan: BuildPlan, run: _Run) -> None:
    """--force over a recorded version: keep the old record as ``<version>.replaced-<ts>.json``."""
    old = ws.builds_dir / f"{plan.record_name}.json"
    if not old.exists():
        return
    stamp = _stamp(run.started)
    try:
        data = manifest.load_manifest(old)
    except ValueError:
        data = None
    if data is not None:
        data["status"] = "replaced"
        if run.replaced:
            data["image"] = {
                **data.get("image", {}),
                "tag": run.replaced,
                "ref": f"{plan.image_name}:{run.replaced}",
            }
        target = old.with_name(f"{plan.record_name}.replaced-{stamp}.json")
        manifest.write_manifest(ws, data, target, plan.redactor)
        old.unlink()
    old_log = ws.builds_dir / f"{plan.record_name}.log"
    if old_log.exists():
        old_log.replace(old_log.with_name(f"{plan.record_name}.replaced-{stamp}.log"))


def _failed_name(plan: BuildPlan, run: _Run) -> str:
    return f"{plan.record_name}.failed-{_stamp(run.started)}"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _write_log(ws: Workspace, plan: BuildPlan, run: _Run, name: str) -> str:
    text = "\n".join(run.log) + ("\n" if run.log else "")
    write_text_atomic(ws.builds_dir / name, plan.redactor.redact(text))
    return name


def _record_failure(ws: Workspace, plan: BuildPlan, run: _Run, exc: BaseException) -> None:
    """Write ``<version>.failed-<ts>.json`` (+ log); never let this hide the original error."""
    if isinstance(exc, ImagekitError):
        message = exc.message
    elif isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    else:
        message = f"{type(exc).__name__}: {exc}"
    try:
        base = _failed_name(plan, run)
        record = _manifest(ws, plan, run, status="failed", error=plan.redactor.redact(message))
        record.log_file = _write_log(ws, plan, run, f"{base}.log")
        record.write(ws.builds_dir / f"{base}.json", plan.redactor)
    except (OSError, ImagekitError):
        pass
