"""The only paramiko user: ``SSHRunner`` runs deploy commands on a remote host.

Host keys are checked against known_hosts (``--known-hosts FILE``, else the system and user
files); an unknown or changed key is refused with its fingerprint and how to trust it, never
accepted silently. ``~/.ssh/config`` supplies HostName, User, Port and IdentityFile. Output is
drained as it arrives (stdout and stderr both) before the exit status is taken, so long commands
stream live and large outputs cannot deadlock ``recv_exit_status``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import select
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError, RemoteError, UsageError
from frappe_imagekit.process import Completed, LineSink
from frappe_imagekit.runner import ChunkSink, TargetFiles, command_line, copy_stream

if TYPE_CHECKING:  # paramiko is imported only when a connection is made
    import paramiko

KEEPALIVE_SECONDS = 15
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


@dataclass(frozen=True)
class Target:
    """Where to connect, after ``~/.ssh/config`` was applied."""

    alias: str
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...]

    @property
    def known_hosts_name(self) -> str:
        """known_hosts keys a non-22 port as ``[host]:port``."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def parse_host(spec: str) -> tuple[str | None, str, int | None]:
    """``user@server[:port]`` -> (user, server, port); user and port may be absent.

    A spec that is not exactly that is a ``UsageError`` (``validate.host_spec``), before any
    connection: nothing is dropped or changed silently.
    """
    validate.host_spec(spec, "--host", UsageError)
    user, _, rest = spec.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):  # [::1]:2222
        host, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail else None
    elif rest.count(":") == 1:
        host, _, raw = rest.partition(":")
        port = int(raw)
    return (user or None), host, port


def resolve_target(spec: str, ssh_config: str | os.PathLike[str] | None = None) -> Target:
    """Apply ``~/.ssh/config`` (or ``ssh_config``) to ``spec``; explicit parts win.

    What the config supplies is checked like ``--host`` (``RemoteError``, exit 7, naming the
    file); options imagekit cannot honour (ProxyCommand, ProxyJump, Include) are refused
    rather than ignored.
    """
    user, alias, port = parse_host(spec)
    path = Path(ssh_config) if ssh_config else Path.home() / ".ssh" / "config"
    if ssh_config and not path.is_file():
        raise RemoteError(f"ssh config file {path} does not exist: fix --ssh-config.")
    found = _config_for(path, alias) if path.is_file() else {}
    target = Target(
        alias=alias,
        hostname=found.get("hostname", alias),
        user=user or found.get("user") or getpass.getuser(),
        port=port or _config_port(found.get("port", "22"), path),
        identity_files=tuple(os.path.expanduser(p) for p in found.get("identityfile", [])),
    )
    _check_configured(target, path)
    return target


def _config_for(path: Path, alias: str) -> dict[str, Any]:
    import paramiko

    try:
        found = dict(paramiko.SSHConfig.from_path(str(path)).lookup(alias))
    except (OSError, UnicodeDecodeError) as exc:
        raise RemoteError(
            f"cannot read the ssh config {path} ({_why(exc)}): fix it or pass --ssh-config."
        ) from None
    except Exception as exc:  # noqa: BLE001 - paramiko raises its own kinds for bad lines
        raise RemoteError(
            f"the ssh config {path} has a line paramiko cannot use ({type(exc).__name__}): "
            "fix that line or pass --ssh-config with a simpler file."
        ) from None
    unsupported = sorted({"proxycommand", "proxyjump", "include"} & set(found))
    if unsupported:
        raise RemoteError(
            f"the ssh config {path} sets {', '.join(unsupported)} for {alias}, which imagekit "
            "does not support: connect to the host directly (--host user@server:port) or pass "
            "--ssh-config with a file without it."
        )
    return found


def _config_port(value: object, path: Path) -> int:
    text = str(value)
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536):
        raise RemoteError(f"the ssh config {path} has Port {text[:8]!r}: use a number from 1 to 65535.")
    return int(text)


