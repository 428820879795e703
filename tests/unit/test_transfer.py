"""The transfer package's pure parts: push and pull output, digests, progress, id checks, faults.

Push and pull output are real transcripts of Docker 20.10 (tests/fixtures/transfer/, captured
from this machine's daemon pushing to Debian's docker-registry and a second daemon pulling).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError, UsageError
from frappe_imagekit.process import Completed
from frappe_imagekit.transfer import registry as registries
from frappe_imagekit.transfer.push import PushCount, push_failure
from frappe_imagekit.transfer.send import SendOptions, require_id, send_image, tag_checked, transfer_method
from frappe_imagekit.transfer.show import Progress

FIXTURES = Path(__file__).parents[1] / "fixtures" / "transfer"
DIGEST = "sha256:d5bf716684bc731c3bce353b3e3e7ade1bf66ad6fbf4f87ec218199b4e686358"
ID = "sha256:" + "a" * 64


def counted(name: str) -> PushCount:
    count = PushCount()
    for line in (FIXTURES / name).read_text().splitlines():
        count.feed(line)
    return count


def test_first_push_counts_pushed_layers_and_reads_the_digest():
    count = counted("docker-push-20.10.txt")
    assert (count.pushed, count.existing, count.digest) == (3, 0, DIGEST)


def test_second_push_finds_every_layer_already_there():
    count = counted("docker-push-again-20.10.txt")
    assert (count.pushed, count.existing, count.digest) == (0, 3, DIGEST)


@pytest.mark.parametrize(
    "value", [DIGEST[7:], "sha256:" + "A" * 64, DIGEST + "\n; rm -rf /", "md5:" + "a" * 64, "sha256:"]
)
def test_image_digest_refuses_anything_but_sha256_and_64_hex(value: str):
    with pytest.raises(DeployError, match="is not an image digest"):
        validate.image_digest(value, "the digest", DeployError)


def test_image_digest_accepts_the_real_one():
    assert validate.image_digest(DIGEST) == DIGEST


def test_transfer_method_is_registry_or_save():
    assert transfer_method("save") == "save"
    with pytest.raises(UsageError) as caught:
        transfer_method("rsync")
    assert str(caught.value) == "--transfer is 'rsync': use registry or save."


def test_progress_plain_lines_are_throttled_and_name_bytes_and_layers():
    lines: list[str] = []
    now = [0.0]
    progress = Progress(lines.append, "registry tunnel", every=2.0, clock=lambda: now[0])
    progress.bytes(1_000_000)
    now[0] = 2.5
    progress.bytes(3_000_000)
    progress.layer()
    progress.done()
    assert lines == [
        "  registry tunnel: 3.0 MB sent, 0 layer(s) fetched",
        "  registry tunnel: 3.0 MB sent, 1 layer(s) fetched",
        "registry tunnel: 3.0 MB sent, 1 layer(s) fetched",
    ]


def test_progress_bar_redraws_one_terminal_line():
    stream = io.StringIO()
    lines: list[str] = []
    progress = Progress(lines.append, "registry tunnel", bar=True, stream=stream)
    progress.total = 4_000_000
    progress.bytes(2_000_000)
    progress.done()
    assert stream.getvalue() == (
        "\r["
        + "#" * 15
        + "." * 15
        + "]  registry tunnel: 2.0 MB of at most 4.0 MB sent, 0 layer(s) fetched\n"
    )
    assert lines == ["registry tunnel: 2.0 MB of at most 4.0 MB sent, 0 layer(s) fetched"]


class FakeServer:
    """Answers ``docker image inspect --format {{.Id}} REF`` with a fixed id."""

    host = "root@127.0.0.1:22"

    def __init__(self, image_id: str, code: int = 0) -> None:
        self.image_id, self.code = image_id, code
        self.argv: tuple[str, ...] = ()

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: object
    ) -> Completed:
        self.argv = tuple(argv)
        return Completed(tuple(argv), self.code, self.image_id + "\n", "")


def test_a_pulled_image_with_another_id_is_refused():
    server = FakeServer("sha256:" + "b" * 64)
    with pytest.raises(DeployError) as caught:
        require_id(server, "127.0.0.1:5000/x@" + DIGEST, ID, pulled=True)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"the image pulled to root@127.0.0.1:22 as 127.0.0.1:5000/x@{DIGEST} has id sha256:{'b' * 64}, not "
        f"this machine's {ID}: refusing to deploy it; nothing was stopped."
    )


def test_a_pulled_image_with_another_id_is_never_tagged():
    server = FakeServer("sha256:" + "b" * 64, code=3)  # the server-side check exits 3 before the tag
    source = "127.0.0.1:5000/x@" + DIGEST
    with pytest.raises(DeployError, match="refusing to deploy it; nothing was stopped"):
        tag_checked(server, source, "x:v1", ID)  # type: ignore[arg-type]
    assert server.argv[:2] == ("sh", "-c") and server.argv[-3:] == (source, "x:v1", ID)


def test_the_same_id_passes():
    require_id(FakeServer(ID), "x:v1", ID)  # type: ignore[arg-type]


def test_send_refuses_an_unknown_method_before_anything_runs():
    with pytest.raises(UsageError):
        send_image(FakeServer(ID), SendOptions("x", "v1", "scp"), print)  # type: ignore[arg-type]


def dead_registry(tmp_path: Path, log: str) -> registries.Registry:
    (tmp_path / "registry.log").write_text(log)
    proc = subprocess.Popen(["true"])
    proc.wait()
    return registries.Registry(tmp_path, 5000, proc)


def test_push_failure_names_a_full_disk(tmp_path: Path):
    registry = dead_registry(tmp_path, 'level=error msg="... write /x/data: no space left on device"\n')
    message = push_failure(registry, "x:v1", "received unexpected HTTP status: 500 Internal Server Error")
    assert message == (
        f"the local registry's storage {tmp_path / 'storage'} is full (no space left on device) while "
        "pushing x:v1: free space there or set IMAGEKIT_REGISTRY_DIR to a bigger disk; nothing was stopped."
    )


def test_push_failure_reads_a_full_disk_from_the_output_kept_in_memory(tmp_path: Path):
    """The log file sits on the full disk and may lack the line; the copy in memory has it (CI, stop 26)."""
    registry = dead_registry(tmp_path, "")
    registry.output.append('level=error msg="filesystem: write /x/data: no space left on device"')
    message = push_failure(registry, "x:v1", "received unexpected HTTP status: 500 Internal Server Error")
    assert message.startswith(f"the local registry's storage {tmp_path / 'storage'} is full (no space left")


def test_push_failure_with_a_bare_500_and_no_free_space_is_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    registry = dead_registry(tmp_path, "")
    (tmp_path / "storage").mkdir()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(registries.shutil, "disk_usage", lambda _p: usage._replace(free=4096))
    message = push_failure(registry, "x:v1", "received unexpected HTTP status: 500 Internal Server Error")
    assert message.startswith(f"the local registry's storage {tmp_path / 'storage'} is full (no space left")
    monkeypatch.setattr(
        registries.shutil, "disk_usage", lambda _p: usage._replace(free=registries.FULL_BELOW)
    )
    message = push_failure(registry, "x:v1", "received unexpected HTTP status: 500 Internal Server Error")
    assert message.startswith("the local registry stopped while x:v1 was pushed")


class FullFile(io.BytesIO):
    def write(self, data: bytes) -> int:  # type: ignore[override]
        raise OSError(28, "No space left on device")


def test_the_output_is_kept_when_the_log_file_cannot_be_written():
    kept: deque[str] = deque(maxlen=10)
    registries.keep_output(io.BytesIO(b"one\ntwo: no space left on device\n"), FullFile(), kept)
    assert list(kept) == ["one", "two: no space left on device"]


def test_push_failure_names_a_registry_that_stopped(tmp_path: Path):
    registry = dead_registry(tmp_path, "")
    message = push_failure(registry, "x:v1", "dial tcp 127.0.0.1:5000: connect: connection refused")
    assert message == (
        f"the local registry stopped while x:v1 was pushed (see {tmp_path / 'registry.log'}): run again; "
        "nothing was stopped."
    )


def test_storage_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("IMAGEKIT_REGISTRY_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert registries.storage_folder() == tmp_path / "imagekit" / "registry"
    monkeypatch.setenv("IMAGEKIT_REGISTRY_DIR", str(tmp_path / "mine"))
    assert registries.storage_folder() == tmp_path / "mine"


def test_the_recorded_port_is_reused_only_when_it_is_a_free_number(tmp_path: Path):
    port = registries.free_port()
    (tmp_path / "port").write_text(f"{port}\n")
    assert registries.choose_port(tmp_path) == port
    (tmp_path / "port").write_text("22; rm -rf /\n")
    assert registries.choose_port(tmp_path) != 22


def test_progress_goes_to_the_shared_reporter_as_the_send_image_task():
    from frappe_imagekit.progress import PlainReporter

    written: list[str] = []
    now = [0.0]
    reporter = PlainReporter(written.append, clock=lambda: now[0])
    reporter.start("send image")
    progress = Progress(lambda _line: None, "registry tunnel", reporter=reporter)
    now[0] = 2.0
    progress.bytes(12_300_000)
    progress.layer()
    reporter.finish("send image")
    assert written == [
        "progress: send image started",
        "progress: send image: 12.3 MB",
        "progress: send image: 1 layer(s) fetched",
        "progress: send image done in 2.0 s (12.3 MB)",
    ]


def test_auto_is_the_registry_only_for_ssh_targets_with_the_image_on_a_daemon_here(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from frappe_imagekit.deploy import send
    from frappe_imagekit.runner import LocalRunner
    from frappe_imagekit.ssh import SSHRunner

    ssh = SSHRunner.__new__(SSHRunner)  # never connected: only its type is asked
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert send.chosen_method(ssh, send.ImageTransfer(method=send.AUTO)) == send.REGISTRY
    assert send.chosen_method(LocalRunner(), send.ImageTransfer(method=send.AUTO)) == send.STREAM
    remote = send.ImageTransfer("tcp://10.0.0.5:2375", method=send.AUTO)
    assert send.chosen_method(ssh, remote) == send.STREAM
    monkeypatch.setenv("DOCKER_HOST", "ssh://builder")
    assert send.chosen_method(ssh, send.ImageTransfer(method=send.AUTO)) == send.STREAM
    monkeypatch.delenv("DOCKER_HOST")
    assert send.chosen_method(ssh, send.ImageTransfer(method=send.STREAM)) == send.STREAM
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker-registry here
    assert send.chosen_method(ssh, send.ImageTransfer(method=send.AUTO)) == send.STREAM
    assert send.transfer_method("save") == send.STREAM and send.transfer_method("registry") == send.REGISTRY
