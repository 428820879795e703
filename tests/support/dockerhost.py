"""A second, throw-away Docker daemon on this machine (TESTENV.md, "A second Docker host").

It gets its own bridge (created here, deleted on stop), its own data/exec roots and socket in a
short /tmp folder (unix socket paths are limited to 108 bytes), and its own address pool so its
networks never overlap the main daemon's. Never ``--bridge=none``: that would delete the main
daemon's docker0. ``stop()`` ends the dockerd it started, by pid, and removes the bridge.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ADDRESS_POOL = "base=192.168.240.0/20,size=24"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ip", *args], check=check, capture_output=True)


@dataclass
class DockerHost:
    folder: Path
    bridge: str
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.folder / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @classmethod
    def start(cls, timeout: float = 60) -> DockerHost:
        folder = Path(tempfile.mkdtemp(prefix="ikdh-", dir="/tmp"))
        bridge = f"ikbr{secrets.token_hex(3)}"
        _ip("link", "add", "name", bridge, "type", "bridge")
        _ip("addr", "add", f"192.168.{200 + secrets.randbelow(36)}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        log = open(folder / "dockerd.log", "wb")  # noqa: SIM115 - open while dockerd runs
        argv = [
            "dockerd", "--host", f"unix://{folder / 'docker.sock'}",
            "--data-root", str(folder / "data"), "--exec-root", str(folder / "exec"),
            "--pidfile", str(folder / "docker.pid"), f"--bridge={bridge}",
            "--iptables=false", "--ip-masq=false", "--default-address-pool", ADDRESS_POOL,
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        host = cls(folder, bridge, proc)
        try:
            host._wait_ready(timeout)
        except BaseException:
            host.stop()
            raise
        return host

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", self.url, *args], capture_output=True, text=True, timeout=120)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.folder / 'dockerd.log').read_text()}")
            if self.socket.exists() and self.docker("info").returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"the second dockerd did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            ids = self.docker("ps", "-aq").stdout.split()
            if ids:
                self.docker("rm", "-f", *ids)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _ip("link", "del", self.bridge, check=False)
        subprocess.run(["umount", "-R", str(self.folder / "data")], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
