"""Layers already scanned clean for the same secrets, so a fully cached build need not re-read them.

A layer's diff_id is the sha256 of its uncompressed content: a layer scanned clean for a set of
secrets is clean for that set forever, on any daemon. Entries are keyed by an HMAC of the secret
forms under a random per-user key kept beside the cache (user cache folder, mode 0600), so the
cache file names no secret, and a changed token (or any other secret) starts from an empty set.
Beside them, the size of each layer's tar (not secret): the classic ``docker save`` stream
names a layer by a synthetic id, so its size is what tells the scan which layer it may be.
Set ``IMAGEKIT_NO_SCAN_CACHE=1`` to always scan every layer.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from frappe_imagekit.workspace import write_text_atomic

DISABLE_VAR = "IMAGEKIT_NO_SCAN_CACHE"
_FILE = "leakscan-layers.json"
_KEY_FILE = "leakscan.key"
_MAX_KEYS = 20  # secret sets remembered (one per token rotation, roughly)
_MAX_LAYERS = 5000  # per secret set


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagekit"


def enabled() -> bool:
    return os.environ.get(DISABLE_VAR, "").strip().lower() not in {"1", "true", "yes"}


def _key() -> bytes:
    path = cache_dir() / _KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    return key


# Bump when the scan finds more than before (2: base64 wrapped across lines): a layer "clean"
# for an older scan was never searched for what the new one finds.
SCAN_VERSION = 2


def secrets_key(forms: Iterable[str]) -> str:
    """HMAC of every secret form (order-free) and the scan version: equal exactly when the
    secret set and the way it is searched for are equal."""
    material = "\0".join([f"scan-v{SCAN_VERSION}", *sorted(set(forms))]).encode()
    return hmac.new(_key(), material, hashlib.sha256).hexdigest()


def _read() -> dict[str, object]:
    try:
        data = json.loads((cache_dir() / _FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load() -> dict[str, list[str]]:
    entries = _read().get("entries")
    return entries if isinstance(entries, dict) else {}


def known_sizes() -> dict[str, int]:
    """diff_id -> the size of its tar in ``docker save``, for the layers scanned before."""
    sizes = _read().get("sizes") if enabled() else None
    if not isinstance(sizes, dict):
        return {}
    return {str(k): v for k, v in sizes.items() if isinstance(v, int) and not isinstance(v, bool)}


def known_members() -> dict[str, str]:
    """The name of a layer's member in a classic ``docker save`` stream -> its diff_id."""
    members = _read().get("members") if enabled() else None
    if not isinstance(members, dict):
        return {}
    return {str(k): v for k, v in members.items() if isinstance(v, str)}


def known_clean(forms: Iterable[str]) -> set[str]:
    """diff_ids already scanned clean for exactly these secret forms."""
    if not enabled():
        return set()
    return set(_load().get(secrets_key(forms), []))


def remember_clean(
    forms: Iterable[str],
    layers: Iterable[str],
    sizes: Mapping[str, int] | None = None,
    members: Mapping[str, str] | None = None,
) -> None:
    """Record ``layers`` (diff_ids) as scanned clean for these secret forms, and beside them
    ``sizes`` (diff_id -> size of its tar) and ``members`` (member name -> diff_id)."""
    if not enabled():
        return
    key = secrets_key(forms)
    entries = _load()
    merged = list(dict.fromkeys([*entries.pop(key, []), *layers]))[-_MAX_LAYERS:]
    entries[key] = merged  # most recent last
    kept = dict(list(entries.items())[-_MAX_KEYS:])
    data = {"version": 1, "entries": kept, "sizes": _newest(known_sizes(), sizes or {}),
            "members": _newest(known_members(), members or {})}  # fmt: skip
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        write_text_atomic(cache_dir() / _FILE, json.dumps(data))


def _newest(old: Mapping[str, object], new: Mapping[str, object]) -> dict[str, object]:
    """``old`` updated by ``new``, the updated keys last, at most _MAX_LAYERS of them."""
    merged = {k: v for k, v in old.items() if k not in new}
    merged.update(new)
    return dict(list(merged.items())[-_MAX_LAYERS:])
