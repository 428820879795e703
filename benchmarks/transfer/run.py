"""Sending a version to a server over SSH: the registry tunnel against ``docker save | docker load``.

A realistic image is built here: a base of mixed files (BASE_MB, default 1500: random binaries
as in .so files and wheels, base64 text as in sources, repetitive text as in locale data) and
five app layer sets (APP_MB each: source, built assets, what its dependencies add), one RUN per
app as issue 20 item 1 lays the final image out. v2 bumps the last app: only its layer set
changes. Each way deploys v1, then v2, to a fresh second Docker daemon (Docker 20.10,
tests/support/dockerhost.py) through a real sshd on 127.0.0.1 with a counting TCP proxy in front
of it: every byte of the SSH connection (both ways) is counted.

    python -m benchmarks.transfer.run [BASE_MB] [APP_MB] [--debian13]

With ``--debian13`` the server is the Debian 13 test host instead (Docker 26.1 in a container
with its own network namespace and sshd, tests/support/debian13.py), the proxy in front of its
published SSH port; a fresh host (and volume) per way.

Printed: bytes through SSH and wall time of each send (v1 is the first full transfer, reported
apart), and the ratios registry / save for the bump v2. Goals (issue 20): bytes <= 0.10, time <=
0.30. Exits 1 when a goal is missed. Everything it creates (images, registry storage, the second
daemon, sshd) is removed at the end.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frappe_imagekit.ssh import SSHRunner
from frappe_imagekit.transfer.send import REGISTRY, SAVE, SendOptions, Sent, send_image
from tests.support import debian13
from tests.support.baseimage import ensure_busybox_image
from tests.support.dockerhost import DockerHost
from tests.support.sshd import SSHServer

GOAL_BYTES, GOAL_TIME = 0.10, 0.30
APPS = 5
# one file kind a line: folder, files, size of each in kB, how its bytes are made
BASE = """#!/bin/sh
set -e
make() {{ # folder count kb kind
  mkdir -p "$1"; i=0
  while [ $i -lt $2 ]; do
    case $4 in
      bin) head -c $(($3 * 1024)) /dev/urandom > "$1/f$i" ;;
      text) head -c $(($3 * 768)) /dev/urandom | base64 > "$1/f$i.py" ;;
      repeat) yes "msgid \\"line $i of a translation catalogue\\"" | head -c $(($3 * 1024)) > "$1/f$i.po" ;;
    esac
    i=$((i + 1))
  done
}}
make /base/lib {bin_files} 4096 bin
make /base/src {text_files} 256 text
make /base/share {repeat_files} 1024 repeat
"""
APP = """make_app() { # name mb version
  mkdir -p "/apps/$1/assets" "/env/$1"
  head -c $(($2 * 512 * 1024)) /dev/urandom > "/env/$1/deps.so"
  head -c $(($2 * 384 * 1024)) /dev/urandom | base64 > "/apps/$1/source.py"
  echo "$3" > "/apps/$1/VERSION"
}
"""


def dockerfile(base_mb: int, app_mb: int) -> str:
    lines = ["FROM imagekit-test/busybox:1", "COPY base.sh app.sh /", "RUN sh /base.sh && rm /base.sh"]
    for n in range(1, APPS + 1):
        arg = f"APP{n}"
        lines += [f"ARG {arg}=v1", f'RUN . /app.sh && make_app app{n} {app_mb} "${arg}"']
    lines.append('RUN echo "app1 app2 app3 app4 app5" > /apps/apps.txt')
    return "\n".join(lines) + "\n"


def base_script(base_mb: int) -> str:
    kb = base_mb * 1024
    return BASE.format(
        bin_files=kb * 2 // 5 // 4096, text_files=kb * 2 // 5 // 256, repeat_files=kb // 5 // 1024
    )


def build(folder: Path, name: str, base_mb: int, app_mb: int) -> None:
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile(base_mb, app_mb))
    (folder / "base.sh").write_text(base_script(base_mb))
    (folder / "app.sh").write_text(APP)
    for tag, last in (("v1", "v1"), ("v2", "v2")):
        started = time.monotonic()
        argv = [
            "docker",
            "build",
            "-q",
            "--build-arg",
            f"APP{APPS}={last}",
            "-t",
            f"{name}:{tag}",
            str(folder),
        ]
        subprocess.run(argv, check=True, capture_output=True)
        size = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", f"{name}:{tag}"],
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
        print(
            f"built {name}:{tag}: {int(size) / 1e6:.0f} MB in {time.monotonic() - started:.0f} s", flush=True
        )


class CountingProxy:
    """127.0.0.1:port -> 127.0.0.1:target, counting the bytes each way."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                with self._lock:
                    self.count += len(data)
        except OSError:
            pass  # the other side closed: end of this connection
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


