"""Backups that survive the deploy: the files ``bench --site S backup`` wrote in the ``sites``
volume are copied out of the backend container into the target's state folder
(``backups/<deploy id>/<site>/``, mode 0600), checked whole (``gzip -t``; ``tar -tf`` for the files
archives of ``--with-files``), hashed (sha256), and
only the last N deploys' backups are kept, except that a failed deploy's backups are never pruned
and the newest copy of each version's data always stays (``plan_prune``): the version a backup
holds is the one that ran when it was taken (the deploy record's ``previous_version``). A
``down -v`` or a broken volume no longer takes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from frappe_imagekit.deploy.record import DEPLOY, SUCCEEDED, DeployRecord
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


@dataclass(frozen=True)
class DeployFacts:
    """What the records say of the deploy that took a backup folder."""

    failed: bool  # it did not succeed: its backups are the way back, never pruned
    data_of: str | None = None  # the version that ran when they were taken (whose data they hold)


@dataclass
class Pruned:
    removed: list[str] = field(default_factory=list)  # deploy ids whose folders went
    data_of: dict[str, str] = field(default_factory=dict)  # of those removed, when known
    kept: dict[str, str] = field(default_factory=dict)  # deploy id beyond --keep-backups -> why it stays


def data_of(records: Iterable[DeployRecord]) -> dict[str, str]:
    """Deploy id -> the version whose data its backups hold, for the records of ONE place
    (``record.at_place``: this workspace's ``deploys/`` and the target's audit log): the
    record's ``previous_version`` (what last-up.json said ran), else, for records before that
    field, the version of the last deploy or rollback before it that succeeded. The one rule
    that ``imagekit backups`` and the pruner both use."""
    found: dict[str, str] = {}
    ran = None
    for record in sorted(records, key=lambda r: str(r.started or "")):
        version = record.previous_version or ran
        if record.kind == DEPLOY and record.deploy_id and version:
            found[record.deploy_id] = version
        if record.result == SUCCEEDED:
            ran = record.version
    return found


def deploy_facts(records: Iterable[DeployRecord]) -> dict[str, DeployFacts]:
    """Each deploy's facts by deploy id, from the records of one place (rollbacks take no
    backups); a later record of the same id wins."""
    listed = list(records)
    held = data_of(listed)
    return {
        r.deploy_id: DeployFacts(r.result != SUCCEEDED, held.get(r.deploy_id))
        for r in listed
        if r.deploy_id and r.kind == DEPLOY
    }


def plan_prune(
    ids: Sequence[str], keep: int, facts: Mapping[str, DeployFacts], current: str | None
) -> Pruned:
    """Which deploys' backup folders go: all but the newest ``keep``, except the backups of a
    failed deploy, the newest copy of each version's data and ``current`` (the deploy taking
    them now). A folder no record describes goes by the count alone."""
    ordered = sorted(set(ids))
    newest_of = {f.data_of: i for i in ordered if (f := facts.get(i)) and f.data_of}
    plan = Pruned()
    for deploy_id in ordered[: max(len(ordered) - keep, 0)]:
        why = _why_kept(deploy_id, facts.get(deploy_id), newest_of, current)
        if why:
            plan.kept[deploy_id] = why
            continue
        plan.removed.append(deploy_id)
        known = facts.get(deploy_id)
        if known and known.data_of:
            plan.data_of[deploy_id] = known.data_of
    return plan


def _why_kept(
    deploy_id: str, known: DeployFacts | None, newest_of: Mapping[str, str], current: str | None
) -> str:
    if deploy_id == current:
        return "this deploy's"
    if known is None:
        return ""
    if known.failed:
        return "a failed deploy's"
    if known.data_of and newest_of.get(known.data_of) == deploy_id:
        return f"the newest copy of {known.data_of}'s data"
    return ""


def prune(runner: Runner, root: str, keep: int, facts: Mapping[str, DeployFacts] | None = None,
          current: str | None = None) -> Pruned:  # fmt: skip
    """Remove the backup folders under ``root`` that ``plan_prune`` lets go; return the plan."""
    listed = runner.run(["ls", "-1", root], timeout=60)
    ids = [n for n in listed.stdout.split() if _DEPLOY_ID.fullmatch(n)]
    plan = plan_prune(ids, keep, facts or {}, current)
    if plan.removed:
        runner.run(["rm", "-rf", "--", *(f"{root}/{n}" for n in plan.removed)], timeout=600)
    return plan


def describe(plan: Pruned, keep: int) -> list[str]:
    """The notes a deploy prints about the pruning: which deploys' backups went (with the
    version whose data they held) and which stayed beyond ``--keep-backups`` and why."""
    notes = []
    if plan.removed:
        went = [f"{i} (data of {plan.data_of[i]})" if i in plan.data_of else i for i in plan.removed]
        notes.append(f"removed the backups of older deploys: {', '.join(went)}")
    if plan.kept:
        kept = ", ".join(f"{i} ({why})" for i, why in plan.kept.items())
        notes.append(f"kept beyond --keep-backups {keep}: {kept}")
    return notes
