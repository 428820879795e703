"""`imagekit rebuild VERSION`: rebuild a past image from its manifest alone.

Drift check first: every recorded ref (frappe and each app) is resolved again with the tokens of
the current ``.env``. A ref that now points to another commit would build another image: when a
tag still points to the recorded commit it is used instead (and said so); any remaining drift is
refused unless ``allow_drift``. The build itself goes through ``execute.execute_build`` with the
stored Containerfile, the recorded build args and apps; its manifest
(``builds/<version>.rebuild-<UTC>.json``, ``kind: rebuild``, ``rebuild_of``) never replaces the
original, and is compared with it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frappe_imagekit import dockerapi, dockercli, gitremote, progress, validate
from frappe_imagekit import manifest as manifests
from frappe_imagekit.appsjson import AppEntry, inject
from frappe_imagekit.build import benchfile, downloads, exact, execute, tiers
from frappe_imagekit.build import plan as buildplan
from frappe_imagekit.build.containerfile import Containerfile, default_containerfile, parse_containerfile
from frappe_imagekit.build.plan import BuildPlan
from frappe_imagekit.build.records import BuildManifest, DriftItem, ManifestPin
from frappe_imagekit.check import Secrets, git_timeout
from frappe_imagekit.envfile import parse_example_text, read_text
from frappe_imagekit.errors import (
    ConfigError,
    DriftError,
    ExitCode,
    GitError,
    ImagekitError,
    NotFoundError,
    TagExistsError,
)
from frappe_imagekit.history import (
    Diff,
    compare_manifests,
    placeholder_urls,
    with_placeholders,
    workspace_env,
)
from frappe_imagekit.pins import Pin, RefKind, classify_ref, resolve_pins
from frappe_imagekit.progress import Reporter
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace

_TAG_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
SAME, TAG, DRIFT = "same", "tag", "drift"


@dataclass
class RebuildOptions:
    allow_drift: bool = False
    force: bool = False
    tag: str | None = None
    dry_run: bool = False
    docker: str | None = None
    context: Path | None = None
    no_cache: bool = False
    leak_scan: bool = True
    timeout: float | None = None
    trust_containerfile: bool = False  # build a stored Containerfile nothing vouches for

    def build_options(self) -> buildplan.BuildOptions:
        """The options build takes (``--force`` is build's: the replaced image keeps a spare tag)."""
        return buildplan.BuildOptions(
            context=self.context,
            docker=self.docker,
            no_cache=self.no_cache,
            force=self.force,
            leak_scan=self.leak_scan,
            dry_run=self.dry_run,
        )


# -- drift ---------------------------------------------------------------------------------


@dataclass
class PinDrift:
    """One recorded pin (frappe or an app: ``pin``, its ``sha`` the recorded commit) against
    what its remote says today."""

    pin: Pin  # as recorded, with the ${VAR} URL the current workspace uses
    current_sha: str | None = None  # what ``ref`` resolves to now; None: the ref is gone
    status: str = SAME  # "same" | "tag" (use_ref points to the recorded commit) | "drift"
    use_ref: str = ""  # the ref the rebuild clones

    @property
    def name(self) -> str:
        return self.pin.name

    @property
    def url(self) -> str:
        return self.pin.url

    @property
    def token_var(self) -> str | None:
        return self.pin.token_var

    @property
    def ref(self) -> str:
        return self.pin.ref

    @property
    def recorded_sha(self) -> str:
        return str(self.pin.sha)

    @property
    def message(self) -> str:
        old = self.recorded_sha[:7]
        if self.status == SAME:
            return f"{self.name}: {self.ref} still at {old}"
        if self.status == TAG:
            return (
                f"{self.name}: {self.ref} moved, but tag {self.use_ref} still points to {old}: "
                f"using {self.use_ref}"
            )
        if self.current_sha is None:
            return f"{self.name}: {self.ref} no longer exists on the remote (was {old})"
        return f"{self.name}: {self.ref} moved from {old} to {self.current_sha[:7]}"

    @property
    def build_pin(self) -> Pin:
        """The pin the rebuild builds: ``use_ref`` at the recorded commit (the current one when
        it drifted and that is allowed)."""
        kind = self.pin.ref_kind if self.use_ref == self.ref else str(classify_ref(self.use_ref))
        sha = self.current_sha if self.status == DRIFT else self.recorded_sha
        return replace(self.pin, ref=self.use_ref, ref_kind=kind, sha=sha)

    def to_dict(self) -> DriftItem:
        return {
            "name": self.name,
            "ref": self.ref,
            "use_ref": self.use_ref,
            "status": self.status,
            "recorded_sha": self.recorded_sha,
            "current_sha": self.current_sha,
            "message": self.message,
        }


@dataclass
class DriftReport:
    pins: list[PinDrift]

    @property
    def drifted(self) -> list[PinDrift]:
        return [p for p in self.pins if p.status == DRIFT]

    @property
    def substituted(self) -> list[PinDrift]:
        return [p for p in self.pins if p.status == TAG]

    def to_dict(self) -> dict[str, Any]:
        return {"pins": [p.to_dict() for p in self.pins], "drifted": len(self.drifted)}


def check_drift(pins: list[PinDrift], env: Mapping[str, str], *, timeout: float = 20.0) -> DriftReport:
    """Resolve every pin again; mark it same, replaced by a tag, or drifted.

    Raises ``GitError`` (one sentence from pins/gitremote) when a remote is gone or refuses
    the current token: drift cannot be judged then.
    """
    results = resolve_pins([p.pin for p in pins], env, timeout=timeout)
    for pin, result in zip(pins, results, strict=True):
        if result.error and result.error_kind != "missing-ref":
            raise GitError(f"cannot check {pin.name} for drift: {_sentence(result.error)}")
        pin.current_sha = result.sha
        pin.use_ref = pin.ref
        if result.sha != pin.recorded_sha:
            tag = _tag_at(pin, env, timeout)
            pin.status, pin.use_ref = (TAG, tag) if tag else (DRIFT, pin.ref)
    return DriftReport(pins)


def _tag_at(pin: PinDrift, env: Mapping[str, str], timeout: float) -> str | None:
    """A tag on the remote that points to the recorded commit (release tags first)."""
    refs = gitremote.ls_remote(pin.url, env, pin.token_var, timeout)
    tags = [
        name.removeprefix("refs/tags/")
        for name, sha in refs.items()
        if name.startswith("refs/tags/") and not name.endswith("^{}") and sha == pin.recorded_sha
    ]
    tags.sort(key=lambda t: (classify_ref(t) is not RefKind.RELEASE_TAG, t))
    return tags[0] if tags else None


def drift_error(report: DriftReport, version: str) -> DriftError:
    moved = "; ".join(p.message for p in report.drifted)
    return DriftError(
        f"rebuilding {version} would not reproduce it ({moved}): pin those apps to a tag at the "
        "recorded commit on the remote, or pass --allow-drift to build with the current commits."
    )


def _sentence(text: str) -> str:
    return text.rstrip(". ")


# -- planning ------------------------------------------------------------------------------


@dataclass
class RebuildPlan:
    """What a rebuild will do. ``build`` holds the injected apps.json: never print it."""

    version: str
    original: BuildManifest
    original_file: str
    drift: DriftReport
    build: BuildPlan
    rebuild_id: str  # "<version>.rebuild-<UTC>": names the manifest and log
    existing_image_id: str | None = None  # the image under the target tag (only with --force)
    notes: list[str] = field(default_factory=list)
    trusted: str | None = None  # why the stored Containerfile needed --trust-containerfile

    @property
    def ref(self) -> str:
        return self.build.ref

    def to_dict(self) -> dict[str, Any]:
        return {
            "rebuild_of": self.version,
            "original_manifest": self.original_file,
            "manifest": f"{self.rebuild_id}.json",
            "image": self.ref,
            "replaces_image": self.existing_image_id,
            "drift": self.drift.to_dict(),
            "notes": list(self.notes),
            "trusted_containerfile": self.trusted,
            "plan": self.build.to_dict(),
        }


def load_original(ws: Workspace, version: str) -> tuple[Path, BuildManifest]:
    """The successful build's manifest; ``NotFoundError`` when unknown or unusable for a rebuild."""
    path = manifests.find_manifest(ws, version)
    try:
        data = manifests.load_manifest(path)
    except ValueError as exc:
        raise NotFoundError(
            f"{path.name} cannot be read ({exc}): restore it from a backup to rebuild {version}."
        ) from None
    if not (data.get("containerfile") or {}).get("content"):
        raise NotFoundError(
            f"{path.name} has no stored copy of its Containerfile (an older or hand-edited "
            f"manifest), so {version} cannot be rebuilt from it: build it again with "
            "`imagekit build --containerfile PATH` instead."
        )
    recorded_frappe(data, path.name, version)
    return path, data


def recorded_frappe(data: BuildManifest, file: str, version: str) -> ManifestPin:
    """The manifest's frappe pin; ``NotFoundError`` when it records no frappe commit."""
    frappe = data.get("frappe")
    if not frappe or not frappe.get("sha"):
        raise NotFoundError(f"{file} records no frappe commit, so {version} cannot be rebuilt from it.")
    return frappe


def recorded_pins(original: BuildManifest, ws: Workspace, env: Mapping[str, str]) -> list[PinDrift]:
    """frappe and each app as recorded, with the ``${VAR}`` URL the current workspace uses.

    The manifest is repository content: its URLs, refs and SHAs pass the same validators as
    apps.json before anything reaches git or a build, and a ``${VAR}`` it writes into a URL
    never chooses a token (``history.with_placeholders``).
    """
    known = placeholder_urls(ws, env)
    result = []
    frappe = recorded_frappe(original, "its manifest", original["version"])
    for record in [frappe, *(original.get("apps") or [])]:
        name = str(record.get("name") or "frappe")
        where = f"the manifest's {validate.not_an_option(name, 'an app name')}"
        url = with_placeholders(validate.repo_url(record.get("url"), f"{where} url"), known)
        pin = Pin(
            name=name,
            url=url,
            ref=validate.git_ref(record.get("ref"), f"{where} ref"),
            ref_kind=record.get("ref_kind"),
            sha=validate.commit_sha(record.get("sha"), f"{where} sha"),
        )
        result.append(PinDrift(pin))
    return result


def plan_rebuild(ws: Workspace, version: str, options: RebuildOptions) -> RebuildPlan:
    """Load, drift-check and plan the rebuild of ``version`` (nothing is built)."""
    if options.tag is not None and not _TAG_OK.match(options.tag):
        raise ImagekitError(
            f"--tag {options.tag!r} is not a valid docker tag: use letters, digits, '.', '_' "
            "and '-' (at most 128, not starting with '.' or '-').",
            ExitCode.USAGE,
        )
    path, original = load_original(ws, version)
    env = workspace_env(ws)
    stored = stored_containerfile(ws, original, path.name, env, trust=options.trust_containerfile)
    timeout = options.timeout if options.timeout is not None else git_timeout()
    recorded = recorded_pins(original, ws, env)
    drift = (
        exact_drift(recorded, env, timeout)
        if is_exact(original)
        else check_drift(recorded, env, timeout=timeout)
    )
    unbuildable = [p for p in drift.drifted if p.current_sha is None]
    if unbuildable or (drift.drifted and not options.allow_drift):
        if unbuildable and options.allow_drift:
            raise drift_error(DriftReport(unbuildable), version)
        raise drift_error(drift, version)
    rebuild_id = _free_rebuild_id(ws, version)
    build_plan = replace(
        _build_plan(ws, original, drift, env, options, stored.containerfile), record_name=rebuild_id
    )
    plan = RebuildPlan(version, original, path.name, drift, build_plan, rebuild_id, trusted=stored.trusted)
    plan.notes = [p.message for p in drift.pins if p.status != SAME]
    plan.existing_image_id = _guard_target(plan, options)
    return plan


def _free_rebuild_id(ws: Workspace, version: str) -> str:
    """``<version>.rebuild-<UTC>``, with a counter when two rebuilds start in one second."""
    base = f"{version}.rebuild-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    candidate, n = base, 1
    while list(ws.builds_dir.glob(f"{candidate}.*json")):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _build_plan(
    ws: Workspace,
    original: BuildManifest,
    drift: DriftReport,
    env: Mapping[str, str],
    options: RebuildOptions,
    containerfile: Containerfile,
) -> BuildPlan:
    """Build's plan for the recorded sources, then its rebuild variant: the recorded build args
    win over what the stored Containerfile declares, and the labels follow the final values."""
    version = str(original["version"])
    frappe, *apps = [p.build_pin.record() for p in drift.pins]
    recorded_args = _recorded_args(original)
    _refuse_undeclared(recorded_args, containerfile, "its Containerfile")
    plan_env = {
        **{k: v for k, v in recorded_args.items() if k != buildplan.CACHE_BUST},
        "FRAPPE_BRANCH": frappe["ref"],
        "DE_SITE_VERSION": version,
        "IMAGE_NAME": _image_name(original),
        "BUILD_NETWORK": env.get("BUILD_NETWORK", ""),
    }
    source = (original.get("labels") or {}).get(buildplan.LABEL_PREFIX + "source")
    if source:
        plan_env["IMAGE_SOURCE"] = source
    entries = [AppEntry(i, p.name, p.url, p.use_ref, None).to_dict() for i, p in enumerate(drift.pins[1:])]
    secrets = Secrets(injected=inject(entries, env), redactor=_redactor(ws, env, drift))
    text = json.dumps(entries, indent=2) + "\n"
    sources = buildplan.Sources(plan_env, containerfile, frappe, apps, text, secrets)
    plan = buildplan.assemble_plan(
        ws, options.build_options(), sources, dockercli.find_docker(options.docker)
    )
    # CACHE_BUST follows the SHAs that will be built (equal to the recorded one when nothing drifted).
    args = {k: v for k, v in recorded_args.items() if k != buildplan.CACHE_BUST}
    if "FRAPPE_BRANCH" in args:
        args["FRAPPE_BRANCH"] = frappe["ref"]
    if buildplan.CACHE_BUST in recorded_args or buildplan.CACHE_BUST in plan.build_args:
        args[buildplan.CACHE_BUST] = plan.fingerprint
    variant = replace(
        plan,
        kind="rebuild",
        rebuild_of=version,
        tag=options.tag or version,
        build_args=args | (plan.exact.build_args if plan.exact is not None else {}),
        drift=[p.to_dict() for p in drift.pins],
    )
    return _use_recorded_tiers(variant, original)


def _use_recorded_tiers(plan: BuildPlan, original: BuildManifest) -> BuildPlan:
    """A rebuild uses the tiers the original build recorded (their text and args, their tags)."""
    if plan.exact is None:
        return plan
    recorded = tiers.from_manifest(original)
    if recorded is None:
        return plan
    args = plan.build_args | {benchfile.BASE_ARG: tiers.top(recorded).ref}
    return replace(plan, exact=replace(plan.exact, tiers=recorded), build_args=args)


def _recorded_args(original: BuildManifest) -> dict[str, str]:
    """The manifest's build args, each a variable name with a string value; FRAPPE_PATH passes
    the URL rules and holds no ``${VAR}`` (build args are public)."""
    args = original.get("build_args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError("the manifest's build_args is not an object: fix or restore the manifest.")
    checked = {}
    for key, value in args.items():
        name = validate.env_name(key, "a build arg name in the manifest")
        checked[name] = validate.not_an_option(value, f"the manifest's build arg {name}")
    downloads.check(checked, "the manifest's build arg")  # mirror URLs and sources: the same rules as in .env
    if "FRAPPE_PATH" in checked:
        path = validate.repo_url(checked["FRAPPE_PATH"], "the manifest's build arg FRAPPE_PATH")
        if "${" in path or "@" in path.partition("//")[2].partition("/")[0]:
            raise ConfigError(
                "the manifest's build arg FRAPPE_PATH holds a credential: build args are public; "
                "fix or restore the manifest."
            )
    return checked


_PROXY_ARGS = frozenset(f"{name}_PROXY" for name in ("HTTP", "HTTPS", "FTP", "ALL", "NO")) | frozenset(
    f"{name}_proxy" for name in ("http", "https", "ftp", "all", "no")
)


def _refuse_undeclared(args: Mapping[str, str], containerfile: Containerfile, what: str) -> None:
    """Build args docker and BuildKit obey without any ARG line (the proxies, which every RUN
    sees, the token's fetch included; ``BUILDKIT_SYNTAX``, which picks the frontend that runs
    the build) are refused in a manifest unless its Containerfile declares them: imagekit
    never records such an arg by itself."""
    obeyed = [a for a in args if a in _PROXY_ARGS or a.startswith("BUILDKIT_")]
    undeclared = sorted(set(obeyed) - set(containerfile.declared_args))
    if undeclared:
        raise ConfigError(
            f"the manifest's build args {', '.join(undeclared)} are not declared by {what}, so no "
            "build of imagekit recorded them: the manifest was edited; restore it from git."
        )


def _image_name(original: BuildManifest) -> str:
    image = original.get("image") or {}
    name = image.get("name") or str(image.get("ref") or "").rpartition(":")[0]
    if not name:
        raise NotFoundError(
            f"the manifest of {original.get('version')} records no image name: cannot rebuild it."
        )
    return str(name)


def _redactor(ws: Workspace, env: Mapping[str, str], drift: DriftReport) -> Redactor:
    """Knows every token the pins use and every key de-example.env marks @secret."""
    secret_keys = {p.token_var for p in drift.pins if p.token_var}
    if ws.example_file.is_file():
        specs = parse_example_text(read_text(ws.example_file, "de-example.env"))
        secret_keys |= {name for name, spec in specs.items() if spec.secret}
    return Redactor(env.get(key, "") for key in sorted(secret_keys))


def _guard_target(plan: RebuildPlan, options: RebuildOptions) -> str | None:
    """Refuse an existing target tag unless ``--force``; return the image id it would replace."""
    existing = dockerapi.inspect_image(plan.ref)
    if existing is None:
        return None
    short = str(existing.get("Id", "")).removeprefix("sha256:")[:12]
    if options.force:
        return str(existing["Id"])
    same = existing.get("Id") == (plan.original.get("image") or {}).get("id")
    what = f"image {short}" + (", the original build" if same else "")
    raise TagExistsError(
        f"{plan.ref} still exists ({what}), so there is nothing to rebuild: pass --tag "
        f"{plan.version}-rebuilt to build beside it, or --force to rebuild it and keep the old "
        f"image as {plan.build.image_name}:{_replaced_tag(plan, short)}."
    )


def _replaced_tag(plan: RebuildPlan, image_id: str) -> str:
    return execute.replaced_tag(plan.build.tag, image_id)


# -- the stored Containerfile: repository content, run with the tokens ------------------------


@dataclass(frozen=True)
class StoredContainerfile:
    """The Containerfile a rebuild runs, and why it needed ``--trust-containerfile`` (None:
    imagekit's own text regenerated from the recorded plan, or the workspace file)."""

    containerfile: Containerfile
    trusted: str | None = None


def stored_containerfile(
    ws: Workspace, original: BuildManifest, manifest_name: str, env: Mapping[str, str], *, trust: bool
) -> StoredContainerfile:
    """The Containerfile to rebuild with. A manifest is repository content and its Containerfile
    runs with the tokens mounted, so the stored text is built only when something vouches for it:
    imagekit's generated text must equal what this imagekit generates from the recorded apps
    (and so must the system tier's); a user's own text is taken from the workspace file that
    .env's CONTAINERFILE names when that file has the recorded sha256. Anything else is a
    ``ConfigError`` unless ``trust`` (``--trust-containerfile``)."""
    try:
        if is_exact(original):
            return StoredContainerfile(_regenerated(original, manifest_name))
        return StoredContainerfile(_workspace_file(ws, original, manifest_name, env))
    except ConfigError as refused:
        if not trust:
            raise
        text = str((original.get("containerfile") or {}).get("content") or "")
        return StoredContainerfile(parse_containerfile(text, None), refused.message)


def _regenerated(original: BuildManifest, manifest_name: str) -> Containerfile:
    """The stored generated text, once it equals today's generation from the recorded apps."""
    stored = str((original.get("containerfile") or {}).get("content") or "")
    template = benchfile.split_template(default_containerfile().read_text())
    names = [str(app.get("name") or "") for app in original.get("apps") or []]
    try:
        expected = benchfile.render(names, template)
    except ConfigError as exc:
        raise _not_ours(manifest_name, "containerfile.content", exc.message.rstrip(".")) from None
    if stored != expected:
        raise _not_ours(manifest_name, "containerfile.content", _first_difference(stored, expected))
    _check_tier(original, template, manifest_name)
    return parse_containerfile(stored, None)


def _check_tier(original: BuildManifest, template: benchfile.Template, manifest_name: str) -> None:
    """The recorded system tier: today's tier text, its key and tag made from that text and args."""
    record = original.get("base_tier")
    if not record:
        return
    if not isinstance(record, Mapping):
        raise _not_ours(manifest_name, "base_tier", "it is not an object")
    text = str(record.get("containerfile") or "")
    expected = benchfile.render_tier(template)
    if text != expected:
        raise _not_ours(manifest_name, "base_tier.containerfile", _first_difference(text, expected))
    recorded = record.get("build_args") or {}
    if not isinstance(recorded, Mapping):
        raise _not_ours(manifest_name, "base_tier.build_args", "it is not an object")
    args = {validate.env_name(k): str(v) for k, v in recorded.items()}
    _refuse_undeclared(args, parse_containerfile(text, None), "its system tier's Containerfile")
    key = tiers.tier_key(text, args)
    if record.get("key") != key or record.get("ref") != f"{_image_name(original)}:base-{key}":
        detail = f"its key and tag are not base-{key}, made from its text and args"
        raise _not_ours(manifest_name, "base_tier", detail)


def _not_ours(manifest_name: str, field_name: str, detail: str) -> ConfigError:
    return ConfigError(
        f"builds/{manifest_name} holds a {field_name} that is not what this imagekit generates from "
        f"its recorded apps ({detail}), and a rebuild runs it with your tokens mounted: restore the "
        "manifest from git, or rebuild with the imagekit version that built it, or build a new "
        "version with `imagekit build`; if you have read that text and trust it, pass "
        "--trust-containerfile."
    )


def _first_difference(stored: str, expected: str) -> str:
    for number, (got, want) in enumerate(zip(stored.splitlines(), expected.splitlines(), strict=False), 1):
        if got != want:
            return f"line {number} differs: {got.strip()[:80]!r}"
    return f"it has {len(stored.splitlines())} lines, not {len(expected.splitlines())}"


def _workspace_file(
    ws: Workspace, original: BuildManifest, manifest_name: str, env: Mapping[str, str]
) -> Containerfile:
    """The workspace's own Containerfile (.env CONTAINERFILE) when it has the recorded sha256."""
    record = original.get("containerfile") or {}
    recorded = str(record.get("sha256") or "")
    chosen = (env.get("CONTAINERFILE") or "").strip()
    if not chosen:
        why = "CONTAINERFILE is not set in .env"
    else:
        path = (ws.root / chosen).expanduser().resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = f"CONTAINERFILE {path} cannot be read ({exc.__class__.__name__})"
        else:
            if hashlib.sha256(text.encode()).hexdigest() == recorded:
                return parse_containerfile(text, path)
            why = f"CONTAINERFILE {path} has another sha256"
    raise ConfigError(
        f"builds/{manifest_name} stores its own Containerfile (sha256 {recorded[:12] or 'none'}), which a "
        f"rebuild would run with your tokens mounted, and no workspace file vouches for it ({why}): "
        "set CONTAINERFILE in .env to the file it was built from, or read containerfile.content in "
        f"builds/{manifest_name} and pass --trust-containerfile to build it as stored."
    )


# -- execution -----------------------------------------------------------------------------


@dataclass
class Comparison:
    """The rebuilt manifest against the original: what a rebuild promises to keep."""

    same_apps: bool
    same_shas: bool
    same_containerfile: bool
    same_args: bool
    diff: Diff
    # why the stored Containerfile ran only under --trust-containerfile: then "same" compares
    # with that unverified text, and the rebuild is no proof of the version (never identical)
    trusted: str | None = None

    @property
    def identical(self) -> bool:
        same = self.same_apps and self.same_shas and self.same_containerfile and self.same_args
        return same and self.trusted is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "same_apps": self.same_apps,
            "same_shas": self.same_shas,
            "same_containerfile": self.same_containerfile,
            "same_args": self.same_args,
            "trusted_containerfile": self.trusted,
            "diff": self.diff.to_dict(),
        }


def compare_with_original(
    original: BuildManifest, rebuilt: BuildManifest, trusted: str | None = None
) -> Comparison:
    diff = compare_manifests(original, rebuilt)
    old_args = dict(original.get("build_args") or {})
    new_args = dict(rebuilt.get("build_args") or {})
    return Comparison(
        same_apps=not (diff.apps_added or diff.apps_removed),
        same_shas=all(c.old_sha == c.new_sha for c in diff.changes),
        same_containerfile=diff.containerfile_changed is False,
        same_args=old_args == new_args,
        diff=diff,
        trusted=trusted,
    )


@dataclass
class RebuildResult:
    manifest: BuildManifest
    manifest_file: str
    comparison: Comparison
    drift: DriftReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_file": self.manifest_file,
            "manifest": self.manifest,
            "comparison": self.comparison.to_dict(),
            "drift": self.drift.to_dict(),
        }


def execute_rebuild(
    ws: Workspace,
    plan: RebuildPlan,
    on_line: Callable[[str], None] | None = None,
    reporter: Reporter = progress.SILENT,
) -> RebuildResult:
    """Build, scan and record the rebuild; return its manifest compared with the original."""
    data = execute.execute_build(ws, plan.build, on_line=on_line, reporter=reporter)
    comparison = compare_with_original(plan.original, data, plan.trusted)
    return RebuildResult(data, f"{plan.rebuild_id}.json", comparison, plan.drift)


# -- exact builds ----------------------------------------------------------------------------


def is_exact(original: BuildManifest) -> bool:
    """Built with imagekit's generated Containerfile: the build fetches the recorded commits."""
    return benchfile.is_generated(str((original.get("containerfile") or {}).get("content") or ""))


def exact_drift(pins: list[PinDrift], env: Mapping[str, str], timeout: float) -> DriftReport:
    """Moved branches and tags do not matter to an exact rebuild; a lost commit does (exit 11)."""
    for pin in pins:
        pin.current_sha, pin.use_ref, pin.status = pin.recorded_sha, pin.ref, SAME
    error = exact.missing_commits([p.pin for p in pins], env, timeout)
    if error is not None:
        raise error
    return DriftReport(pins)
