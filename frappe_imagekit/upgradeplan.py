"""`imagekit upgrade-plan MAJOR`: the next Frappe major for a workspace, proposed beside it.

For frappe (FRAPPE_PATH) and each app of apps.json, the ref of MAJOR on its remote (the newest
``vMAJOR.x.y`` tag, else the ``version-MAJOR`` branch: ``initspace.release_ref``, as ``imagekit
init`` pins), read with ``git ls-remote`` through gitremote (a ``${VAR}@`` token of a private app
travels as a header, never in argv or output). At that commit each app's declared frappe
dependency (pyproject.toml ``[tool.bench.frappe-dependencies]``) and its ``required_apps``
(hooks.py) are read without a checkout (``gitremote.read_app_files``). The proposal is written as
``apps.vMAJOR.json`` and ``.env.vMAJOR`` next to apps.json and .env (never over them), .env's
lines kept with FRAPPE_BRANCH, PYTHON_VERSION, NODE_VERSION (versions.PAIRINGS) and the next
free DE_SITE_VERSION changed. A jump over a major is refused unless allowed: each major's
patches are written for a database of the one before.

Everything but ``resolve``/``read_declarations`` (git) and ``write`` is a pure function.
"""

from __future__ import annotations

import ast
import fnmatch
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from frappe_imagekit import gitremote, initspace, manifest, validate, versions
from frappe_imagekit.appname import app_name_from
from frappe_imagekit.appsjson import AppEntry, public_url, token_vars
from frappe_imagekit.check import VERSION_KEY, WorkspaceConfig, git_timeout
from frappe_imagekit.errors import ConfigError, ExitCode, GitError, ImagekitError, UsageError
from frappe_imagekit.workspace import Workspace

HOOKS_KEY = "required_apps"
MAX_SPEC = 100  # characters of a declared version range that are kept (remote content)
MAX_DECLARED = 20  # declared dependencies and required apps kept per app


@dataclass(frozen=True)
class Request:
    """frappe or one app as the workspace has it (``url`` may hold a ``${VAR}@`` placeholder)."""

    name: str
    url: str
    ref: str

    @property
    def token_var(self) -> str | None:
        names = token_vars(self.url)
        return names[0] if names else None


@dataclass
class AppPlan:
    """One repository in the plan: the proposed ref (None: no release for the major) and what
    the app declares at it."""

    request: Request
    ref: str | None = None
    kind: str | None = None  # "tag" | "branch"
    sha: str | None = None
    name: str = ""  # the package name read at the proposed commit (the URL name until then)
    frappe_dependencies: dict[str, str] = field(default_factory=dict)
    required_apps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what does not fit, one sentence each


@dataclass
class Plan:
    current: int
    major: int
    frappe: AppPlan
    apps: list[AppPlan]
    version: str | None  # the proposed DE_SITE_VERSION
    env_name: str
    apps_name: str
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[AppPlan]:
        return [app for app in self.apps if app.ref is None]


# ---------------------------------------------------------------- the jump


def plan_names(major: int) -> tuple[str, str]:
    """``(.env.v16, apps.v16.json)``: the proposed files, beside .env and apps.json."""
    return f".env.v{major}", f"apps.v{major}.json"


def current_major(frappe_branch: str, given: int | None) -> int:
    """The workspace's Frappe major: ``--from`` when given, else FRAPPE_BRANCH's."""
    if given is not None:
        return given
    found = versions.frappe_major(frappe_branch)
    if found is None:
        raise UsageError(
            f"FRAPPE_BRANCH {frappe_branch!r} names no Frappe major: pass the major the workspace "
            "is on with --from (e.g. --from 15)."
        )
    return found


