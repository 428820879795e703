"""tests/support/aptsources.py: the Debian 13 test host takes its mirror from this machine's apt
sources, so no registry host name is written in the repository. The URIs below are loopback or
``.invalid`` names standing for a machine's mirrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import aptsources
from tests.support.aptsources import Mirrors, Source

# The shape of this machine's /etc/apt/sources.list.d/debian.sources (2026-12-08), with a
# third-party stanza after it that names the release inside a longer suite.
DEB822 = """\
Types: deb
# http://snapshot.invalid/archive/debian/20250520T000000Z
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
VENDOR = """\
Types: deb
URIs: https://vendor.invalid/node_20.x
Suites: nodistro
Components: main
"""
ONE_LINE = """\
# a comment
deb-src http://src.invalid/debian trixie main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.invalid/debian/ trixie main contrib
deb http://vendor.invalid/apt cloud-sdk-trixie main
deb http://security.invalid/debian-security trixie-security main  # trailing comment
"""


def _machine(tmp_path: Path, release: str, files: dict[str, str]) -> Path:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text(f'PRETTY_NAME="Debian"\nVERSION_CODENAME={release}\nID=debian\n')
    for name, text in files.items():
        (tmp_path / "etc/apt" / name).write_text(text)
    return tmp_path


def test_deb822_stanzas_give_one_source_per_uri() -> None:
    two_uris = (
        "Types: deb deb-src\nURIs: http://a.invalid/debian http://b.invalid/debian\n"
        "Suites: sid\nComponents: main\n"
    )
    assert aptsources.parse_deb822(two_uris) == [
        Source("http://a.invalid/debian", ("sid",), ("main",)),
        Source("http://b.invalid/debian", ("sid",), ("main",)),
    ]
    assert aptsources.parse_deb822(DEB822)[1] == Source(
        "http://mirror.invalid/debian-security", ("bookworm-security",), ("main",)
    )


def test_deb822_skips_disabled_and_source_only_stanzas_and_joins_continuation_lines() -> None:
    text = (
        "Types: deb\nURIs: http://off.invalid/debian\nSuites: sid\nComponents: main\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: sid\nComponents: main\n\n"
        "Types: deb\nURIs: http://on.invalid/debian\nSuites: sid\n  sid-updates\nComponents: main\n"
    )
    assert aptsources.parse_deb822(text) == [
        Source("http://on.invalid/debian", ("sid", "sid-updates"), ("main",))
    ]


def test_one_line_entries_skip_options_comments_and_deb_src() -> None:
    assert aptsources.parse_one_line(ONE_LINE) == [
        Source("http://mirror.invalid/debian/", ("trixie",), ("main", "contrib")),
        Source("http://vendor.invalid/apt", ("cloud-sdk-trixie",), ("main",)),
        Source("http://security.invalid/debian-security", ("trixie-security",), ("main",)),
    ]


def test_the_machines_release_picks_its_mirror_and_security_archive(tmp_path: Path) -> None:
    root = _machine(
        tmp_path, "bookworm", {"sources.list.d/debian.sources": DEB822, "sources.list.d/z.sources": VENDOR}
    )
    assert aptsources.machine_mirrors(root) == Mirrors(
        "http://mirror.invalid/debian", "http://mirror.invalid/debian-security"
    )


def test_one_line_sources_list_and_a_trailing_slash(tmp_path: Path) -> None:
    root = _machine(tmp_path, "trixie", {"sources.list": ONE_LINE})
    assert aptsources.machine_mirrors(root) == Mirrors(
        "http://mirror.invalid/debian", "http://security.invalid/debian-security"
    )


def test_old_style_security_suite_and_no_security_archive() -> None:
    old = [
        Source("http://m.invalid/debian", ("buster",), ("main",)),
        Source("http://s.invalid/ds", ("buster/updates",), ("main",)),
    ]
    assert aptsources.find_mirrors(old, "buster") == Mirrors("http://m.invalid/debian", "http://s.invalid/ds")
    assert aptsources.find_mirrors(old[:1], "buster") == Mirrors("http://m.invalid/debian", None)


def test_a_vendor_suite_that_contains_the_release_name_is_not_the_mirror(tmp_path: Path) -> None:
    root = _machine(
        tmp_path,
        "trixie",
        {"sources.list.d/vendor.list": "deb http://vendor.invalid/apt cloud-sdk-trixie main\n"},
    )
    with pytest.raises(aptsources.MirrorError) as raised:
        aptsources.machine_mirrors(root)
    assert str(raised.value) == (
        "this machine's apt sources name no Debian mirror for trixie main: "
        "add its mirror to /etc/apt/sources.list.d, as apt itself needs."
    )


def test_a_machine_without_a_release_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text("ID=alpine\n")
    with pytest.raises(aptsources.MirrorError, match="names no VERSION_CODENAME"):
        aptsources.machine_mirrors(tmp_path)


def test_the_debian13_host_sources_use_the_machines_mirrors() -> None:
    from tests.support import debian13

    text = debian13.sources_text(
        Mirrors("http://mirror.invalid/debian", "http://sec.invalid/debian-security")
    )
    assert aptsources.parse_deb822(text) == [
        Source("http://mirror.invalid/debian", ("trixie", "trixie-updates"), ("main",)),
        Source("http://sec.invalid/debian-security", ("trixie-security",), ("main",)),
    ]
    assert aptsources.parse_deb822(debian13.sources_text(Mirrors("http://mirror.invalid/debian", None))) == [
        Source("http://mirror.invalid/debian", ("trixie", "trixie-updates"), ("main",)),
    ]
