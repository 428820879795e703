"""Frappe major <-> Python/Node pairings, and the next free image version."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Pairing:
    python: str
    nodes: tuple[str, ...]  # the first is the current official one


# Official pairings (FACTS.md). Python is compared on major.minor, Node on major.
PAIRINGS: dict[int, Pairing] = {
    15: Pairing("3.11.6", ("20.19.2", "18.18.2")),
    16: Pairing("3.14.2", ("24.12.0",)),
}
DEVELOP_MAJOR = 16
_VERSION = re.compile(r"^(v?)(\d+(?:\.\d+)*)$")


def frappe_major(branch: str) -> int | None:
    """15 for version-15 / v15.17.3 / 15.17.3; 16 for develop; None when it cannot tell."""
    if branch == "develop":
        return DEVELOP_MAJOR
    match = re.fullmatch(r"(?:version-|v)?(\d+)(?:[.-].*)?", branch)
    return int(match.group(1)) if match else None


def pairing_warning(frappe_branch: str, python: str, node: str) -> str | None:
    """A sentence when PYTHON_VERSION/NODE_VERSION do not fit FRAPPE_BRANCH, else None."""
    major = frappe_major(frappe_branch)
    if major is None or major not in PAIRINGS:
        known = ", ".join(f"version-{m}" for m in sorted(PAIRINGS))
        return (
            f"FRAPPE_BRANCH {frappe_branch!r} is not a Frappe major imagekit knows ({known}, "
            "develop): check PYTHON_VERSION and NODE_VERSION against Frappe's docs yourself."
        )
    pairing = PAIRINGS[major]
    python_ok = _prefix(python, 2) == _prefix(pairing.python, 2)
    node_ok = _prefix(node, 1) in {_prefix(n, 1) for n in pairing.nodes}
    if python_ok and node_ok:
        return None
    return (
        f"Frappe {major} ({frappe_branch}) is built with Python {pairing.python} and Node "
        f"{pairing.nodes[0]}, but .env has PYTHON_VERSION={python} and NODE_VERSION={node}: "
        "mismatches are a top cause of failed builds; use the expected versions."
    )


def _prefix(version: str, parts: int) -> str:
    return ".".join(version.strip().lstrip("v").split(".")[:parts])


def next_version(version: str, taken: Iterable[str]) -> str:
    """The next free version after ``version``, bumping its last number: v1.1.5 -> v1.1.6."""
    taken = set(taken)
    match = _VERSION.match(version)
    if not match:
        candidate, n = version, 2
        while candidate in taken:
            candidate, n = f"{version}-{n}", n + 1
        return candidate
    prefix, numbers = match.group(1), [int(p) for p in match.group(2).split(".")]
    candidate = version
    while candidate in taken or candidate == version:
        numbers[-1] += 1
        candidate = prefix + ".".join(map(str, numbers))
    return candidate


def newest_free_after(taken: Iterable[str], version: str) -> str:
    """Next free version after the highest taken one that shares ``version``'s shape."""
    from packaging.version import InvalidVersion, Version

    taken = set(taken)
    try:
        highest = max((t for t in taken if _VERSION.match(t)), key=lambda t: Version(t.lstrip("v")))
        start = highest if Version(highest.lstrip("v")) > Version(version.lstrip("v")) else version
    except (ValueError, InvalidVersion):
        start = version
    return next_version(start, taken)
