"""An SSH remote forward from the server's 127.0.0.1 to the local registry, with paramiko.

``remote_forward(transport, local_port)`` asks the server to listen on its 127.0.0.1 (the same
port number first, else any port the server picks) and carries every connection it accepts to
127.0.0.1:``local_port`` here. Bytes are counted both ways (``Tunnel.sent`` is what went to the
server). A server that refuses the forward (``AllowTcpForwarding no``) raises
``ForwardRefused``; the forward is cancelled and every connection closed when the block ends.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko

HOST = "127.0.0.1"
CHUNK = 1 << 16
ByteSink = Callable[[int], None]


class ForwardRefused(Exception):
    """The SSH server did not allow a remote forward."""


@dataclass
class Tunnel:
    remote_port: int
    local_port: int
    on_bytes: ByteSink | None = None
    sent: int = 0  # bytes from the registry to the server
    received: int = 0  # bytes from the server to the registry
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: list[tuple[Any, socket.socket]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _closing: threading.Event = field(default_factory=threading.Event)

    @property
    def remote_address(self) -> str:
        return f"{HOST}:{self.remote_port}"

    def accept(self, channel: paramiko.Channel, origin: object, server: object) -> None:
        """paramiko's handler, called on its transport thread: hand the work to a new thread."""
        if self._closing.is_set():
            channel.close()
            return
        thread = threading.Thread(target=self._carry, args=(channel,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _carry(self, channel: paramiko.Channel) -> None:
        try:
            sock = socket.create_connection((HOST, self.local_port), timeout=10)
        except OSError:
            channel.close()
            return
        sock.settimeout(None)
        with self._lock:
            self._open.append((channel, sock))
        try:
            self._pump(channel, sock)
        finally:
            channel.close()
            sock.close()

    def _pump(self, channel: paramiko.Channel, sock: socket.socket) -> None:
        while not self._closing.is_set():
            watched: list[Any] = [channel, sock]
            ready, _, _ = select.select(watched, [], [], 0.5)
            if sock in ready:
                data = sock.recv(CHUNK)
                if not data:
                    return
                channel.sendall(data)
                self._count_sent(len(data))
            if channel in ready:
                data = channel.recv(CHUNK)
                if not data:
                    return
                sock.sendall(data)
                with self._lock:
                    self.received += len(data)

    def _count_sent(self, size: int) -> None:
        with self._lock:
            self.sent += size
            total = self.sent
        if self.on_bytes:
            self.on_bytes(total)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            pairs = list(self._open)
        for channel, sock in pairs:
            channel.close()
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


def _request(transport: paramiko.Transport, port: int, handler: Callable[..., None]) -> int:
    import paramiko

    try:
        return int(transport.request_port_forward(HOST, port, handler=handler))
    except paramiko.SSHException:
        return -1


@contextmanager
def remote_forward(
    transport: paramiko.Transport, local_port: int, on_bytes: ByteSink | None = None
) -> Iterator[Tunnel]:
    """The server's 127.0.0.1:PORT carried to 127.0.0.1:``local_port`` here, for the block."""
    tunnel = Tunnel(remote_port=0, local_port=local_port, on_bytes=on_bytes)
    port = _request(transport, local_port, tunnel.accept)
    if port < 0:  # the same number may be taken there (or be this very registry, on one machine)
        port = _request(transport, 0, tunnel.accept)
    if port <= 0:
        raise ForwardRefused("the SSH server refused the remote forward")
    tunnel.remote_port = port
    try:
        yield tunnel
    finally:
        tunnel.close()
        if transport.is_active():
            # the connection may be closing; the forward dies with it
            with contextlib.suppress(Exception):
                transport.cancel_port_forward(HOST, port)
