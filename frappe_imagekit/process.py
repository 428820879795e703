"""The one place local processes are started.

Commands are argv lists (never ``shell=True``). Secrets travel only in the child's environment,
never in argv. Output can be streamed line by line to a callback as it arrives.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def which(name: str) -> str | None:
    return shutil.which(name)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_bytes: bytes | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    on_stdout: LineSink | None = None,
    on_stderr: LineSink | None = None,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    own_group: bool = False,
) -> Completed:
    """Run ``argv``; stream each output line to the sinks; return all output.

    ``env`` entries are added to the current environment of the child only.
    Raises ``FileNotFoundError`` when the program does not exist and
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds (the child is killed).
    With ``own_group`` the child leads a process group of its own, and an interrupt or timeout
    kills the whole group: ``docker buildx build`` runs the buildx plugin as a child process,
    which would otherwise outlive a killed docker CLI.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(env),
        cwd=cwd,
        start_new_session=own_group,
    )
    if on_start:
        on_start(proc)
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, out, on_stdout), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, on_stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        if input_bytes is not None and proc.stdin:
            _feed(proc.stdin, input_bytes)
        _wait(proc, timeout)
    except BaseException:
        _kill(proc, own_group)
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=5)
    return Completed(tuple(argv), proc.returncode, "".join(out), "".join(err))


def _wait(proc: subprocess.Popen[bytes], timeout: float | None) -> None:
    """``proc.wait(timeout)`` without its polling: with a timeout, Python looks every 0.5 to 50 ms
    (sleeping between looks), so each command ended up to 50 ms late; a thread waits instead."""
    if timeout is None:
        proc.wait()
        return
    exited = threading.Event()

    def wait() -> None:
        proc.wait()
        exited.set()

    threading.Thread(target=wait, daemon=True).start()
    if not exited.wait(timeout):
        raise subprocess.TimeoutExpired(proc.args, timeout)


def _kill(proc: subprocess.Popen[bytes], group: bool) -> None:
    if not group:
        proc.kill()
        return
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)


def _pump(stream: IO[bytes], sink: list[str], on_line: LineSink | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        sink.append(line)
        if on_line:
            on_line(line.rstrip("\n"))
    stream.close()


def _feed(stdin: IO[bytes], data: bytes) -> None:
    """Write ``data`` to a child's stdin and close it. A child that exits without reading all
    of it (a command that failed first) closes the pipe: its exit status says what went wrong."""
    try:
        with contextlib.suppress(BrokenPipeError):
            stdin.write(data)
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
