"""`imagekit build` against the real daemon, BuildKit, and git remotes in tmp_path.

Each test gets its own workspace: a frappe remote (branch version-15), an app on a release tag whose
URL carries ``${DE_MACRS_PAT}`` (a random canary token), and an app following a moving branch.
The test Containerfiles live in tests/fixtures/build/ and keep only sha256 of apps.json in the
image, never apps.json or the token.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from frappe_imagekit import dockercli, process
from frappe_imagekit.appsjson import inject
from frappe_imagekit.build.plan import fingerprint
from tests.support import dockerd
from tests.support.cli import invoke
from tests.support.githttp import Remote, git, make_remote
from tests.support.workspace import make_workspace

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "build"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class BuildWorkspace:
    root: Path
    frappe: Remote
    app: Remote
    moving: Remote
    image: str
    canary: str
    nonce: str
    docker: str

    def containerfile(self, name: str, *, sleep: bool = False) -> Path:
        """Copy a fixture Containerfile into the workspace, unique to this test (own cache)."""
        text = (FIXTURES / name).read_text().replace("@NONCE@", self.nonce)
        target = self.root / name
        target.write_text(text.replace("@SLEEP@", "&& sleep 2" if sleep else ""))
        return target

    def set_version(self, version: str) -> None:
        env = self.root / ".env"
        env.write_text(re.sub(r"(?m)^DE_SITE_VERSION=.*$", f"DE_SITE_VERSION={version}", env.read_text()))

    def apps(self) -> list[dict[str, str]]:
        return json.loads((self.root / "apps.json").read_text())

    def injected_sha256(self) -> str:
        text = inject(self.apps(), {"DE_MACRS_PAT": self.canary}).text
        return hashlib.sha256(text.encode()).hexdigest()

    def manifest(self, version: str) -> dict:
        return json.loads((self.root / "builds" / f"{version}.json").read_text())

    def image_id(self, ref: str) -> str | None:
        done = dockerd.docker(self.docker, "image", "inspect", "--format", "{{.Id}}", ref,
                              check=False, timeout=60)  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else None

    def cat(self, ref: str, path: str) -> str:
        return dockerd.image_file(self.docker, ref, path)

    def tags(self) -> list[str]:
        return dockerd.image_tags(self.docker, self.image)


def build_workspace(tmp_path: Path, docker: str, name: str) -> Iterator[BuildWorkspace]:
    """A build workspace (remotes, .env with a canary token, apps.json) whose images ``docker``
    removes afterwards; the ``bws`` fixtures of this file and of test_build_docker26.py."""
    remotes = tmp_path / "remotes"
    frappe = make_remote(remotes, "frappe", tags=(), annotated=(), branches=("version-15",))
    app = make_remote(remotes, "de_macrs", tags=("v0.0.4",), annotated=("v0.0.4",), branches=())
    moving = make_remote(remotes, "de_customs", tags=(), annotated=(), branches=("develop",))
    canary = "ghp_" + secrets.token_hex(18)
    image = f"imagekit-test/{name}"
    root = make_workspace(
        tmp_path / "ws",
        env={"FRAPPE_PATH": frappe.url, "IMAGE_NAME": image, "DE_MACRS_PAT": canary},
        apps=[
            {"url": "file://${DE_MACRS_PAT}@" + str(app.bare), "branch": "v0.0.4"},
            {"url": moving.url, "branch": "develop"},
        ],
    )
    (root / ".dockerignore").write_text(".env\nbuilds\n")
    ws = BuildWorkspace(root, frappe, app, moving, image, canary, name, docker)
    yield ws
    for ref in ws.tags():
        dockerd.docker(docker, "rmi", "-f", ref, check=False, timeout=120)


@pytest.fixture
def bws(
    tmp_path: Path, busybox_image: str, docker_daemon: str, unique_name, monkeypatch
) -> Iterator[BuildWorkspace]:
    monkeypatch.setenv("IMAGEKIT_DOCKER", docker_daemon)
    yield from build_workspace(tmp_path, docker_daemon, unique_name("build"))


def _assert_no_canary(ws: BuildWorkspace, *texts: str) -> None:
    for text in texts:
        assert ws.canary not in text
    for path in (ws.root / "builds").iterdir():
        assert ws.canary not in path.read_text(errors="replace"), path.name


def _cached_steps(log: str) -> dict[str, bool]:
    """BuildKit plain output: step title -> whether it was CACHED."""
    titles: dict[str, str] = {}
    cached: set[str] = set()
    for line in log.splitlines():
        if match := re.match(r"#(\d+) (\[.*)$", line):
            titles.setdefault(match.group(1), match.group(2))
        elif match := re.match(r"#(\d+) CACHED$", line):
            cached.add(match.group(1))
    return {title: number in cached for number, title in titles.items()}


def _step(steps: dict[str, bool], needle: str) -> bool:
    found = [cached for title, cached in steps.items() if needle in title]
    assert len(found) == 1, (needle, steps)
    return found[0]


class ProcWatch(threading.Thread):
    """Reads every /proc/<pid>/cmdline while a build runs: the canary must never be there.

    ``docker_builds`` collects the docker build processes that write ``iidfile``: a path in this
    test's workspace, so builds of other tests running in parallel are never taken for its own."""

    def __init__(self, canary: str, iidfile: Path) -> None:
        super().__init__(daemon=True)
        self.canary, self.tag = canary.encode(), str(iidfile).encode()
        self.hits: list[str] = []
        self.docker_builds: set[int] = set()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if self.canary in cmdline:
                    self.hits.append(cmdline.decode(errors="replace"))
                if b"\0build\0" in cmdline and self.tag in cmdline and b"docker" in cmdline:
                    self.docker_builds.add(int(pid))
            time.sleep(0.02)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed buildx plugin is reparented to PID 1, which may never
    reap it here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- secret mode, end to end


