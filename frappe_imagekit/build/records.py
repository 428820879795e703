"""The build side's on-disk shapes, typed (what a manifest and apps.lock.json hold).

Plain ``TypedDict`` records, importable without the rest of the build wing: readers take these,
not ``dict[str, Any]``; the key order of each is the order the files have always had.
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
