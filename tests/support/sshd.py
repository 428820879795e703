"""A real OpenSSH server on 127.0.0.1 for the SSH and deploy tests.

``SSHServer.start(folder)`` writes its own sshd_config (a free port, a host key generated in
``folder``, our own AuthorizedKeysFile, ``UsePAM no``, ``StrictModes no``, no ~/.bashrc), starts
``/usr/sbin/sshd -f CONFIG -D`` and waits until the port answers. It also writes a client key,
a ``known_hosts`` that trusts the host key, and a ``wrong_known_hosts`` that holds a different
key for the same ``[127.0.0.1]:port`` (the "changed key" case). ``stop()`` ends the process it
started, by its pid.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
# Every command sshd runs goes through the user's shell; Debian's bash, root's shell here, then
# reads ~/.bashrc unless it is a nested shell (SHLVL set). This machine's root ~/.bashrc runs
# `pyenv init` (0.15 s per command at idle, seconds under load: 180 commands per SSH deploy test),
# which a target does not have: the tests' host runs each command as a clean host would.
CLEAN_SHELL = "SetEnv SHLVL=1\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> str:
    """An ed25519 key pair at ``path`` (+ .pub); returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imagekit-test", "-f", str(path)],
        check=True,
    )
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class SSHServer:
    folder: Path
    port: int
    client_key: Path
    known_hosts: Path
    wrong_known_hosts: Path
    proc: subprocess.Popen[bytes]

    @property
    def spec(self) -> str:
        return f"root@{HOST}:{self.port}"

    @classmethod
    def start(cls, folder: Path, extra_config: str = "") -> SSHServer:
        """``extra_config``: more sshd_config lines (e.g. ``AllowTcpForwarding no``)."""
        folder.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        host_key, client_key, other_key = (
            folder / "host_key",
            folder / "client_key",
            folder / "other",
        )
        host_pub = keygen(host_key)
        (folder / "authorized_keys").write_text(keygen(client_key) + "\n")
        other_pub = keygen(other_key)
        port = free_port()
        config = folder / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress {HOST}\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nPermitRootLogin yes\n"
            "PubkeyAuthentication yes\nLogLevel ERROR\n" + CLEAN_SHELL + extra_config
        )
        known, wrong = folder / "known_hosts", folder / "wrong_known_hosts"
        known.write_text(f"[{HOST}]:{port} {_type_and_key(host_pub)}\n")
        wrong.write_text(f"[{HOST}]:{port} {_type_and_key(other_pub)}\n")
        log = open(folder / "sshd.log", "wb")  # noqa: SIM115 - kept open while sshd runs
        proc = subprocess.Popen([SSHD, "-f", str(config), "-D", "-e"], stdout=log, stderr=log)
        server = cls(folder, port, client_key, known, wrong, proc)
        server._wait_ready()
        return server

    def _wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.folder / 'sshd.log').read_text()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not answer on {HOST}:{self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _type_and_key(pub_line: str) -> str:
    kind, key, *_ = pub_line.split()
    return f"{kind} {key}"