def test_secret_build_reaches_apps_json_and_the_token_is_nowhere(bws: BuildWorkspace) -> None:
    containerfile = bws.containerfile("secret.Containerfile", sleep=True)
    watch = ProcWatch(bws.canary, bws.root / "builds" / ".v1.0.0.iid")  # untagged build: tag after scan
    watch.start()
    try:
        done = process.run(
            [sys.executable, "-m", "frappe_imagekit", "build", "-w", str(bws.root),
             "--containerfile", str(containerfile), "--progress", "plain"],
            cwd=str(ROOT), timeout=180,
        )  # fmt: skip
    finally:
        watch.stop()

    assert done.returncode == 0, done.stderr
    assert watch.docker_builds, "the docker build process was never seen in /proc"
    assert watch.hits == []
    ref = f"{bws.image}:v1.0.0"
    assert bws.cat(ref, "/apps.sha256").split()[0] == bws.injected_sha256()
    manifest = bws.manifest("v1.0.0")
    assert manifest["status"] == "succeeded"
    assert manifest["image"]["ref"] == ref and manifest["image"]["id"] == bws.image_id(ref)
    assert manifest["frappe"]["sha"] == bws.frappe.branches["version-15"]
    assert [(a["name"], a["ref"], a["sha"]) for a in manifest["apps"]] == [
        ("de_macrs", "v0.0.4", bws.app.tags["v0.0.4"]),
        ("de_customs", "develop", bws.moving.branches["develop"]),
    ]
    # the placeholder names the token a rebuild needs; the token itself is never stored
    assert manifest["apps"][0]["url"] == "file://${DE_MACRS_PAT}@" + str(bws.app.bare)
    assert (
        manifest["build_args"]["CACHE_BUST"]
        == manifest["fingerprint"]
        == fingerprint(bws.frappe.branches["version-15"], manifest["apps"])
    )
    assert manifest["containerfile"]["apps_json_mode"] == "secret"
    server = manifest["tools"]["docker_server"]
    if dockercli.probe(bws.docker)[0].mode == dockercli.BUILDX:  # Debian 13: CLI 26 + buildx
        assert manifest["tools"]["buildkit"].startswith("github.com/docker/buildx ")
        assert manifest["tools"]["builder"] == "docker buildx build"
    else:  # Debian 12: CLI 20.10 and the BuildKit inside dockerd
        assert manifest["tools"]["buildkit"] == f"BuildKit built into dockerd {server}"
        assert manifest["tools"]["builder"] == "docker build (BuildKit)"
    assert manifest["containerfile"]["content"] == containerfile.read_text()
    assert manifest["leak_scan"]["status"] == "clean"
    labels = json.loads(
        dockerd.docker(
            bws.docker, "image", "inspect", "--format", "{{json .Config.Labels}}", ref
        ).stdout  # fmt: skip
    )
    assert labels["org.opencontainers.image.version"] == "v1.0.0"
    assert labels["org.opencontainers.image.base.name"] == "imagekit-test/busybox:1"
    assert labels["io.imagekit.fingerprint"] == manifest["fingerprint"]
    assert json.loads(labels["io.imagekit.apps"])[0] == {
        "name": "frappe", "ref": "version-15", "sha": bws.frappe.branches["version-15"],
    }  # fmt: skip
    log = (bws.root / "builds" / "v1.0.0.log").read_text()
    assert "bench init" in log and "writing image" in log
    assert "Built " + ref in done.stdout
    # progress (issue 24 item 4): plain lines on stderr, the steps named from the Containerfile
    # (a one-stage file: BuildKit shows no stage name, `#4 [1/3] FROM ...`). Each step BuildKit
    # printed (its log, builds/v1.0.0.log) is reported; once in a full suite run the base image's
    # step was not, and the log of that run was gone: the messages now keep both texts whole.
    shown = re.findall(r"^#\d+ \[(\d)/3\] (\S+)", log, re.M)
    assert {("1", "FROM"), ("3", "RUN")} <= set(shown), log
    for index, keyword in shown:
        detail = "base image" if keyword == "FROM" else keyword
        line = f"progress: step {index}/3 started: {detail}"
        assert line in done.stderr, f"{line!r} is not in stderr:\n{done.stderr}\nbuild log:\n{log}"
    assert 'progress: step 3/3 started: RUN echo "bench init ' + bws.nonce in done.stderr
    assert re.search(r"^progress: step 3/3 done in [2-9]\.\d s$", done.stderr, re.M)  # sleep 2
    assert re.search(r"^progress: leak scan done in \d+\.\d s$", done.stderr, re.M)
    assert "#" not in done.stderr  # BuildKit's own lines are in builds/v1.0.0.log only
    _assert_no_canary(bws, done.stdout, done.stderr)


