"""apps.json: schema validation with JSON paths and line numbers, URL rules, token injection."""

from __future__ import annotations

import base64
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import SplitResult, urlsplit

from frappe_imagekit import validate
from frappe_imagekit.envfile import Finding
from frappe_imagekit.errors import ImagekitError

PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_KEY_INTENTS = {
    "version": "branch",
    "tag": "branch",
    "ref": "branch",
    "commit": "branch",
    "release": "branch",
    "repo": "url",
    "repository": "url",
    "git": "url",
    "link": "url",
    "path": "url",
}

# Apps that need another app listed too (bench does not resolve dependencies). Keep it small.
REQUIRED_APPS: dict[str, tuple[str, ...]] = {
    "hrms": ("erpnext",),
    "india_compliance": ("erpnext",),
    "lending": ("erpnext",),
    "healthcare": ("erpnext",),
    "webshop": ("erpnext", "payments"),
}


@dataclass(frozen=True)
class InjectedApps:
    """The final apps.json with tokens substituted: SECRET, never print or store it."""

    text: str
    base64: str


@dataclass
class AppEntry:
    index: int
    name: str
    url: str
    branch: str
    line: int | None

    def to_dict(self) -> dict[str, str]:
        """The entry as bench reads it (and as ``inject`` takes it)."""
        return {"url": self.url, "branch": self.branch}


def load_schema() -> dict[str, Any]:
    text = resources.files("frappe_imagekit").joinpath("schemas/apps.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def token_vars(url: str) -> list[str]:
    return PLACEHOLDER.findall(url)


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": reported by the URL rules
        return None


def public_url(url: str) -> str:
    """The URL without its user part (a ${VAR} placeholder or anything else before '@')."""
    parts = _split(url)
    if parts is None:
        return "(invalid URL)"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=host).geturl()


def _shown_url(url: str) -> str:
    """The URL as a message may repeat it: token-free, or not at all if it breaks a rule."""
    return public_url(url) if not validate.repo_url_problems(url, "url") else "the same URL"


def manifest_url(url: str) -> str:
    """The URL as manifests record it: a ``${VAR}@`` placeholder kept (it names the token a
    rebuild needs), any other user part dropped (it could be a credential)."""
    netloc = parts.netloc if (parts := _split(url)) else ""
    if "@" in netloc and PLACEHOLDER.fullmatch(netloc.rsplit("@", 1)[0]):
        return url
    return public_url(url)


def app_name(url: str) -> str:
    """The repository's name in ``url`` (bench's folder name before it reads the package name:
    the app's real name comes from the repository, see ``appname``)."""
    parts = _split(url)
    path = (parts.path if parts else url).rstrip("/")
    name = path.rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".git") else name


def repo_identity(url: str) -> str:
    """host/path, lower-case, without user part or .git: two URLs of one repository compare equal."""
    parts = _split(public_url(url)) or urlsplit("")
    path = parts.path.rstrip("/")
    path = path[:-4] if path.endswith(".git") else path
    return f"{parts.scheme}://{parts.netloc.lower()}{path.lower()}"


def inject(apps: list[dict[str, Any]], env: Mapping[str, str]) -> InjectedApps:
    """apps.json text with every ${VAR} replaced by its .env value, compact, plus its base64."""
    resolved = [
        {
            "url": PLACEHOLDER.sub(lambda m: env.get(m.group(1), ""), app["url"]),
            "branch": app["branch"],
        }
        for app in apps
    ]
    text = json.dumps(resolved, separators=(",", ":"))
    return InjectedApps(text, base64.b64encode(text.encode()).decode())


_TOO_DEEP = Finding("error", "apps-json", "apps.json is nested too deeply to be a list of apps: fix it.")


def parse_apps_text(text: str) -> tuple[list[AppEntry], list[Finding]]:
    """Parse and validate apps.json text (structure only; no env, no network)."""
    try:
        data = json.loads(text)
    except RecursionError:
        return [], [_TOO_DEEP]
    except json.JSONDecodeError as exc:
        return [], [
            Finding(
                "error",
                "apps-json",
                (f"apps.json is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."),
            )
        ]
    try:
        lines = json_path_lines(text)
        issues = _schema_issues(data, lines)
    except RecursionError:
        return [], [_TOO_DEEP]
    if issues:
        return [], issues
    entries = [
        AppEntry(i, app_name(app["url"]), app["url"], app["branch"], lines.get(f"[{i}]"))
        for i, app in enumerate(data)
    ]
    return entries, []


def _schema_issues(data: Any, lines: dict[str, int]) -> list[Finding]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema())
    issues = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        issues.append(Finding("error", "apps-schema", _schema_message(error, lines)))
    return issues


def _schema_message(error: Any, lines: dict[str, int]) -> str:
    path = _format_path(error.absolute_path)
    where = f"apps.json {path or '(top level)'}"
    line = lines.get(path)
    if line:
        where += f" (line {line})"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - {"url", "branch"})
        hints = [f'"{key}" (did you mean "{_intent(key)}"?)' for key in extra]
        key_path = f"{path}.{extra[0]}" if extra else path
        line = lines.get(key_path)
        at = f" (line {line})" if line else ""
        return (
            f"apps.json {path}{at} has unknown key {', '.join(hints)}: bench reads only "
            '"url" and "branch" and silently ignores anything else.'
        )
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "url"
        return f'{where} has no "{missing}": every app needs "url" and "branch".'
    if error.validator == "type" and not error.absolute_path:
        return 'apps.json must be a list of apps: [{"url": ..., "branch": ...}, ...].'
    if error.validator == "type":
        return f"{where} must be {_a(error.validator_value)}, not {type(error.instance).__name__}."
    if error.validator == "minLength":
        return f"{where} is empty: set it."
    return f"{where}: {error.message}."


