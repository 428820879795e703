"""prune: what is kept (successful builds, their system tier, the last N deploys per project)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit import prune
from frappe_imagekit.deploy.swarm import records
from frappe_imagekit.errors import ConfigError, DockerError
from frappe_imagekit.workspace import Workspace

IMG = "acme/erp"


def _manifest(ws: Path, name: str, version: str, status: str = "succeeded", **extra) -> None:
    data = {"schema_version": 1, "version": version, "status": status, "kind": "build",
            "image": {"ref": f"{IMG}:{version}", "id": f"sha256:{version}"}, **extra}  # fmt: skip
    (ws / "builds").mkdir(exist_ok=True)
    (ws / "builds" / name).write_text(json.dumps(data))


def _deploy(ws: Path, stamp: str, project: str, version: str) -> None:
    (ws / "deploys").mkdir(exist_ok=True)
    record = {"schema_version": 1, "project": project, "image": f"{IMG}:{version}", "version": version}
    (ws / "deploys" / f"{stamp}-{project}.json").write_text(json.dumps(record))


def test_needed_names_builds_tiers_and_the_last_deploys_per_project(tmp_path: Path) -> None:
    _manifest(tmp_path, "v1.json", "v1", base_tier={"ref": f"{IMG}:base-abc"})
    _manifest(tmp_path, "v2.failed-20261201T000000Z.json", "v2", status="failed")
    for stamp, project, version in [("20261101", "erp", "v0"), ("20261102", "erp", "v3"),
                                    ("20261103", "erp", "v4"), ("20261101", "shop", "v5")]:  # fmt: skip
        _deploy(tmp_path, stamp, project, version)
    why = prune.needed(Workspace.at(tmp_path), keep_deploys=2)
    assert why[f"{IMG}:v1"] == why["sha256:v1"] == "build v1 (v1.json)"
    assert why[f"{IMG}:base-abc"] == "system tier of build v1 (v1.json)"
    assert f"{IMG}:v2" not in why and f"{IMG}:v0" not in why  # failed build; third-last deploy
    assert why[f"{IMG}:v4"] == "deploy of erp (20261103-erp.json)" and f"{IMG}:v3" in why
    assert why[f"{IMG}:v5"] == "deploy of shop (20261101-shop.json)"


def test_an_unreadable_record_stops_the_prune(tmp_path: Path) -> None:
    (tmp_path / "builds").mkdir()
    (tmp_path / "builds" / "v1.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"builds/v1.json cannot be read .* fix or move it"):
        prune.needed(Workspace.at(tmp_path), keep_deploys=3)
    (tmp_path / "builds" / "v1.json").unlink()
    (tmp_path / "deploys").mkdir()
    (tmp_path / "deploys" / "x-erp.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"deploys/x-erp.json cannot be read"):
        prune.needed(Workspace.at(tmp_path), keep_deploys=3)


def test_a_system_tier_that_is_not_an_object_stops_the_prune(tmp_path: Path) -> None:
    _manifest(tmp_path, "v1.json", "v1", base_tier="acme/erp:base-abc")  # once an AttributeError
    with pytest.raises(ConfigError) as caught:
        prune.needed(Workspace.at(tmp_path), keep_deploys=3)
    assert caught.value.message == (
        "builds/v1.json cannot be read (base_tier must be an object, not str) and could name an "
        "image: fix or move it, then prune again."
    )


def test_classify_keeps_what_is_named_by_tag_or_id_and_counts_freed_space_once() -> None:
    images = [
        {"ref": f"{IMG}:v1", "id": "sha256:a", "size": 100},
        {"ref": f"{IMG}:v1-replaced-0123456789ab", "id": "sha256:b", "size": 70},
        {"ref": f"{IMG}:old", "id": "sha256:b", "size": 70},
        {"ref": f"{IMG}:alias", "id": "sha256:a", "size": 100},
        {"ref": f"{IMG}:base-1", "id": "sha256:c", "size": 500},
    ]
    plan = prune.classify(images, {f"{IMG}:v1": "build v1", "sha256:c": "system tier"}, IMG)
    assert [i.ref for i in plan.remove] == [f"{IMG}:alias", f"{IMG}:old", f"{IMG}:v1-replaced-0123456789ab"]
    kept = [(i.ref, i.why) for i in plan.keep]
    assert kept == [(f"{IMG}:base-1", "system tier"), (f"{IMG}:v1", "build v1")]
    assert plan.frees == 70  # sha256:a stays under v1; sha256:b counted once


@pytest.mark.parametrize("bad", ["10 GB", "-1", "all", "5GB;rm", ""])
def test_keep_storage_must_be_a_size(bad: str) -> None:
    with pytest.raises(ConfigError, match="is not a size"):
        prune.builder_prune_command("/usr/bin/docker", bad)


def test_builder_prune_command() -> None:
    assert prune.builder_prune_command("/usr/bin/docker", "10GB") == [
        "/usr/bin/docker", "builder", "prune", "-f", "--keep-storage", "10GB",
    ]  # fmt: skip


def test_the_image_of_any_container_is_kept_whatever_names_it() -> None:
    images = [
        {"ref": f"{IMG}:v1-replaced-0123456789ab", "id": "sha256:old", "size": 100},
        {"ref": f"{IMG}:v1", "id": "sha256:new", "size": 100},
        {"ref": f"{IMG}:stray", "id": "sha256:stray", "size": 10},
    ]
    plan = prune.classify(images, {f"{IMG}:v1": "build v1"}, IMG, {"sha256:old": "erp-backend-1 (running)"})
    assert [(i.ref, i.why) for i in plan.keep] == [
        (f"{IMG}:v1", "build v1"),
        (f"{IMG}:v1-replaced-0123456789ab", "container erp-backend-1 (running) uses it"),
    ]
    assert [i.ref for i in plan.remove] == [f"{IMG}:stray"]


def test_a_refused_removal_is_reported_and_the_others_go_on(monkeypatch) -> None:
    images = [{"ref": f"{IMG}:{tag}", "id": f"sha256:{tag}", "size": 10} for tag in ("a", "b", "c")]
    plan = prune.classify(images, {}, IMG, {})
    removed: list[str] = []

    def remove_tag(ref: str) -> None:
        if ref.endswith(":b"):
            raise DockerError(
                f"docker rmi {ref} failed: conflict: container 1234 is using its referenced image"
            )
        removed.append(ref)

    monkeypatch.setattr(prune.dockerapi, "remove_tag", remove_tag)
    result = prune.execute_prune(plan)
    assert removed == [f"{IMG}:a", f"{IMG}:c"]
    assert result["failed"] == [
        {
            "ref": f"{IMG}:b",
            "error": f"docker rmi {IMG}:b failed: conflict: container 1234 is using its referenced image",
        }
    ]
    assert result["frees_bytes"] == 20  # b stays
    message = prune.failure_message(result["failed"])
    assert message.startswith(f"1 image tag(s) could not be removed ({IMG}:b; ")


def _swarm_deploy(ws: Path, stamp: str, stack: str, version: str, **fields: object) -> None:
    """A swarm deploy's workspace copy, as cli/swarm_deploy.py writes it (deploys/swarm/)."""
    ref = f"{IMG}@sha256:{version[-1] * 64}"
    data = {"engine": "swarm", "stack": stack, "version": version, "ref": ref, "exit_code": 0,
            "deploy_id": stamp, **fields}  # fmt: skip
    records.write_workspace(ws / "deploys", stamp, stack, data)


