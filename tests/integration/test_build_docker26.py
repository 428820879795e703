# ruff: noqa: F401, F811 - imported tests run here again; fixtures are parameters of the same name
"""`imagekit build` on Docker 26.1 with `docker buildx build --load` (the Debian 13 test host).

This machine's imagekit drives the host's own docker CLI 26.1 + buildx 0.13 (copied out of the
host image) against the host's daemon through an SSH-forwarded socket; the SDK (inspect, tag
guard, leak scan) follows DOCKER_HOST, DOCKER_CONTEXT or the CLI's current context to that same
daemon. The build tests of test_build.py run here again through the ``bws`` fixture below (same
workspace, same assertions); the tests written here cover what only buildx has (the builder
named in the manifest, ``--metadata-file``'s digest), cache mounts, and docker contexts.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from frappe_imagekit import process
from frappe_imagekit.build import benchfile, layers
from tests.integration.test_build import (
    ROOT,
    BuildWorkspace,
    ProcWatch,
    _assert_no_canary,
    build_workspace,
    test_a_failing_build_leaves_a_failed_record_and_frees_the_version,
    test_a_leaky_containerfile_fails_the_build_and_loses_its_tag,
    test_base64_mode_reaches_the_build_and_warns_about_history,
    test_cache_bust_reruns_bench_init_only_when_a_sha_moves,
    test_ctrl_c_during_the_build_records_it_and_tags_nothing,
    test_known_clean_layers_skip_the_layer_scan_but_never_the_metadata,
    test_tag_guard_refuses_and_force_keeps_the_old_image,
)
from tests.support import dockerd
from tests.support.baseimage import IMAGE as BUSYBOX
from tests.support.cli import invoke
from tests.support.exactbench import changed_layers, debian_tools, image_layers

pytestmark = pytest.mark.integration

OUTER = "/usr/bin/docker"  # this machine's daemon, to show an image is NOT there


@pytest.fixture
def bws(tmp_path: Path, docker26: str, unique_name) -> Iterator[BuildWorkspace]:
    """test_build.py's workspace, built on the Debian 13 daemon with CLI 26 + buildx."""
    yield from build_workspace(tmp_path, docker26, unique_name("build26"))


def _build(bws: BuildWorkspace, containerfile: Path, *extra: str) -> process.Completed:
    return process.run(
        [sys.executable, "-m", "frappe_imagekit", "build", "-w", str(bws.root),
         "--containerfile", str(containerfile), "--progress", "plain", *extra],
        cwd=str(ROOT), timeout=240,
    )  # fmt: skip


def _on_outer_daemon(ref: str) -> bool:
    done = dockerd.docker(OUTER, "image", "inspect", ref, check=False, env={"DOCKER_HOST": ""})
    return done.returncode == 0


def test_secret_build_with_buildx_records_the_digest_and_docker_26(bws: BuildWorkspace) -> None:
    containerfile = bws.containerfile("secret.Containerfile", sleep=True)
    watch = ProcWatch(bws.canary, bws.root / "builds" / ".v1.0.0.iid")  # untagged build: tag after scan
    watch.start()
    try:
        done = _build(bws, containerfile)
    finally:
        watch.stop()

    assert done.returncode == 0, done.stderr
    assert watch.docker_builds and watch.hits == []
    ref = f"{bws.image}:v1.0.0"
    assert bws.cat(ref, "/apps.sha256").split()[0] == bws.injected_sha256()
    manifest = bws.manifest("v1.0.0")
    image_id = bws.image_id(ref)
    assert manifest["status"] == "succeeded" and manifest["image"]["id"] == image_id
    # buildx --metadata-file: with the docker driver and --load it is the image's config digest
    assert manifest["image"]["digest"] == image_id
    tools = manifest["tools"]
    assert tools["builder"] == "docker buildx build"
    assert tools["docker_client"].startswith("26.1.") and tools["docker_server"].startswith("26.1.")
    assert tools["buildkit"].startswith("github.com/docker/buildx 0.13.")
    assert manifest["leak_scan"]["status"] == "clean"
    log = (bws.root / "builds" / "v1.0.0.log").read_text()
    assert "bench init" in log and "naming to" not in log  # tagged by imagekit after the scan
    assert not list((bws.root / "builds").glob(".*"))  # iidfile and metadata file are removed
    assert not _on_outer_daemon(ref)  # built on the Debian 13 daemon only
    # progress (issue 24 item 4): buildx 0.13's BuildKit numbers the steps as dockerd 20.10's does
    assert 'progress: step 3/3 started: RUN echo "bench init ' + bws.nonce in done.stderr, done.stderr
    assert re.search(r"^progress: step 3/3 done in [2-9]\.\d s$", done.stderr, re.M)  # sleep 2
    _assert_no_canary(bws, done.stdout, done.stderr)