def check_jump(current: int, major: int, allow_skip: bool) -> None:
    """Refuse a plan that goes back, stays, or jumps over a major (unless ``allow_skip``)."""
    if major <= current:
        raise UsageError(
            f"the workspace is on Frappe {current}: upgrade-plan {major} does not go forward; "
            f"name a later major (upgrade-plan {current + 1})."
        )
    if major > current + 1 and not allow_skip:
        skipped = ", ".join(str(m) for m in range(current + 1, major))
        raise UsageError(
            f"Frappe {current} -> {major} skips {skipped}: each major's patches are written for a "
            f"database of the one before; plan {current + 1} first (imagekit upgrade-plan "
            f"{current + 1}), or pass --allow-skip."
        )


def requests_of(config: WorkspaceConfig) -> tuple[Request, list[Request]]:
    """frappe (FRAPPE_PATH, FRAPPE_BRANCH) and each apps.json entry, as check read them."""
    values = config.values
    frappe = Request("frappe", values.get("FRAPPE_PATH", ""), values.get("FRAPPE_BRANCH", ""))
    return frappe, [_request(entry) for entry in config.entries]


def _request(entry: AppEntry) -> Request:
    return Request(entry.name, entry.url, entry.branch)


# ---------------------------------------------------------------- remotes

Lister = Callable[[Request], Mapping[str, str]]


