"""The image onto the target: the one ``send_image`` step that deploy, rollback and sandbox call.

``ImageTransfer.method`` chooses how: ``registry`` pushes it to a registry on this machine and
the target pulls it by digest through an SSH remote forward (frappe_imagekit/transfer/: only the
layers the target lacks cross SSH); ``stream`` (``--transfer save``) streams ``docker save`` into
``docker load`` on the target; ``auto`` (the default) is ``registry`` for an SSH target when
Debian's ``docker-registry`` is installed here and the image is on a daemon of this machine,
else ``stream``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError, UsageError
from frappe_imagekit.process import Completed, which
from frappe_imagekit.progress import SILENT, Reporter
from frappe_imagekit.runner import LocalRunner, Runner
from frappe_imagekit.ssh import SSHRunner
from frappe_imagekit.transfer import registry as local_registry
from frappe_imagekit.transfer import send as registry_send

EventSink = Callable[[str], None]
STREAM = "stream"  # docker save | docker load
REGISTRY = registry_send.REGISTRY  # push here, pull by digest there through the SSH tunnel
AUTO = "auto"
TRANSFERS = {AUTO: AUTO, "registry": REGISTRY, "save": STREAM}  # --transfer value -> method


@dataclass(frozen=True)
class ImageTransfer:
    """How an image the target lacks gets there."""

    source_docker_host: str | None = None  # the daemon here it is sent from (None: this machine's)
    method: str = AUTO
    allowed: bool = True  # False: never send (deploy --no-send-image): the target must have it


@dataclass(frozen=True)
class SentImage:
    ref: str
    seconds: float
    method: str = STREAM
    digest: str | None = None  # the registry digest it was pulled by (registry only)
    notes: tuple[str, ...] = ()  # for the report: a refused forward, a first pull after docker load


def image_present(runner: Runner, ref: str) -> bool:
    return runner.run(["docker", "image", "inspect", ref], timeout=60).returncode == 0


def missing_images(runner: Runner, refs: Sequence[str]) -> list[str]:
    """Those of ``refs`` the daemon does not have (one ``docker image inspect`` for all)."""
    if not refs:
        return []
    checked = [validate.not_an_option(ref, "a service's image", DeployError) for ref in refs]
    done = runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", "--", *checked], timeout=60)
    if done.returncode == 0:
        return []
    return [ref for ref in refs if f"No such image: {ref}" in done.stderr]


def source_has(transfer: ImageTransfer, ref: str) -> bool:
    """Whether the daemon the image would be sent from has ``ref``."""
    return image_present(LocalRunner(transfer.source_docker_host), ref)


def send_image(
    runner: Runner,
    ref: str,
    transfer: ImageTransfer,
    emit: EventSink,
    *,
    progress: bool = True,
    digest: str | None = None,
    reporter: Reporter = SILENT,
) -> SentImage:
    """Send ``ref`` to the target of ``runner`` and check it arrived; ``DeployError`` naming
    docker's last words when it did not. The caller checks first that it may (``transfer``).
    ``digest``: the version's recorded digest, pulled by when the local registry still has it."""
    if chosen_method(runner, transfer) == REGISTRY:
        return _through_registry(
            runner, ref, transfer, emit, digest=digest, progress=progress, reporter=reporter
        )
    started = time.monotonic()
    name, _, version = ref.rpartition(":")
    options = registry_send.SendOptions(
        name, version, registry_send.SAVE, transfer.source_docker_host, progress=progress
    )
    registry_send.save_load(runner, options, emit, reporter)  # the one docker save | docker load
    return SentImage(ref, round(time.monotonic() - started, 3), STREAM)


def transfer_method(value: str, what: str = "--transfer") -> str:
    """``auto``, ``registry`` or ``save`` (a ``UsageError`` otherwise) -> the method name."""
    if value not in TRANSFERS:
        raise UsageError(f"{what} is {value[:40]!r}: use auto, registry or save.")
    return TRANSFERS[value]


def chosen_method(runner: Runner, transfer: ImageTransfer) -> str:
    """What ``auto`` means for this target (see the module docstring)."""
    if transfer.method != AUTO:
        return transfer.method
    source = transfer.source_docker_host or os.environ.get("DOCKER_HOST") or "unix://"
    here = source.startswith("unix://")  # a daemon elsewhere would push to its own 127.0.0.1
    usable = isinstance(runner, SSHRunner) and here and which(local_registry.BINARY) is not None
    return REGISTRY if usable else STREAM


def _through_registry(
    runner: Runner,
    ref: str,
    transfer: ImageTransfer,
    emit: EventSink,
    *,
    digest: str | None,
    progress: bool,
    reporter: Reporter,
) -> SentImage:
    if not isinstance(runner, SSHRunner):
        raise DeployError(f"--transfer registry needs an SSH target (--host); {ref} is for this machine.")
    name, _, version = ref.rpartition(":")
    emit(f"sending {ref} to {runner.host} (local registry and SSH tunnel: only the layers it lacks)")
    options = registry_send.SendOptions(
        name, version, REGISTRY, transfer.source_docker_host, digest=digest, progress=progress
    )
    sent = registry_send.send_image(runner, options, emit, reporter)
    method = REGISTRY if sent.method == REGISTRY else STREAM
    return SentImage(ref, sent.seconds, method, sent.digest, tuple(sent.notes))


def last_line(done: Completed) -> str:
    """The last line a command printed (stderr first), else its exit status."""
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
