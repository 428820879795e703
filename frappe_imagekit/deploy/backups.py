"""Backups that survive the deploy: the files ``bench --site S backup`` wrote in the ``sites``
volume are copied out of the backend container into the target's state folder
(``backups/<deploy id>/<site>/``, mode 0600), checked whole (``gzip -t``; ``tar -tf`` for the files
archives of ``--with-files``), hashed (sha256), and
only the last N deploys' backups are kept. A ``down -v`` or a broken volume no longer takes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from frappe_imagekit.errors import DeployError
from frappe_imagekit.runner import Runner

# bench's summary: "Config  : ./S/private/backups/...json 2.0B", "Database: ./S/...sql.gz 19.0B"
_FILE_LINE = re.compile(r"^(?:Config|Database|Public|Private)[ \t]*:[ \t]+(?P<path>\S+)", re.MULTILINE)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_DEPLOY_ID = re.compile(r"\d{8}T\d{6}Z")

# $1 folder, $2 container, $3 path in it, $4 file name: copy, check, hash; print size and sha256.
_COPY = r"""
set -e
mkdir -p "$1"; chmod 700 "$1"
umask 077
docker exec "$2" cat "$3" > "$1/$4.part"
case "$4" in *.gz) gzip -t "$1/$4.part" ;; *.tar) tar -tf "$1/$4.part" > /dev/null ;; esac
mv "$1/$4.part" "$1/$4"; chmod 600 "$1/$4"
echo "$(wc -c < "$1/$4") $(sha256sum "$1/$4" | cut -d' ' -f1)"
"""


@dataclass(frozen=True)
class BackupFile:
    path: str  # on the target, in the state folder
    size: int
    sha256: str


def files_in_output(output: str) -> list[str]:
    """The bench-relative paths (``sites/...``) of the files a backup printed."""
    paths = [m["path"] for m in _FILE_LINE.finditer(output)]
    return [p if p.startswith("/") else "sites/" + p.removeprefix("./") for p in paths]


def copy_off(runner: Runner, container_id: str, paths: list[str], folder: str) -> list[BackupFile]:
    """Copy each file out of the container into ``folder`` on the target; raise when one cannot
    be copied or is not whole."""
    copied = []
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if not _NAME.fullmatch(name):
            raise DeployError(f"bench printed a backup file name imagekit will not copy ({name[:40]!r}).")
        done = runner.run(["sh", "-c", _COPY, "copy", folder, container_id, path, name], timeout=3600)
        fields = done.stdout.split()
        if done.returncode != 0 or len(fields) != 2 or not fields[0].isdigit():
            why = (done.stderr or done.stdout).strip().splitlines()
            raise DeployError(
                f"the backup {path} could not be copied to {folder} or is not whole "
                f"({why[-1] if why else done.returncode}); nothing was stopped: check the disk "
                "space there, or deploy with --no-backup."
            )
        copied.append(BackupFile(f"{folder}/{name}", int(fields[0]), fields[1]))
    return copied


def prune(runner: Runner, root: str, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` deploys' backup folders under ``root``; return them."""
    listed = runner.run(["ls", "-1", root], timeout=60)
    ids = sorted(n for n in listed.stdout.split() if _DEPLOY_ID.fullmatch(n))
    old = ids[: max(len(ids) - keep, 0)]
    if old:
        runner.run(["rm", "-rf", "--", *(f"{root}/{n}" for n in old)], timeout=600)
    return old
