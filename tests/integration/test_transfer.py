"""Sending images through the local registry and an SSH remote forward (issue 20, items 2 and 3).

The server is a second Docker daemon (tests/support/dockerhost.py, Docker 20.10) reached through a
real sshd on 127.0.0.1; its daemon pulls from 127.0.0.1:PORT, which is the remote end of the
paramiko forward. Images are built here from the local busybox base: a 3 MB random layer and a
small app layer that each version changes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from frappe_imagekit.deploy import send as deploy_send
from frappe_imagekit.errors import DeployError
from frappe_imagekit.ssh import SSHRunner
from frappe_imagekit.transfer import registry as registries
from frappe_imagekit.transfer.send import REGISTRY, SAVE, SendOptions, send_image
from tests.support.debian13 import Debian13Host
from tests.support.dockerhost import DockerHost
from tests.support.sshd import SSHServer

# {name} makes each test's layers its own: a build that took another test's cached layer failed
# ("unknown parent image ID") when that test removed its images in the middle of the build
DOCKERFILE = (
    "FROM imagekit-test/busybox:1\n"
    "RUN head -c 3000000 /dev/urandom > /big && echo {name} > /name\n"
    "ARG APP=v1\n"
    'RUN echo "$APP" > /app\n'
)


@pytest.fixture(scope="module")
def second_host() -> Iterator[DockerHost]:
    host = DockerHost.start()
    yield host
    host.stop()


@pytest.fixture
def versions(
    tmp_path: Path, busybox_image: str, unique_name: Callable[[str], str], cleanup_images: list[str]
) -> Callable[..., str]:
    """``versions("v1")`` builds NAME:v1 here (the app layer says v1) and returns NAME."""
    name = unique_name("transfer")
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(DOCKERFILE.format(name=name))

    def build(*tags: str) -> str:
        for tag in tags:
            cleanup_images.append(f"{name}:{tag}")
            done = subprocess.run(
                [
                    "docker",
                    "build",
                    "-q",
                    "--build-arg",
                    f"APP={tag}",
                    "-t",
                    f"{name}:{tag}",
                    str(tmp_path / "ctx"),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
        return name

    return build


def local_id(ref: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True, check=True
    ).stdout.strip()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def runner_for(sshd: SSHServer, host: DockerHost) -> SSHRunner:
    return SSHRunner(
        sshd.spec, known_hosts=sshd.known_hosts, identity_file=sshd.client_key, docker_host=host.url
    )


def test_registry_sends_only_the_changed_layer_and_pulls_by_digest(
    sshd: SSHServer, second_host: DockerHost, versions: Callable[..., str], tmp_path: Path
):
    name = versions("v1", "v2", "v3")
    store = tmp_path / "registry"
    events: list[str] = []
    runner = runner_for(sshd, second_host)
    try:
        first = send_image(runner, SendOptions(name, "v1", SAVE), events.append)
        loaded_then_pulled = send_image(runner, SendOptions(name, "v2", registry_dir=store), events.append)
        bump = send_image(runner, SendOptions(name, "v3", registry_dir=store), events.append)
        assert second_host.docker("image", "rm", f"{name}:v2").returncode == 0
        again = send_image(
            runner,
            SendOptions(name, "v2", registry_dir=store, digest=loaded_then_pulled.digest),
            events.append,
        )
    finally:
        runner.close()

    assert (first.method, first.digest) == (SAVE, None)
    assert first.image_id == local_id(f"{name}:v1")
    # v2 goes to a server that only ever got docker load: every layer is fetched once, and said
    assert loaded_then_pulled.method == REGISTRY
    assert (loaded_then_pulled.layers_fetched, loaded_then_pulled.layers_present) == (3, 0)
    note = (
        f"{runner.host} has {name} only from docker load (no registry digests): this first pull "
        "fetches every layer once; later deploys send only the layers that changed."
    )
    assert loaded_then_pulled.notes == [note] and note in events
    assert loaded_then_pulled.bytes_sent > 1_000_000  # the 3 MB random layer (compressed: the same)
    # v3 bumps only the app layer: one layer, a few kB, through the tunnel
    assert (bump.layers_fetched, bump.layers_present, bump.notes) == (1, 2, [])
    assert bump.bytes_sent < 100_000
    assert bump.digest is not None and bump.digest.startswith("sha256:") and len(bump.digest) == 71
    for version, sent in (("v2", loaded_then_pulled), ("v3", bump)):
        shown = second_host.docker(
            "image", "inspect", "--format", "{{.Id}}", f"{name}:{version}"
        ).stdout.strip()
        assert shown == sent.image_id == local_id(f"{name}:{version}")
    # the rollback case: the recorded digest is still in the registry, so no push, a pull by it
    assert again.digest == loaded_then_pulled.digest
    assert f"{name}:v2 is in the local registry as {again.digest}: pulling by that digest" in events
    assert again.pulled_from is not None and again.pulled_from.endswith(f"/{name}@{again.digest}")
    # nothing left behind: the registry stopped, the forward cancelled, the temporary tag gone
    port = int((store / "port").read_text())
    remote_port = int(again.pulled_from.split("/")[0].split(":")[1])
    assert not listening(port) and not listening(remote_port)
    tags = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}", f"127.0.0.1:{port}/{name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tags == ""
    assert any(line.startswith("registry tunnel: ") and "layer(s) fetched" in line for line in events)


def test_a_refused_forward_falls_back_to_save_and_says_so(
    tmp_path: Path, second_host: DockerHost, versions: Callable[..., str]
):
    """Through deploy's one send_image step (deploy/send.py), as deploy, rollback and sandbox call it."""
    name = versions("v1")
    server = SSHServer.start(tmp_path / "sshd", "AllowTcpForwarding no\n")
    events: list[str] = []
    runner = runner_for(server, second_host)
    try:
        sent = deploy_send.send_image(runner, f"{name}:v1", deploy_send.ImageTransfer(), events.append)
    finally:
        runner.close()
        server.stop()
    refused = f"{runner.host} refused the SSH remote forward: the image went by docker save | docker load."
    assert (sent.method, sent.digest, sent.notes) == (deploy_send.STREAM, None, (refused,))
    assert (
        f"{runner.host} refused the SSH remote forward (AllowTcpForwarding no?): sending {name}:v1 with "
        "docker save | docker load instead." in events
    )
    shown = second_host.docker("image", "inspect", "--format", "{{.Id}}", f"{name}:v1").stdout.strip()
    assert shown == local_id(f"{name}:v1")
    assert not listening(int((registries.storage_folder() / "port").read_text()))