def _check_configured(target: Target, path: Path) -> None:
    server = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    validate.host_spec(f"{target.user}@{server}:{target.port}", f"the target (after {path})", RemoteError)


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def check_identity(path: str, what: str) -> str:
    """``path`` when it is a private key paramiko can load (a passphrase-protected one is left
    to authentication, which names it); else ``RemoteError`` naming the file and the fix."""
    import paramiko

    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise RemoteError(f"identity file {path} does not exist or cannot be read: fix {what}.")
    kinds = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
    for kind in kinds:
        try:
            kind.from_private_key_file(path)
            return path
        except paramiko.PasswordRequiredException:
            return path
        except Exception:  # noqa: BLE001,S112 - each key class refuses the others' files in its own way
            continue
    raise RemoteError(
        f"identity file {path} is not a private key paramiko can read (Ed25519, ECDSA or RSA, "
        f"OpenSSH or PEM format): fix {what}."
    )


def fingerprint(key: Any) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _refuse_unknown(target: Target, known_hosts: str | None) -> paramiko.MissingHostKeyPolicy:
    import paramiko

    class RefuseUnknown(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            where = known_hosts or "~/.ssh/known_hosts"
            raise RemoteError(
                f"host key for {target.known_hosts_name} is not known ({key.get_name()} "
                f"{fingerprint(key)}); check that fingerprint with the server's admin, then trust "
                f"it with `ssh-keyscan -p {target.port} {target.hostname} >> {where}`."
            )

    return RefuseUnknown()


class SSHRunner(TargetFiles):
    """Runs commands on ``user@server[:port]`` over one paramiko connection."""

    def __init__(
        self,
        spec: str,
        *,
        known_hosts: str | os.PathLike[str] | None = None,
        identity_file: str | os.PathLike[str] | None = None,
        ssh_config: str | os.PathLike[str] | None = None,
        docker_host: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.target = resolve_target(spec, ssh_config)
        self.host = str(self.target)
        self.base_env = {"DOCKER_HOST": docker_host} if docker_host else {}
        self._known_hosts = str(known_hosts) if known_hosts else None
        if identity_file:
            identities = [check_identity(str(identity_file), "--identity")]
        else:  # like OpenSSH, IdentityFile entries that do not exist are skipped
            found = [p for p in self.target.identity_files if os.path.exists(p)]
            identities = [check_identity(p, "IdentityFile in the ssh config") for p in found]
        self._client = self._connect(identities, connect_timeout)
        self._state_home: str | None = None

    def _connect(self, identities: list[str], timeout: float) -> paramiko.SSHClient:
        import paramiko

        client = paramiko.SSHClient()
        try:
            self._load_known_hosts(client)
            client.set_missing_host_key_policy(_refuse_unknown(self.target, self._known_hosts))
            client.connect(
                self.target.hostname,
                port=self.target.port,
                username=self.target.user,
                key_filename=identities or None,  # type: ignore[arg-type]  # paramiko takes a list; its stubs say str
                look_for_keys=not identities,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except Exception as exc:
            client.close()
            if isinstance(exc, RemoteError):
                raise
            raise RemoteError(self._connect_failure(exc)) from None
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_SECONDS)
        return client

    def _connect_failure(self, exc: Exception) -> str:
        """One sentence for whatever paramiko (or the socket) raised while connecting."""
        import paramiko

        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"host key for {self.target.known_hosts_name} CHANGED: the server sent "
                f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}; if the "
                "server was really reinstalled, remove the old key with "
                f"`ssh-keygen -R '{self.target.known_hosts_name}'` and trust the new one."
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return (
                f"SSH authentication refused for {self.target}: {exc}; check the user and "
                "IdentityFile (~/.ssh/config or --identity)."
            )
        if isinstance(exc, OSError | paramiko.SSHException | EOFError):
            return f"cannot reach {self.target} over SSH: {exc}; check the host, port and network."
        return (
            f"SSH to {self.target} failed ({type(exc).__name__} from paramiko): check the identity "
            "file (--identity or IdentityFile) and known_hosts."
        )

    def _load_known_hosts(self, client: paramiko.SSHClient) -> None:
        if self._known_hosts:
            if not Path(self._known_hosts).is_file():
                raise RemoteError(f"known_hosts file {self._known_hosts} does not exist.")
            _load_host_keys(client, self._known_hosts)
            return
        for path in (SYSTEM_KNOWN_HOSTS, os.path.expanduser("~/.ssh/known_hosts")):
            if Path(path).is_file():
                _load_host_keys(client, path)

    def _open(self, argv: Sequence[str], env: Mapping[str, str] | None) -> paramiko.Channel:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError(f"the SSH connection to {self.target} was lost; run again.")
        channel = transport.open_session()
        channel.exec_command(command_line(argv, {**self.base_env, **(env or {})}))
        return channel

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input_bytes: bytes | None = None,
        timeout: float | None = None,
        on_stdout: LineSink | None = None,
        on_stderr: LineSink | None = None,
    ) -> Completed:
        channel = self._open(argv, env)
        try:
            if input_bytes:
                channel.sendall(input_bytes)
            channel.shutdown_write()
            out, err = _drain(channel, on_stdout, on_stderr, timeout, argv)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        return Completed(tuple(argv), _status(status), out, err)

    def run_stdin_stream(
        self, argv: Sequence[str], source: BinaryIO, *, on_chunk: ChunkSink | None = None
    ) -> Completed:
        channel = self._open(argv, None)
        result: dict[str, str] = {}

        def drain() -> None:
            result["out"], result["err"] = _drain(channel, None, None, None, argv)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            copy_stream(source, channel.sendall, on_chunk)
            channel.shutdown_write()
            reader.join()
            status = channel.recv_exit_status()
        finally:
            channel.close()
        return Completed(tuple(argv), _status(status), result.get("out", ""), result.get("err", ""))

    def transport(self) -> paramiko.Transport:
        """The live SSH transport (for a port forward); ``RemoteError`` when the connection is gone."""
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError(f"the SSH connection to {self.target} was lost; run again.")
        return transport

    def state_home(self) -> str:
        if self._state_home is None:
            result = self.run(["sh", "-c", 'echo "${XDG_STATE_HOME:-$HOME/.local/state}"'])
            self._state_home = result.stdout.strip() or "/root/.local/state"
        return self._state_home

    def close(self) -> None:
        self._client.close()


