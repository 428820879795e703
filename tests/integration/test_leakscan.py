"""The leak scan and dockerapi against the real daemon, with images built by BuildKit.

Each test Containerfile in tests/fixtures/containerfiles is built with
``DOCKER_BUILDKIT=1 docker build``; the canary token reaches the build only through the docker
process's environment (``--secret id=apps_json,env=VAR``, ``--build-arg NAME`` without value).
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from frappe_imagekit import dockerapi, process
from frappe_imagekit.containerfile import AppsJsonMode, default_containerfile, read_containerfile
from frappe_imagekit.errors import DockerError
from frappe_imagekit.leakscan import scan_image
from frappe_imagekit.redact import Redactor
from tests.support import dockerd

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "containerfiles"
APPS_ENV = "IK_LEAKSCAN_APPS_JSON"


class Canary:
    """A fresh token, the apps.json embedding it, and a redactor that knows both."""

    def __init__(self) -> None:
        self.token = "ghp_ikcanary" + secrets.token_hex(14)
        self.apps = json.dumps(
            [{"url": f"https://{self.token}@github.com/org/app.git", "branch": "main"}]
        )
        self.redactor = Redactor([self.token])
        self.redactor.add(self.apps, whole_document=True)

    def env(self) -> dict[str, str]:
        return {
            "DOCKER_BUILDKIT": "1",
            APPS_ENV: self.apps,
            "APPS_JSON_BASE64": base64.b64encode(self.apps.encode()).decode(),
            "GIT_TOKEN": self.token,
        }


def build(docker_cli: str, fixture: str, tag: str, canary: Canary, context: Path) -> None:
    argv = [
        docker_cli, "build", "--progress=plain", "-f", str(FIXTURES / fixture), "-t", tag,
        "--secret", f"id=apps_json,env={APPS_ENV}",
        # A secret is not part of the cache key: a cached step would hold an older canary.
        "--no-cache",
    ]  # fmt: skip
    text = (FIXTURES / fixture).read_text()
    for arg in ("APPS_JSON_BASE64", "GIT_TOKEN"):
        if f"ARG {arg}" in text:
            argv += ["--build-arg", arg]  # the value comes from the environment
    argv.append(str(context))
    assert canary.token not in " ".join(argv)
    done = process.run(argv, env=canary.env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def canary() -> Canary:
    return Canary()


@pytest.fixture
def built(docker_daemon, busybox_image, unique_name, cleanup_images, canary, tmp_path):
    """``built("leaky-copy.Containerfile") -> tag`` of the image built from that fixture."""

    def make(fixture: str) -> str:
        tag = f"{unique_name('leakscan')}:1"
        cleanup_images.append(tag)
        build(docker_daemon, fixture, tag, canary, tmp_path)
        return tag

    return make


def findings_of(tag: str, canary: Canary):
    result = scan_image(tag, canary.redactor)
    text = json.dumps(result.to_dict())
    assert canary.token not in text
    for form in canary.redactor.forms:
        assert form not in text
    return result


def test_clean_image_scans_clean(built, canary) -> None:
    tag = built("clean.Containerfile")
    result = findings_of(tag, canary)
    assert result.clean, result.findings
    assert result.to_dict()["status"] == "clean"
    assert result.layers == 2  # busybox + the RUN
    assert result.bytes_scanned > 1_000_000  # the whole busybox layer went through the scan


def test_apps_json_copied_into_the_final_stage(built, canary) -> None:
    result = findings_of(built("leaky-copy.Containerfile"), canary)
    assert [(f.where, f.form) for f in result.findings] == [("layer", "raw")]
    (finding,) = result.findings
    assert finding.location.startswith("layer 2/2 (sha256:")
    assert finding.location.endswith(" /home/frappe/apps.json")
    assert "the content of /home/frappe/apps.json" in finding.detail
    assert "COPY /tmp/apps.json /home/frappe/apps.json" in finding.detail
    assert finding.detail.endswith("***")  # the whole apps.json is one masked form


def test_a_file_deleted_in_a_later_layer_is_still_found(built, canary) -> None:
    tag = built("leaky-deleted.Containerfile")
    seen = dockerd.docker("/usr/bin/docker", "run", "--rm", tag, "ls", "/opt/bench").stdout
    assert seen.strip() == ""  # gone from the container's view...
    result = findings_of(tag, canary)
    (finding,) = result.findings  # ...but the layer that wrote it still ships it
    assert finding.where == "layer" and finding.form == "raw"
    assert finding.location.startswith("layer 2/3 (sha256:")
    assert finding.location.endswith(" /opt/bench/apps.json")


def test_base64_build_arg_used_in_the_final_stage(built, canary) -> None:
    tag = built("leaky-buildarg.Containerfile")
    result = findings_of(tag, canary)
    history = [f for f in result.findings if f.where == "history"]
    assert [(f.location, f.form) for f in history] == [
        ("history line 1 (docker history --no-trunc, newest first)", "base64")
    ]
    assert "RUN |1 APPS_JSON_BASE64=*** /bin/sh -c" in history[0].detail
    assert {f.where for f in result.findings} <= {"history", "config"}


def test_token_in_env_and_label(built, canary) -> None:
    result = findings_of(built("leaky-env-label.Containerfile"), canary)
    by_where = {(f.where, f.location) for f in result.findings}
    assert ("env", "GIT_TOKEN") in by_where
    assert ("label", "de.desiredeffect.token") in by_where
    assert {f.form for f in result.findings} == {"raw"}
    env = next(f for f in result.findings if f.where == "env")
    assert env.detail == "raw form of a secret in ENV GIT_TOKEN: GIT_TOKEN=***"


# --- dockerapi ---------------------------------------------------------------------------


def test_dockerapi_against_the_daemon(built, unique_name, cleanup_images) -> None:
    tag = built("clean.Containerfile")
    assert dockerapi.server_version().split(".")[0].isdigit()
    attrs = dockerapi.inspect_image(tag)
    assert attrs is not None and tag in attrs["RepoTags"]
    assert dockerapi.image_exists(tag)
    assert dockerapi.inspect_image(f"{unique_name('absent')}:1") is None
    history = dockerapi.image_history(tag)
    assert "apps-json-size" in history[1]["CreatedBy"]
    extra = unique_name("leakscan-tag")
    cleanup_images.append(f"{extra}:two")
    dockerapi.tag_image(attrs["Id"], extra, "two")
    assert dockerapi.inspect_image(f"{extra}:two")["Id"] == attrs["Id"]
    dockerapi.remove_tag(f"{extra}:two")
    assert not dockerapi.image_exists(f"{extra}:two")
    assert dockerapi.image_exists(tag)  # untagging one name keeps the image
    head = next(dockerapi.save_stream(tag))
    assert head[257:262] == b"ustar"


def test_dockerapi_errors_name_the_fix(tmp_path: Path, unique_name) -> None:
    dead = f"unix://{tmp_path}/nothing.sock"
    with pytest.raises(DockerError) as caught:
        dockerapi.client(dead)
    assert str(caught.value) == (
        f"the Docker daemon does not answer at {dead}: start it "
        "(sudo systemctl start docker) or set DOCKER_HOST"
    )
    missing = f"{unique_name('absent')}:1"
    with pytest.raises(DockerError, match=f"docker history {missing} failed: the image does not"):
        dockerapi.image_history(missing)
    with pytest.raises(DockerError, match=f"cannot scan {missing}: the image does not exist"):
        scan_image(missing, Redactor(["some-secret-value"]))


# --- the production Containerfile ----------------------------------------------------------


def test_buildkit_accepts_the_production_containerfile(
    docker_daemon, busybox_image, unique_name, tmp_path
) -> None:
    """BuildKit's built-in frontend parses all of it (mounts, stages, ARGs); without internet it
    can only fail at the first command, never at parsing."""
    parsed = read_containerfile(default_containerfile())
    assert parsed.apps_json_mode is AppsJsonMode.SECRET
    version = unique_name("py")  # FROM python:<version>-slim-bookworm, made from busybox
    base = f"python:{version}-slim-bookworm"
    dockerd.docker(docker_daemon, "tag", busybox_image, base)
    argv = [
        docker_daemon, "build", "--progress=plain", "-f", str(default_containerfile()),
        "--build-arg", f"PYTHON_VERSION={version}", "--build-arg", "CACHE_BUST=abc",
        "--secret", f"id=apps_json,env={APPS_ENV}", str(tmp_path),
    ]  # fmt: skip
    try:
        env = {"DOCKER_BUILDKIT": "1", APPS_ENV: "[]"}
        done = process.run(argv, env=env, timeout=300)
    finally:
        dockerd.docker(docker_daemon, "rmi", base, check=False)
    assert done.returncode != 0
    assert "useradd: not found" in done.stderr  # the first RUN ran: everything parsed
    assert "parse" not in done.stderr.lower() and "unknown instruction" not in done.stderr
