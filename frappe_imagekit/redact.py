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
_MIN_WRAPPED = 8  # base64 chars at a line edge that count as a piece of a wrapped form (48 bits)
# A run of base64 characters touching the start or the end of a line: where a form cut by a
# line break (``base64`` wraps at 76 columns, openssl at 64, MIME with CRLF) leaves a piece.
_B64 = "[A-Za-z0-9+/=_-]"
# Linear time: a run starts only where none precedes it and is taken whole (possessive).
_EDGE_RUN = re.compile(rf"^{_B64}{{{_MIN_WRAPPED},}}+|(?<!{_B64}){_B64}{{{_MIN_WRAPPED},}}+(?=\r?$)", re.M)


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


def _base64_forms(value: str, forms: set[str]) -> set[str]:
    """The forms of ``value`` that are base64 (everything but the value and its URL-encodings)."""
    return {f for f in forms if f not in (value, quote(value, safe=""), quote(value))}


def _longest_suffix_prefix(text: str, form: str) -> int:
    """Length of the longest end of ``text`` (at least ``_MIN_WRAPPED``) that is a beginning
    of ``form``, else 0. Candidates are found with ``str.find``: no work per character."""
    tail = text[-len(form) :]
    head = form[:_MIN_WRAPPED]
    i = tail.find(head)
    while i != -1:
        if form.startswith(tail[i:]):
            return len(tail) - i
        i = tail.find(head, i + 1)
    return 0


class Redactor:
    """Masks every known secret, in any of its forms, in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        self._values: set[str] = set()  # forms of secret values, not of whole documents
        self._wrapped: set[str] = set()  # base64 forms: also masked when cut by a line break
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str, *, whole_document: bool = False, document: bool = False) -> None:
        """Learn a secret. ``whole_document`` also masks its exact base64 (e.g. apps.json);
        ``document`` (implied by ``whole_document``): a text that holds secret values (the
        injected apps.json, its base64) rather than one, left out of ``value_forms``."""
        if not secret or len(secret) < _MIN_SECRET_LEN:
            return
        forms = {secret} if whole_document else secret_forms(secret)
        if whole_document:
            forms.add(base64.b64encode(secret.encode()).decode())
        self._wrapped |= {f for f in _base64_forms(secret, forms) if len(f) >= _MIN_WRAPPED}
        self._forms |= forms
        if not (document or whole_document):
            self._values |= forms
        ordered = sorted(self._forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in ordered))

    @property
    def forms(self) -> frozenset[str]:
        return frozenset(self._forms)

    @property
    def value_forms(self) -> frozenset[str]:
        """The forms of the secret values alone: what the leak-scan cache is keyed on, so that a
        new apps.json (a bumped ref) with the same tokens keeps the layers known clean (every
        layer that is read is still searched for every form). A layer's content never changes:
        one read clean cannot hold the new apps.json raw (it would hold its tokens raw), and an
        encoded copy could only come from a build with the new file, and every build is scanned."""
        return frozenset(self._values)

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        text = self._pattern.sub(MASK, text)
        return _EDGE_RUN.sub(self._mask_edge, text) if self._wrapped else text

    def _mask_edge(self, match: re.Match[str]) -> str:
        """A run at a line's start that ends a base64 form, or at its end that begins one (a
        form cut by a line break), is masked; a whole line inside one form too."""
        run = match.group()
        string = match.string
        at_start = match.start() == 0 or string[match.start() - 1] == "\n"
        at_end = match.end() == len(string) or string[match.end()] in "\r\n"
        for form in self._wrapped:
            if at_start and at_end and run in form:
                return MASK
            if at_end and (cut := _longest_suffix_prefix(run, form)):
                return run[:-cut] + MASK
            if at_start and (cut := _longest_suffix_prefix(form, run)):
                return MASK + run[cut:]
        return match.group()

    def redact_bytes(self, data: bytes) -> bytes:
        return self.redact(data.decode("utf-8", "replace")).encode()

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self._pattern is not None and bool(self._pattern.search(text))
