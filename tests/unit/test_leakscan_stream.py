"""The chunked search of the leak scan: every form, matches across chunk boundaries, excerpts."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from frappe_imagekit.leakscan.needles import Needles
from frappe_imagekit.leakscan.stream import StreamSearch, redacted_excerpt
from tests.support.leaks import APPS, TOKEN, make_redactor, wrapped


@pytest.fixture(scope="module")
def needles() -> Needles:
    return Needles.from_forms(make_redactor().forms)


def search_all(needles: Needles, data: bytes, size: int) -> list[tuple[int, str]]:
    search = StreamSearch(needles)
    hits = []
    for start in range(0, len(data), size):
        hits += [(h.offset, h.kind) for h in search.feed(data[start : start + size])]
    return hits


def embedded_cases() -> list[tuple[str, bytes, str]]:
    """(case, bytes as they would sit in a file, expected kind)."""
    b64_doc = base64.b64encode(APPS.encode())
    return [
        ("raw token", TOKEN.encode(), "raw"),
        ("url-encoded token", quote(TOKEN, safe="").encode(), "url-encoded"),
        ("base64 token", base64.b64encode(TOKEN.encode()), "base64"),
        ("urlsafe base64 token", base64.urlsafe_b64encode(TOKEN.encode()), "base64"),
        ("base64 of apps.json", b64_doc, "base64"),
        ("token inside text, base64 offset 1", base64.b64encode(b"x" + TOKEN.encode()), "base64"),
        ("token inside text, base64 offset 2", base64.b64encode(b"xy" + TOKEN.encode()), "base64"),
        ("apps.json", APPS.encode(), "raw"),
    ]


@pytest.mark.parametrize("case", embedded_cases(), ids=[c[0] for c in embedded_cases()])
@pytest.mark.parametrize("size", [1, 3, 7, 16, 61, 64, 4096])
def test_found_once_at_any_chunk_boundary(needles: Needles, case, size: int) -> None:
    _, secret, kind = case
    for prefix in range(0, 2 * size + 2):
        data = b"\0" * prefix + secret + b"-tail-"
        hits = search_all(needles, data, size)
        offsets = {offset for offset, _ in hits}
        assert hits, (prefix, size)
        assert all(prefix <= o < prefix + len(secret) for o in offsets), (prefix, size, hits)
        assert {k for _, k in hits} == {kind}
        # Each atom occurrence is reported exactly once, however the chunks fall.
        assert len(hits) == len(set(hits))
        assert hits == search_all(needles, data, len(data))


def test_every_occurrence_is_found_and_nothing_else(needles: Needles) -> None:
    noise = bytes(range(256)) * 40
    data = noise + TOKEN.encode() + noise + TOKEN.encode() + TOKEN.encode()[:-1] + noise
    hits = search_all(needles, data, 1000)
    assert [o for o, _ in hits] == [len(noise), 2 * len(noise) + len(TOKEN)]
    assert search_all(needles, noise * 10, 333) == []


def test_no_forms_means_no_search() -> None:
    empty = Needles.from_forms([])
    assert empty.atoms == () and empty.longest == 0
    assert StreamSearch(empty).feed(TOKEN.encode()) == []


@pytest.mark.parametrize("size", [5, 50, 4096])
def test_excerpts_never_hold_a_secret(needles: Needles, size: int) -> None:
    forms = list(needles.kinds)
    data = (
        b'{"apps": ' + APPS.encode() + b', "again": "' + TOKEN.encode() + b'", '
        b'"b64": "' + base64.b64encode(APPS.encode()) + b'", "tok": "' + TOKEN.encode() + b'"}'
    )
    search = StreamSearch(needles)
    excerpts = []
    for start in range(0, len(data), size):
        excerpts += [h.excerpt for h in search.feed(data[start : start + size])]
    assert excerpts
    for excerpt in excerpts:
        assert "***" in excerpt
        for form in forms:
            assert form not in excerpt.encode()
        # Not even a long piece of the token (a cut form would show one).
        assert TOKEN[:12] not in excerpt and TOKEN[-12:] not in excerpt


def test_excerpt_shows_context_and_masks_neighbours(needles: Needles) -> None:
    data = b"before the secret: " + TOKEN.encode() + b" and after it " + b"." * 200
    i = data.index(TOKEN.encode())
    assert redacted_excerpt(data, i, len(TOKEN), needles).startswith("***")  # may be cut
    excerpt = redacted_excerpt(data, i, len(TOKEN), needles, from_start=True)
    assert excerpt.endswith("*** and after it ..........")
    assert "secret: ***" in excerpt
    (hit,) = StreamSearch(needles).feed(data)
    assert hit.excerpt == excerpt
    search = StreamSearch(needles)  # context before comes from the previous chunk
    assert search.feed(data[:10]) == []
    (hit,) = search.feed(data[10:])
    assert hit.offset == i and hit.excerpt == excerpt
    binary = b"\x00\x01\xff" * 30 + TOKEN.encode() + b"\n\t" * 30
    excerpt = redacted_excerpt(binary, 90, len(TOKEN), needles)
    assert excerpt.isprintable() and "***" in excerpt


# --- base64 wrapped across lines (issue 8) ----------------------------------------------------


WRAPS = [(76, b"\n"), (64, b"\n"), (76, b"\r\n"), (64, b"\r\n")]


@pytest.mark.parametrize(("width", "newline"), WRAPS, ids=["76", "64", "76-crlf", "64-crlf"])
@pytest.mark.parametrize("size", [7, 61, 4096])
def test_wrapped_base64_is_found_once_and_never_shown(needles: Needles, width, newline, size) -> None:
    for pad in range(0, 80, 7):  # moves the token's base64 across the line breaks
        document = base64.b64encode(b"x" * pad + APPS.encode())
        data = b"head\n" + wrapped(document, width, newline) + b"tail\n"
        search = StreamSearch(needles)
        hits = []
        for start in range(0, len(data), size):
            hits += search.feed(data[start : start + size])
        assert [h.kind for h in hits] == ["base64"], (pad, hits)
        for atom, _kind in needles.atoms:
            assert atom.decode() not in hits[0].excerpt
        assert "***" in hits[0].excerpt


def test_a_plain_search_misses_what_the_pieces_find(needles: Needles) -> None:
    """The regression: the token's base64 cut by a 76-column break holds no whole form."""
    for pad in range(0, 80):
        data = wrapped(base64.b64encode(b"x" * pad + APPS.encode()), 76, b"\n")
        if not any(form in data for form in needles.kinds):
            assert StreamSearch(needles).feed(data), pad
            return
    raise AssertionError("no padding cut every form")
