"""Where deploy commands run: one interface, a local and an SSH implementation.

Deploy logic only talks to a ``Runner``: run an argv (streaming its output), write and read small
files, and pipe a byte stream into a command. ``LocalRunner`` runs on this machine through
``process``/``subprocess``; ``ssh.SSHRunner`` runs the same argv on a remote host, quoted with
``shlex``. A ``docker_host`` makes every command talk to that Docker daemon (``DOCKER_HOST`` set
in the command's own environment, never in the SSH environment).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, Protocol

from frappe_imagekit import bounded, process
from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed, LineSink

ChunkSink = Callable[[int], None]


class Runner(Protocol):
    """Runs commands on the deploy target (this machine or an SSH host)."""

    host: str  # "local" or "user@host:port"

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
        """Run ``argv`` on the target; stream lines to the sinks; return all output."""
        ...

    def run_stdin_stream(
        self, argv: Sequence[str], source: BinaryIO, *, on_chunk: ChunkSink | None = None
    ) -> Completed:
        """Run ``argv`` on the target with ``source`` copied into its stdin, chunk by chunk."""
        ...

    def state_home(self) -> str:
        """The target user's ``$XDG_STATE_HOME`` (default ``~/.local/state``)."""
        ...

    def read_file(self, path: str) -> str | None:
        """The text of ``path`` on the target; None when it cannot be read."""
        ...

    def write_file(self, path: str, data: bytes) -> None:
        """Write ``data`` atomically to ``path`` on the target, mode 0600 in a 0700 folder."""
        ...

    def append_file(self, path: str, data: bytes) -> None:
        """Append ``data`` to ``path`` on the target (the audit log), mode 0600 in a 0700 folder."""
        ...

    def close(self) -> None: ...


# State folders are 0700 and their files 0600 (the env copy may hold secrets), on this
# machine and over SSH alike: umask 077 for what is created, chmod for what already exists.
_PRIVATE_DIR = 'umask 077 && mkdir -p "$(dirname "$1")" && chmod 700 "$(dirname "$1")"'
_WRITE = _PRIVATE_DIR + ' && cat > "$1.tmp" && chmod 600 "$1.tmp" && mv -f "$1.tmp" "$1"'
_APPEND = _PRIVATE_DIR + ' && cat >> "$1" && chmod 600 "$1"'


def read_file_command(path: str) -> list[str]:
    """argv that prints ``path`` on the target."""
    return ["cat", path]


def write_file_command(path: str) -> list[str]:
    """argv that writes its stdin to ``path`` atomically (temp file, then ``mv``), 0600 in 0700."""
    return ["sh", "-c", _WRITE, "sh", path]


def append_file_command(path: str) -> list[str]:
    """argv that appends its stdin to ``path``, 0600 in 0700."""
    return ["sh", "-c", _APPEND, "sh", path]


class TargetFiles:
    """``read_file``/``write_file``/``append_file`` through the runner's own ``run``, so local
    and SSH targets share them (and their modes)."""

    def read_file(self: Runner, path: str) -> str | None:
        done = self.run(read_file_command(path), timeout=60)
        return done.stdout if done.returncode == 0 else None

    def write_file(self: Runner, path: str, data: bytes) -> None:
        done = self.run(write_file_command(path), input_bytes=data, timeout=60)
        if done.returncode != 0:
            raise DeployError(f"cannot write {path} on {self.host}: {done.stderr.strip()}")

    def append_file(self: Runner, path: str, data: bytes) -> None:
        done = self.run(append_file_command(path), input_bytes=data, timeout=30)
        if done.returncode != 0:
            raise DeployError(f"cannot append to {path} on {self.host}: {done.stderr.strip()}")


def json_object(text: str) -> dict[str, Any]:
    """``text`` (a file on the target: any content) as a JSON object; ``ValueError`` naming
    why it is not one."""
    try:
        data = json.loads(bounded.check_json(text))
    except (ValueError, RecursionError):
        raise ValueError("not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def command_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """One shell-quoted command line; ``env`` goes in front through ``env K=V`` (not SSH env)."""
    prefix = ["env", *(f"{key}={value}" for key, value in env.items())] if env else []
    return shlex.join([*prefix, *argv])


class LocalRunner(TargetFiles):
    """Runs on this machine."""

    def __init__(self, docker_host: str | None = None) -> None:
        self.host = "local"
        self.base_env = {"DOCKER_HOST": docker_host} if docker_host else {}

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
        try:
            return process.run(
                argv,
                env={**self.base_env, **(env or {})},
                input_bytes=input_bytes,
                timeout=timeout,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
            )
        except FileNotFoundError:
            return Completed(tuple(argv), 127, "", f"{argv[0]}: command not found\n")
        except subprocess.TimeoutExpired:
            raise DeployError(
                f"`{shlex.join(argv)}` did not finish within {timeout:.0f}s; check the target and run again."
            ) from None

    def run_stdin_stream(
        self, argv: Sequence[str], source: BinaryIO, *, on_chunk: ChunkSink | None = None
    ) -> Completed:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=process.child_env(self.base_env),
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            copy_stream(source, proc.stdin.write, on_chunk)
            proc.stdin.close()
            out = proc.stdout.read().decode("utf-8", "replace")
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return Completed(tuple(argv), proc.returncode, out, "")

    def state_home(self) -> str:
        return os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")

    def close(self) -> None:
        pass


@contextmanager
def local_stdout_stream(argv: Sequence[str], docker_host: str | None = None) -> Iterator[BinaryIO]:
    """Start ``argv`` on this machine and yield its stdout as a byte stream (``docker save``)."""
    env = process.child_env({"DOCKER_HOST": docker_host} if docker_host else None)
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        yield proc.stdout  # type: ignore[misc]  # typeshed says IO[bytes]; with PIPE it is a BinaryIO
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        proc.wait()
    if proc.returncode != 0:
        message = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
        raise DeployError(f"`{shlex.join(argv)}` failed: {message}")


def copy_stream(source: BinaryIO, write: Callable[[bytes], object], on_chunk: ChunkSink | None) -> int:
    total = 0
    while chunk := source.read(1 << 20):
        write(chunk)
        total += len(chunk)
        if on_chunk:
            on_chunk(total)
    return total


def this_host() -> str:
    return socket.gethostname()