# ---------------------------------------------------------------- build-arg mode


def test_base64_mode_reaches_the_build_and_warns_about_history(bws: BuildWorkspace) -> None:
    containerfile = bws.containerfile("base64.Containerfile")

    result = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile), "--json")

    assert result.exit_code == 0, result.stderr
    assert "stores the token in the image history" in result.stderr
    assert "RUN --mount=type=secret,id=apps_json" in result.stderr
    manifest = json.loads(result.stdout)
    assert manifest == bws.manifest("v1.0.0")
    assert manifest["containerfile"]["apps_json_mode"] == "build-arg"
    assert bws.cat(f"{bws.image}:v1.0.0", "/apps.sha256").split()[0] == bws.injected_sha256()
    _assert_no_canary(bws, result.stdout, result.stderr)


def test_a_containerfile_that_never_reads_apps_json_is_refused(bws: BuildWorkspace) -> None:
    containerfile = bws.containerfile("no-apps.Containerfile")
    result = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile))
    assert result.exit_code == 1
    assert "this Containerfile never reads apps.json" in result.stderr
    assert bws.tags() == []


def test_dry_run_prints_the_plan_and_builds_nothing(bws: BuildWorkspace) -> None:
    containerfile = bws.containerfile("secret.Containerfile")
    result = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile),
                    "--dry-run")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "--secret id=apps_json,env=IMAGEKIT_APPS_JSON" in result.stdout
    assert f"Plan: build {bws.image}:v1.0.0" in result.stdout
    assert "--tag" not in result.stdout  # the tag is given after a clean leak scan, not by the build
    assert bws.tags() == [] and not (bws.root / "builds").exists()
    assert bws.canary not in result.stdout + result.stderr