def _a(kind: Any) -> str:
    return {"object": "an object", "string": "a string", "array": "a list"}.get(str(kind), str(kind))


def _intent(key: str) -> str:
    lowered = key.lower()
    if lowered in _KEY_INTENTS:
        return _KEY_INTENTS[lowered]
    close = difflib.get_close_matches(lowered, ["url", "branch"], n=1, cutoff=0.3)
    return close[0] if close else "branch"


def _format_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def json_path_lines(text: str) -> dict[str, int]:
    """Map JSON paths like ``[2]`` and ``[2].branch`` to the line they start on."""
    positions: dict[str, int] = {}
    _scan_value(text, _skip_ws(text, 0), "", positions)
    return positions


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _line_at(text: str, i: int) -> int:
    return text.count("\n", 0, i) + 1


def _scan_value(text: str, i: int, path: str, out: dict[str, int]) -> int:
    """Walk one JSON value starting at i (valid JSON assumed); return the index after it."""
    out.setdefault(path, _line_at(text, i))
    if i >= len(text):
        return i
    if text[i] == "[":
        i, index = _skip_ws(text, i + 1), 0
        while i < len(text) and text[i] != "]":
            i = _skip_ws(text, _scan_value(text, i, f"{path}[{index}]", out))
            index += 1
            if i < len(text) and text[i] == ",":
                i = _skip_ws(text, i + 1)
        return i + 1
    if text[i] == "{":
        i = _skip_ws(text, i + 1)
        while i < len(text) and text[i] != "}":
            end = _string_end(text, i)
            key = json.loads(text[i:end])
            i = _skip_ws(text, end)
            i = _skip_ws(text, i + 1)  # the colon
            out.setdefault(f"{path}.{key}", _line_at(text, i))
            i = _skip_ws(text, _scan_value(text, i, f"{path}.{key}", out))
            if i < len(text) and text[i] == ",":
                i = _skip_ws(text, i + 1)
        return i + 1
    if text[i] == '"':
        return _string_end(text, i)
    match = re.compile(r"[^,\]\}\s]+").match(text, i)
    return match.end() if match else i + 1


def _string_end(text: str, i: int) -> int:
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return i


def url_issues(entry: AppEntry, env_keys: set[str], secret_keys: set[str]) -> list[Finding]:
    """The URL rules (``validate.repo_url_problems``: https, http only to loopback, file:// for
    mirrors, no ssh, no option, placeholders only as the user part, no pasted tokens), then
    whether each placeholder names a variable of .env."""
    where = f"apps.json [{entry.index}].url" + (f" (line {entry.line})" if entry.line else "")
    issues = [Finding("error", code, text) for code, text in validate.repo_url_problems(entry.url, where)]
    return issues + _placeholder_issues(where, entry.url, env_keys, secret_keys)


def ref_issues(entry: AppEntry) -> list[Finding]:
    """The branch must be a git branch or tag name (``validate.git_ref``), never an option."""
    where = f"apps.json [{entry.index}].branch" + (f" (line {entry.line})" if entry.line else "")
    try:
        validate.git_ref(entry.branch, where)
    except ImagekitError as exc:
        return [Finding("error", "apps-ref", exc.message)]
    return []


def _placeholder_issues(where: str, url: str, env_keys: set[str], secret_keys: set[str]) -> list[Finding]:
    issues = []
    for var in token_vars(url):
        if var not in env_keys:
            issues.append(
                Finding(
                    "error",
                    "apps-placeholder",
                    (
                        f"{where} uses ${{{var}}} but .env has no {var}: add it to .env and de-example.env "
                        "(annotated @secret)."
                    ),
                )
            )
        elif secret_keys and var not in secret_keys:
            issues.append(
                Finding(
                    "warning",
                    "apps-placeholder-secret",
                    (
                        f"{where} uses ${{{var}}}, which de-example.env does not mark @secret: add "
                        f"'# @secret' above {var} there so it is masked everywhere."
                    ),
                )
            )
    return issues


def duplicate_and_dependency_issues(entries: list[AppEntry]) -> list[Finding]:
    issues = []
    seen: dict[str, AppEntry] = {}
    for entry in entries:
        identity = repo_identity(entry.url)
        if entry.name == "frappe":
            issues.append(
                Finding(
                    "error",
                    "apps-frappe",
                    (
                        f"apps.json [{entry.index}] lists frappe: frappe comes from FRAPPE_PATH and "
                        "FRAPPE_BRANCH in .env; remove it from apps.json."
                    ),
                )
            )
        if identity in seen:
            issues.append(
                Finding(
                    "error",
                    "apps-duplicate",
                    (
                        f"apps.json [{entry.index}] repeats {_shown_url(entry.url)} "
                        f"(already [{seen[identity].index}]): bench would clone it twice and fail; "
                        "keep one entry."
                    ),
                )
            )
        seen.setdefault(identity, entry)
    # the URL names, as the packages they usually are (india-compliance is india_compliance)
    names = {entry.name.lower().replace("-", "_") for entry in entries}
    for entry in entries:
        for needed in REQUIRED_APPS.get(entry.name.lower().replace("-", "_"), ()):
            if needed not in names:
                issues.append(
                    Finding(
                        "error",
                        "apps-dependency",
                        (
                            f"apps.json lists {entry.name} but not {needed}, which it requires: "
                            f"bench does not resolve dependencies, add {needed} before {entry.name}."
                        ),
                    )
                )
    return issues