def resolve(
    requests: Sequence[Request], major: int, values: Mapping[str, str], lister: Lister
) -> list[AppPlan]:
    """The ref of ``major`` of each request (``initspace.release_ref``), remotes asked in parallel;
    a ``GitError`` of any remote stops the plan (nothing is written)."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(requests)))) as pool:
        listings = list(pool.map(lister, requests))
    plans = []
    for request, refs in zip(requests, listings, strict=True):
        found = initspace.release_ref(refs, major)
        plan = AppPlan(request, name=request.name)
        if found:
            plan.ref, plan.kind = found
            plan.sha = refs.get(f"refs/tags/{plan.ref}") or refs.get(f"refs/heads/{plan.ref}")
        plans.append(plan)
    return plans


def git_lister(values: Mapping[str, str]) -> Lister:
    def listing(request: Request) -> Mapping[str, str]:
        return gitremote.ls_remote(request.url, values, request.token_var, git_timeout())

    return listing


def read_declarations(app: AppPlan, values: Mapping[str, str]) -> None:
    """Name ``app`` by its package at the proposed commit and read what it declares there."""
    if app.ref is None or app.sha is None:
        return
    request = app.request
    found = gitremote.read_app_files(
        request.url, values, request.token_var, app.sha, app.ref, git_timeout(), with_hooks=True
    )
    app.name = app_name_from(found.files, found.hooks_folders, public_url(request.url), app.ref).name
    app.frappe_dependencies = frappe_dependencies(found.files.get("pyproject.toml"), app)
    hooks = found.files.get(f"{app.name}/hooks.py")
    app.required_apps = required_apps(hooks, app) if hooks is not None else []


# ---------------------------------------------------------------- what an app declares


def frappe_dependencies(pyproject: str | None, app: AppPlan) -> dict[str, str]:
    """``[tool.bench.frappe-dependencies]`` of pyproject.toml (``{"frappe": ">=16.0.0-dev,<17.0.0"}``)."""
    if pyproject is None:
        return {}
    try:
        table = tomllib.loads(pyproject).get("tool", {}).get("bench", {}).get("frappe-dependencies", {})
    except (tomllib.TOMLDecodeError, AttributeError):
        app.problems.append(f"{app.name}: pyproject.toml at {app.ref} cannot be read (not valid TOML)")
        return {}
    if not isinstance(table, dict):
        return {}
    found = {str(k): v[:MAX_SPEC] for k, v in table.items() if isinstance(v, str) and _is_name(str(k))}
    return dict(list(found.items())[:MAX_DECLARED])


def required_apps(hooks: str, app: AppPlan) -> list[str]:
    """``required_apps = [...]`` of hooks.py (read, never run): the app names (``org/repo`` ->
    ``repo``), each a checked app name."""
    try:
        tree = ast.parse(hooks)
    except (SyntaxError, ValueError):
        app.problems.append(f"{app.name}: hooks.py at {app.ref} is not valid Python")
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == HOOKS_KEY for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            names = [str(v).rstrip("/").rsplit("/", 1)[-1] for v in value if isinstance(v, str)]
            return [n for n in names if _is_name(n)][:MAX_DECLARED]
    return []


def _is_name(name: str) -> bool:
    try:
        validate.app_name(name, "a declared app")
    except ImagekitError:
        return False
    return True


def fits(spec: str, major: int) -> bool | None:
    """Whether a version of ``major`` satisfies ``spec`` (None: not a version specifier)."""
    try:
        specifier = SpecifierSet(spec.replace(" ", ""))
    except InvalidSpecifier:
        return None
    candidates = (f"{major}.0.0.dev0", f"{major}.0.0", f"{major}.999.999")
    return any(specifier.contains(c, prereleases=True) for c in candidates)


def judge(plan: Plan) -> None:
    """Each app's problems: no release for the major, a frappe dependency that does not fit it, a
    declared or required app missing from the plan."""
    planned = {"frappe"} | {app.name for app in plan.apps if app.ref is not None}
    for app in plan.apps:
        if app.ref is None:
            app.problems.append(
                f"{app.name}: {_shown(app.request.url)} has no v{plan.major}.x.y release tag and no "
                f"version-{plan.major} branch: left out of {plan.apps_name}; sites that have it "
                "installed need it: wait for its release, or uninstall it before the upgrade"
            )
            continue
        for dep, spec in app.frappe_dependencies.items():
            if dep == "frappe" and fits(spec, plan.major) is False:
                app.problems.append(
                    f"{app.name} at {app.ref} declares frappe {spec}: not Frappe {plan.major}"
                )
            elif dep != "frappe" and dep not in planned:
                app.problems.append(f"{app.name} at {app.ref} declares {dep} {spec}, which the plan has not")
        for needed in app.required_apps:
            if needed not in planned:
                app.problems.append(
                    f"{app.name} at {app.ref} requires {needed} (hooks.py), which the plan has not"
                )


def _shown(url: str) -> str:
    return public_url(url)


# ---------------------------------------------------------------- the files


def next_version(ws: Workspace, current: str) -> str | None:
    """The next free DE_SITE_VERSION after ``current`` (a version of the new major is a new build)."""
    if not current:
        return None
    return versions.newest_free_after(manifest.succeeded_versions(ws) | {current}, current)


def apps_text(plan: Plan) -> str:
    """apps.vN.json: every app with a release for the major, its URL as apps.json has it."""
    pins = [initspace.Pin(a.name, a.request.url, a.ref, a.kind or "tag") for a in plan.apps if a.ref]
    return initspace.apps_json(pins) if pins else "[]\n"


def env_values(plan: Plan) -> dict[str, str]:
    values = {"FRAPPE_BRANCH": plan.frappe.ref or ""}
    pairing = versions.PAIRINGS.get(plan.major)
    if pairing:
        values |= {"PYTHON_VERSION": pairing.python, "NODE_VERSION": pairing.nodes[0]}
    if plan.version:
        values[VERSION_KEY] = plan.version
    return values


def env_text(current_env: str, plan: Plan) -> str:
    """.env.vN: .env's lines, with the keys of ``env_values`` changed (secrets kept as they are)."""
    return initspace.env_text(current_env, env_values(plan))


def exists_message(root: Path, taken: Sequence[str]) -> str:
    return (
        f"{root} already has {', '.join(taken)}: nothing was written; remove them or pass --force "
        "to write the plan over them."
    )


def refuse_existing(ws: Workspace, names: Sequence[str], force: bool) -> None:
    taken = initspace.existing(ws.root, names)
    if taken and not force:
        raise initspace.FilesExistError(exists_message(ws.root, taken))


def write(ws: Workspace, plan: Plan, current_env: str) -> None:
    """Write .env.vN (mode 0600, as .env holds secrets) and apps.vN.json; never .env or apps.json."""
    files = {plan.env_name: env_text(current_env, plan), plan.apps_name: apps_text(plan)}
    result = initspace.Plan(files=files, private={plan.env_name})
    initspace.write_files(ws.root, result, force=True)


