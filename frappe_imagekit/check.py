"""`imagekit check`: everything that would make a build fail or leak, before anything is built."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from frappe_imagekit import appsjson, envfile, manifest, pins, validate, versions
from frappe_imagekit.appsjson import AppEntry, InjectedApps
from frappe_imagekit.build import downloads
from frappe_imagekit.build.containerfile import default_containerfile, parse_containerfile
from frappe_imagekit.build.downloads import Download
from frappe_imagekit.envfile import Finding, KeySpec, ParsedEnv
from frappe_imagekit.errors import ConfigError
from frappe_imagekit.pins import Pin
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace

VERSION_KEY = "DE_SITE_VERSION"
IMAGE_KEY = "IMAGE_NAME"
FRAPPE_KEYS = ("FRAPPE_PATH", "FRAPPE_BRANCH")


@dataclass
class Secrets:
    """Every secret of a workspace: the values of the masked ``.env`` keys and the injected
    apps.json. SECRET: never print or store it; ``mask`` hides every form of each."""

    env: dict[str, str] = field(default_factory=dict)  # masked key -> its value
    injected: InjectedApps | None = None
    redactor: Redactor = field(default_factory=Redactor)

    def add_env(self, key: str, value: str) -> None:
        self.env[key] = value
        self.redactor.add(value)

    def add_injected(self, injected: InjectedApps) -> None:
        self.injected = injected
        self.redactor.add(injected.text, whole_document=True)

    def mask(self, text: str) -> str:
        return self.redactor.redact(text)


@dataclass
class WorkspaceConfig:
    """What check checked, as a build reads it: ``.env`` (its masked values only in
    ``secrets``), the keys de-example.env declares, apps.json and the resolved pins."""

    env: dict[str, str] = field(default_factory=dict)  # values that are not masked
    secrets: Secrets = field(default_factory=Secrets)
    declared: set[str] = field(default_factory=set)  # keys de-example.env declares
    secret_keys: set[str] = field(default_factory=set)  # keys de-example.env marks @secret
    apps_json_text: str = ""
    entries: list[AppEntry] = field(default_factory=list)
    frappe: Pin | None = None
    apps: list[Pin] = field(default_factory=list)  # in apps.json order

    @property
    def values(self) -> dict[str, str]:
        """Every ``.env`` value, tokens included (SECRET): for injection and git only."""
        return self.env | self.secrets.env

    @property
    def all_pins(self) -> list[Pin]:
        return ([self.frappe] if self.frappe else []) + list(self.apps)


@dataclass
class CheckReport:
    """What check checked (``config``) and what it found (``findings``, already masked)."""

    config: WorkspaceConfig
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    def add(self, issues: list[Finding]) -> None:
        mask = self.config.secrets.mask
        self.findings.extend(replace(i, message=mask(i.message)) for i in issues)

    def to_dict(self) -> dict[str, Any]:
        """Everything check found, without a secret."""
        config = self.config
        return {
            "ok": not self.has_errors,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [vars(f) for f in self.findings],
            # only keys de-example.env declares: any other "key" may be a line of another file
            "env": {k: v for k, v in config.env.items() if k in config.declared},
            "frappe": pin_dict(config.frappe) if config.frappe else None,
            "apps": [pin_dict(p) for p in config.apps],
            "downloads": [d.to_dict() for d in build_downloads(config.values)],
        }


def build_downloads(values: dict[str, str]) -> list[Download]:
    """What the build will download, from where (``imagekit check`` shows it); a user's own
    Containerfile decides that itself, and mirror keys with problems are reported instead."""
    own = (values.get("CONTAINERFILE") or "").strip()
    if own:
        return [Download("everything", f"what {own} (CONTAINERFILE in .env, not imagekit's) says")]
    if downloads.problems(values):
        return []
    return downloads.downloads(values, parse_containerfile(default_containerfile().read_text()))


def pin_dict(pin: Pin) -> dict[str, Any]:
    """A pin for the report; a URL or ref that broke a rule is not repeated (its finding says
    what is wrong; the text itself may hold a pasted token)."""
    url_ok = not validate.repo_url_problems(pin.url, "url")
    try:
        ref = validate.git_ref(pin.ref, "ref")
    except ConfigError:
        ref = None
    return {
        "name": pin.name if url_ok else "?",
        "url": appsjson.public_url(pin.url) if url_ok else None,
        "ref": ref,
        "ref_kind": str(pin.ref_kind),
        "sha": pin.sha,
        "status": pin_status(pin),
        "error": pin.error,
    }


def pin_status(pin: Pin) -> str:
    if pin.error:
        return "error" if pin.error_kind != "skipped" else "skipped"
    if not pin.sha:
        return "skipped"
    return "moving" if str(pin.ref_kind) == "moving-branch" else "ok"


def run_check(
    ws: Workspace, *, offline: bool = False, strict: bool = False, check_version_is_new: bool = True
) -> CheckReport:
    """Validate .env against de-example.env, apps.json, and (unless offline) every ref remotely."""
    check = _Check(CheckReport(WorkspaceConfig()))
    config, report = check.report.config, check.report
    specs, env = _load_env(ws, report)
    check.values = env.values
    config.secret_keys = {s.name for s in specs.values() if s.secret}
    config.declared = set(specs)
    config.apps_json_text = envfile.read_text(ws.apps_file, "apps.json")
    hidden = _hidden_keys(config.apps_json_text, env.values, config.secret_keys)
    for key, value in env.values.items():
        if key in hidden:
            config.secrets.add_env(key, value)
        else:
            config.env[key] = value
    report.add(env.issues)
    report.add(envfile.validate_env(env, specs))
    report.add(_env_semantics(env.values))
    report.add([Finding("error", "env-mirror", text) for text in downloads.problems(env.values)])
    frappe_issues = _frappe_issues(env.values, config.secret_keys)
    check.frappe_unsafe = bool(frappe_issues)
    report.add(frappe_issues)
    if check_version_is_new:
        report.add(_version_is_new(ws, env.values.get(VERSION_KEY, "")))
    _check_apps(check)
    _resolve(check, offline=offline, strict=strict)
    return report


@dataclass
class _Check:
    """The state of one check run: the report, every .env value (SECRET), entries never sent to git."""

    report: CheckReport
    values: dict[str, str] = field(default_factory=dict)
    unsafe: set[int] = field(default_factory=set)  # apps.json entries never sent to git
    frappe_unsafe: bool = False  # FRAPPE_PATH/FRAPPE_BRANCH broke a rule: not sent to git


def _hidden_keys(apps_json_text: str, values: dict[str, str], secret_keys: set[str]) -> set[str]:
    """Keys whose values are masked everywhere: the ``@secret`` ones, and, whatever
    de-example.env says (it is repository content: a pull request can drop a ``@secret``),
    every variable apps.json uses as a token and every value shaped like a token."""
    used = set(appsjson.token_vars(apps_json_text))
    shaped = {k for k, v in values.items() if validate.TOKEN_SHAPE.search(v)}
    return secret_keys | (used & set(values)) | shaped


def _load_env(ws: Workspace, report: CheckReport) -> tuple[dict[str, KeySpec], ParsedEnv]:
    example_text = envfile.read_text(ws.example_file, "de-example.env")
    env_text = envfile.read_text(ws.env_file, ".env")
    specs = envfile.parse_example_text(example_text)
    report.add(envfile.example_annotation_issues(example_text))
    if not specs:
        raise ConfigError(f"{ws.example_file} declares no keys: it is the schema for .env, fill it in.")
    return specs, envfile.parse_env_text(env_text)


def _frappe_issues(values: dict[str, str], secret_keys: set[str]) -> list[Finding]:
    """FRAPPE_PATH passes the URL rules and holds no credential; FRAPPE_BRANCH is a git ref."""
    path, branch = (values.get(k, "") for k in FRAPPE_KEYS)
    secrets = [values[k] for k in secret_keys if values.get(k)]
    if path and (_has_userinfo(path) or any(s in path for s in secrets)):
        return [
            Finding(
                "error",
                "env-frappe-token",
                (
                    ".env FRAPPE_PATH contains a credential: build args are stored in the image history "
                    "for anyone to read; point it at a public or mirrored frappe repository without a token."
                ),
            )
        ]
    issues = [
        Finding("error", code, text) for code, text in validate.repo_url_problems(path, ".env FRAPPE_PATH")
    ]
    if path and branch:
        try:
            validate.git_ref(branch, ".env FRAPPE_BRANCH")
        except ConfigError as exc:
            issues.append(Finding("error", "env-ref", exc.message))
    return issues if path else []


def _has_userinfo(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False  # reported as an invalid URL


def _env_semantics(values: dict[str, str]) -> list[Finding]:
    issues: list[Finding] = []
    image = values.get(IMAGE_KEY, "")
    if image and not _is_image_name(image):
        issues.append(
            Finding(
                "error",
                "env-image-name",
                (
                    f".env {IMAGE_KEY} {image!r} is not a valid image name (lower-case, e.g. "
                    "desiredeffect/erpnext-custom, no tag): correct it."
                ),
            )
        )
    branch, python, node = (values.get(k, "") for k in ("FRAPPE_BRANCH", "PYTHON_VERSION", "NODE_VERSION"))
    if branch and python and node:
        warning = versions.pairing_warning(branch, python, node)
        if warning:
            issues.append(Finding("warning", "env-pairing", warning))
    return issues


def _version_is_new(ws: Workspace, version: str) -> list[Finding]:
    if not version:
        return []
    taken = manifest.succeeded_versions(ws)
    if version not in taken:
        return []
    suggestion = versions.newest_free_after(taken, version)
    return [
        Finding(
            "error",
            "version-taken",
            (
                f"{VERSION_KEY}={version} was already built (builds/{version}.json): set "
                f"{VERSION_KEY}={suggestion} in .env for a new build."
            ),
        )
    ]


def _check_apps(check: _Check) -> None:
    report, config = check.report, check.report.config
    entries, issues = appsjson.parse_apps_text(config.apps_json_text)
    report.add(issues)
    if issues:
        return
    if not entries:
        report.add(
            [Finding("warning", "apps-empty", "apps.json lists no apps: the image will hold frappe only.")]
        )
    env_keys = set(check.values)
    for entry in entries:
        issues = appsjson.url_issues(entry, env_keys, config.secret_keys) + appsjson.ref_issues(entry)
        report.add(issues)
        if any(issue.level == "error" for issue in issues):
            check.unsafe.add(entry.index)
    report.add(appsjson.duplicate_and_dependency_issues(entries))
    config.entries = entries
    config.secrets.add_injected(appsjson.inject([e.to_dict() for e in entries], check.values))


def _resolve(check: _Check, *, offline: bool, strict: bool) -> None:
    """Resolve frappe and every app, even when .env has errors (one run shows every problem);
    an entry whose URL or ref broke a rule is never sent to git."""
    config = check.report.config
    frappe_path, frappe_branch = (check.values.get(k, "") for k in FRAPPE_KEYS)
    frappe = None
    if frappe_path and frappe_branch:
        frappe = Pin.at("frappe", frappe_path, frappe_branch)
    requests = [(frappe, check.frappe_unsafe)] if frappe else []
    requests += [
        (Pin.at(e.name, e.url, e.branch, read_name=True), e.index in check.unsafe) for e in config.entries
    ]
    safe = [r for r, unsafe in requests if not unsafe]
    resolved = iter(
        [] if offline or not safe else pins.resolve_pins(safe, check.values, timeout=git_timeout())
    )
    results = [r if offline or unsafe else next(resolved) for r, unsafe in requests]
    for result in results:
        result.error = config.secrets.mask(result.error) if result.error else result.error
    if frappe:
        config.frappe, results = results[0], results[1:]
    config.apps = results
    for pin in config.all_pins:
        check.report.add(_pin_issues(pin, strict))
    check.report.add(pins.name_issues(config.apps))  # the package names read from the repositories


def git_timeout() -> float:
    """Seconds one remote may take (IMAGEKIT_GIT_TIMEOUT, default 20)."""
    try:
        return max(1.0, float(os.environ.get("IMAGEKIT_GIT_TIMEOUT", "20")))
    except ValueError:
        raise ConfigError("IMAGEKIT_GIT_TIMEOUT must be a number of seconds, e.g. 20.") from None


def _pin_issues(pin: Pin, strict: bool) -> list[Finding]:
    if pin.error:
        return [Finding("error", f"pin-{pin.error_kind or 'error'}", pin.error)]
    if pin.sha and str(pin.ref_kind) == "moving-branch":
        level = "error" if strict else "warning"
        return [
            Finding(
                level,
                "pin-moving",
                (
                    f"{pin.name} follows the moving branch {pin.ref!r} (now {pin.sha[:12]}): the same build "
                    "next week may differ; pin a release tag such as v15.17.0"
                    + (" (--strict makes this an error)." if not strict else ".")
                ),
            )
        ]
    return []


def _is_image_name(text: str) -> bool:
    try:
        validate.image_name(text)
    except ConfigError:
        return False
    return True
