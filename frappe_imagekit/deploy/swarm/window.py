"""The maintenance window on a swarm, through jobs that mount the sites volume.

Before anything changes, one job on the image the stack runs now puts each site in maintenance,
pauses its scheduler and takes its backup (``bench`` commands one after the other under
``set -e``, each site's backup lines read from the output: the job's exit status alone is not
trusted). A second job, pinned to the manager node imagekit talks to, copies the files into the
state folder there; imagekit then checks and hashes them as on compose. After the migrate, a job
on the new image takes the migrated sites out of maintenance and resumes their schedulers.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace

from frappe_imagekit import validate
from frappe_imagekit.deploy.backups import BackupFile, files_in_output
from frappe_imagekit.deploy.swarm.jobs import JobRun, JobSpec, run_job
from frappe_imagekit.errors import DeployError, ExitCode
from frappe_imagekit.runner import Runner

COPY_TARGET = "/imagekit-backup"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
# $1 folder; then file names: check each whole, print "name size sha256"
_HASH = r"""
set -e
cd "$1"; shift
for n in "$@"; do
  case "$n" in *.gz) gzip -t "$n" ;; *.tar) tar -tf "$n" > /dev/null ;; esac
  chmod 600 "$n"
  echo "$n $(wc -c < "$n") $(sha256sum "$n" | cut -d' ' -f1)"
done
"""


@dataclass(frozen=True)
class Place:
    """Where jobs run: the stack, the volumes and networks of its backend, the manager node."""

    stack: str
    mounts: tuple[str, ...]
    networks: tuple[str, ...]
    node_id: str

    def job(
        self, kind: str, image: str, argv: Sequence[str], *, extra: Sequence[str] = (), here: bool = False
    ) -> JobSpec:
        node = self.node_id if here else None
        return JobSpec(self.stack, kind, image, tuple(argv), (*self.mounts, *extra), self.networks, node)


def bench_script(sites: Sequence[str], *steps: Sequence[str]) -> list[str]:
    """``sh -c`` running each step for each site, stopping at the first failure; a marker line
    before each site's steps tells the output apart."""
    lines = ["set -e"]
    for site in sites:
        site = validate.site_name(site, "a site name", DeployError)
        lines.append(f"echo {shlex.quote('== imagekit: ' + site)}")
        lines += [shlex.join(["bench", "--site", site, *step]) for step in steps]
    return ["sh", "-c", "\n".join(lines)]


def per_site(output: str, sites: Sequence[str]) -> dict[str, str]:
    """The output of each site's steps, by the marker lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("== imagekit: ") and line[13:] in sites:
            current = found.setdefault(line[13:], [])
        elif current is not None:
            current.append(line)
    return {site: "\n".join(lines) for site, lines in found.items()}


def open_window(
    runner: Runner, place: Place, image: str, sites: Sequence[str], backup: bool
) -> dict[str, list[str]]:
    """Maintenance on, scheduler paused, and (``backup``) a backup of each site; return each
    site's backup files (paths in the bench folder). Raises naming the site that failed."""
    steps: list[list[str]] = [["set-maintenance-mode", "on"], ["scheduler", "pause"]]
    steps += [["backup"]] if backup else []
    run = run_job(runner, place.job("window", image, bench_script(sites, *steps)), timeout=3600)
    parts = per_site(run.output, sites)
    files = {site: files_in_output(parts.get(site, "")) for site in sites}
    missing = [s for s in sites if s not in parts or (backup and not files[s])]
    if run.exit_code != 0 or missing:
        raise _window_failed(run, missing)
    return files


def _window_failed(run: JobRun, missing: Sequence[str]) -> DeployError:
    last = [line for line in run.output.splitlines() if line.strip()][-5:]
    said = "\n".join(f"  {line}" for line in last) or "  (the job printed nothing)"
    who = f"site {missing[0]}" if missing else "a site"
    return DeployError(
        f"the maintenance window job ended {run.state} (exit {run.exit_code}) before {who} was in "
        f"maintenance with a backup; the stack was not changed. Its last lines:\n{said}",
        ExitCode.DEPLOY_FAILED,
    )


def copy_off(runner: Runner, place: Place, image: str, paths: Sequence[str], folder: str) -> list[BackupFile]:
    """Copy the backup files into ``folder`` (on the manager node) by a job, then check and hash
    them there as compose's deploy does."""
    names = [p.rsplit("/", 1)[-1] for p in paths]
    if not all(_NAME.fullmatch(n) for n in names) or not paths:
        raise DeployError("bench printed a backup file name imagekit will not copy.")
    runner.run(["mkdir", "-p", "-m", "700", folder], timeout=60)
    source = validate.not_an_option(folder, "the backup folder", DeployError)
    mount = f"type=bind,source={source},target={COPY_TARGET}"
    argv = ["sh", "-c", 'set -e; for f in "$@"; do cp "$f" ' + COPY_TARGET + "/; done", "copy", *paths]
    spec = place.job("copy", image, argv, extra=[mount], here=True)
    run = run_job(runner, replace(spec, user="0:0"), timeout=3600)
    if run.exit_code != 0:
        raise DeployError(
            f"the backups could not be copied to {folder} (job {run.state}); nothing was changed."
        )
    done = runner.run(["sh", "-c", _HASH, "hash", folder, *names], timeout=3600)
    rows = [line.split() for line in done.stdout.splitlines() if len(line.split()) == 3]
    if done.returncode != 0 or len(rows) != len(names):
        raise DeployError(f"a backup copied to {folder} is not whole; nothing was changed.")
    return [BackupFile(f"{folder}/{n}", int(size), digest) for n, size, digest in rows]


def close_window(runner: Runner, place: Place, image: str, sites: Sequence[str]) -> JobRun | None:
    """Maintenance off and scheduler resumed for ``sites`` (the migrated ones)."""
    if not sites:
        return None
    steps = (["scheduler", "resume"], ["set-maintenance-mode", "off"])
    return run_job(runner, place.job("window-close", image, bench_script(sites, *steps)), timeout=600)