# ---------------------------------------------------------------- tag guard


def test_tag_guard_refuses_and_force_keeps_the_old_image(bws: BuildWorkspace) -> None:
    containerfile = str(bws.containerfile("secret.Containerfile"))
    first = invoke("build", "-w", str(bws.root), "--containerfile", containerfile)
    assert first.exit_code == 0, first.stderr
    old_id = bws.image_id(f"{bws.image}:v1.0.0")

    again = invoke("build", "-w", str(bws.root), "--containerfile", containerfile)
    assert again.exit_code == 6
    assert f"{bws.image}:v1.0.0 exists locally" in again.stderr
    assert "DE_SITE_VERSION=v1.0.1" in again.stderr

    forced = invoke("build", "-w", str(bws.root), "--containerfile", containerfile, "--force",
                    "--no-cache")  # fmt: skip
    assert forced.exit_code == 0, forced.stderr
    kept = f"{bws.image}:v1.0.0-replaced-{old_id.removeprefix('sha256:')[:12]}"
    assert bws.image_id(kept) == old_id
    new = bws.manifest("v1.0.0")
    assert new["image"]["replaced"] == kept
    assert bws.image_id(f"{bws.image}:v1.0.0") == new["image"]["id"] != old_id
    retired = list((bws.root / "builds").glob("v1.0.0.replaced-*.json"))
    assert len(retired) == 1
    assert json.loads(retired[0].read_text())["status"] == "replaced"


def test_history_alone_also_guards_the_version(bws: BuildWorkspace) -> None:
    containerfile = str(bws.containerfile("secret.Containerfile"))
    assert invoke("build", "-w", str(bws.root), "--containerfile", containerfile).exit_code == 0
    dockerd.docker(bws.docker, "rmi", f"{bws.image}:v1.0.0", timeout=60)
    again = invoke("build", "-w", str(bws.root), "--containerfile", containerfile)
    assert again.exit_code == 6
    assert "is in the build history" in again.stderr and "v1.0.1" in again.stderr


# ---------------------------------------------------------------- CACHE_BUST


def test_cache_bust_reruns_bench_init_only_when_a_sha_moves(bws: BuildWorkspace) -> None:
    containerfile = str(bws.containerfile("secret.Containerfile"))

    def build(version: str) -> dict[str, bool]:
        bws.set_version(version)
        result = invoke("build", "-w", str(bws.root), "--containerfile", containerfile)
        assert result.exit_code == 0, result.stderr
        return _cached_steps((bws.root / "builds" / f"{version}.log").read_text())

    first = build("v1.0.0")
    assert _step(first, "bench init") is False
    second = build("v1.0.1")
    assert _step(second, "early step") is True and _step(second, "bench init") is True
    assert bws.manifest("v1.0.1")["fingerprint"] == bws.manifest("v1.0.0")["fingerprint"]

    moved = bws.moving.commit("upstream moved", branch="develop")
    third = build("v1.0.2")

    assert _step(third, "early step") is True
    assert _step(third, "bench init") is False
    manifest = bws.manifest("v1.0.2")
    assert manifest["apps"][1]["sha"] == moved
    assert manifest["fingerprint"] != bws.manifest("v1.0.1")["fingerprint"]
    assert manifest["build_args"]["CACHE_BUST"] == manifest["fingerprint"]


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("name", ["leaky-copy.Containerfile", "leaky-arg.Containerfile"])
def test_a_leaky_containerfile_fails_the_build_and_loses_its_tag(bws: BuildWorkspace, name: str) -> None:
    containerfile = bws.containerfile(name)
    result = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile))

    assert result.exit_code == 5, result.stderr
    assert "the leak scan found a secret" in result.stderr
    assert bws.image_id(f"{bws.image}:v1.0.0") is None
    assert not (bws.root / "builds" / "v1.0.0.json").exists()  # the version is not reserved
    failed = list((bws.root / "builds").glob("v1.0.0.failed-*.json"))
    assert len(failed) == 1
    record = json.loads(failed[0].read_text())
    assert record["status"] == "failed" and record["leak_scan"]["status"] == "leak"
    assert record["leak_scan"]["findings"]
    _assert_no_canary(bws, result.stdout, result.stderr)


