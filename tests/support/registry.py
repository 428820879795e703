"""Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 for tests (TESTENV.md, "Image registry").

``LocalRegistry.start(folder)`` writes a config (``http.addr: 127.0.0.1:PORT`` on a free port,
filesystem storage in ``folder/storage``, deletes enabled, no auth), starts
``docker-registry serve CONFIG`` and waits until ``GET /v2/`` answers. ``address`` is
``127.0.0.1:PORT``: Docker treats loopback registries as insecure-allowed, so
``docker push 127.0.0.1:PORT/NAME:TAG`` and ``docker pull 127.0.0.1:PORT/NAME@sha256:...`` work
without a daemon setting. ``stop()`` ends the process it started, by its pid. Never skips: a
registry that cannot start raises.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"
HOST = "127.0.0.1"

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {host}:{port}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalRegistry:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    @classmethod
    def start(cls, folder: Path, port: int | None = None, timeout: float = 15) -> LocalRegistry:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "storage").mkdir(exist_ok=True)
        port = port or free_port()
        config = folder / "config.yml"
        config.write_text(CONFIG.format(root=folder / "storage", host=HOST, port=port))
        log = open(folder / "registry.log", "wb")  # noqa: SIM115 - open while the registry runs
        proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=log)
        registry = cls(folder, port, proc)
        try:
            registry._wait_ready(timeout)
        except BaseException:
            registry.stop()
            raise
        return registry

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.folder / 'registry.log').read_text()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not answer on {self.address} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