def frappe_missing(plan: AppPlan, major: int) -> ImagekitError:
    return ImagekitError(
        f"{_shown(plan.request.url)} (FRAPPE_PATH) has no v{major}.x.y release tag and no "
        f"version-{major} branch: nothing was written; check FRAPPE_PATH, or wait for Frappe {major}.",
        ExitCode.NOT_FOUND,
    )


def next_commands(ws: Workspace, plan: Plan, targets: Sequence[str]) -> list[str]:
    """The commands after the plan, each pasteable: check and build the proposed files, then
    rehearse the new version on each named target."""
    where = f"-w {shlex.quote(str(ws.root))}"
    files = f"--env-file {shlex.quote(plan.env_name)} --apps-file {shlex.quote(plan.apps_name)}"
    commands = [f"imagekit check {where} {files}", f"imagekit build {where} {files}"]
    version = shlex.quote(plan.version or "VERSION")
    commands += [f"imagekit rehearse {version} {shlex.quote(t)} {where}" for t in targets]
    return commands


def pairing_note(major: int) -> str | None:
    if major in versions.PAIRINGS:
        return None
    return (
        f"imagekit knows no Python/Node pair for Frappe {major}: PYTHON_VERSION and NODE_VERSION "
        "are left as they are; set them from Frappe's documentation."
    )


IGNORE_FILES = (".gitignore", ".dockerignore")


def ignore_note(root: Path, env_name: str) -> str | None:
    """A sentence when .gitignore or .dockerignore of the workspace would not leave ``env_name``
    out (it holds .env's tokens and passwords); None when both do."""
    missing = [name for name in IGNORE_FILES if not _ignored(root / name, env_name)]
    if not missing:
        return None
    return (
        f"{env_name} holds .env's tokens and passwords, and {' and '.join(missing)} would not leave "
        f"it out: add a line {env_name} (or .env*) to {' and '.join(missing)}."
    )


def _ignored(ignore_file: Path, name: str) -> bool:
    try:
        lines = ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    patterns = [line.strip().lstrip("/") for line in lines if line.strip() and not line.startswith("#")]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns if not pattern.startswith("!"))


def check_config(errors: int) -> None:
    if errors:
        raise ConfigError(
            f"the workspace has {errors} error(s) (imagekit check lists them): fix them before planning."
        )


def refuse_git(exc: GitError) -> GitError:
    return GitError(f"{exc.message} Nothing was written.", exc.exit_code)


# ---------------------------------------------------------------- the whole plan


def make_plan(
    ws: Workspace, config: WorkspaceConfig, major: int, from_major: int | None, allow_skip: bool,
    lister: Lister | None = None,
) -> Plan:  # fmt: skip
    """The plan for ``major`` of the workspace ``config`` was read from (checked, offline)."""
    values = config.values
    current = current_major(values.get("FRAPPE_BRANCH", ""), from_major)
    check_jump(current, major, allow_skip)
    frappe, apps = requests_of(config)
    try:
        resolved = resolve([frappe, *apps], major, values, lister or git_lister(values))
        if resolved[0].ref is None:
            raise frappe_missing(resolved[0], major)
        read_all(resolved[1:], values)
    except GitError as exc:
        raise refuse_git(exc) from None
    env_name, apps_name = plan_names(major)
    version = next_version(ws, values.get(VERSION_KEY, ""))
    plan = Plan(current, major, resolved[0], resolved[1:], version, env_name, apps_name)
    judge(plan)
    plan.notes += [note for note in (pairing_note(major), ignore_note(ws.root, env_name)) if note]
    return plan


def read_all(apps: Sequence[AppPlan], values: Mapping[str, str]) -> None:
    found = [app for app in apps if app.ref is not None]
    if found:
        with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
            list(pool.map(lambda app: read_declarations(app, values), found))
