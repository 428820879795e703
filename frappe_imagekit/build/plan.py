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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frappe_imagekit import appslock, dockerapi, dockercli, versions
from frappe_imagekit.appsjson import InjectedApps
from frappe_imagekit.build import benchfile, cacerts, downloads, tiers
from frappe_imagekit.build.cacerts import CaCerts
from frappe_imagekit.build.containerfile import Containerfile, default_containerfile, parse_containerfile
from frappe_imagekit.build.exact import OWN_CONTAINERFILE_NOTE, Exact, is_imagekit_containerfile
from frappe_imagekit.build.exact import prepare as prepare_exact
from frappe_imagekit.build.records import DriftItem, PinRecord
from frappe_imagekit.check import Secrets, run_check
from frappe_imagekit.errors import ConfigError
from frappe_imagekit.gitremote import workspace_commit
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace

ENV_BUILD_ARGS = ("FRAPPE_PATH", "FRAPPE_BRANCH", "PYTHON_VERSION", "NODE_VERSION", *downloads.MIRROR_ARGS)
CACHE_BUST = "CACHE_BUST"
BASE64_ARG = "APPS_JSON_BASE64"
LABEL_PREFIX = "org.opencontainers.image."
APPS_LABEL = "io.imagekit.apps"
FINGERPRINT_LABEL = "io.imagekit.fingerprint"
_TAG_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


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
    frappe: PinRecord
    apps: list[PinRecord]  # name, url (token-free), ref, ref_kind, sha
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
    drift: list[DriftItem] | None = None  # a rebuild's drift check, recorded in its manifest

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

    def tier_request(self) -> tiers.TierRequest:
        """What building the tiers takes from this plan (their files go beside the iidfile)."""
        folder = (self.containerfile_file or self.iidfile or Path(".")).parent
        ca_secret = ((cacerts.SECRET_ID, cacerts.SECRET_ENV),) if self.ca_certs is not None else ()
        return tiers.TierRequest(
            cli=self.cli, context=self.context, folder=folder, stem=self.version,
            env=self.child_env(self.cli.env()), pull=self.pull, network=self.network, secrets=ca_secret,
        )  # fmt: skip

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
            "base_tier": tiers.system(self.exact.tiers).ref if self.exact is not None else None,
        }


# ---------------------------------------------------------------- pure helpers


def fingerprint(frappe_sha: str, apps: Sequence[Mapping[str, Any]]) -> str:
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


def apps_label(frappe: PinRecord, apps: Sequence[PinRecord]) -> str:
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
    frappe: PinRecord,
    apps: Sequence[PinRecord],
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
    ws: Workspace, containerfile: Containerfile, frappe: PinRecord, apps: list[PinRecord],
    options: BuildOptions, tags: set[str],
) -> Any:  # fmt: skip
    """apps.lock.json's commits where it matches apps.json (imagekit's Containerfile only);
    ``tags``: the pins whose ref is a tag on the remote (their locked commit must be the tag's)."""
    exact = is_imagekit_containerfile(containerfile)
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
    frappe: PinRecord
    apps: list[PinRecord]
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
    redactor.add(injected.base64, document=True)
    fp = fingerprint(str(frappe["sha"]), apps)
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
        notes=[n for n in (cli.note, None if exact else OWN_CONTAINERFILE_NOTE) if n],
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
    exact = prepare_exact(containerfile, sources.frappe, sources.apps, injected, env)
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


def _description(frappe: PinRecord, apps: Sequence[PinRecord]) -> str:
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
    tier_texts = [tier.text for tier in exact.tiers] if exact is not None else []
    installers = [containerfile, *map(parse_containerfile, tier_texts)]
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
