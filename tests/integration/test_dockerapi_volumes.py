"""Reading a folder of an image leaves nothing behind: the created container goes, and with it
the anonymous volumes its image's VOLUME lines made (imagekit's Containerfile declares sites and
logs, and an exact build reads its commits folder this way after every build)."""

from __future__ import annotations

import time
from pathlib import Path

from frappe_imagekit import dockerapi
from tests.support import dockerd


def _volumes_created(cli: str, since: int, until: int) -> list[str]:
    window = ("--since", str(since), "--until", str(until))
    done = dockerd.docker(cli, "events", *window, "--filter", "type=volume", "--filter", "event=create",
                          "--format", "{{.Actor.ID}}", timeout=60)  # fmt: skip
    return done.stdout.split()


def _holding(cli: str, image: str, volumes: list[str], nonce: str) -> list[str]:
    """Those of ``volumes`` that still exist and hold the file ``nonce`` (ours, not another
    test's: the suite runs in parallel on one daemon)."""
    left = [v for v in volumes if dockerd.docker(cli, "volume", "inspect", v, check=False).returncode == 0]
    if not left:
        return []
    mounts = [arg for n, v in enumerate(left) for arg in ("-v", f"{v}:/v/{n}")]
    look = f"grep -l {nonce} /v/*/nonce || true"
    found = dockerd.docker(cli, "run", "--rm", *mounts, image, "sh", "-c", look, timeout=60)
    return [left[int(path.split("/")[2])] for path in found.stdout.split()]


def test_reading_a_folder_of_an_image_leaves_no_anonymous_volume(
    docker_daemon: str, busybox_image: str, cleanup_images: list[str], tmp_path: Path, unique_name
):
    nonce = unique_name("vol")
    ref = f"imagekit-test/{nonce}:1"
    (tmp_path / "Containerfile").write_text(
        f"FROM {busybox_image}\n"
        f"RUN mkdir -p /ik/read /ik/kept && echo {nonce} > /ik/read/nonce && echo {nonce} > /ik/kept/nonce\n"
        "VOLUME /ik/kept\n"
    )
    cleanup_images.append(ref)
    containerfile = str(tmp_path / "Containerfile")
    dockerd.docker(docker_daemon, "build", "-q", "-t", ref, "-f", containerfile, str(tmp_path), timeout=300)
    since = int(time.time()) - 1

    files = dockerapi.image_folder_files(ref, "/ik/read")

    until = int(time.time()) + 1
    assert files == {"nonce": f"{nonce}\n".encode()}
    created = _volumes_created(docker_daemon, since, until)
    assert created  # the image's VOLUME gave the container one
    assert _holding(docker_daemon, busybox_image, created, nonce) == []
