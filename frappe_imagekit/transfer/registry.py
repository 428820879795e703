"""The local registry: Debian's ``docker-registry serve CONFIG`` on 127.0.0.1, started and stopped here.

Its storage folder is kept between deploys, so a push sends only the layers it lacks:
``$IMAGEKIT_REGISTRY_DIR``, else ``$XDG_DATA_HOME/imagekit/registry`` (``~/.local/share/...``).
The folder holds ``config.yml``, ``storage/``, ``registry.log`` and ``port`` (the last port used;
reused when free, so the registry's name, and with it Docker's push cache, stays the same).
The registry's output is read through a pipe and kept in memory as well as copied to
``registry.log``: when the storage disk is full the log file on it cannot take the very line
that says so (seen in CI: the push failed with a bare HTTP 500 and an empty log).
The process runs only while a command sends an image: ``stop()`` ends it by its pid on every
exit (the caller uses ``running_registry``, a context manager), and the kernel ends it too if
imagekit itself is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from frappe_imagekit.errors import DeployError

BINARY = "docker-registry"
HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1
KEPT_LINES = 5000  # of the registry's output, in memory (a push of a 15 GB image logs a few hundred)
FULL_BELOW = 16 * 1024 * 1024  # free bytes on the storage disk under which a failed push is "disk full"
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


def storage_folder() -> Path:
    """Where the registry keeps its files between deploys (see the module docstring)."""
    chosen = os.environ.get("IMAGEKIT_REGISTRY_DIR")
    if chosen:
        return Path(chosen)
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "imagekit" / "registry"


def port_free(port: int) -> bool:
    """Whether the registry could listen on ``port`` (Go sets SO_REUSEADDR: a port whose last
    connections are in TIME_WAIT, the registry's own from the deploy before, is free to it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def choose_port(folder: Path) -> int:
    """The port recorded in ``folder/port`` when it is a number and free, else a free one."""
    try:
        text = (folder / "port").read_text().strip()
    except OSError:
        text = ""
    if text.isascii() and text.isdigit() and 1024 <= int(text) < 65536 and port_free(int(text)):
        return int(text)
    return free_port()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Registry:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]
    output: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT_LINES))
    reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    def log_lines(self) -> list[str]:
        """Everything the registry printed (kept in memory; the log file when nothing was read)."""
        if self.reader is not None and not self.alive():
            self.reader.join(timeout=2)  # the last lines of a registry that just exited
        if self.output:
            return list(self.output)
        try:
            return (self.folder / "registry.log").read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_lines()[-lines:])

    def said(self, text: str) -> bool:
        return any(text in line for line in self.log_lines())

    def storage_nearly_full(self) -> bool:
        """Whether the disk under the storage has less than ``FULL_BELOW`` bytes free."""
        try:
            return shutil.disk_usage(self.storage).free < FULL_BELOW
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def has_manifest(self, name: str, digest: str) -> bool:
        """Whether the registry holds ``name@digest`` (a HEAD of the manifest)."""
        request = urllib.request.Request(f"http://{self.address}/v2/{name}/manifests/{digest}", method="HEAD")
        request.add_header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback only
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(folder: Path | None = None, port: int | None = None, timeout: float = 20) -> Registry:
    """Start the registry on 127.0.0.1 (``port``, else the recorded one when free, else a free
    one); ``DeployError`` in one sentence if it cannot."""
    folder = folder or storage_folder()
    binary = shutil.which(BINARY)
    if binary is None:
        raise DeployError(
            f"`{BINARY}` is not installed on this machine: install Debian's docker-registry package, "
            "or pass --transfer save."
        )
    try:
        (folder / "storage").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(
            f"cannot create the registry folder {folder} ({exc.strerror}): set IMAGEKIT_REGISTRY_DIR."
        ) from None
    port = port or choose_port(folder)
    config = folder / "config.yml"
    config.write_text(CONFIG.format(root=folder / "storage", host=HOST, port=port))
    proc: subprocess.Popen[bytes] = subprocess.Popen(  # noqa: S603 - fixed argv
        [binary, "serve", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only
    )  # fmt: skip
    registry = Registry(folder, port, proc)
    try:  # closed by the reader at the end of output; the lines are kept in memory either way
        log: IO[bytes] = open(folder / "registry.log", "wb", buffering=0)  # noqa: SIM115
    except OSError:
        log = open(os.devnull, "wb", buffering=0)  # noqa: SIM115
    output = cast(IO[bytes], proc.stdout)  # a pipe: stdout=PIPE above
    registry.reader = threading.Thread(target=keep_output, args=(output, log, registry.output), daemon=True)
    registry.reader.start()
    try:
        _wait_ready(registry, timeout)
        (folder / "port").write_text(f"{port}\n")
    except BaseException:
        registry.stop()
        raise
    return registry


def keep_output(stream: IO[bytes], log: IO[bytes], kept: deque[str]) -> None:
    """Copy the registry's output to memory and to its log file (a write that fails, a full
    disk, loses only the file's copy)."""
    try:
        for raw in iter(stream.readline, b""):
            kept.append(raw.decode(errors="replace").rstrip("\n"))
            with suppress(OSError):
                log.write(raw)
    finally:
        stream.close()
        with suppress(OSError):
            log.close()


def _wait_ready(registry: Registry, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not registry.alive():
            raise DeployError(_start_failure(registry))
        try:
            with urllib.request.urlopen(f"http://{registry.address}/v2/", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise DeployError(
        f"the local registry did not answer on {registry.address} within {timeout:.0f}s "
        f"(log: {registry.folder / 'registry.log'}); or pass --transfer save."
    )


def _start_failure(registry: Registry) -> str:
    log = registry.log_tail()
    if "address already in use" in log:
        return (
            f"port {registry.port} on {HOST} is already in use, so the local registry cannot start: "
            "run again (a free port is chosen) or pass --transfer save."
        )
    last = log.splitlines()[-1] if log else "no output"
    return f"the local registry exited at start ({last[:200]}): see {registry.folder / 'registry.log'}."


@contextmanager
def running(folder: Path | None = None, port: int | None = None) -> Iterator[Registry]:
    """The registry for the duration of the block; stopped on every exit, Ctrl-C and SIGTERM included."""
    registry = start(folder, port)
    try:
        yield registry
    finally:
        registry.stop()
