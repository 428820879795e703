"""``send_image``: get ``IMAGE:VERSION`` onto the server, proven by its id, before anything stops.

``registry`` (the default for an SSH host): start the local registry, open the remote forward,
push, ``docker pull 127.0.0.1:PORT/NAME@DIGEST`` on the server, check the pulled id is the local
id (else refuse: nothing was stopped), then ``docker tag`` it ``IMAGE:VERSION``. Only the layers
the server lacks cross SSH. A known ``digest`` (rollback, sandbox) is pulled by that digest when
the registry still holds it. A server that refuses the forward gets ``docker save | docker
load`` instead, said in one line. ``save``: ``docker save | docker load``, today's way.
The registry and the forward are stopped on every exit (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError, UsageError
from frappe_imagekit.progress import FAILED, SILENT, Reporter
from frappe_imagekit.runner import LocalRunner, Runner, local_stdout_stream
from frappe_imagekit.ssh import SSHRunner
from frappe_imagekit.transfer import push as pushing
from frappe_imagekit.transfer import registry as registries
from frappe_imagekit.transfer.show import TASK, Progress, megabytes
from frappe_imagekit.transfer.tunnel import ForwardRefused, Tunnel, remote_forward

EventSink = Callable[[str], None]
REGISTRY, SAVE = "registry", "save"
METHODS = (REGISTRY, SAVE)
_PULLED = re.compile(r"^[0-9a-f]{12}: Pull complete\s*$")
_PRESENT = re.compile(r"^[0-9a-f]{12}: Already exists\s*$")
# on the server: how many registry digests each image of the repository $1 has (one a line)
_DIGEST_COUNTS = (
    'for id in $(docker image ls --quiet --no-trunc "$1"); do '
    "docker image inspect --format '{{len .RepoDigests}}' \"$id\"; done"
)
# on the server: the id of $1; only when it is $3, tag $1 as $2 and print the id of $2
_TAG_IF_SAME = (
    'id=$(docker image inspect --format \'{{.Id}}\' "$1") || exit 1; echo "$id"; '
    '[ "$id" = "$3" ] || exit 3; docker tag "$1" "$2" || exit 1; '
    "docker image inspect --format '{{.Id}}' \"$2\""
)


@dataclass(frozen=True)
class SendOptions:
    image: str  # the repository, e.g. desiredeffect/erpnext-custom
    version: str  # the tag
    method: str = REGISTRY
    source_docker_host: str | None = None  # the daemon the image is sent from
    registry_dir: Path | None = None  # default: registry.storage_folder()
    digest: str | None = None  # pull by this digest when the registry still holds it
    bar: bool = False  # draw a progress bar on stderr (a terminal)
    progress: bool = True  # False: no running progress lines, only the final one

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.version}"


@dataclass
class Sent:
    method: str  # what was used in the end: registry or save
    image_id: str
    digest: str | None  # the registry digest (None after save | load)
    bytes_sent: int  # bytes that went to the server (tunnel or save stream)
    layers_fetched: int = 0
    layers_present: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    pulled_from: str | None = None  # 127.0.0.1:PORT/NAME@DIGEST on the server (the tunnel's end)


def transfer_method(value: str, what: str = "--transfer") -> str:
    if value not in METHODS:
        raise UsageError(f"{what} is {value[:40]!r}: use registry or save.")
    return value


def send_image(runner: Runner, opts: SendOptions, emit: EventSink, reporter: Reporter = SILENT) -> Sent:
    """Send ``opts.ref`` to ``runner``'s host and return what was sent (see the module docstring);
    ``reporter`` gets the task ``send image`` (bytes sent, layers fetched)."""
    transfer_method(opts.method)
    reporter.start(TASK)
    try:
        sent = _send(runner, opts, emit, reporter)
    except BaseException:
        reporter.finish(TASK, outcome=FAILED)
        raise
    reporter.finish(TASK, seconds=sent.seconds)
    return sent


def _send(runner: Runner, opts: SendOptions, emit: EventSink, reporter: Reporter) -> Sent:
    started = time.monotonic()
    if opts.method == REGISTRY and isinstance(runner, SSHRunner):
        try:
            sent = _via_registry(runner, opts, emit, reporter)
        except ForwardRefused:
            emit(
                f"{runner.host} refused the SSH remote forward (AllowTcpForwarding no?): sending "
                f"{opts.ref} with docker save | docker load instead."
            )
            sent = save_load(runner, opts, emit, reporter)
            sent.notes.append(
                f"{runner.host} refused the SSH remote forward: the image went by docker save | docker load."
            )
    else:
        sent = save_load(runner, opts, emit, reporter)
    sent.seconds = round(time.monotonic() - started, 3)
    return sent


def save_load(runner: Runner, opts: SendOptions, emit: EventSink, reporter: Reporter = SILENT) -> Sent:
    """``docker save`` here into ``docker load`` there; the loaded id must be the local id."""
    local = LocalRunner(opts.source_docker_host)
    image_id = pushing.local_id(local, opts.ref)
    emit(f"sending {opts.ref} to {runner.host} (docker save | docker load)")
    progress = Progress(
        emit,
        "docker save | docker load",
        bar=opts.bar,
        every=_every(opts),
        reporter=reporter,
        counts_layers=False,
    )
    with local_stdout_stream(["docker", "save", opts.ref], opts.source_docker_host) as data:
        loaded = runner.run_stdin_stream(["docker", "load"], data, on_chunk=progress.bytes)
    progress.done()
    if loaded.returncode != 0:
        why = pushing.last_line(loaded.stdout + loaded.stderr)
        raise DeployError(
            f"docker load of {opts.ref} on {runner.host} failed ({why}); "
            "check the disk space and docker there; nothing was stopped."
        )
    require_id(runner, opts.ref, image_id)
    return Sent(SAVE, image_id, None, progress.sent)


def _every(opts: SendOptions) -> float:
    return 2.0 if opts.progress else float("inf")


def _via_registry(runner: SSHRunner, opts: SendOptions, emit: EventSink, reporter: Reporter) -> Sent:
    local = LocalRunner(opts.source_docker_host)
    image_id = pushing.local_id(local, opts.ref)
    progress = Progress(emit, "registry tunnel", bar=opts.bar, every=_every(opts), reporter=reporter)
    with (
        registries.running(opts.registry_dir) as registry,
        remote_forward(runner.transport(), registry.port, progress.bytes) as tunnel,
    ):
        digest = _pushed_digest(local, registry, opts, image_id, emit)
        notes = _loaded_only_note(runner, opts)
        for note in notes:
            emit(note)
        fetched, present = _pull(runner, tunnel, opts, digest, progress, emit)
        progress.done()
        source = f"{tunnel.remote_address}/{opts.image}@{digest}"
        tag_checked(runner, source, opts.ref, image_id)
        return Sent(
            REGISTRY, image_id, digest, tunnel.sent, fetched, present, notes=notes, pulled_from=source
        )


def _pushed_digest(
    local: LocalRunner, registry: registries.Registry, opts: SendOptions, image_id: str, emit: EventSink
) -> str:
    if opts.digest:
        digest = validate.image_digest(opts.digest, f"the recorded digest of {opts.ref}", DeployError)
        if registry.has_manifest(opts.image, digest):
            emit(f"{opts.ref} is in the local registry as {digest}: pulling by that digest")
            return digest
    emit(f"pushing {opts.ref} to the local registry {registry.address} ({registry.folder})")
    pushed = pushing.push(local, registry, opts.ref, opts.image, opts.version)
    emit(f"  {pushed.pushed} layer(s) pushed, {pushed.existing} already there; digest {pushed.digest}")
    if pushed.image_id != image_id:
        raise DeployError(f"{opts.ref} changed while it was pushed: run again; nothing was stopped.")
    return pushed.digest


def _loaded_only_note(runner: SSHRunner, opts: SendOptions) -> list[str]:
    """A server whose copies of IMAGE all came from ``docker load`` has no registry digests for
    their layers, so this first pull fetches every layer once: say so."""
    done = runner.run(["sh", "-c", _DIGEST_COUNTS, "sh", opts.image], timeout=60)
    counts = done.stdout.split()
    if not counts or any(count != "0" for count in counts):
        return []
    return [
        f"{runner.host} has {opts.image} only from docker load (no registry digests): this first pull "
        "fetches every layer once; later deploys send only the layers that changed."
    ]


def _pull(
    runner: SSHRunner, tunnel: Tunnel, opts: SendOptions, digest: str, progress: Progress, emit: EventSink
) -> tuple[int, int]:
    source = f"{tunnel.remote_address}/{opts.image}@{digest}"
    emit(f"pulling {opts.image}@{digest} on {runner.host} through the SSH tunnel")
    present = [0]

    def line(text: str) -> None:
        if _PULLED.match(text.strip()):
            progress.layer()
        elif _PRESENT.match(text.strip()):
            present[0] += 1

    done = runner.run(["docker", "pull", source], on_stdout=line, on_stderr=line)
    if done.returncode != 0:
        raise DeployError(
            f"docker pull {source} on {runner.host} failed ({pushing.last_line(done.stdout + done.stderr)}): "
            "check the disk space and docker there; nothing was stopped."
        )
    return progress.layers, present[0]


def tag_checked(runner: Runner, source: str, ref: str, image_id: str) -> None:
    """Refuse a pulled image whose id is not the local one; else tag it ``IMAGE:VERSION`` (one
    round trip: the id is compared on the server before the tag, and read back after it)."""
    done = runner.run(["sh", "-c", _TAG_IF_SAME, "sh", source, ref, image_id], timeout=60)
    found = done.stdout.split()
    if not found or found[0] != image_id:
        _refuse(runner, source, found[0] if found else "", image_id, "pulled")
    if done.returncode != 0 or found != [image_id, image_id]:
        why = pushing.last_line(done.stderr)
        raise DeployError(f"docker tag {source} {ref} on {runner.host} failed ({why}); nothing was stopped.")


def require_id(runner: Runner, ref: str, image_id: str, pulled: bool = False) -> None:
    done = runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], timeout=60)
    found = done.stdout.strip()
    if done.returncode != 0 or found != image_id:
        _refuse(runner, ref, found, image_id, "pulled" if pulled else "sent")


def _refuse(runner: Runner, ref: str, found: str, image_id: str, how: str) -> NoReturn:
    raise DeployError(
        f"the image {how} to {runner.host} as {ref} has id {found[:80] or 'none'}, not this machine's "
        f"{image_id}: refusing to deploy it; nothing was stopped."
    )


__all__ = ["METHODS", "REGISTRY", "SAVE", "SendOptions", "Sent", "megabytes", "send_image", "transfer_method"]