def test_the_last_swarm_deploys_of_each_stack_are_kept_as_compose_ones_are(tmp_path: Path) -> None:
    for day, stack, version in [("01", "erp", "v1"), ("02", "erp", "v2"), ("03", "erp", "v3"),
                                ("01", "shop", "v5")]:  # fmt: skip
        _swarm_deploy(tmp_path, f"202611{day}T000000Z", stack, version)
    _swarm_deploy(tmp_path, "20261104T000000Z", "erp", "v4", ref=None, exit_code=2)  # failed before the pin
    why = prune.needed(Workspace.at(tmp_path), keep_deploys=3)
    assert why[f"{IMG}:v3"] == why[f"{IMG}@sha256:{'3' * 64}"] == "swarm deploy of erp (20261103T000000Z)"
    assert why[f"{IMG}:v2"] == "swarm deploy of erp (20261102T000000Z)"
    assert f"{IMG}:v1" not in why  # the fourth-last record of erp (the newest names no image)
    assert why[f"{IMG}:v5"] == "swarm deploy of shop (20261101T000000Z)"
    plan = prune.classify(
        [{"ref": f"{IMG}:{v}", "id": f"sha256:{v}", "size": 1} for v in ("v1", "v2", "v3", "v5")], why, IMG
    )
    assert [i.ref for i in plan.remove] == [f"{IMG}:v1"]


def test_an_unreadable_swarm_record_stops_the_prune(tmp_path: Path) -> None:
    (tmp_path / "deploys" / "swarm").mkdir(parents=True)
    (tmp_path / "deploys" / "swarm" / "20261101T000000Z-erp.json").write_text('{"engine": "swarm"}')
    with pytest.raises(ConfigError, match=r"deploys/swarm/20261101T000000Z-erp.json cannot be read \(.*\) "):
        prune.needed(Workspace.at(tmp_path), keep_deploys=3)
