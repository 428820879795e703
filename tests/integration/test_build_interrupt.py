"""An interrupt at any point of a build never leaves an unscanned or leaky image under the
version tag: the image is built without a tag and gets it only after a clean leak scan."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_build import ROOT, BuildWorkspace, ProcWatch, bws  # noqa: F401
from tests.support import dockerd

pytestmark = pytest.mark.integration


def _wrong_shapes(builds: Path) -> None:
    """Manifests of the wrong shape (repository content): the build must go past them."""
    builds.mkdir(exist_ok=True)
    for name, data in {
        "v0.1.0.json": {"schema_version": 1, "version": "v0.1.0", "status": "succeeded", "apps": 3},
        "v0.2.0.json": {"schema_version": 1, "version": ["v9"], "status": "succeeded"},
        "v0.3.0.json": {"schema_version": 1, "version": "v0.3.0", "status": "succeeded", "image": "x"},
    }.items():
        (builds / name).write_text(json.dumps(data))


def _wait_for_scan(watch: ProcWatch, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until the docker build process has come and gone: imagekit is scanning then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        seen = set(watch.docker_builds)
        if seen and not any(Path(f"/proc/{pid}").exists() for pid in seen):
            # imagekit reads the image id back, then scans 300 MB for seconds: land in the scan,
            # not in the moment between the docker process's exit and the scan's start
            time.sleep(0.5)
            return
        time.sleep(0.02)
    raise AssertionError(f"the docker build never finished (imagekit exit {proc.poll()})")


def test_sigterm_during_the_leak_scan_leaves_no_tag_and_a_failed_record(bws: BuildWorkspace) -> None:  # noqa: F811
    _wrong_shapes(bws.root / "builds")
    containerfile = bws.containerfile("leaky-big.Containerfile")
    argv = [sys.executable, "-m", "frappe_imagekit", "build", "-w", str(bws.root),
            "--containerfile", str(containerfile), "--progress", "plain"]  # fmt: skip
    watch = ProcWatch(bws.canary, bws.root / "builds" / ".v1.0.0.iid")
    watch.start()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_scan(watch, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        watch.stop()
        if proc.poll() is None:
            proc.kill()
    failed = list((bws.root / "builds").glob("v1.0.0.failed-*.json"))
    record = json.loads(failed[0].read_text()) if failed else {}
    image_id = (record.get("image") or {}).get("id")
    try:
        assert proc.returncode == 130, stderr.decode()
        assert b"interrupted" in stderr and b"internal error" not in stderr
        assert bws.image_id(f"{bws.image}:v1.0.0") is None  # the leaky image never got the tag
        assert bws.tags() == []
        assert not (bws.root / "builds" / "v1.0.0.json").exists()
        assert record["status"] == "failed" and record["error"] == "interrupted"
        assert record["leak_scan"]["status"] == "unfinished"
        assert image_id and image_id.startswith("sha256:")
        assert bws.canary not in stdout.decode() + stderr.decode()
        for path in (bws.root / "builds").iterdir():
            assert bws.canary not in path.read_text(errors="replace"), path.name
    finally:
        if image_id:
            dockerd.docker(bws.docker, "rmi", "-f", image_id, check=False, timeout=120)


def test_a_clean_build_is_tagged_after_its_scan_past_wrong_shapes(bws: BuildWorkspace) -> None:  # noqa: F811
    _wrong_shapes(bws.root / "builds")
    containerfile = bws.containerfile("secret.Containerfile")
    from tests.support.cli import invoke

    result = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile))
    assert result.exit_code == 0, result.stderr
    manifest = bws.manifest("v1.0.0")
    assert manifest["leak_scan"]["status"] == "clean"
    assert bws.image_id(f"{bws.image}:v1.0.0") == manifest["image"]["id"]