def test_a_failing_build_leaves_a_failed_record_and_frees_the_version(bws: BuildWorkspace) -> None:
    containerfile = bws.root / "broken.Containerfile"
    containerfile.write_text(
        "FROM imagekit-test/busybox:1\nARG CACHE_BUST\n"
        f"RUN --mount=type=secret,id=apps_json,target=/a.json echo {bws.nonce} && false\n"
    )
    result = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile))

    assert result.exit_code == 4
    assert "docker build of" in result.stderr and "failed (exit 1)" in result.stderr
    failed = list((bws.root / "builds").glob("v1.0.0.failed-*.json"))
    assert len(failed) == 1
    record = json.loads(failed[0].read_text())
    assert record["status"] == "failed" and "failed (exit 1)" in record["error"]
    assert (bws.root / "builds" / record["log_file"]).exists()
    assert f"read builds/{record['log_file']} and fix" in result.stderr
    assert not (bws.root / "builds" / "v1.0.0.json").exists()
    containerfile.write_text(containerfile.read_text().replace(" && false", ""))
    retry = invoke("build", "-w", str(bws.root), "--containerfile", str(containerfile))
    assert retry.exit_code == 0, retry.stderr
    _assert_no_canary(bws, result.stdout, result.stderr)


# ---------------------------------------------------------------- leak-scan layer cache


def test_known_clean_layers_skip_the_layer_scan_but_never_the_metadata(
    bws: BuildWorkspace,
) -> None:
    containerfile = str(bws.containerfile("secret.Containerfile"))
    assert invoke("build", "-w", str(bws.root), "--containerfile", containerfile).exit_code == 0
    assert bws.manifest("v1.0.0")["leak_scan"]["layers_from_cache"] == 0
    bws.set_version("v1.0.1")
    assert invoke("build", "-w", str(bws.root), "--containerfile", containerfile).exit_code == 0
    cached = bws.manifest("v1.0.1")["leak_scan"]
    assert cached["status"] == "clean" and cached["layers_from_cache"] == 3  # base + 2 RUN

    bws.set_version("v1.0.2")
    leaky = bws.containerfile("leaky-env.Containerfile")
    result = invoke("build", "-w", str(bws.root), "--containerfile", str(leaky))

    assert result.exit_code == 5, result.stderr
    record = json.loads(next((bws.root / "builds").glob("v1.0.2.failed-*.json")).read_text())
    assert record["leak_scan"]["layers_from_cache"] == 1  # only the base layer, known clean
    assert "env" in {finding["where"] for finding in record["leak_scan"]["findings"]}
    assert bws.image_id(f"{bws.image}:v1.0.2") is None
    _assert_no_canary(bws, result.stdout, result.stderr)


# ---------------------------------------------------------------- interruption, workspace, .env


