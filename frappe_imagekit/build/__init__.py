"""Build the image: plan (``plan``), tiers (``tiers``), exact commits (``exact``), execute
(``execute``), rebuild a recorded version (``rebuild``); the Containerfile parser
(``containerfile``) and the generated Containerfile (``benchfile``), download mirrors
(``downloads``) and CA certificates (``cacerts``). ``records`` types what they write to disk.

The CLI imports this package, not its modules: ``build.plan`` loads on first use (PEP 562),
so ``imagekit --help`` and the other commands do not load the build wing.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - what the lazy attributes are, for mypy
    from frappe_imagekit.build import execute, plan, rebuild

LAZY = ("execute", "plan", "rebuild")
__all__ = ["execute", "plan", "rebuild"]


def __getattr__(name: str) -> ModuleType:
    if name in LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
