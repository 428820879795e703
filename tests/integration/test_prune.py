"""imagekit prune against the real daemon: only IMAGE_NAME's tags that nothing needs go.

The tags point at images of the test's own (``docker commit`` of the local busybox image with
a unique label), so no container of another test on the shared daemon uses them and untagging
never deletes an image another test uses. `docker builder prune` is never run here (the daemon
is shared): the dry run shows its command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit import dockerapi
from tests.support import dockerd
from tests.support.cli import invoke
from tests.support.workspace import make_workspace

pytestmark = pytest.mark.integration


def own_image(cli: str, base: str, ref: str) -> str:
    """A new image of the test's own at ``ref`` (busybox's layers, a unique label); its id."""
    created = dockerd.docker(cli, "create", base, "true", timeout=60).stdout.strip()
    try:
        dockerd.docker(cli, "commit", "-c", f"LABEL imagekit-test={ref}", created, ref, timeout=60)
    finally:
        dockerd.docker(cli, "rm", "-f", created, check=False, timeout=60)
    return dockerd.docker(cli, "image", "inspect", "-f", "{{.Id}}", ref, timeout=60).stdout.strip()


def test_prune_keeps_builds_tiers_and_deploys_and_removes_the_rest(
    tmp_path: Path, docker_daemon: str, busybox_image: str, unique_name, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGEKIT_DOCKER", docker_daemon)
    image = f"imagekit-test/{unique_name('prune')}"
    root = make_workspace(tmp_path / "ws", env={"IMAGE_NAME": image})
    tags = ["v1.0.0", "v1.0.0-replaced-0123456789ab", "base-abc", "v0.9.0", "stray"]
    try:
        own = own_image(docker_daemon, busybox_image, f"{image}:{tags[0]}")
        for tag in tags[1:]:
            dockerd.docker(docker_daemon, "tag", own, f"{image}:{tag}")
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


def test_prune_keeps_a_running_containers_image_and_reports_a_refused_removal(
    tmp_path: Path, docker_daemon: str, busybox_image: str, unique_name, monkeypatch
) -> None:
    """Issue 19 item 7: after `build --force` the running container's image carries only its
    `-replaced-` tag; prune keeps it. A removal the daemon refuses (a container made after the
    plan) is reported, the other removals are done, exit 4."""
    monkeypatch.setenv("IMAGEKIT_DOCKER", docker_daemon)
    image = f"imagekit-test/{unique_name('prune')}"
    replaced = f"{image}:v1.0.0-replaced-0123456789ab"
    root = make_workspace(tmp_path / "ws", env={"IMAGE_NAME": image})
    running, late = unique_name("prune-run"), unique_name("prune-late")
    refs = [replaced, f"{image}:v1.0.0", f"{image}:late", f"{image}:stray"]
    try:
        ids = {ref: own_image(docker_daemon, busybox_image, ref) for ref in refs}
        (root / "builds").mkdir()
        manifest = {"schema_version": 1, "version": "v1.0.0", "status": "succeeded", "kind": "build",
                    "image": {"ref": f"{image}:v1.0.0", "id": ids[f"{image}:v1.0.0"]}}  # fmt: skip
        (root / "builds" / "v1.0.0.json").write_text(json.dumps(manifest))
        dockerd.docker(docker_daemon, "run", "-d", "--name", running, replaced, "sleep", "300", timeout=60)

        dry = invoke("prune", "-w", str(root), "--dry-run", "--json")
        assert dry.exit_code == 0, dry.stderr
        planned = json.loads(dry.stdout)
        assert [i["ref"] for i in planned["remove"]] == [f"{image}:late", f"{image}:stray"]
        assert {i["ref"]: i["why"] for i in planned["keep"]}[replaced] == (
            f"container {running} (running) uses it"
        )

        # a container made from :late after the plan looked (the plan is taken without it)
        seen = dockerapi.container_images()
        monkeypatch.setattr(dockerapi, "container_images", lambda: seen)
        dockerd.docker(docker_daemon, "create", "--name", late, f"{image}:late", "true", timeout=60)
        done = invoke("prune", "-w", str(root))
        assert done.exit_code == 4, done.stdout + done.stderr
        assert f"{image}:late\t" in done.stdout and "NOT removed: docker rmi" in done.stdout
        assert "1 image tag(s) could not be removed" in done.stderr and image + ":late" in done.stderr
        assert dockerd.image_tags(docker_daemon, image) == sorted(
            [replaced, f"{image}:v1.0.0", f"{image}:late"]
        )
        assert "Traceback" not in done.stderr
    finally:
        for name in (running, late):
            dockerd.docker(docker_daemon, "rm", "-f", name, check=False, timeout=60)
        for ref in refs:
            dockerd.docker(docker_daemon, "rmi", "-f", ref, check=False, timeout=60)
