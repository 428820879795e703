"""One holder at a time on this machine, across pytest-xdist workers and checkouts.

``with machine_lock("busybox"):`` holds an exclusive ``flock`` on
``/tmp/imagekit-test-busybox.lock`` (the kernel drops it when the holder dies, so a crashed
worker never leaves it held). Session fixtures that make a shared, content-named image
(check, then build) run inside one, so parallel workers build it once and the others reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from pathlib import Path

LOCK_DIR = Path("/tmp")


def lock_path(name: str) -> Path:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"lock name {name!r}: use lower-case letters, digits and '-'")
    return LOCK_DIR / f"imagekit-test-{name}.lock"


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Hold the machine-wide lock ``name`` for the ``with`` block (waits while another holds it)."""
    with open(lock_path(name), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