def test_dry_run_plan_names_buildx_and_the_daemon(bws: BuildWorkspace, debian13_socket: Path) -> None:
    containerfile = bws.containerfile("secret.Containerfile")
    text = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile), "--dry-run")
    assert text.exit_code == 0, text.stderr
    assert f"daemon:        unix://{debian13_socket} (DOCKER_HOST)" in text.stdout
    plan = json.loads(invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile),
                             "--dry-run", "--json").stdout)  # fmt: skip
    assert plan["docker"]["daemon"] == f"unix://{debian13_socket} (DOCKER_HOST)"
    assert plan["command"][1:4] == ["buildx", "build", "--load"]
    metadata = plan["command"][plan["command"].index("--metadata-file") + 1]
    assert metadata == str(bws.root / "builds" / ".v1.0.0.metadata.json")
    assert "--secret" in plan["command"] and bws.canary not in json.dumps(plan)


CACHE_MOUNT = """\
FROM imagekit-test/busybox:1
ARG CACHE_BUST
RUN --mount=type=secret,id=apps_json,target=/opt/frappe/apps.json \\
    --mount=type=cache,target=/root/.cache/ik,id=ik-@NONCE@ \\
    echo "run ${CACHE_BUST}" >> /root/.cache/ik/runs && cp /root/.cache/ik/runs /runs \\
    && sha256sum < /opt/frappe/apps.json > /apps.sha256
"""


def test_cache_mount_survives_a_rebuild_that_cache_bust_forces(bws: BuildWorkspace) -> None:
    containerfile = bws.root / "cache.Containerfile"
    containerfile.write_text(CACHE_MOUNT.replace("@NONCE@", bws.nonce))
    assert _build(bws, containerfile).returncode == 0
    first = bws.manifest("v1.0.0")["fingerprint"]
    bws.moving.commit("upstream moved", branch="develop")
    bws.set_version("v1.0.1")

    again = _build(bws, containerfile)

    assert again.returncode == 0, again.stderr
    second = bws.manifest("v1.0.1")["fingerprint"]
    assert second != first
    # the step ran again (CACHE_BUST moved) and found the cache mount's file of the first run
    assert bws.cat(f"{bws.image}:v1.0.1", "/runs").splitlines() == [f"run {first}", f"run {second}"]
    assert bws.cat(f"{bws.image}:v1.0.0", "/runs").splitlines() == [f"run {first}"]
    assert bws.manifest("v1.0.1")["leak_scan"]["status"] == "clean"


# ---------------------------------------------------------------- docker contexts


def _context(cli: str, name: str, socket: Path) -> None:
    dockerd.docker(cli, "context", "create", name, "--docker", f"host=unix://{socket}",
                   env={"DOCKER_HOST": ""})  # fmt: skip


