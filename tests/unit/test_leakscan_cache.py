"""leakscan.cache: clean layers remembered per secret set, keyed without storing any secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frappe_imagekit.leakscan import cache as scancache

FORMS = {"ghp_tokenAAAAAAAAAAAAAAAAAAAA", "Z2hwX3Rva2Vu"}
LAYERS = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]


def test_remembered_layers_come_back_for_the_same_secrets_only(tmp_path: Path) -> None:
    scancache.remember_clean(FORMS, LAYERS)
    assert scancache.known_clean(set(FORMS)) == set(LAYERS)
    assert scancache.known_clean(FORMS | {"another-secret"}) == set()
    assert scancache.known_clean({"ghp_rotatedBBBBBBBBBBBBBBBBBB"}) == set()


def test_the_cache_files_hold_no_secret(tmp_path: Path) -> None:
    scancache.remember_clean(FORMS, LAYERS)
    folder = scancache.cache_dir()
    assert folder == Path(os.environ["XDG_CACHE_HOME"]) / "imagekit"  # isolated per test
    for path in folder.iterdir():
        text = path.read_text()
        assert not any(form in text for form in FORMS), path.name
    assert (folder / "leakscan.key").stat().st_mode & 0o077 == 0


def test_the_key_is_random_per_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = scancache.secrets_key(FORMS)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-user"))
    assert scancache.secrets_key(FORMS) != first


def test_disabled_cache_knows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    scancache.remember_clean(FORMS, LAYERS)
    monkeypatch.setenv("IMAGEKIT_NO_SCAN_CACHE", "1")
    assert scancache.known_clean(FORMS) == set()


def test_a_corrupt_cache_is_ignored_and_replaced() -> None:
    path = scancache.cache_dir() / "leakscan-layers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert scancache.known_clean(FORMS) == set()
    scancache.remember_clean(FORMS, LAYERS[:1])
    assert scancache.known_clean(FORMS) == {LAYERS[0]}


def test_layer_sizes_and_member_names_are_kept_beside_the_clean_sets_and_updated() -> None:
    scancache.remember_clean(FORMS, LAYERS, {LAYERS[0]: 2048, LAYERS[1]: 4096}, {"a/layer.tar": LAYERS[0]})
    scancache.remember_clean(
        {"another-secret-value"}, LAYERS[:1], {LAYERS[0]: 1024}, {"b/layer.tar": LAYERS[1]}
    )
    assert scancache.known_sizes() == {LAYERS[1]: 4096, LAYERS[0]: 1024}
    assert scancache.known_members() == {"a/layer.tar": LAYERS[0], "b/layer.tar": LAYERS[1]}
    assert scancache.known_clean(FORMS) == set(LAYERS)  # the sets are untouched by the hints