def test_ctrl_c_during_the_build_records_it_and_tags_nothing(bws: BuildWorkspace) -> None:
    containerfile = bws.containerfile("secret.Containerfile", sleep=True)
    argv = [sys.executable, "-m", "frappe_imagekit", "build", "-w", str(bws.root),
            "--containerfile", str(containerfile), "--progress", "plain"]  # fmt: skip
    watch = ProcWatch(bws.canary, bws.root / "builds" / ".v1.0.0.iid")  # untagged build: tag after scan
    watch.start()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180  # a wait for an event, not a time limit
        while not watch.docker_builds and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watch.docker_builds, "the docker build never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        watch.stop()
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr
    record = json.loads(next((bws.root / "builds").glob("v1.0.0.failed-*.json")).read_text())
    assert record["status"] == "failed" and record["error"] == "interrupted"
    assert not (bws.root / "builds" / "v1.0.0.json").exists()
    assert bws.image_id(f"{bws.image}:v1.0.0") is None
    assert not any(_running(pid) for pid in watch.docker_builds)
    _assert_no_canary(bws, stdout.decode(), stderr.decode())


def test_workspace_commit_and_env_containerfile_reach_labels_and_manifest(
    bws: BuildWorkspace,
) -> None:
    bws.containerfile("base64.Containerfile")
    with (bws.root / ".env").open("a") as env:
        env.write("CONTAINERFILE=base64.Containerfile\n")
    (bws.root / ".gitignore").write_text(".env\nbuilds/\n")
    git("init", "-q", "-b", "main", cwd=bws.root)
    git("add", ".", cwd=bws.root)
    git("commit", "-q", "-m", "workspace", cwd=bws.root)
    commit = git("rev-parse", "HEAD", cwd=bws.root)

    result = invoke("build", "-w", str(bws.root))

    assert result.exit_code == 0, result.stderr
    manifest = bws.manifest("v1.0.0")
    assert manifest["containerfile"]["path"] == str(bws.root / "base64.Containerfile")
    assert manifest["workspace"] == {"git_commit": commit, "dirty": False}
    labels = json.loads(
        dockerd.docker(
            bws.docker,
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            f"{bws.image}:v1.0.0",
        ).stdout  # fmt: skip
    )
    assert labels["org.opencontainers.image.revision"] == commit


PEM = "-----BEGIN CERTIFICATE-----\nMIIBimagekittestca\n-----END CERTIFICATE-----\n"


def test_ca_certs_file_reaches_the_build_and_changed_certs_rerun_the_step(bws: BuildWorkspace) -> None:
    """CA_CERTS_FILE: the PEM reaches the ca_certs secret mount, CA_CERTS_SHA256 keys the step,
    so new certificates are installed although a secret is not part of the cache key."""
    containerfile = bws.containerfile("ca-certs.Containerfile")
    (bws.root / "certs").mkdir()
    (bws.root / "certs" / "proxy.pem").write_text(PEM)
    with (bws.root / ".env").open("a") as env:
        env.write(f"CONTAINERFILE={containerfile.name}\nCA_CERTS_FILE=certs/proxy.pem\n")
    result = invoke("build", "-w", str(bws.root))
    assert result.exit_code == 0, result.stderr
    ref = f"{bws.image}:v1.0.0"
    assert bws.cat(ref, "/ca.crt") == PEM
    assert bws.cat(ref, "/ca.key").split()[1] == hashlib.sha256(PEM.encode()).hexdigest()
    assert bws.manifest("v1.0.0")["build_args"]["CA_CERTS_SHA256"] == hashlib.sha256(PEM.encode()).hexdigest()

    newer = PEM.replace("imagekittestca", "imagekitnewerca")
    (bws.root / "certs" / "proxy.pem").write_text(newer)
    bws.set_version("v1.0.1")
    assert invoke("build", "-w", str(bws.root)).exit_code == 0
    assert bws.cat(f"{bws.image}:v1.0.1", "/ca.crt") == newer
