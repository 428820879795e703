"""The leak scan and dockerapi against the real daemon, with images built by BuildKit.

Each test Containerfile in tests/fixtures/containerfiles is built with
``DOCKER_BUILDKIT=1 docker build``; the canary token reaches the build only through the docker
process's environment (``--secret id=apps_json,env=VAR``, ``--build-arg NAME`` without value).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path

import pytest

from frappe_imagekit import dockerapi, process
from frappe_imagekit.build.containerfile import default_containerfile
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
        self.apps = json.dumps([{"url": f"https://{self.token}@github.com/org/app.git", "branch": "main"}])
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


def test_a_file_deleted_in_a_later_layer_is_still_found(built, canary, docker_daemon) -> None:
    tag = built("leaky-deleted.Containerfile")
    seen = dockerd.docker(docker_daemon, "run", "--rm", tag, "ls", "/opt/bench").stdout
    assert seen.strip() == ""  # gone from the container's view...
    result = findings_of(tag, canary)
    (finding,) = result.findings  # ...but the layer that wrote it still ships it
    assert finding.where == "layer" and finding.form == "raw"
    assert finding.location.startswith("layer 2/3 (sha256:")
    assert finding.location.endswith(" /opt/bench/apps.json")


def test_base64_wrapped_at_76_and_64_columns_and_crlf_is_found(built, canary) -> None:
    """`base64 apps.json > file` wraps at 76 columns: line breaks must not hide the token."""
    from frappe_imagekit.leakscan import Needles

    result = findings_of(built("leaky-base64-wrapped.Containerfile"), canary)
    assert sorted((f.where, f.form, f.location.rsplit(" ", 1)[-1]) for f in result.findings) == [
        ("layer", "base64", "/opt/b64-64"),
        ("layer", "base64", "/opt/b64-76"),
        ("layer", "base64", "/opt/b64-crlf"),
    ]
    text = json.dumps(result.to_dict())
    for atom, _kind in Needles.from_forms(canary.redactor.forms).atoms:  # not even a piece
        assert atom.decode() not in text


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

CLONE_CLEANUP = 'find apps -mindepth 1 -path "*/.git" | xargs rm -fr'


@pytest.fixture
def fake_python_base(docker_daemon, busybox_image, unique_name, cleanup_images):
    """``python:<version>-slim-bookworm`` made of busybox and stub tools; returns <version>."""
    version = unique_name("py")
    tag = f"python:{version}-slim-bookworm"
    cleanup_images.append(tag)
    toolchain = FIXTURES / "fake-toolchain"
    argv = [docker_daemon, "build", "-q", "-t", tag, "-f", str(toolchain / "Containerfile")]
    done = process.run([*argv, str(toolchain)], env={"DOCKER_BUILDKIT": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return version


def build_production(docker_cli, containerfile: Path, version, tag, canary, context, *extra: str) -> None:
    argv = [
        docker_cli, "build", "--progress=plain", "-f", str(containerfile), "-t", tag,
        "--build-arg", f"PYTHON_VERSION={version}",
        "--build-arg", "FRAPPE_PATH=https://github.com/frappe/frappe",
        "--build-arg", "FRAPPE_BRANCH=version-15",
        "--build-arg", f"CACHE_BUST={secrets.token_hex(8)}",  # the secret is not in the cache key
        "--secret", f"id=apps_json,env={APPS_ENV}", *extra, str(context),
    ]  # fmt: skip
    done = process.run(argv, env=canary.env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert canary.token not in done.stdout + done.stderr


def test_production_containerfile_end_to_end_with_stub_tools(
    docker_daemon, fake_python_base, unique_name, cleanup_images, canary, tmp_path
) -> None:
    """The whole production Containerfile runs (stub tools instead of the internet): apps.json
    reaches bench, the final image runs as frappe, and the leak scan finds nothing, although
    bench wrote the token into .git/config and logs/bench.log inside the RUN."""
    tag = f"{unique_name('production')}:1"
    cleanup_images.append(tag)
    build_production(docker_daemon, default_containerfile(), fake_python_base, tag, canary, tmp_path)

    script = (
        "cat sites/apps.txt; cat sites/common_site_config.json; find apps -name .git | wc -l;"
        " ls logs | wc -l; stat -c %u /home/frappe/.cache; id -un; pwd"
    )
    seen = dockerd.docker(docker_daemon, "run", "--rm", tag, "sh", "-c", script).stdout.split()
    assert seen == ["frappe", "app", "{}", "0", "0", "1000", "frappe", "/home/frappe/frappe-bench"]
    config = dockerapi.inspect_image(tag)["Config"]
    assert config["User"] == "frappe"
    assert config["Entrypoint"] == ["/usr/local/bin/imagekit-entrypoint.sh"]
    assert config["Cmd"] == ["/usr/local/bin/gunicorn-start.sh"]
    assert sorted(config["Volumes"]) == ["/home/frappe/frappe-bench/logs", "/home/frappe/frappe-bench/sites"]

    result = findings_of(tag, canary)
    assert result.clean, result.findings


def test_production_image_contract(
    docker_daemon, fake_python_base, unique_name, cleanup_images, canary, tmp_path
) -> None:
    """What upstream's image does since April 2026 and what a real v15 build needed: assets baked
    into the image and linked into the sites volume at every start (an old real sites/assets
    folder replaced), gunicorn tuned by GUNICORN_*, setuptools pinned below 81 in the bench
    venv, and the optional ca_certs secret trusted by every tool."""
    tag = f"{unique_name('production-contract')}:1"
    cleanup_images.append(tag)
    cert = tmp_path / "proxy-ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nimagekit-test-ca\n-----END CERTIFICATE-----\n")
    context = tmp_path / "context"
    context.mkdir()
    digest = hashlib.sha256(cert.read_bytes()).hexdigest()
    secret = ("--secret", f"id=ca_certs,src={cert}", "--build-arg", f"CA_CERTS_SHA256={digest}")
    build_production(docker_daemon, default_containerfile(), fake_python_base, tag, canary, context, *secret)

    volume = unique_name("sites")
    try:
        # an old stack's sites volume: sites/assets is a real (stale) folder
        mount = ("-v", f"{volume}:/home/frappe/frappe-bench/sites")
        run = [docker_daemon, "run", "--rm", *mount, tag]
        stale = ("run", "--rm", *mount, "--entrypoint", "sh", tag, "-c", "mkdir -p sites/assets/stale")
        dockerd.docker(docker_daemon, *stale)
        script = "readlink sites/assets; cat sites/assets/frappe/dist/desk.css; ls sites/assets"
        assert dockerd.docker(docker_daemon, *run[1:], "sh", "-c", script).stdout.split() == [
            "/home/frappe/frappe-bench/assets", "body{}", "assets.json", "frappe",
        ]  # fmt: skip
        # a second start on the same volume keeps the link
        again = dockerd.docker(docker_daemon, *run[1:], "readlink", "sites/assets").stdout.strip()
        assert again == "/home/frappe/frappe-bench/assets"
        gunicorn = dockerd.docker(docker_daemon, *run[1:3], "-e", "GUNICORN_WORKERS=5", *run[3:]).stdout
    finally:
        dockerd.docker(docker_daemon, "volume", "rm", "-f", volume, check=False)
    assert gunicorn.startswith("fake gunicorn --chdir=/home/frappe/frappe-bench/sites")
    assert "--workers=5 " in gunicorn and "--threads=4 " in gunicorn and "--timeout=120 " in gunicorn

    script = (
        "cat env/pip-calls; cat /usr/local/share/ca-certificates/imagekit-extra.crt;"
        " echo $SSL_CERT_FILE $NODE_EXTRA_CA_CERTS $PIP_CERT $GIT_SSL_CAINFO"
    )
    seen = dockerd.docker(docker_daemon, "run", "--rm", "--entrypoint", "sh", tag, "-c", script).stdout
    assert seen.splitlines() == [
        "-m pip install --quiet setuptools<81",
        *cert.read_text().splitlines(),
        " ".join(["/etc/ssl/certs/ca-certificates.crt"] * 4),
    ]
    assert findings_of(tag, canary).clean


def test_production_without_ca_certs_installs_none(
    docker_daemon, fake_python_base, unique_name, cleanup_images, canary, tmp_path
) -> None:
    tag = f"{unique_name('production-noca')}:1"
    cleanup_images.append(tag)
    build_production(docker_daemon, default_containerfile(), fake_python_base, tag, canary, tmp_path)
    script = "ls /usr/local/share/ca-certificates || echo none"
    probe = ["run", "--rm", "--entrypoint", "sh", tag, "-c", script]
    assert dockerd.docker(docker_daemon, *probe).stdout.split()[-1] == "none"


def test_production_without_the_git_cleanup_leaks(
    docker_daemon, fake_python_base, unique_name, cleanup_images, canary, tmp_path
) -> None:
    """Control for the test above: drop the .git deletion and the scan finds the clone URL."""
    text = default_containerfile().read_text()
    assert CLONE_CLEANUP in text
    leaky = tmp_path / "Containerfile.leaky"
    leaky.write_text(text.replace(f"&& {CLONE_CLEANUP} \\\n", ""))
    assert CLONE_CLEANUP not in leaky.read_text()
    tag = f"{unique_name('production-leaky')}:1"
    cleanup_images.append(tag)
    context = tmp_path / "context"
    context.mkdir()
    build_production(docker_daemon, leaky, fake_python_base, tag, canary, context)

    result = findings_of(tag, canary)
    paths = sorted(f.location.split(") ", 1)[1] for f in result.findings)
    assert paths == ["/home/frappe/frappe-bench/apps/app/.git/config"]
    (finding,) = result.findings
    assert finding.where == "layer" and finding.form == "raw"
    assert "url = https://***@github.com/org/app.git" in finding.detail


# --- the build fails on what the scan finds ----------------------------------------------------


def _apps_with_token_across_a_line_break(remotes: Path, private_url: str, token: str) -> list[dict]:
    """A public app first, its name padded so that the token's base64 in ``base64 apps.json``
    (76 columns) is cut by a line break: the case a plain search misses."""
    from frappe_imagekit.appsjson import inject
    from tests.support.githttp import make_remote

    for pad in range(80):
        public = {"url": (remotes / f"pub{'x' * pad}.git").as_uri(), "branch": "v0.0.4"}
        apps = [public, {"url": private_url, "branch": "v0.0.4"}]
        text = inject(apps, {"DE_MACRS_PAT": token}).text
        start = text.index(token) * 4 // 3  # where the token's base64 starts
        if 20 < (76 - start % 76) < 40:  # the break falls inside it
            make_remote(remotes, f"pub{'x' * pad}", tags=("v0.0.4",), annotated=(), branches=())
            return apps
    raise AssertionError("no padding puts a line break inside the token's base64")


def test_a_build_writing_wrapped_base64_of_apps_json_fails_with_exit_5(
    tmp_path: Path, docker_daemon, busybox_image, unique_name, monkeypatch
) -> None:
    from tests.support.cli import invoke
    from tests.support.githttp import make_remote
    from tests.support.workspace import make_workspace

    monkeypatch.setenv("IMAGEKIT_DOCKER", docker_daemon)
    remotes = tmp_path / "remotes"
    frappe = make_remote(remotes, "frappe", tags=(), annotated=(), branches=("version-15",))
    app = make_remote(remotes, "de_macrs", tags=("v0.0.4",), annotated=(), branches=())
    token = "ghp_" + secrets.token_hex(18)
    image = f"imagekit-test/{unique_name('wrapped')}"
    apps = _apps_with_token_across_a_line_break(remotes, "file://${DE_MACRS_PAT}@" + str(app.bare), token)
    root = make_workspace(
        tmp_path / "ws",
        env={"FRAPPE_PATH": frappe.url, "IMAGE_NAME": image, "DE_MACRS_PAT": token},
        apps=apps,
    )
    (root / ".dockerignore").write_text(".env\nbuilds\n")
    fixture = (
        Path(__file__).resolve().parents[1] / "fixtures" / "build" / "leaky-base64-wrapped.Containerfile"
    )
    containerfile = root / "leaky.Containerfile"
    containerfile.write_text(fixture.read_text().replace("@NONCE@", secrets.token_hex(8)))
    try:
        result = invoke("build", "-w", str(root), "--containerfile", str(containerfile))
        assert result.exit_code == 5, result.stderr
        assert "the leak scan found a secret" in result.stderr
        assert "base64 form of a secret in the content of /opt/b64" in result.stderr
        assert dockerd.image_tags(docker_daemon, image) == []  # nothing left under a tag
        assert not (root / "builds" / "v1.0.0.json").exists()
        for text in [result.stdout, result.stderr, *(p.read_text() for p in (root / "builds").iterdir())]:
            assert token not in text
    finally:
        for ref in dockerd.image_tags(docker_daemon, image):
            dockerd.docker(docker_daemon, "rmi", "-f", ref, check=False, timeout=120)
