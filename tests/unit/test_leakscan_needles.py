"""What the leak scan looks for: every form labelled, atoms, wrap pieces, masking of short text."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from frappe_imagekit.leakscan.needles import Needles, form_kinds, wrap_pieces
from tests.support.leaks import APPS, TOKEN, make_redactor, wrapped


@pytest.fixture(scope="module")
def needles() -> Needles:
    return Needles.from_forms(make_redactor().forms)


def all_forms() -> dict[str, str]:
    return form_kinds(make_redactor().forms)


def test_form_kinds_label_every_form() -> None:
    kinds = all_forms()
    assert kinds[TOKEN] == "raw"
    assert kinds[APPS] == "raw"
    assert kinds[quote(TOKEN, safe="")] == "url-encoded"
    assert kinds[base64.b64encode(TOKEN.encode()).decode()] == "base64"
    assert kinds[base64.urlsafe_b64encode(TOKEN.encode()).decode()] == "base64"
    assert kinds[base64.b64encode(APPS.encode()).decode()] == "base64"
    assert set(kinds.values()) == {"raw", "base64", "url-encoded"}


def test_atoms_are_the_forms_that_contain_no_other(needles: Needles) -> None:
    atoms = {a for a, _ in needles.atoms}
    assert TOKEN.encode() in atoms
    assert APPS.encode() not in atoms  # it contains the raw token
    assert base64.b64encode(APPS.encode()) not in atoms  # it contains an inner slice
    for atom in atoms:
        assert not any(other != atom and other in atom for other in atoms)
    # Every form contains at least one atom, so searching atoms finds every form.
    for form in needles.kinds:
        assert any(atom in form for atom in atoms)
    assert needles.longest == max(len(f) for f in needles.kinds)


def test_mask_and_search_text(needles: Needles) -> None:
    line = f"RUN |1 APPS_JSON_BASE64={base64.b64encode(APPS.encode()).decode()} /bin/sh -c x"
    assert needles.search_text(line) == ("base64", line.index("=") + 1)
    assert needles.mask(line) == "RUN |1 APPS_JSON_BASE64=*** /bin/sh -c x"
    assert needles.search_text("nothing here") is None


def test_base64_added_as_a_secret_is_still_labelled_base64() -> None:
    """build/plan.py adds the base64 of apps.json as a secret of its own (for the build-arg mode)."""
    b64_doc = base64.b64encode(APPS.encode()).decode()
    redactor = make_redactor()
    redactor.add(b64_doc)
    kinds = form_kinds(redactor.forms)
    assert kinds[b64_doc] == "base64"
    assert kinds[quote(b64_doc, safe="")] == "url-encoded"
    assert kinds[TOKEN] == "raw" and kinds[APPS] == "raw"
    line = f"RUN |1 APPS_JSON_BASE64={b64_doc} /bin/sh -c x"
    assert Needles.from_forms(redactor.forms).search_text(line)[0] == "base64"


@pytest.mark.parametrize("length", [24, 25, 40, 63, 64, 65, 96, 127, 128, 129, 200, 301])
@pytest.mark.parametrize("width", [64, 76, 80])
def test_wrap_pieces_keep_one_piece_whole_wherever_the_breaks_fall(length: int, width: int) -> None:
    form = bytes(65 + (i * 7) % 26 for i in range(length))  # letters, no repeats nearby
    pieces = wrap_pieces(form)
    assert all(len(p) >= 12 for p in pieces) and all(p in form for p in pieces)
    for first_break in range(1, width + 1):
        lines = [form[:first_break]] + [form[i : i + width] for i in range(first_break, length, width)]
        assert any(piece in line for piece in pieces for line in lines), (first_break, lines)


def test_short_forms_are_not_split() -> None:
    assert wrap_pieces(b"QUJDREVGR0hJSktMTU5P") == [b"QUJDREVGR0hJSktMTU5P"]  # 20 chars


def test_mask_and_search_text_see_through_line_breaks(needles: Needles) -> None:
    text = "RUN echo " + wrapped(base64.b64encode(APPS.encode()), 64, b"\n").decode()
    assert needles.search_text(text)[0] == "base64"
    masked = needles.mask(text)
    assert "***" in masked
    for form in needles.kinds:
        assert form.decode() not in masked.replace("\n", "")