def _load_host_keys(client: paramiko.SSHClient, path: str) -> None:
    try:
        client.get_host_keys().load(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise RemoteError(
            f"cannot read known_hosts file {path} ({_why(exc)}): fix its permissions."
        ) from None
    except Exception as exc:  # noqa: BLE001 - paramiko.hostkeys.InvalidHostKey and friends
        raise RemoteError(
            f"known_hosts file {path} has a line paramiko cannot read ({type(exc).__name__}): "
            "remove or fix that line (ssh-keygen -R HOST, then ssh-keyscan)."
        ) from None


def _status(status: int) -> int:
    # -1: the server sent no exit status (the connection dropped or the process was killed)
    return 255 if status == -1 else status


class _Lines:
    """Bytes in, whole decoded lines out to a sink; everything kept."""

    def __init__(self, sink: LineSink | None) -> None:
        self.sink = sink
        self.pending = b""
        self.parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.parts.append(data)
        if self.sink is None:
            return
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.sink(line.decode("utf-8", "replace"))

    def text(self) -> str:
        if self.sink and self.pending:
            self.sink(self.pending.decode("utf-8", "replace"))
            self.pending = b""
        return b"".join(self.parts).decode("utf-8", "replace")


def _drain(
    channel: paramiko.Channel,
    on_stdout: LineSink | None,
    on_stderr: LineSink | None,
    timeout: float | None,
    argv: Sequence[str],
) -> tuple[str, str]:
    """Read stdout and stderr as they come until the command exits and both are empty."""
    out, err = _Lines(on_stdout), _Lines(on_stderr)
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        busy = False
        if channel.recv_ready():
            out.feed(channel.recv(65536))
            busy = True
        if channel.recv_stderr_ready():
            err.feed(channel.recv_stderr(65536))
            busy = True
        if busy:
            continue
        # EOF, not the exit status: sshd may send the status before the last output.
        if channel.eof_received or channel.closed:
            if not (channel.recv_ready() or channel.recv_stderr_ready()):
                break
            continue
        if deadline and time.monotonic() > deadline:
            channel.close()
            raise DeployError(
                f"`{shlex.join(argv)}` did not finish within {timeout:.0f}s on the remote host; "
                "check the target and run again."
            )
        select.select([channel], [], [], 0.2)
    return out.text(), err.text()
