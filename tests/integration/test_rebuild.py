"""history + rebuild end to end: real git remotes, the real daemon and BuildKit, through the CLI.

Build v1.0.0 and v1.0.1 (erpnext moved to a newer tag), diff them, delete the v1.0.0 image and
rebuild it from its manifest alone, then move a tag on the remote and watch rebuild refuse, and
corrupt a manifest and watch history carry on. The test Containerfile writes only app names and
branches (sed drops the URLs, which hold the token) and a sha256 of apps.json into the image.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from frappe_imagekit.appsjson import inject
from tests.support import dockerd
from tests.support.cli import invoke
from tests.support.githttp import GitHTTPServer, Remote, git, make_remote
from tests.support.workspace import make_workspace

pytestmark = pytest.mark.integration

CONTAINERFILE = """\
# Test Containerfile for rebuild: apps.json arrives as a BuildKit secret; only names, branches
# and its sha256 stay in the image.
ARG BASE_IMAGE=imagekit-test/busybox:1
FROM ${BASE_IMAGE}
ARG FRAPPE_BRANCH
ARG FRAPPE_PATH
ARG PYTHON_VERSION
ARG NODE_VERSION
ARG CACHE_BUST
RUN --mount=type=secret,id=apps_json,target=/opt/frappe/apps.json,uid=1000,gid=1000 \\
    sed -e 's#"url":"[^"]*/\\([^/"]*\\)"#"app":"\\1"#g' /opt/frappe/apps.json > /apps.txt \\
    && sha256sum < /opt/frappe/apps.json > /apps.sha256 \\
    && echo "@NONCE@ ${FRAPPE_BRANCH} ${PYTHON_VERSION} ${CACHE_BUST}" > /build.txt
