"""The deploy lock: an atomic ``mkdir`` on the target plus a details file.

``mkdir`` either creates the folder or fails because it exists, on every filesystem and over
SSH alike, so two deploys can never both hold it. ``details.json`` inside says who holds it,
since when, from which machine, for which version and with which process id. A lock whose
holder ran on this machine and whose process is gone is reported as stale, with how to clear it.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypedDict, cast

from frappe_imagekit.errors import DeployError, LockHeldError
from frappe_imagekit.runner import Runner, json_object, this_host

DETAILS = "details.json"


class LockDetails(TypedDict, total=False):
    """``details.json`` in the lock folder. It is a file on the target (any content): read back
    through ``parse_details``, which keeps only these fields, each of its type."""

    who: str
    when: str
    host: str  # the target, as the deploy named it
    version: str
    pid: int
    hostname: str  # the machine imagekit ran on


def lock_details(version: str, target: str) -> LockDetails:
    """Who is taking the lock: user, time, target host, version, pid, hostname."""
    return LockDetails(
        who=getpass.getuser(),
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        host=target,
        version=version,
        pid=os.getpid(),
        hostname=this_host(),
    )


_DETAIL_TYPES: dict[str, type] = {
    "who": str,
    "when": str,
    "host": str,
    "version": str,
    "pid": int,
    "hostname": str,
}


def details_path(lock_dir: str) -> str:
    """Where the holder's details are kept, inside the lock folder."""
    return f"{lock_dir}/{DETAILS}"


def parent_command(lock_dir: str) -> list[str]:
    """argv that makes the folder the lock lives in (0700)."""
    return ["sh", "-c", 'umask 077 && mkdir -p "$1" && chmod 700 "$1"', "sh", os.path.dirname(lock_dir)]


def acquire_command(lock_dir: str) -> list[str]:
    """argv that takes the lock: ``mkdir`` fails when the folder exists."""
    return ["mkdir", "-m", "700", lock_dir]


def remove_command(lock_dir: str) -> list[str]:
    """argv that clears the lock (its details file included)."""
    return ["rm", "-rf", lock_dir]


def read_details(runner: Runner, lock_dir: str) -> LockDetails | None:
    """Who holds the lock, or None when there are no usable details."""
    return parse_details(runner.read_file(details_path(lock_dir)))


def parse_details(text: str | None) -> LockDetails | None:
    """The lock details in ``text`` (a file on the target: any content): the known fields of
    the right type, at most 200 characters each; None when it is not a JSON object."""
    if not text:
        return None
    try:
        data = json_object(text)
    except ValueError:
        return None
    kept = {
        key: value[:200] if isinstance(value, str) else value
        for key, value in data.items()
        if key in _DETAIL_TYPES and type(value) is _DETAIL_TYPES[key]
    }
    return cast(LockDetails, kept) if kept else None  # each field of its LockDetails type


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no process can have that pid
        return False
    except PermissionError:
        return True
    return True


def is_stale(details: LockDetails | None) -> bool:
    """Provably gone: taken on this machine by a process that no longer exists."""
    if not details or details.get("hostname") != this_host():
        return False
    pid = details.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and not pid_alive(pid)


def try_acquire(runner: Runner, lock_dir: str, details: LockDetails) -> bool:
    """Take the lock if free; False when somebody holds it."""
    runner.run(parent_command(lock_dir), timeout=30)
    done = runner.run(acquire_command(lock_dir), timeout=30)
    if done.returncode != 0:
        if "exist" in done.stderr.lower():
            return False
        raise DeployError(f"cannot create the lock {lock_dir} on {runner.host}: {done.stderr}")
    runner.write_file(details_path(lock_dir), json.dumps(details).encode())
    return True


def acquire(runner: Runner, lock_dir: str, details: LockDetails, project: str, wait: float = 0) -> None:
    """Take the lock, waiting up to ``wait`` seconds; raise ``LockHeldError`` naming the holder."""
    deadline = time.monotonic() + wait
    while not try_acquire(runner, lock_dir, details):
        holder = read_details(runner, lock_dir)
        if is_stale(holder) or time.monotonic() >= deadline:
            raise LockHeldError(held_message(project, holder, runner.host))
        time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))


def held_message(project: str, holder: LockDetails | None, host: str) -> str:
    unlock = f"`imagekit unlock --project {project}`"
    if holder is None:
        return (
            f"project {project} on {host} is locked by another deploy (no usable details yet); "
            f"wait and retry, or clear it with {unlock} if no deploy runs."
        )
    who = (
        f"{holder.get('who')} on {holder.get('hostname')} (pid {holder.get('pid')}) "
        f"since {holder.get('when')}, deploying {holder.get('version')}"
    )
    if is_stale(holder):
        return (
            f"project {project} has a stale deploy lock: {who}, and that process is gone; "
            f"clear it with {unlock}."
        )
    return (
        f"project {project} on {host} is locked by {who}; wait for it (--lock-wait SECONDS) "
        f"or, if that deploy is dead, clear it with {unlock}."
    )


def release(runner: Runner, lock_dir: str, details: LockDetails) -> None:
    """Remove the lock if it is still ours."""
    holder = read_details(runner, lock_dir)
    if holder is None or (
        holder.get("pid") == details["pid"] and holder.get("hostname") == details["hostname"]
    ):
        remove(runner, lock_dir)


def remove(runner: Runner, lock_dir: str) -> LockDetails | None:
    """Clear the lock whoever holds it; return who held it."""
    holder = read_details(runner, lock_dir)
    runner.run(remove_command(lock_dir), timeout=30)
    return holder


@contextmanager
def held(
    runner: Runner, lock_dir: str, details: LockDetails, project: str, wait: float = 0
) -> Iterator[None]:
    """Hold the lock for the block; released on every exit, Ctrl-C included."""
    acquire(runner, lock_dir, details, project, wait)
    try:
        yield
    finally:
        release(runner, lock_dir, details)
