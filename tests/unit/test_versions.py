import pytest

from frappe_imagekit import versions


@pytest.mark.parametrize(
    ("branch", "major"),
    [
        ("version-15", 15),
        ("v15.17.3", 15),
        ("15.17.3", 15),
        ("develop", 16),
        ("version-16", 16),
        ("main", None),
        ("feature-x", None),
    ],
)
def test_frappe_major(branch, major):
    assert versions.frappe_major(branch) == major


@pytest.mark.parametrize(
    ("branch", "python", "node", "ok"),
    [
        ("version-15", "3.11.6", "20.19.2", True),
        ("version-15", "3.11.9", "18.18.2", True),
        ("version-15", "3.10.12", "18.18.2", False),
        ("version-15", "3.11.6", "24.12.0", False),
        ("develop", "3.14.2", "24.12.0", True),
        ("develop", "3.11.6", "20.19.2", False),
    ],
)
def test_pairings(branch, python, node, ok):
    warning = versions.pairing_warning(branch, python, node)
    assert (warning is None) is ok
    if not ok:
        assert "expected" in warning or "built with Python" in warning


def test_unknown_major_warns():
    assert "not a Frappe major" in versions.pairing_warning("version-9", "3.7.0", "14.0.0")


@pytest.mark.parametrize(
    ("version", "taken", "expected"),
    [
        ("v1.1.5", {"v1.1.5"}, "v1.1.6"),
        ("v1.1.5", {"v1.1.5", "v1.1.6", "v1.1.7"}, "v1.1.8"),
        ("1.2", {"1.2"}, "1.3"),
        ("nightly", {"nightly"}, "nightly-2"),
    ],
)
def test_next_version(version, taken, expected):
    assert versions.next_version(version, taken) == expected


def test_newest_free_after_skips_past_the_highest():
    assert versions.newest_free_after({"v1.1.5", "v1.2.0"}, "v1.1.5") == "v1.2.1"
    assert versions.newest_free_after({"v1.1.5"}, "v1.1.5") == "v1.1.6"
