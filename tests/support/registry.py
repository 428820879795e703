"""Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 for tests (TESTENV.md, "Image registry").

The tests start the product's own registry (frappe_imagekit/transfer/registry.py: its config,
free port, start, wait and stop), not a copy of it: ``LocalRegistry.start(folder)`` is
``transfer.registry.start(folder)``, a ``Registry`` whose ``address`` is ``127.0.0.1:PORT``
(Docker treats loopback registries as insecure-allowed, so ``docker push 127.0.0.1:PORT/NAME:TAG``
and ``docker pull 127.0.0.1:PORT/NAME@sha256:...`` work without a daemon setting). ``stop()`` ends
the process it started, by its pid. Never skips: a registry that cannot start raises.
"""

from __future__ import annotations

from pathlib import Path

from frappe_imagekit.transfer.registry import Registry, free_port, start

__all__ = ["LocalRegistry", "free_port"]


class LocalRegistry(Registry):
    """The product's ``Registry``, started by the product's ``start``."""

    @classmethod
    def start(cls, folder: Path, port: int | None = None, timeout: float = 15) -> Registry:
        return start(folder, port, timeout)
