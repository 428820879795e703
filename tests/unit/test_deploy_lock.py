"""The deploy lock on a LocalRunner in tmp_path (real mkdir, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from frappe_imagekit.deploy import lock
from frappe_imagekit.errors import ExitCode, LockHeldError
from frappe_imagekit.runner import LocalRunner, this_host


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "projects" / "erp" / "lock")


def details(pid: int | None = None, who: str = "alice") -> dict:
    d = lock.lock_details("v1.1.5", "local")
    d.update(who=who, pid=pid or os.getpid())
    return d


def test_acquire_writes_details_and_release_removes(lock_dir: str):
    runner = LocalRunner()
    mine = details()
    with lock.held(runner, lock_dir, mine, "erp"):
        written = json.loads(Path(lock_dir, "details.json").read_text())
        assert written == mine
        assert set(written) == {"who", "when", "host", "version", "pid", "hostname"}
    assert not Path(lock_dir).exists()


def test_second_acquire_is_refused_with_holder_details(lock_dir: str):
    runner = LocalRunner()
    holder = details(pid=1, who="bob")
    assert lock.try_acquire(runner, lock_dir, holder)
    with pytest.raises(LockHeldError) as info:
        lock.acquire(runner, lock_dir, details(), "erp")
    message = str(info.value)
    assert info.value.exit_code == ExitCode.LOCKED
    assert f"locked by bob on {this_host()} (pid 1)" in message
    assert "deploying v1.1.5" in message and "imagekit unlock --project erp" in message


def test_release_leaves_somebody_elses_lock(lock_dir: str):
    runner = LocalRunner()
    assert lock.try_acquire(runner, lock_dir, details(pid=1, who="bob"))
    lock.release(runner, lock_dir, details())
    assert Path(lock_dir).is_dir()


def test_released_on_keyboard_interrupt(lock_dir: str):
    with pytest.raises(KeyboardInterrupt), lock.held(LocalRunner(), lock_dir, details(), "erp"):
        raise KeyboardInterrupt
    assert not Path(lock_dir).exists()


def test_stale_lock_of_a_dead_local_process(lock_dir: str):
    dead = subprocess.Popen(["true"])
    dead.wait()
    runner = LocalRunner()
    assert lock.try_acquire(runner, lock_dir, details(pid=dead.pid))
    assert lock.is_stale(lock.read_details(runner, lock_dir))
    with pytest.raises(LockHeldError, match="stale deploy lock.*imagekit unlock --project erp"):
        lock.acquire(runner, lock_dir, details(), "erp", wait=30)  # stale: no waiting
    assert lock.remove(runner, lock_dir)["pid"] == dead.pid
    assert not Path(lock_dir).exists()


def test_lock_from_another_machine_is_never_stale():
    assert not lock.is_stale({"hostname": "elsewhere", "pid": 999999})


def test_wait_gets_the_lock_when_released(lock_dir: str):
    runner = LocalRunner()
    assert lock.try_acquire(runner, lock_dir, details(pid=1, who="bob"))
    threading.Timer(0.5, lambda: lock.remove(runner, lock_dir)).start()
    lock.acquire(runner, lock_dir, details(), "erp", wait=10)
    assert lock.read_details(runner, lock_dir)["pid"] == os.getpid()


def test_lock_commands_are_argv_lists() -> None:
    lock_dir = "/state/projects/erp/lock"
    assert lock.parent_command(lock_dir) == [
        "sh",
        "-c",
        'umask 077 && mkdir -p "$1" && chmod 700 "$1"',
        "sh",
        "/state/projects/erp",
    ]
    assert lock.acquire_command(lock_dir) == ["mkdir", "-m", "700", lock_dir]
    assert lock.remove_command(lock_dir) == ["rm", "-rf", lock_dir]
    assert lock.details_path(lock_dir) == "/state/projects/erp/lock/details.json"
