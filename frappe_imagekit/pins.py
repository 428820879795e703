"""Release pins: classify each app's ref and resolve it to a commit SHA on its remote.

bench clones with ``git clone --branch REF --depth 1``, so a ref is a branch or a tag name. A
release tag (``v15.17.0``) pins a commit; a release line (``version-15``) moves with hotfixes; any
other branch (``develop``) moves freely. Resolution runs ``git ls-remote`` once per remote,
concurrently, each with its own timeout, and never raises for one bad remote.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from frappe_imagekit import gitremote
from frappe_imagekit.appname import app_name_from, repo_name
from frappe_imagekit.appsjson import REQUIRED_APPS, manifest_url, public_url, token_vars
from frappe_imagekit.build.records import ManifestPin, PinRecord
from frappe_imagekit.envfile import Finding
from frappe_imagekit.errors import ConfigError, GitError
from frappe_imagekit.redact import Redactor

if TYPE_CHECKING:
    from packaging.version import Version


class RefKind(StrEnum):
    RELEASE_TAG = "release-tag"
    RELEASE_LINE = "release-line"
    MOVING = "moving-branch"


_RELEASE_TAG = re.compile(r"^v?\d+(\.\d+){1,3}([-.+]?[0-9A-Za-z][0-9A-Za-z.\-]*)?$")
_RELEASE_LINE = re.compile(r"^version-(\d+)(-[a-z]+)?$")
_SHA = re.compile(r"^[0-9a-f]{7,40}$")


def classify_ref(ref: str) -> RefKind:
    """``v15.17.0``/``15.17.0``/``v15.17.0-beta.1`` are tags, ``version-15`` a line, else moving."""
    ref = ref.strip()
    if _RELEASE_TAG.match(ref) and _as_version(ref) is not None:
        return RefKind.RELEASE_TAG
    if _RELEASE_LINE.match(ref):
        return RefKind.RELEASE_LINE
    return RefKind.MOVING


def _as_version(ref: str) -> Version | None:
    # packaging is imported where it is used: 2 ms at every start-up of `imagekit check --help`
    # otherwise (benchmarks/startup).
    from packaging.version import InvalidVersion, Version

    try:
        return Version(ref)
    except InvalidVersion:
        return None


def closest_refs(wanted: str, existing: list[str], n: int = 3) -> list[str]:
    """The ``n`` refs in ``existing`` nearest to ``wanted``.

    Versions: same major first, then nearest minor, stable before pre-release, then nearest
    in release order (so v15.99.0 suggests v15.17.0, v15.16.2);
    release lines by major; anything else by spelling (difflib).
    """
    names = list(dict.fromkeys(_short_name(ref) for ref in existing))
    if (version := _as_version(wanted)) is not None:
        candidates = sorted(
            ((v, name) for name in names if (v := _as_version(name)) is not None),
            key=lambda item: item[0],
        )
        if candidates:
            pos = bisect.bisect_left([v for v, _ in candidates], version)
            ranked = sorted(
                range(len(candidates)),
                key=lambda i: _version_distance(version, candidates[i][0], i, pos),
            )
            return [candidates[i][1] for i in ranked[:n]]
    if (line := _RELEASE_LINE.match(wanted)) is not None:
        major = int(line.group(1))
        lines = [(name, m) for name in names if (m := _RELEASE_LINE.match(name)) is not None]
        if lines:
            lines.sort(key=lambda item: (abs(int(item[1].group(1)) - major), -int(item[1].group(1))))
            return [name for name, _ in lines[:n]]
    return difflib.get_close_matches(wanted, names, n=n, cutoff=0.5)


def _version_distance(wanted: Version, other: Version, index: int, pos: int) -> tuple[int | bool, ...]:
    """Same major first, then nearest minor, stable before pre-release, then nearest in order."""
    a = (*wanted.release, 0, 0)[:2]
    b = (*other.release, 0, 0)[:2]
    major = abs(a[0] - b[0])
    minor = abs(a[1] - b[1]) if major == 0 else 0
    rank = pos - index if index < pos else index - pos + 1
    return (major, minor, other.is_prerelease, rank, -index)


def _short_name(ref: str) -> str:
    for prefix in ("refs/tags/", "refs/heads/"):
        ref = ref.removeprefix(prefix)
    return ref.removesuffix("^{}")


@dataclass
class Pin:
    """frappe or one app at a ref, and the commit it resolves to: the one pin record. check
    resolves it, build and apps.lock.json record it (``record``), history shows it (``label``),
    rebuild reads it back from a manifest (``from_record``). ``url`` never holds a token
    (``${VAR}@`` placeholders at most); ``error`` is one redacted sentence naming the fix."""

    name: str
    url: str
    ref: str
    ref_kind: str | None = None  # a RefKind when classified here; a manifest's own text when read
    sha: str | None = None
    error: str | None = None
    error_kind: str | None = None  # "auth" | "missing-ref" | "missing-repo" | "unreachable" | ...
    suggestions: list[str] = field(default_factory=list)
    is_tag: bool | None = None  # resolved: whether the remote's ref is a tag (not a branch)
    read_name: bool = False  # an app: name it by its package, read at the resolved commit

    @classmethod
    def at(cls, name: str, url: str, ref: str, *, read_name: bool = False) -> Pin:
        """A pin to resolve, its ref classified; ``read_name``: an app, whose name is read from
        its repository at the resolved commit (``name`` is its URL name until then)."""
        return cls(name, url, ref, classify_ref(ref), read_name=read_name)

    @property
    def repo(self) -> str:
        """The repository's name in its URL (``india-compliance``), shown beside the app's."""
        return repo_name(public_url(self.url))

    @property
    def shown_name(self) -> str:
        """``india_compliance (india-compliance)``, or the name alone when both are the same."""
        return (
            self.name
            if self.repo in ("", self.name) or self.name == "frappe"
            else f"{self.name} ({self.repo})"
        )

    @classmethod
    def from_record(cls, record: ManifestPin) -> Pin:
        """A pin as a manifest recorded it (checked by ``manifest.check_manifest``)."""
        kind = record.get("ref_kind")
        return cls(
            name=str(record.get("name") or "frappe"),
            url=str(record.get("url") or ""),
            ref=str(record.get("ref") or ""),
            ref_kind=str(kind) if kind is not None else None,
            sha=record.get("sha"),
        )

    @property
    def token_var(self) -> str | None:
        """The ``${VAR}`` of the URL's user part: the .env key holding the token."""
        names = token_vars(self.url)
        return names[0] if names else None

    @property
    def ok(self) -> bool:
        return self.sha is not None and self.error is None

    @property
    def label(self) -> str:
        """``v15.17.0@abc1234`` (ref and short SHA)."""
        return f"{self.ref or '?'}@{self.sha[:7] if self.sha else '-'}"

    def record(self) -> PinRecord:
        """The pin as manifests and apps.lock.json record it: a ``${VAR}@`` placeholder kept in
        the URL (it names the token a rebuild needs), any other user part dropped."""
        return {
            "name": self.name,
            "url": manifest_url(self.url),
            "ref": self.ref,
            "ref_kind": str(self.ref_kind) if self.ref_kind is not None else None,
            "sha": self.sha,
        }