"""


@dataclass
class Scene:
    root: Path
    frappe: Remote
    erpnext: Remote
    private: Remote
    image: str
    canary: str
    docker: str

    def set(self, **values: str) -> None:
        env = self.root / ".env"
        text = env.read_text()
        for key, value in values.items():
            text = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", text)
        env.write_text(text)

    def set_app_branch(self, index: int, branch: str) -> None:
        apps = json.loads((self.root / "apps.json").read_text())
        apps[index]["branch"] = branch
        (self.root / "apps.json").write_text(json.dumps(apps, indent=2))

    def injected_sha256(self) -> str:
        apps = json.loads((self.root / "apps.json").read_text())
        return hashlib.sha256(inject(apps, {"DE_MACRS_PAT": self.canary}).text.encode()).hexdigest()

    def inspect(self, ref: str) -> dict | None:
        done = dockerd.docker(self.docker, "image", "inspect", ref, check=False, timeout=60)
        return json.loads(done.stdout)[0] if done.returncode == 0 else None

    def cat(self, ref: str, path: str) -> str:
        return dockerd.image_file(self.docker, ref, path)

    def tags(self) -> list[str]:
        return dockerd.image_tags(self.docker, self.image)

    def cli(self, *args: str):
        result = invoke(*args, "-w", str(self.root))
        assert self.canary not in result.stdout + result.stderr, "the token leaked into output"
        return result

    def assert_no_canary_in_builds(self) -> None:
        for path in (self.root / "builds").iterdir():
            assert self.canary not in path.read_text(errors="replace"), path.name


@pytest.fixture
def scene(
    tmp_path: Path, busybox_image: str, docker_daemon: str, unique_name, monkeypatch
) -> Iterator[Scene]:
    monkeypatch.setenv("IMAGEKIT_DOCKER", docker_daemon)
    remotes = tmp_path / "remotes"
    frappe = make_remote(remotes, "frappe", tags=(), annotated=(), branches=("version-15",))
    erpnext = make_remote(remotes, "erpnext", tags=("v15.16.2", "v15.17.0"), branches=())
    private = make_remote(remotes, "de_macrs", tags=("v0.0.4",), annotated=("v0.0.4",), branches=())
    canary = "ghp_" + secrets.token_hex(18)
    name = unique_name("rebuild")
    image = f"imagekit-test/{name}"
    with GitHTTPServer(remotes, tokens=[canary]) as server:
        root = make_workspace(
            tmp_path / "ws",
            env={
                "FRAPPE_PATH": frappe.url,
                "IMAGE_NAME": image,
                "DE_MACRS_PAT": canary,
                "CONTAINERFILE": "Containerfile",
            },
            apps=[
                {"url": erpnext.url, "branch": "v15.16.2"},
                {"url": server.url("de_macrs.git", "${DE_MACRS_PAT}"), "branch": "v0.0.4"},
            ],
        )
        (root / "Containerfile").write_text(CONTAINERFILE.replace("@NONCE@", name))
        found = Scene(root, frappe, erpnext, private, image, canary, docker_daemon)
        try:
            yield found
        finally:
            for ref in found.tags():
                dockerd.docker(docker_daemon, "rmi", "-f", ref, check=False, timeout=120)


def test_build_diff_rebuild_drift_and_a_corrupt_manifest(scene: Scene) -> None:
    # -- two builds through the CLI: v1.0.1 moves erpnext from v15.16.2 to v15.17.0
    scene.set(DE_SITE_VERSION="v1.0.0")
    first = scene.cli("build", "--progress", "plain")
    assert first.exit_code == 0, first.stderr
    v1_sha256 = scene.injected_sha256()
    scene.set(DE_SITE_VERSION="v1.0.1")
    scene.set_app_branch(0, "v15.17.0")
    second = scene.cli("build", "--progress", "plain")
    assert second.exit_code == 0, second.stderr

    # -- the diff names the moved app with the commit count from the remote
    diff = scene.cli("history", "--diff", "v1.0.0", "v1.0.1")
    assert diff.exit_code == 0, diff.stderr
    old7, new7 = scene.erpnext.tags["v15.16.2"][:7], scene.erpnext.tags["v15.17.0"][:7]
    assert f"~ erpnext: v15.16.2 -> v15.17.0, {old7} -> {new7} (1 commit(s) ahead)" in diff.stdout
    assert "de_macrs" not in diff.stdout and "= Containerfile unchanged" in diff.stdout

    # -- rebuild v1.0.0 after its image is gone
    ref = f"{scene.image}:v1.0.0"
    before = scene.inspect(ref)
    assert before is not None
    apps_before, hash_before = scene.cat(ref, "/apps.txt"), scene.cat(ref, "/apps.sha256")
    assert hash_before.split()[0] == v1_sha256
    assert apps_before.strip() == (
        '[{"app":"erpnext.git","branch":"v15.16.2"},{"app":"de_macrs.git","branch":"v0.0.4"}]'
    )
    dockerd.docker(scene.docker, "rmi", ref, timeout=120)
    assert scene.inspect(ref) is None

    rebuilt = scene.cli("rebuild", "v1.0.0", "--progress", "plain")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert "The rebuild matches v1.0.0." in rebuilt.stdout
    after = scene.inspect(ref)
    assert after is not None and after["Id"] != before["Id"]  # a new image...
    labels_before = dict(before["Config"]["Labels"])
    labels_after = dict(after["Config"]["Labels"])
    for labels in (labels_before, labels_after):
        labels.pop("org.opencontainers.image.created")
    assert labels_after == labels_before  # ...with the same version, apps, SHAs, fingerprint
    assert scene.cat(ref, "/apps.txt") == apps_before
    assert scene.cat(ref, "/apps.sha256") == hash_before  # byte-identical apps.json, token too

    records = sorted((scene.root / "builds").glob("v1.0.0.rebuild-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    original = json.loads((scene.root / "builds" / "v1.0.0.json").read_text())
    assert (record["kind"], record["rebuild_of"], record["version"]) == (
        "rebuild",
        "v1.0.0",
        "v1.0.0",
    )
    assert record["image"]["id"] == after["Id"] and record["leak_scan"]["status"] == "clean"
    assert record["build_args"] == original["build_args"]
    assert record["containerfile"]["sha256"] == original["containerfile"]["sha256"]
    assert [a["sha"] for a in record["apps"]] == [a["sha"] for a in original["apps"]]
    assert original["status"] == "succeeded" and original["kind"] == "build"  # untouched

    listing = json.loads(scene.cli("history", "--json").stdout)
    assert [b["version"] for b in listing["builds"]] == ["v1.0.1", "v1.0.0"]
    assert listing["builds"][1]["rebuilds"][0]["file"] == records[0].name

    # -- the tag is taken again now: rebuild refuses without --force / --tag
    again = scene.cli("rebuild", "v1.0.0")
    assert again.exit_code == 6
    assert f"{ref} still exists" in again.stderr and "--force" in again.stderr

    # -- a tag moved on the remote: rebuild refuses and names the drift
    erpnext = scene.erpnext
    old_sha = erpnext.tags["v15.16.2"]
    new_sha = erpnext.commit("hotfix retagged")
    git("tag", "-f", "v15.16.2", new_sha, cwd=erpnext.work)
    git("push", "-q", "-f", "origin", "refs/tags/v15.16.2", cwd=erpnext.work)
    drifted = scene.cli("rebuild", "v1.0.0", "--tag", "v1.0.0-again")
    assert drifted.exit_code == 11
    assert f"erpnext: v15.16.2 moved from {old_sha[:7]} to {new_sha[:7]}" in drifted.stderr
    assert scene.inspect(f"{scene.image}:v1.0.0-again") is None

    # -- a corrupt manifest is named, the rest still lists
    (scene.root / "builds" / "v1.0.1.json").write_text('{"schema_version": 1, "version": "v1.0')
    broken = scene.cli("history")
    assert broken.exit_code == 0
    assert "warning: skipped v1.0.1.json: not valid JSON" in broken.stderr
    rows = [line.split("\t") for line in broken.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["v1.0.0", "  ↳ rebuild of v1.0.0"]
    scene.assert_no_canary_in_builds()


def test_force_keeps_the_old_image_and_a_failed_rebuild_gives_it_back(scene: Scene) -> None:
    scene.set(DE_SITE_VERSION="v1.0.0")
    assert scene.cli("build", "--progress", "plain").exit_code == 0
    ref = f"{scene.image}:v1.0.0"
    original_id = scene.inspect(ref)["Id"]
    short = original_id.removeprefix("sha256:")[:12]

    # --tag: a second image beside the original, which stays where it is
    beside = scene.cli("rebuild", "v1.0.0", "--tag", "v1.0.0-rebuilt", "--json")
    assert beside.exit_code == 0, beside.stderr
    data = json.loads(beside.stdout)
    assert data["manifest"]["image"]["ref"] == f"{scene.image}:v1.0.0-rebuilt"
    assert data["comparison"]["identical"] is True
    assert scene.inspect(ref)["Id"] == original_id

    # --force: the rebuild takes the tag, the original keeps a -replaced- tag
    forced = scene.cli("rebuild", "v1.0.0", "--force", "--progress", "plain")
    assert forced.exit_code == 0, forced.stderr
    kept = f"{scene.image}:v1.0.0-replaced-{short}"
    assert f"The image it replaced is kept as {kept}" in forced.stdout
    assert scene.inspect(kept)["Id"] == original_id
    newest = max((scene.root / "builds").glob("v1.0.0.rebuild-*.json"), key=lambda p: p.stat().st_mtime)
    rebuilt = json.loads(newest.read_text())
    assert rebuilt["image"]["replaced"] == kept
    # the tag now names the rebuilt image (its id equals the original's when the rebuild is
    # byte-identical, i.e. built within the same second as the original: labels carry seconds)
    assert scene.inspect(ref)["Id"] == rebuilt["image"]["id"]

    # a rebuild that fails puts the image it displaced back under the tag
    current_id = scene.inspect(ref)["Id"]
    manifest_path = scene.root / "builds" / "v1.0.0.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["containerfile"]["content"] += "RUN --mount=type=secret,id=apps_json false\n"
    manifest["containerfile"]["sha256"] = hashlib.sha256(
        manifest["containerfile"]["content"].encode()
    ).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    refused = scene.cli("rebuild", "v1.0.0", "--force", "--progress", "plain")
    assert refused.exit_code == 1, refused.stderr  # the stored text no longer has the workspace file's sha256
    assert "builds/v1.0.0.json stores its own Containerfile" in " ".join(refused.stderr.split())
    assert scene.inspect(ref)["Id"] == current_id
    failed = scene.cli("rebuild", "v1.0.0", "--force", "--progress", "plain", "--trust-containerfile")
    assert failed.exit_code == 4, failed.stderr
    assert "docker build of" in failed.stderr and "failed" in failed.stderr
    assert scene.inspect(ref)["Id"] == current_id
    assert f"{scene.image}:v1.0.0-replaced-{current_id.removeprefix('sha256:')[:12]}" not in (scene.tags())
    listing = json.loads(scene.cli("history", "--json").stdout)
    statuses = sorted(r["status"] for r in listing["builds"][0]["rebuilds"])
    assert statuses == ["failed", "succeeded", "succeeded"]
    scene.assert_no_canary_in_builds()
