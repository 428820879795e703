"""Manifests and deploy records are repository content: a file of the wrong shape, or with a
value that could reach git or docker as an option, is named and skipped, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_history_data import make_deploy, make_manifest, write, write_deploy

from frappe_imagekit import history, manifest
from frappe_imagekit.errors import ExitCode, ImagekitError, NotFoundError, UsageError
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke
from tests.support.workspace import CANARY, make_workspace

# (field path, bad value, words of the reason)
WRONG_SHAPES = [
    ("created", 5, "created must be a string, not int"),
    ("image", "x", "image must be an object, not str"),
    ("apps", 3, "apps must be a list, not int"),
    ("apps", [1], "apps[0] must be an object, not int"),
    ("rebuild_of", ["x"], "rebuild_of must be a string, not list"),
    ("version", ["v9"], "version must be a string, not list"),
    ("version", "../../etc/passwd", "version '../../etc/passwd' is not a valid image tag"),
    ("frappe", {"name": "frappe", "ref": "--upload-pack=touch X", "sha": None}, "frappe.ref"),
    ("apps", [{"name": "x", "ref": "main", "sha": "--upload-pack=touch X;git-upload-pack"}], "apps[0].sha"),
    ("apps", [{"name": "x", "url": "--upload-pack=x", "ref": "main"}], "apps[0].url"),
    ("apps", [{"name": "x", "url": "https://h/x"}], "apps[0] has no ref"),
    ("image", {"ref": "not an image:v1"}, "image.ref (name)"),
    ("image", {"id": 7}, "image.id must be a string, not int"),
    ("build_args", {"A": 1}, "each value of build_args must be a string"),
    ("log_file", "../../.ssh/id_ed25519", "log_file must be a plain file name"),
    ("duration_seconds", "long", "duration_seconds must be a number"),
    ("leak_scan", {"findings": "none"}, "leak_scan.findings must be a list"),
    ("workspace", {"dirty": "yes"}, "workspace.dirty must be true or false"),
    ("schema_version", True, "no schema_version"),
    # the typed reader (build/records.py BuildManifest): every field it types is checked
    ("apps", "", "apps must be a list, not str"),
    ("frappe", {"name": 5, "ref": "main"}, "frappe.name must be a string, not int"),
    ("frappe", {"name": None, "ref": "main"}, "frappe.name must be a string, not NoneType"),
    ("image", {"digest": 5}, "image.digest must be a string, not int"),
    ("image", {"repo_digests": ""}, "image.repo_digests must be a list, not str"),
    ("base_tier", "x", "base_tier must be an object, not str"),
    ("base_tier", {"ref": 5}, "base_tier.ref must be a string, not int"),
    ("base_tier", {"built": "yes"}, "base_tier.built must be true or false, not str"),
    ("drift", [{"status": 1}], "drift[0].status must be a string, not int"),
    ("leak_scan", {"findings": 0}, "leak_scan.findings must be a list, not int"),
    (
        "leak_scan",
        {"layers_from_cache": 1.5},
        "leak_scan.layers_from_cache must be a whole number, not float",
    ),
]


def _bad_manifest(field: str, value: object) -> dict:
    data = make_manifest("v1.0.1", "2026-11-02T10:00:00+00:00")
    data[field] = value
    return data


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path)


@pytest.mark.parametrize(("field", "value", "reason"), WRONG_SHAPES)
def test_a_wrong_field_is_named_and_the_file_skipped(ws: Workspace, field, value, reason) -> None:
    write(ws.builds_dir, make_manifest("v1.0.0", "2026-11-01T10:00:00+00:00"))
    write(ws.builds_dir, _bad_manifest(field, value), "v1.0.1.json")
    listing = history.list_builds(ws)
    assert [r.version for r in listing.rows] == ["v1.0.0"]
    assert [b.path.name for b in listing.broken] == ["v1.0.1.json"]
    assert reason in listing.broken[0].reason
    assert manifest.succeeded_versions(ws) == {"v1.0.0"}


@pytest.mark.parametrize(("field", "value", "reason"), WRONG_SHAPES[:6])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_history_lists_past_a_wrong_shape(tmp_path: Path, field, value, reason, json_flag) -> None:
    builds = tmp_path / "builds"
    write(builds, make_manifest("v1.0.0", "2026-11-01T10:00:00+00:00"))
    write(builds, _bad_manifest(field, value), "v1.0.1.json")
    result = invoke("history", "-w", str(tmp_path), *json_flag)
    assert result.exit_code == 0, result.stderr
    assert f"skipped v1.0.1.json: {reason}" in result.stderr
    if json_flag:
        data = json.loads(result.stdout)
        assert [b["version"] for b in data["builds"]] == ["v1.0.0"]
        assert data["broken"][0]["file"] == "v1.0.1.json"


def test_history_show_of_a_wrong_shape_is_one_sentence(tmp_path: Path) -> None:
    write(tmp_path / "builds", _bad_manifest("image", "x"), "v1.0.1.json")
    result = invoke("history", "v1.0.1", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "v1.0.1.json cannot be used (image must be an object, not str)" in result.stderr
    assert "internal error" not in result.stderr


def test_history_diff_of_a_wrong_shape_is_one_sentence(tmp_path: Path) -> None:
    write(tmp_path / "builds", make_manifest("v1.0.0", "2026-11-01T10:00:00+00:00"))
    write(tmp_path / "builds", _bad_manifest("apps", [1]), "v1.0.1.json")
    result = invoke("history", "--diff", "v1.0.0", "v1.0.1", "--offline", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "v1.0.1.json cannot be used (apps[0] must be an object, not int)" in result.stderr


def test_history_show_of_a_wrong_base_tier_is_one_sentence(tmp_path: Path) -> None:
    write(tmp_path / "builds", _bad_manifest("base_tier", ["x"]), "v1.0.1.json")
    result = invoke("history", "v1.0.1", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "v1.0.1.json cannot be used (base_tier must be an object, not list)" in result.stderr
    assert "internal error" not in result.stderr


def test_the_typed_reader_returns_the_record_as_written_with_unknown_fields(ws: Workspace) -> None:
    data = make_manifest("v1.0.0", "2026-11-01T10:00:00+00:00")
    data |= {"base_tier": {"ref": "acme/erp:base-0", "key": "0", "built": None, "containerfile": "FROM x\n",
                           "build_args": {"PYTHON_VERSION": "3.11"}},
             "drift": [{"name": "erpnext", "ref": "v15", "use_ref": "v15", "status": "same",
                        "recorded_sha": None, "current_sha": None, "message": "erpnext: same"}],
             "leak_scan": {"status": "clean", "findings": [], "seconds": 1.5, "layers_from_cache": 3},
             "apps": None, "from_a_later_imagekit": {"any": ["shape"]}}  # fmt: skip
    write(ws.builds_dir, data, "v1.0.0.json")
    assert manifest.read_manifest(ws.builds_dir / "v1.0.0.json") == data
    assert manifest.list_manifests(ws) == ([data], [])


def test_a_version_that_is_a_path_is_a_usage_error(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "outside.json").write_text(json.dumps(make_manifest("v1.0.0")))
    ws.builds_dir.mkdir()
    with pytest.raises(UsageError, match="is not a valid image tag"):
        manifest.find_manifest(ws, "../outside")
    result = invoke("history", "../outside", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE and "not a valid image tag" in result.stderr


@pytest.mark.parametrize(("field", "value", "reason"), WRONG_SHAPES[:6])
def test_check_is_not_stopped_by_a_wrong_shape(tmp_path: Path, field, value, reason) -> None:
    ws = make_workspace(tmp_path, env={"DE_SITE_VERSION": "v1.0.1"})
    write(ws / "builds", _bad_manifest(field, value), "v1.0.1.json")
    result = invoke("check", "-w", str(ws), "--offline")
    assert result.exit_code == 0, result.stderr  # the broken v1.0.1 does not reserve the version
    assert "internal error" not in result.stderr


def test_a_token_in_a_refused_value_is_not_repeated(ws: Workspace) -> None:
    bad = _bad_manifest("apps", [{"name": "x", "ref": f"-{CANARY}", "sha": None}])
    write(ws.builds_dir, bad, "v1.0.1.json")
    broken = history.list_builds(ws).broken
    assert broken and CANARY not in broken[0].reason
    with pytest.raises(NotFoundError) as caught:
        manifest.read_manifest(ws.builds_dir / "v1.0.1.json")
    assert CANARY not in caught.value.message


DEPLOY_SHAPES = [
    ("project", "../../x", "project '../../x' is not a compose project name"),
    ("project", 5, "project must be a string, not int"),
    ("version", ["v1"], "version must be a string, not list"),
    ("finished", 3, "finished must be a string"),
    ("image", {"x": 1}, "image must be a string, not dict"),
    ("sites", "a.local", "sites must be a list"),
    ("sites", [{"site": "-x"}], "sites[0].site"),
    ("schema_version", 99, "written by a newer imagekit"),
]


@pytest.mark.parametrize(("field", "value", "reason"), DEPLOY_SHAPES)
def test_a_wrong_deploy_record_is_named_and_skipped(tmp_path: Path, field, value, reason) -> None:
    write(tmp_path / "builds", make_manifest("v1.1.5", "2026-11-01T10:00:00+00:00"))
    write_deploy(tmp_path / "deploys", make_deploy("v1.1.5", "2026-11-02T10:00:00+00:00"))
    bad = make_deploy("v1.1.5", "2026-11-03T10:00:00+00:00", project="other")
    bad[field] = value
    (tmp_path / "deploys" / "20261103T100000-other.json").write_text(json.dumps(bad))
    listing = history.list_builds(Workspace.at(tmp_path))
    assert listing.rows[0].deployed_to == ["erp@local"]
    assert [b.path.name for b in listing.broken_deploys] == ["20261103T100000-other.json"]
    assert reason in listing.broken_deploys[0].reason
    result = invoke("history", "-w", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert f"skipped deploys/20261103T100000-other.json: {reason}" in result.stderr
    shown = invoke("history", "v1.1.5", "-w", str(tmp_path), "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["deployed_to"] == ["erp@local"]


# -- the Manifest record (issue 14) ----------------------------------------------------------


def test_a_manifest_converts_to_and_from_json_byte_for_byte(tmp_path: Path) -> None:
    data = make_manifest("v1.0.0")
    data["labels"], data["base_tier"] = {"io.imagekit.fingerprint": data["fingerprint"]}, None
    data = {k: data[k] for k in manifest.Manifest("v").to_dict() if k in data}  # build's key order
    data["drift"] = [{"name": "erpnext", "message": "erpnext: v1 still at abc"}]
    record = manifest.Manifest.from_dict(data)
    assert record.version == "v1.0.0" and record.drift == data["drift"]
    assert record.to_dict() == data and list(record.to_dict()) == list(data)
    path = record.write(tmp_path / "v1.0.0.json", Redactor())
    assert path.read_text() == json.dumps(data, indent=2) + "\n" == record.to_json()
    assert manifest.Manifest.read(path) == record


def test_a_built_manifest_has_every_key_in_the_order_readers_know() -> None:
    image = manifest.ImageRecord("desiredeffect/erpnext-custom", "v1.0.0", id="sha256:" + "1" * 64)
    data = manifest.Manifest("v1.0.0", image=image, frappe={"name": "frappe", "ref": "version-15"}).to_dict()
    assert list(data)[:7] == ["schema_version", "kind", "rebuild_of", "version", "status", "error", "image"]
    assert list(data)[-3:] == ["leak_scan", "log_file", "base_tier"] and "drift" not in data
    assert data["image"]["ref"] == "desiredeffect/erpnext-custom:v1.0.0"
    assert list(data["image"]) == ["name", "tag", "ref", "id", "repo_digests", "digest", "replaced"]


def test_a_manifest_is_checked_before_it_is_written(tmp_path: Path) -> None:
    bad = manifest.Manifest("v1.0.0", log_file="../../.ssh/id_ed25519")
    with pytest.raises(ImagekitError, match=r"refusing to write v1.0.0.json \(log_file must be a plain file"):
        bad.write(tmp_path / "v1.0.0.json", Redactor())
    assert not (tmp_path / "v1.0.0.json").exists()
    secret = manifest.Manifest("v1.0.0", error=f"token {CANARY}")
    with pytest.raises(ImagekitError, match="it would contain a secret"):
        secret.write(tmp_path / "v1.0.0.json", Redactor([CANARY]))
    assert not (tmp_path / "v1.0.0.json").exists()


def test_a_manifest_upgrades_older_schemas_and_refuses_newer_ones(monkeypatch) -> None:
    data = make_manifest("v1.0.0")
    with pytest.raises(ValueError, match=r"newer imagekit \(schema 2 > 1\)"):
        manifest.Manifest.from_dict({**data, "schema_version": 2})
    monkeypatch.setattr(manifest, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(manifest._UPGRADES, 1, lambda old: {**old, "schema_version": 2, "kind": "build"})
    upgraded = manifest.Manifest.from_dict({**data, "kind": None})
    assert upgraded.kind == "build" and upgraded.to_dict()["schema_version"] == 2