@pytest.mark.parametrize("how", ["DOCKER_CONTEXT", "docker context use"])
def test_a_non_default_context_builds_and_the_scan_reads_that_daemon(
    bws: BuildWorkspace, debian13_socket: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.delenv("DOCKER_HOST")
    _context(bws.docker, "ik-debian13", debian13_socket)
    if how == "DOCKER_CONTEXT":
        monkeypatch.setenv("DOCKER_CONTEXT", "ik-debian13")
        source = "DOCKER_CONTEXT=ik-debian13"
    else:
        dockerd.docker(bws.docker, "context", "use", "ik-debian13")
        source = "docker context ik-debian13"
    inspected = json.loads(dockerd.docker(bws.docker, "context", "inspect").stdout)[0]
    assert inspected["Endpoints"]["docker"]["Host"] == f"unix://{debian13_socket}"

    containerfile = str(bws.containerfile("secret.Containerfile"))
    plan = json.loads(invoke("build", "-w", str(bws.root), "--containerfile", containerfile,
                             "--dry-run", "--json").stdout)  # fmt: skip
    assert plan["docker"]["daemon"] == f"unix://{debian13_socket} ({source})"

    leaky = bws.containerfile("leaky-copy.Containerfile")
    result = _build(bws, leaky)

    # the leaky image exists only on the Debian 13 daemon: finding the secret proves the SDK
    # read that daemon (on this machine's daemon the inspect would find nothing to scan)
    assert result.returncode == 5, result.stderr
    record = json.loads(next((bws.root / "builds").glob("v1.0.0.failed-*.json")).read_text())
    assert record["leak_scan"]["status"] == "leak"
    assert {f["where"] for f in record["leak_scan"]["findings"]} >= {"layer"}
    assert record["tools"]["docker_server"].startswith("26.1.")
    assert bws.image_id(f"{bws.image}:v1.0.0") is None  # untagged on that daemon
    _assert_no_canary(bws, result.stdout, result.stderr)


def test_a_missing_context_fails_before_anything_is_built(bws: BuildWorkspace) -> None:
    containerfile = str(bws.containerfile("secret.Containerfile"))
    env = {"DOCKER_HOST": None, "DOCKER_CONTEXT": "ik-nowhere"}  # for this call only
    result = invoke("build", "-w", str(bws.root), "--containerfile", containerfile, env=env)
    assert result.exit_code == 4, result.stderr
    assert "docker context ik-nowhere (DOCKER_CONTEXT=ik-nowhere) does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (bws.root / "builds").exists()


# ---------------------------------------------------------------- the layered final stage


def test_the_layered_final_stage_builds_with_buildx_0_13_and_a_bump_changes_one_layer(
    docker26: str, tmp_path: Path, unique_name
) -> None:
    """The generated file's step stages, their layer lists and the final stage's one layer per
    repository (``RUN --mount=type=bind,from=bench-<app>``), through the built-in frontend of
    buildx 0.13: a change in the last step changes the last layer only, and the bench comes out
    as the steps left it (a file removed, the assets moved out of sites/)."""
    context = tmp_path / "context"
    debian_tools(context / "rootfs")
    (context / "imagekit-git").write_text(benchfile.helper_script())
    bench = benchfile.BENCH
    frappe = (
        f"mkdir -p {bench}/apps/frappe {bench}/sites/assets && echo one > {bench}/apps/frappe/f "
        f"&& ln -s {bench}/apps/frappe {bench}/sites/assets/frappe"
    )
    shop = f'cd {bench} && mkdir -p apps/shop && echo "$SHOP" > apps/shop/v && rm apps/frappe/f'
    tail = f"FROM base AS backend\n\n{layers.COPY_LINE}\nWORKDIR {bench}\n"
    text = (
        f"FROM {BUSYBOX} AS base\nCOPY rootfs/ /\n"
        f'RUN ["/bin/busybox", "ln", "-sf", "/usr/bin/dash", "/bin/sh"]\n\n'
        f"FROM base AS builder\nCOPY imagekit-git {benchfile.HELPER}\n\n"
        f"{layers.step_stage('frappe', 'builder')}"
        f"RUN sh {benchfile.HELPER} mark frappe && {frappe} && sh {benchfile.HELPER} layer frappe\n\n"
        f"{layers.step_stage('shop', layers.stage_name('frappe'))}ARG SHOP\n"
        f"RUN sh {benchfile.HELPER} mark shop && {shop} && sh {benchfile.HELPER} layer shop\n\n"
        + layers.final_stage(["frappe", "shop"], tail, benchfile.HELPER)
    )
    (context / "Containerfile").write_text(text)
    image = f"imagekit-test/{unique_name('layers26')}"
    found = {}
    try:
        for version in ("1", "2"):
            tag = f"{image}:v{version}"
            argv = [docker26, "buildx", "build", "--load", "--build-arg", f"SHOP={version}",
                    "-t", tag, "-f", str(context / "Containerfile"), str(context)]  # fmt: skip
            done = process.run(argv, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            found[version] = image_layers(docker26, tag, tmp_path)
        changed = changed_layers(found["1"], found["2"])
        assert len(changed) == 1 and "imagekit-git apply shop " in changed[0].made_by
        root = bench.lstrip("/")
        inside = sorted(p.removeprefix(root) for p in changed[0].paths if p.startswith(root))
        assert inside == ["", "/apps", "/apps/frappe", "/apps/frappe/.wh.f", "/apps/shop", "/apps/shop/v"]
        # outside the bench: the folders' own entries (BuildKit's mounts for /etc/hosts, the mount point)
        assert {p for p in changed[0].paths if not p.startswith(root)} <= {
            "etc", "home", "home/frappe", "tmp", "tmp/imagekit-step"
        }  # fmt: skip
        script = "cat apps/shop/v; test ! -e apps/frappe/f; test ! -e sites/assets; readlink assets/frappe"
        shown = dockerd.docker(docker26, "run", "--rm", f"{image}:v2", "sh", "-c", script).stdout
        assert shown.split() == ["2", f"{bench}/apps/frappe"]
    finally:
        for version in ("1", "2"):
            dockerd.docker(docker26, "rmi", "-f", f"{image}:v{version}", check=False, timeout=120)