def resolve_pins(
    requests: list[Pin],
    env: Mapping[str, str],
    *,
    timeout: float = 20.0,
    max_workers: int = 8,
) -> list[Pin]:
    """Resolve every request to a commit SHA; results come back in the order of ``requests``.

    Each distinct (url, token variable) is listed once; remotes are asked concurrently, each
    within ``timeout`` seconds. A failing remote yields results with ``error`` set (one
    redacted sentence naming the fix), never an exception.
    """
    redactor = Redactor(env[r.token_var] for r in requests if r.token_var and env.get(r.token_var))
    remotes = list(dict.fromkeys((r.url, r.token_var) for r in requests))
    workers = max(1, min(max_workers, len(remotes)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ls-remote") as pool:
        listings = dict(
            zip(
                remotes,
                pool.map(lambda key: _list_remote(key[0], key[1], env, timeout), remotes),
                strict=True,
            )
        )
    results = [_resolve_one(r, listings[(r.url, r.token_var)], redactor) for r in requests]
    to_name = [pin for pin in results if pin.read_name and pin.ok]
    if to_name:
        workers = max(1, min(max_workers, len(to_name)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="app-name") as pool:
            list(pool.map(lambda pin: _read_name(pin, env, timeout, redactor), to_name))
    return results


def _read_name(pin: Pin, env: Mapping[str, str], timeout: float, redactor: Redactor) -> None:
    """Name ``pin`` by its package at its resolved commit (``appname``), or set its error."""
    try:
        found = gitremote.read_app_files(pin.url, env, pin.token_var, str(pin.sha), pin.ref, timeout)
        pin.name = app_name_from(found.files, found.hooks_folders, public_url(pin.url), pin.ref).name
    except GitError as exc:
        pin.error = redactor.redact(f"cannot read the app name of {pin.repo} at {pin.ref}: {exc}")
        pin.error_kind = getattr(exc, "kind", "failed")
    except ConfigError as exc:
        pin.error, pin.error_kind = redactor.redact(exc.message), "app-name"
    except Exception as exc:  # a bug or an OS error must not sink the other apps
        pin.error = redactor.redact(
            f"cannot read the app name of {pin.repo}: unexpected {type(exc).__name__}"
        )
        pin.error_kind = "failed"


@dataclass
class _Listing:
    refs: dict[str, str] | None = None
    error: str | None = None
    error_kind: str | None = None


def _list_remote(url: str, token_var: str | None, env: Mapping[str, str], timeout: float) -> _Listing:
    try:
        return _Listing(refs=gitremote.ls_remote(url, env, token_var, timeout))
    except GitError as exc:
        return _Listing(error=str(exc), error_kind=getattr(exc, "kind", "failed"))
    except Exception as exc:  # a bug or an OS error must not sink the other remotes
        return _Listing(error=f"unexpected {type(exc).__name__}: {exc}", error_kind="failed")


def _resolve_one(request: Pin, listing: _Listing, redactor: Redactor) -> Pin:
    result = Pin.at(request.name, request.url, request.ref, read_name=request.read_name)
    if listing.refs is None:
        result.error = redactor.redact(f"git ls-remote failed for {request.name}: {listing.error}")
        result.error_kind = listing.error_kind
        return result
    sha = find_ref(listing.refs, request.ref)
    if sha is not None:
        result.sha = sha
        result.is_tag = f"refs/heads/{request.ref}" not in listing.refs
        return result
    result.error_kind = "missing-ref"
    noun, result.suggestions = _suggestions(request.ref, listing.refs)
    result.error = redactor.redact(_missing_ref_message(request, noun, result.suggestions))
    return result


def find_ref(refs: Mapping[str, str], ref: str) -> str | None:
    """The commit ``git clone --branch ref`` would check out: a branch first, then a tag."""
    for full in (f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if full in refs:
            return refs[full]
    return None


def _suggestions(ref: str, refs: Mapping[str, str]) -> tuple[str, list[str]]:
    """("tags" or "branches" or "refs", the closest names) for a ref the remote lacks."""
    tags = [name for name in refs if name.startswith("refs/tags/")]
    heads = [name for name in refs if name.startswith("refs/heads/")]
    order = [("tags", tags), ("branches", heads)]
    kind = classify_ref(ref)
    if kind is RefKind.RELEASE_LINE:
        order.reverse()
    elif kind is RefKind.MOVING:
        order = [("refs", heads + tags)]
    for noun, names in order:
        if found := closest_refs(ref, names):
            return noun, found
    return "refs", []


def _missing_ref_message(request: Pin, noun: str, suggestions: list[str]) -> str:
    url = public_url(request.url)
    if _SHA.match(request.ref):
        return (
            f"'{request.ref}' looks like a commit SHA, which bench cannot clone (it runs "
            f"git clone --branch) from {url}: pin a release tag instead"
        )
    where = f"branch or tag '{request.ref}' does not exist in {url}"
    if not suggestions:
        return f"{where}; check the spelling, or push the ref first"
    return f"{where}; closest {noun}: {', '.join(suggestions)}"


def name_issues(apps: list[Pin]) -> list[Finding]:
    """The package names read from the repositories: frappe, or one name twice, cannot be built
    (bench would install both into one ``apps/<name>``); one sentence per problem."""
    issues = []
    seen: dict[str, Pin] = {}
    for pin in (p for p in apps if p.read_name and p.ok):
        if pin.name == "frappe":
            issues.append(
                Finding(
                    "error",
                    "apps-frappe",
                    (
                        f"apps.json lists {pin.repo}, whose package is frappe: frappe comes from "
                        "FRAPPE_PATH and FRAPPE_BRANCH in .env; remove it from apps.json."
                    ),
                )
            )
        elif (first := seen.setdefault(pin.name, pin)) is not pin:
            issues.append(
                Finding(
                    "error",
                    "apps-duplicate-name",
                    (
                        f"apps.json lists {first.repo} and {pin.repo}, which are both the app {pin.name}: "
                        "bench installs an app once; keep one of them."
                    ),
                )
            )
    return issues + _dependency_issues([p for p in apps if p.read_name and p.ok])


def _dependency_issues(apps: list[Pin]) -> list[Finding]:
    """``REQUIRED_APPS`` by package name, for the apps whose URL name did not tell it (a fork
    named ``ic`` of india_compliance still needs erpnext); the others apps.json's rule covers."""
    names = {pin.name for pin in apps}
    issues = []
    for pin in apps:
        if pin.name == pin.repo.lower().replace("-", "_"):
            continue
        for needed in REQUIRED_APPS.get(pin.name, ()):
            if needed not in names:
                issues.append(
                    Finding(
                        "error",
                        "apps-dependency",
                        (
                            f"apps.json lists {pin.shown_name} but not {needed}, which it requires: "
                            f"bench does not resolve dependencies, add {needed} before {pin.repo}."
                        ),
                    )
                )
    return issues
