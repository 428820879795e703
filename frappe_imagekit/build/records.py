"""The build side's on-disk shapes, typed (what a manifest and apps.lock.json hold).

Plain ``TypedDict`` records, importable without the rest of the build wing: readers take these,
not untyped dicts; the key order of each is the order the files have always had.
"""

from __future__ import annotations

from typing import TypedDict


class TierRecord(TypedDict):
    """A tier as a manifest records it (``base_tier``: the system tier)."""

    ref: str
    key: str
    built: bool | None
    containerfile: str
    build_args: dict[str, str]


class PinRecord(TypedDict):
    """Frappe or an app as a manifest records it (``frappe``, ``apps[]``): the URL token-free
    (a ``${VAR}@`` placeholder kept), ``sha`` None until the ref is resolved."""

    name: str
    url: str
    ref: str
    ref_kind: str | None
    sha: str | None


class LockEntry(TypedDict):
    """One entry of apps.lock.json (``frappe``, ``apps[]``), every value checked on read."""

    name: str
    url: str
    ref: str
    sha: str
