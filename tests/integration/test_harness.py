"""The harness works: a daemon answers and a BuildKit build takes a secret from the environment.

Later issues build on exactly this: ``RUN --mount=type=secret`` fed by ``--secret id=X,env=VAR``
with the value only in the docker process's environment, never in argv, history or layers.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import pytest

from frappe_imagekit import process
from frappe_imagekit.redact import Redactor
from tests.support import dockerd

pytestmark = pytest.mark.integration

SECRET_ENV = "IK_HARNESS_APPS_JSON"
CONTAINERFILE = """\
# syntax-free on purpose: no frontend image can be pulled here
FROM {base}
RUN --mount=type=secret,id=apps_json,target=/opt/apps.json cat /opt/apps.json | sha256sum > /hash
"""


def test_busybox_image_has_the_promised_rootfs(docker_daemon: str, busybox_image: str) -> None:
    script = "id -u frappe; id -g frappe; echo ~frappe; test -d /tmp && echo tmp; ls /bin/sh"
    done = dockerd.docker(docker_daemon, "run", "--rm", busybox_image, "sh", "-c", script)
    assert done.stdout.split() == ["1000", "1000", "/home/frappe", "tmp", "/bin/sh"]


def test_buildkit_secret_reaches_the_build_and_nothing_else(
    docker_daemon: str,
    busybox_image: str,
    unique_name,
    cleanup_images: list[str],
    tmp_path: Path,
) -> None:
    canary = "ghp_" + secrets.token_hex(18)
    apps_json = json.dumps([{"url": f"https://{canary}@github.com/acme/app.git", "branch": "main"}])
    (tmp_path / "Containerfile").write_text(CONTAINERFILE.format(base=busybox_image))
    image = f"{unique_name('harness')}:test"
    cleanup_images.append(image)
    argv = [
        docker_daemon, "build", "--no-cache", "--progress=plain",
        "--secret", f"id=apps_json,env={SECRET_ENV}",
        "-f", str(tmp_path / "Containerfile"), "-t", image, str(tmp_path),
    ]  # fmt: skip
    assert canary not in " ".join(argv)

    built = process.run(argv, env={"DOCKER_BUILDKIT": "1", SECRET_ENV: apps_json}, timeout=120)

    assert built.returncode == 0, built.stderr
    inside = dockerd.docker(docker_daemon, "run", "--rm", image, "cat", "/hash").stdout
    assert inside.split()[0] == hashlib.sha256(apps_json.encode()).hexdigest()
    redactor = Redactor([canary])  # also catches its URL-encoded and base64 forms
    history = dockerd.docker(docker_daemon, "history", "--no-trunc", image).stdout
    saved = dockerd.docker(docker_daemon, "save", image, timeout=120).stdout
    for where, text in (("build output", built.stdout + built.stderr), ("history", history)):
        assert redactor.redact(text) == text, f"canary leaked into {where}"
    assert len(saved) > 1_000_000  # the whole image (busybox alone is ~2 MB) was scanned
    assert redactor.redact(saved) == saved, "canary leaked into the image"