def test_registry_port_in_use_is_one_sentence(tmp_path: Path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(DeployError) as caught:
            registries.start(tmp_path / "registry", port=port)
    assert str(caught.value) == (
        f"port {port} on 127.0.0.1 is already in use, so the local registry cannot start: run again "
        "(a free port is chosen) or pass --transfer save."
    )


def test_registry_stops_on_interrupt_and_with_imagekit(tmp_path: Path):
    with pytest.raises(KeyboardInterrupt), registries.running(tmp_path / "a") as registry:
        assert listening(registry.port)
        raise KeyboardInterrupt
    assert registry.proc.returncode is not None and not listening(registry.port)
    # imagekit killed with SIGKILL (no finally runs): the kernel ends the registry too
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom frappe_imagekit.transfer import registry\n"
        "r = registry.start(Path(sys.argv[1]))\nprint(r.proc.pid, r.port, flush=True)\ntime.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "b")], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    pid, port = map(int, child.stdout.readline().split())
    assert listening(port)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and listening(port):
        time.sleep(0.1)
    assert not listening(port)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs: the registry's storage fills up on the 3 MB layer."""
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"cannot mount a tmpfs for the storage-full test: {done.stderr}"
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_full_registry_storage_is_one_sentence_before_anything_is_sent(
    sshd: SSHServer, second_host: DockerHost, versions: Callable[..., str], small_disk: Path
):
    name = versions("v1")
    runner = runner_for(sshd, second_host)
    try:
        with pytest.raises(DeployError) as caught:
            send_image(runner, SendOptions(name, "v1", registry_dir=small_disk), lambda line: None)
    finally:
        runner.close()
    assert str(caught.value) == (
        f"the local registry's storage {small_disk / 'storage'} is full (no space left on device) while "
        f"pushing {name}:v1: free space there or set IMAGEKIT_REGISTRY_DIR to a bigger disk; nothing "
        "was stopped."
    )
    assert second_host.docker("image", "inspect", f"{name}:v1").returncode != 0
    assert not listening(int((small_disk / "port").read_text()))


def test_docker_26_pulls_from_the_loopback_registry_without_a_daemon_setting(
    debian13_host: Debian13Host, versions: Callable[..., str], tmp_path: Path
):
    """The Debian 13 host (Docker 26.1, its own network namespace): its daemon pulls from the
    tunnel's 127.0.0.1:PORT with no insecure-registries entry in its daemon.json."""
    assert debian13_host.docker_in("info", "--format", "{{.ServerVersion}}").stdout.startswith("26.")
    name = versions("v1", "v2")
    runner = SSHRunner(debian13_host.spec, known_hosts=debian13_host.known_hosts,
                       identity_file=debian13_host.client_key)  # fmt: skip
    try:
        first = send_image(runner, SendOptions(name, "v1", registry_dir=tmp_path / "r"), lambda _l: None)
        bump = send_image(runner, SendOptions(name, "v2", registry_dir=tmp_path / "r"), lambda _l: None)
    finally:
        runner.close()
    assert (first.method, bump.method) == (REGISTRY, REGISTRY)
    assert (bump.layers_fetched, bump.layers_present) == (1, 2)
    for version, sent in (("v1", first), ("v2", bump)):
        shown = debian13_host.docker_in("image", "inspect", "--format", "{{.Id}}", f"{name}:{version}")
        assert shown.stdout.strip() == sent.image_id == local_id(f"{name}:{version}")
