"""imagekit prune against the real daemon: only IMAGE_NAME's tags that nothing needs go.

The tags all point at the local busybox image (which keeps its own tag), so untagging never
deletes an image another test uses. `docker builder prune` is never run here (the daemon is
shared): the dry run shows its command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import dockerd
from tests.support.cli import invoke
from tests.support.workspace import make_workspace

pytestmark = pytest.mark.integration


def test_prune_keeps_builds_tiers_and_deploys_and_removes_the_rest(
    tmp_path: Path, docker_daemon: str, busybox_image: str, unique_name, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGEKIT_DOCKER", docker_daemon)
    image = f"imagekit-test/{unique_name('prune')}"
    root = make_workspace(tmp_path / "ws", env={"IMAGE_NAME": image})
    tags = ["v1.0.0", "v1.0.0-replaced-0123456789ab", "base-abc", "v0.9.0", "stray"]
    try:
        for tag in tags:
            dockerd.docker(docker_daemon, "tag", busybox_image, f"{image}:{tag}")
        (root / "builds").mkdir()
        manifest = {"schema_version": 1, "version": "v1.0.0", "status": "succeeded", "kind": "build",
                    "image": {"ref": f"{image}:v1.0.0", "id": "sha256:" + "0" * 64},
                    "base_tier": {"ref": f"{image}:base-abc"}}  # fmt: skip
        (root / "builds" / "v1.0.0.json").write_text(json.dumps(manifest))
        (root / "deploys").mkdir()
        deploy = {"schema_version": 1, "project": "erp", "image": f"{image}:v0.9.0", "version": "v0.9.0"}
        (root / "deploys" / "20261201T000000Z-erp.json").write_text(json.dumps(deploy))

        dry = invoke("prune", "-w", str(root), "--dry-run", "--json", "--keep-storage", "5GB")
        assert dry.exit_code == 0, dry.stderr
        planned = json.loads(dry.stdout)
        assert [i["ref"] for i in planned["remove"]] == [
            f"{image}:stray",
            f"{image}:v1.0.0-replaced-0123456789ab",
        ]
        assert {i["ref"]: i["why"] for i in planned["keep"]} == {
            f"{image}:base-abc": "system tier of build v1.0.0 (v1.0.0.json)",
            f"{image}:v0.9.0": "deploy of erp (20261201T000000Z-erp.json)",
            f"{image}:v1.0.0": "build v1.0.0 (v1.0.0.json)",
        }
        assert planned["builder_command"] == [
            docker_daemon,
            "builder",
            "prune",
            "-f",
            "--keep-storage",
            "5GB",
        ]
        assert planned["frees_bytes"] == 0  # the image stays: kept tags hold the same id
        assert len(dockerd.image_tags(docker_daemon, image)) == 5  # a dry run removes nothing

        done = invoke("prune", "-w", str(root))
        assert done.exit_code == 0, done.stderr
        assert "removed" in done.stdout and "kept: build v1.0.0" in done.stdout
        assert dockerd.image_tags(docker_daemon, image) == [
            f"{image}:{t}" for t in ("base-abc", "v0.9.0", "v1.0.0")
        ]
        assert dockerd.image_tags(docker_daemon, busybox_image.rpartition(":")[0]) == [busybox_image]
    finally:
        for tag in tags:
            dockerd.docker(docker_daemon, "rmi", f"{image}:{tag}", check=False, timeout=60)
