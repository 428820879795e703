"""The one gate every printed, logged or stored line passes through.

A ``Redactor`` knows every secret value and the forms it can take on the way out: raw,
URL-encoded, base64 of the value, and base64 of whole documents that embed it (the injected
apps.json). ``redact`` replaces each with ``***``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words


def secret_forms(value: str) -> set[str]:
    """Every form of ``value`` that could reach output: raw, URL-encoded, base64 variants.

    Base64 of a value embedded at an unknown offset in a larger document depends on the
    offset modulo 3, so the three aligned inner slices are included too.
    """
    if not value:
        return set()
    forms = {value, quote(value, safe=""), quote(value)}
    raw = value.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        # Drop the chars that depend on the padding prefix and on what follows.
        start = (shift * 4 + 2) // 3 if shift else 0
        inner = encoded[start:].rstrip("=")
        # The last 1-2 chars depend on the following byte unless the length aligns.
        if (shift + len(raw)) % 3:
            inner = inner[:-1]
        if len(inner) >= _MIN_SECRET_LEN:
            forms.add(inner)
    forms.add(base64.b64encode(raw).decode())
    forms.add(base64.urlsafe_b64encode(raw).decode())
    return {f for f in forms if len(f) >= _MIN_SECRET_LEN}


class Redactor:
    """Masks every known secret, in any of its forms, in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str, *, whole_document: bool = False) -> None:
        """Learn a secret. ``whole_document`` also masks its exact base64 (e.g. apps.json)."""
        if not secret or len(secret) < _MIN_SECRET_LEN:
            return
        forms = {secret} if whole_document else secret_forms(secret)
        if whole_document:
            forms.add(base64.b64encode(secret.encode()).decode())
        self._forms |= forms
        ordered = sorted(self._forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in ordered))

    @property
    def forms(self) -> frozenset[str]:
        return frozenset(self._forms)

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def redact_bytes(self, data: bytes) -> bytes:
        return self.redact(data.decode("utf-8", "replace")).encode()

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self._pattern is not None and bool(self._pattern.search(text))
