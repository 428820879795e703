"""The image onto the target: the one ``send_image`` step that deploy, rollback and sandbox call.

Today it streams ``docker save`` (on this machine, or the daemon of ``--docker-host``) into
``docker load`` on the target; ``ImageTransfer.method`` is where another way plugs in (a
registry through the SSH tunnel), chosen once in the ``Target``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import LocalRunner, Runner, local_stdout_stream

EventSink = Callable[[str], None]
STREAM = "stream"  # docker save | docker load


@dataclass(frozen=True)
class ImageTransfer:
    """How an image the target lacks gets there."""

    source_docker_host: str | None = None  # the daemon here it is sent from (None: this machine's)
    method: str = STREAM
    allowed: bool = True  # False: never send (deploy --no-send-image): the target must have it


@dataclass(frozen=True)
class SentImage:
    ref: str
    seconds: float
    method: str = STREAM


def image_present(runner: Runner, ref: str) -> bool:
    return runner.run(["docker", "image", "inspect", ref], timeout=60).returncode == 0


def source_has(transfer: ImageTransfer, ref: str) -> bool:
    """Whether the daemon the image would be sent from has ``ref``."""
    return image_present(LocalRunner(transfer.source_docker_host), ref)


def send_image(
    runner: Runner, ref: str, transfer: ImageTransfer, emit: EventSink, *, progress: bool = True
) -> SentImage:
    """Send ``ref`` to the target of ``runner`` and check it arrived; ``DeployError`` naming
    docker's last words when it did not. The caller checks first that it may (``transfer``)."""
    emit(f"sending {ref} to {runner.host} (docker save | docker load)")
    started = time.monotonic()
    on_chunk = _progress(emit) if progress else None
    with local_stdout_stream(["docker", "save", ref], transfer.source_docker_host) as data:
        loaded = runner.run_stdin_stream(["docker", "load"], data, on_chunk=on_chunk)
    if loaded.returncode != 0 or not image_present(runner, ref):
        raise DeployError(
            f"docker load of {ref} on {runner.host} failed ({last_line(loaded)}); "
            "check the disk space and docker there."
        )
    return SentImage(ref, round(time.monotonic() - started, 3), transfer.method)


def _progress(emit: EventSink) -> Callable[[int], None]:
    last = [0.0]

    def progress(sent: int) -> None:
        if time.monotonic() - last[0] > 1:
            last[0] = time.monotonic()
            emit(f"  sent {sent / 1e6:.1f} MB")

    return progress


def last_line(done: Completed) -> str:
    """The last line a command printed (stderr first), else its exit status."""
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