@dataclass
class Measured:
    way: str
    version: str
    bytes: int
    seconds: float
    sent: Sent


def send_one(runner: SSHRunner, proxy: CountingProxy, way: str, name: str, version: str,
             store: Path) -> Measured:  # fmt: skip
    before = proxy.count
    started = time.monotonic()
    steps: list[str] = []

    def step(line: str) -> None:
        steps.append(f"    {time.monotonic() - started:6.1f} s  {line.strip()}")

    sent = send_image(runner, SendOptions(name, version, way, registry_dir=store, progress=False), step)
    seconds = time.monotonic() - started
    measured = Measured(way, version, proxy.count - before, seconds, sent)
    extra = (
        f", {sent.layers_fetched} layer(s) fetched, {sent.layers_present} present" if way == REGISTRY else ""
    )
    print(
        f"{way:8} {version}: {measured.bytes / 1e6:9.1f} MB through SSH, {seconds:6.1f} s{extra}", flush=True
    )
    print("\n".join(steps), flush=True)
    return measured


def one_way(way: str, name: str, work: Path, known: Callable[[int], Path], sshd: SSHServer) -> list[Measured]:
    host = DockerHost.start()
    proxy = CountingProxy(sshd.port)
    runner = SSHRunner(f"root@127.0.0.1:{proxy.port}", known_hosts=known(proxy.port),
                       identity_file=sshd.client_key, docker_host=host.url)  # fmt: skip
    try:
        return [send_one(runner, proxy, way, name, v, work / "registry") for v in ("v1", "v2")]
    finally:
        runner.close()
        proxy.close()
        host.stop()


def one_way_debian13(way: str, name: str, work: Path) -> list[Measured]:
    image, _timings = debian13.ensure_image("docker")
    host = debian13.Debian13Host.start(
        "docker", image, f"ik-bench-d13-{secrets.token_hex(3)}", work / f"d13-{way}"
    )
    proxy = CountingProxy(host.port)
    key = host.known_hosts.read_text().split()
    known = work / f"known_hosts_d13_{way}"
    known.write_text(f"[127.0.0.1]:{proxy.port} {key[1]} {key[2]}\n")
    runner = SSHRunner(f"root@127.0.0.1:{proxy.port}", known_hosts=known, identity_file=host.client_key)
    try:
        print(f"server: Docker {host.versions()['server']} (Debian 13 host)", flush=True)
        return [send_one(runner, proxy, way, name, v, work / "registry") for v in ("v1", "v2")]
    finally:
        runner.close()
        proxy.close()
        host.stop()


def main(argv: list[str]) -> int:
    on_debian13 = "--debian13" in argv
    argv = [arg for arg in argv if arg != "--debian13"]
    base_mb = int(argv[0]) if argv else 1500
    app_mb = int(argv[1]) if len(argv) > 1 else 40
    ensure_busybox_image("docker")
    work = Path(tempfile.mkdtemp(prefix="ik-bench-transfer-"))
    name = f"ik-bench-transfer-{secrets.token_hex(3)}"
    sshd = SSHServer.start(work / "sshd")
    host_key = (work / "sshd" / "host_key.pub").read_text().split()

    def known(port: int) -> Path:
        path = work / f"known_hosts_{port}"
        path.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        return path

    try:
        build(work / "image", name, base_mb, app_mb)
        if on_debian13:
            results = {way: one_way_debian13(way, name, work) for way in (REGISTRY, SAVE)}
        else:
            results = {way: one_way(way, name, work, known, sshd) for way in (REGISTRY, SAVE)}
    finally:
        sshd.stop()
        subprocess.run(["docker", "image", "rm", f"{name}:v1", f"{name}:v2"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return report(results)


def report(results: dict[str, list[Measured]]) -> int:
    reg, save = results[REGISTRY], results[SAVE]
    print(f"first full transfer (v1): registry {reg[0].bytes / 1e6:.1f} MB in {reg[0].seconds:.1f} s, "
          f"save|load {save[0].bytes / 1e6:.1f} MB in {save[0].seconds:.1f} s")  # fmt: skip
    bytes_ratio = reg[1].bytes / save[1].bytes
    time_ratio = reg[1].seconds / save[1].seconds
    print(f"bump (v2): registry {reg[1].bytes / 1e6:.1f} MB in {reg[1].seconds:.1f} s, "
          f"save|load {save[1].bytes / 1e6:.1f} MB in {save[1].seconds:.1f} s")  # fmt: skip
    print(f"ratio registry / save for the bump: bytes {bytes_ratio:.3f} (goal <= {GOAL_BYTES}), "
          f"wall time {time_ratio:.3f} (goal <= {GOAL_TIME})")  # fmt: skip
    return 0 if bytes_ratio <= GOAL_BYTES and time_ratio <= GOAL_TIME else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
