"""What the leak scan looks for: every form of every secret, labelled, and the atoms searched.

An *atom* is a form that contains no other form (a form that contains an atom cannot match
without the atom matching), so searching the atoms finds every form. A base64 atom is searched
through pieces of it so that a line break inside it (``base64`` wraps at 76 columns, openssl at
64, MIME with CRLF) does not hide it (``wrap_pieces``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from frappe_imagekit.redact import MASK, secret_forms


def form_kinds(forms: Iterable[str]) -> dict[str, str]:
    """Label each form "raw", "base64" or "url-encoded".

    A URL-encoded form decodes to a known form; a base64 form either decodes to text holding a
    known form (the base64 of apps.json, even when it was also added as a secret itself) or is
    one of the derived slices; a raw value is one whose own derived forms are all known (a
    secret), or a whole document whose base64 is known (the injected apps.json).
    """
    known = set(forms)
    kinds: dict[str, str] = {}
    for form in known:
        if unquote(form) != form and unquote(form) in known:
            kinds[form] = "url-encoded"
        elif _decodes_to_known(form, known):
            kinds[form] = "base64"
        elif secret_forms(form) <= known or _b64(form) in known:
            kinds[form] = "raw"
        else:
            kinds[form] = "base64"
    return kinds


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _decodes_to_known(form: str, known: set[str]) -> bool:
    padded = form.translate(_URLSAFE) + "=" * (-len(form) % 4)
    try:
        text = base64.b64decode(padded, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return any(other in text for other in known if other != form)


_URLSAFE = str.maketrans("-_", "+/")


# Base64 tools wrap their output: ``base64`` at 76 columns, openssl and PEM at 64, MIME with
# CRLF. A wrapped form is found through its *pieces*: substrings chosen so that, whatever the
# offset of the line breaks (at least WRAP_MIN columns apart), one piece lies unbroken on a line.
WRAP_MIN = 64
MIN_PIECE = 12  # base64 chars (72 bits): shorter pieces could match by chance
BREAKS = b"\r\n"


def wrap_pieces(form: bytes) -> list[bytes]:
    """Substrings of ``form`` such that every copy of it with line breaks at least
    ``WRAP_MIN`` characters apart keeps one of them whole; ``[form]`` when too short to split.

    Up to WRAP_MIN characters a form holds at most one break: one of its two (overlapping)
    halves is whole. A longer one holds a whole line of WRAP_MIN characters, which contains
    an aligned piece of WRAP_MIN / 2, or (one break only) its first or last piece is whole.
    """
    length = len(form)
    if length < 2 * MIN_PIECE:
        return [form]
    if length <= WRAP_MIN:
        return [form[: (length + 1) // 2], form[length // 2 :]]
    half = WRAP_MIN // 2
    starts = sorted({*range(0, length - half + 1, half), length - half})
    return [form[i : i + half] for i in starts]


def _reach(length: int) -> int:
    """Bytes a form of ``length`` characters can span once wrapped (CRLF breaks)."""
    return length + 2 * (length // WRAP_MIN + 1) if length >= 2 * MIN_PIECE else length


@dataclass(frozen=True)
class Needles:
    """The compiled search: every form with its kind, and the atoms actually searched for.

    Atoms are the forms that contain no other form; a base64 atom is searched through its
    wrap pieces (``wrap_pieces``), so a line break inside it does not hide it. ``piece_of``
    maps each piece to the atom it comes from (two pieces of one copy make one hit).
    """

    kinds: dict[bytes, str]
    atoms: tuple[tuple[bytes, str], ...]
    pattern: re.Pattern[bytes] | None  # all forms, longest first: for short metadata strings
    longest: int
    reach: int = 0  # bytes the longest form can span with line breaks inside it
    piece_of: dict[bytes, int] = field(default_factory=dict)
    wrapped: tuple[bytes, ...] = ()  # the forms searched for across line breaks

    @classmethod
    def from_forms(cls, forms: Iterable[str]) -> Needles:
        kinds = {f.encode(): k for f, k in form_kinds(forms).items()}
        ordered = sorted(kinds, key=len, reverse=True)
        minimal = [f for f in ordered if not any(g != f and g in f for g in ordered)]
        atoms: dict[bytes, str] = {}
        piece_of: dict[bytes, int] = {}
        for number, form in enumerate(minimal):
            pieces = wrap_pieces(form) if kinds[form] == "base64" else [form]
            for piece in pieces:
                atoms.setdefault(piece, kinds[form])
                piece_of.setdefault(piece, number)
        pattern = re.compile(b"|".join(re.escape(f) for f in ordered)) if ordered else None
        longest = len(ordered[0]) if ordered else 0
        wrapped = tuple(f for f in ordered if kinds[f] == "base64" and len(f) >= 2 * MIN_PIECE)
        reach = max([longest, *(_reach(len(f)) for f in wrapped)])
        return cls(kinds, tuple(atoms.items()), pattern, longest, reach, piece_of, wrapped)

    def mask(self, text: str) -> str:
        """``text`` with every known form replaced by the mask (line breaks inside a base64
        form do not hide it: then the text is masked with its line breaks removed)."""
        if self.pattern is None:
            return text
        data = self.pattern.sub(MASK.encode(), text.encode("utf-8", "surrogateescape"))
        flat = _unwrap(data)
        if flat != data and self.pattern.search(flat):
            data = self.pattern.sub(MASK.encode(), flat)
        return data.decode("utf-8", "surrogateescape")

    def search_text(self, text: str) -> tuple[str, int] | None:
        """(kind, offset) of the first (longest) form found in ``text``, or None."""
        if self.pattern is None:
            return None
        data = text.encode("utf-8", "surrogateescape")
        match = self.pattern.search(data) or self.pattern.search(_unwrap(data))
        return (self.kinds[match.group()], match.start()) if match else None


def _unwrap(data: bytes) -> bytes:
    return data.translate(None, BREAKS)
