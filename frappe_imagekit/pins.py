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

from packaging.version import InvalidVersion, Version

from frappe_imagekit.appsjson import public_url
from frappe_imagekit.redact import Redactor


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
class PinRequest:
    """One ref to resolve. ``url`` keeps its ``${VAR}`` placeholders and holds no token."""

    name: str
    url: str
    ref: str
    token_var: str | None = None


@dataclass
class PinResult:
    name: str
    url: str
    ref: str
    ref_kind: RefKind
    sha: str | None = None
    error: str | None = None
    error_kind: str | None = None  # "auth" | "missing-ref" | "missing-repo" | "unreachable" | ...
    suggestions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.sha is not None and self.error is None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "ref": self.ref,
            "ref_kind": str(self.ref_kind),
            "sha": self.sha,
            "error": self.error,
            "error_kind": self.error_kind,
            "suggestions": list(self.suggestions),
        }


def resolve_pins(
    requests: list[PinRequest],
    env: Mapping[str, str],
    *,
    timeout: float = 20.0,
    max_workers: int = 8,
) -> list[PinResult]:
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
                pool.map(lambda key: _list_remote(*key, env, timeout), remotes),
                strict=True,
            )
        )
    return [_resolve_one(r, listings[(r.url, r.token_var)], redactor) for r in requests]


@dataclass
class _Listing:
    refs: dict[str, str] | None = None
    error: str | None = None
    error_kind: str | None = None


def _list_remote(url: str, token_var: str | None, env: Mapping[str, str], timeout: float) -> _Listing:
    from frappe_imagekit import gitremote

    try:
        return _Listing(refs=gitremote.ls_remote(url, env, token_var, timeout))
    except gitremote.GitError as exc:
        return _Listing(error=str(exc), error_kind=getattr(exc, "kind", "failed"))
    except Exception as exc:  # a bug or an OS error must not sink the other remotes
        return _Listing(error=f"unexpected {type(exc).__name__}: {exc}", error_kind="failed")


def _resolve_one(request: PinRequest, listing: _Listing, redactor: Redactor) -> PinResult:
    result = PinResult(request.name, request.url, request.ref, classify_ref(request.ref))
    if listing.refs is None:
        result.error = redactor.redact(f"git ls-remote failed for {request.name}: {listing.error}")
        result.error_kind = listing.error_kind
        return result
    sha = find_ref(listing.refs, request.ref)
    if sha is not None:
        result.sha = sha
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


def _missing_ref_message(request: PinRequest, noun: str, suggestions: list[str]) -> str:
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
