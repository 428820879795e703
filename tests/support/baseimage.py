"""The tiny local base image every Docker test builds FROM (there is no Docker Hub here).

``imagekit-test/busybox:1`` is a rootfs holding Debian's static busybox, a link for each of its
applets at busybox's own install path (``/bin/sh``, ``/usr/bin/env``, ...), ``/etc/passwd`` and
``/etc/group`` with ``root`` and ``frappe`` (uid/gid 1000, home ``/home/frappe``), and ``/tmp``.
It is made with ``docker import`` from a tar built in memory (about 1 MB, well under a second).

Run ``python -m tests.support.baseimage [DOCKER_CLI]`` to make it from a shell.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile

from frappe_imagekit import process
from tests.support.machinelock import machine_lock

IMAGE = "imagekit-test/busybox:1"
DEFAULT_CLI = "/usr/bin/docker"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REQUIRED_APPLETS = (
    *("sh", "cat", "echo", "base64", "mkdir", "ls", "sleep", "rm", "cp", "mv", "env", "grep"),
    *("sed", "printf", "test", "[", "true", "false", "id", "chmod", "chown", "touch", "tar"),
    *("head", "tail", "wc", "date", "kill", "find", "sha256sum"),
)

_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "frappe:x:1000:1000:frappe:/home/frappe:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_GROUP = "root:x:0:\nfrappe:x:1000:\nnogroup:x:65534:\n"
# (path, mode, uid) of the folders the image holds besides the applets' own.
_DIRS = (
    ("bin", 0o755, 0),
    ("sbin", 0o755, 0),
    ("usr", 0o755, 0),
    ("usr/bin", 0o755, 0),
    ("usr/sbin", 0o755, 0),
    ("usr/local", 0o755, 0),
    ("usr/local/bin", 0o755, 0),
    ("etc", 0o755, 0),
    ("root", 0o700, 0),
    ("home", 0o755, 0),
    ("home/frappe", 0o755, 1000),
    ("tmp", 0o1777, 0),
    ("var", 0o755, 0),
    ("var/tmp", 0o1777, 0),
    ("opt", 0o755, 0),
)


class BaseImageError(RuntimeError):
    """The base image could not be made; the message says why."""


def find_busybox() -> str:
    """Path of a statically linked busybox (Debian package busybox-static)."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if candidate and os.path.isfile(candidate):
            return os.path.realpath(candidate)
    raise BaseImageError("busybox not found: install it with `apt-get install busybox-static`.")


def applet_paths(busybox: str) -> list[str]:
    """Install paths of every applet (``bin/sh``, ``usr/bin/env``...), relative to /."""
    done = process.run([busybox, "--list-full"], timeout=30)
    paths = [line.strip().lstrip("/") for line in done.stdout.splitlines() if line.strip()]
    missing = set(REQUIRED_APPLETS) - {os.path.basename(p) for p in paths}
    if done.returncode != 0 or missing:
        raise BaseImageError(f"{busybox} lacks applets {sorted(missing)}: install Debian's busybox-static.")
    return [p for p in paths if p != "bin/busybox"]


def rootfs_tar(busybox: str) -> bytes:
    """An uncompressed tar of the whole rootfs, owned by root, links pointing at /bin/busybox."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = {d[0] for d in _DIRS}
        for path, mode, uid in _DIRS:
            tar.addfile(_entry(path, tarfile.DIRTYPE, mode, uid))
        with open(busybox, "rb") as binary:
            data = binary.read()
        tar.addfile(_entry("bin/busybox", tarfile.REGTYPE, 0o755, size=len(data)), io.BytesIO(data))
        for name, text in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            raw = text.encode()
            tar.addfile(_entry(name, tarfile.REGTYPE, 0o644, size=len(raw)), io.BytesIO(raw))
        for path in applet_paths(busybox):
            parent = os.path.dirname(path)
            if parent not in dirs:  # every applet folder is in _DIRS today; stay safe
                dirs.add(parent)
                tar.addfile(_entry(parent, tarfile.DIRTYPE, 0o755))
            link = _entry(path, tarfile.SYMTYPE, 0o777)
            link.linkname = "/bin/busybox"
            tar.addfile(link)
    return buffer.getvalue()


def _entry(name: str, kind: bytes, mode: int, uid: int = 0, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.size = kind, mode, uid, uid, size
    info.mtime = 0
    return info


def image_exists(docker_cli: str, name: str) -> bool:
    return process.run([docker_cli, "image", "inspect", name], timeout=60).returncode == 0


def ensure_busybox_image(docker_cli: str = DEFAULT_CLI, name: str = IMAGE) -> str:
    """Make ``name`` with ``docker import`` unless it exists already; return ``name``.

    Under a machine-wide lock: parallel test workers import it once, the others find it."""
    with machine_lock("busybox"):
        if image_exists(docker_cli, name):
            return name
        return _import_busybox(docker_cli, name)


def _import_busybox(docker_cli: str, name: str) -> str:
    argv = [
        docker_cli, "import",
        "--change", f"ENV PATH={PATH_ENV}",
        "--change", 'CMD ["/bin/sh"]',
        "--message", "imagekit test base image (busybox-static)",
        "-", name,
    ]  # fmt: skip
    done = process.run(argv, input_bytes=rootfs_tar(find_busybox()), timeout=120)
    if done.returncode != 0:
        raise BaseImageError(f"docker import of {name} failed: {done.stderr.strip()}")
    return name


def main(argv: list[str]) -> int:
    cli = argv[0] if argv else os.environ.get("IMAGEKIT_TEST_DOCKER", DEFAULT_CLI)
    try:
        print(ensure_busybox_image(cli))
    except BaseImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
