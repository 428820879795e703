"""Roll a swarm stack back: each site's backup restored by a job on the old digest, then the
stack deployed on that digest again (issue 21 item 6).

What the last swarm deploy of the stack recorded (``swarm-deploys/ID.json`` in the state folder)
says which image ran before (``IMAGE@sha256:...``), its version and each site's database backup
(its path in the sites volume and the sha256 of the copy imagekit took). Every value is checked
before use. The MariaDB root password comes from the env file (``DB_PASSWORD``), goes to docker
as a swarm secret on stdin (never in argv) and reaches ``bench restore`` on its stdin; the secret
is removed at the end.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from frappe_imagekit.deploy.benchsite import env_password
from frappe_imagekit.deploy.sequence import state_paths
from frappe_imagekit.deploy.swarm import cli, deploy, records, stack
from frappe_imagekit.deploy.swarm.jobs import run_job
from frappe_imagekit.deploy.swarm.records import SiteBackup
from frappe_imagekit.errors import DeployError, ExitCode, NotFoundError
from frappe_imagekit.runner import Runner

SECRET_TARGET = "imagekit-db-root-password"
RECORDS = records.RECORDS
# $1 the dump in the sites volume, $2 the site: its sha256 first, then the restore (password on stdin)
_RESTORE = (
    'set -e; echo "sha256 $(sha256sum "$1" | cut -d" " -f1)"; '
    f'bench --site "$2" restore "$1" < /run/secrets/{SECRET_TARGET}'
)


@dataclass(frozen=True)
class LastDeploy:
    version: str
    previous: stack.Pin
    previous_version: str
    backups: tuple[SiteBackup, ...]
    deploy_id: str | None = None


def read_last(runner: Runner, root: str) -> LastDeploy:
    """The newest swarm deploy record of the state folder, checked."""
    return last_deploy(records.newest(runner, root))


def parse_last(data: object) -> LastDeploy:
    """The fields rollback needs from a record; ValueError naming the first that cannot be used."""
    return last_deploy(records.parse_record(data))


def last_deploy(record: records.SwarmRecord) -> LastDeploy:
    if record.previous is None or record.previous_version is None:
        raise DeployError(
            "the newest swarm deploy record names no previous image by digest: the stack ran "
            "nothing imagekit deployed before, so there is nothing to roll back to."
        )
    return LastDeploy(
        record.version, record.previous, record.previous_version, record.backups, record.deploy_id
    )


def rollback(
    runner: Runner, opts: deploy.SwarmOptions, emit: deploy.Emit, db_password_var: str = "DB_PASSWORD"
) -> deploy.SwarmReport:
    """Restore each site of the last deploy's backups on the old digest, then deploy that digest."""
    paths = state_paths(runner, opts.stack, opts.state_dir)
    last = read_last(runner, paths.root)
    password = root_password(runner, opts, db_password_var)
    old = replace(opts, version=last.previous_version, digest=last.previous.digest, image=last.previous.repo,
                  sites=tuple(b.site for b in last.backups), backup=False)  # fmt: skip
    secret = f"{opts.stack}_ik-rootpw-{secrets.token_hex(3)}"
    done = runner.run(
        [cli.DOCKER, "secret", "create", secret, "-"], input_bytes=f"{password}\n".encode(), timeout=60
    )
    if done.returncode != 0:
        raise DeployError(
            f"the root password could not be given to docker as a secret ({done.stderr.strip()[-120:]})."
        )
    try:
        return deploy.deploy(
            runner,
            old,
            emit,
            last.previous,
            before=lambda run: _restore_all(run, last, secret),
            rollback_of=last.deploy_id,
        )
    finally:
        runner.run([cli.DOCKER, "secret", "rm", secret], timeout=60)


def root_password(runner: Runner, opts: deploy.SwarmOptions, var: str) -> str:
    """The MariaDB root password from the env file (never printed)."""
    if not opts.env_file:
        raise DeployError(f"rollback restores databases: pass the env file that holds {var} (--env-file).",
                          ExitCode.USAGE)  # fmt: skip
    text = runner.read_file(opts.env_file)
    if text is None:
        raise NotFoundError(f"the env file {opts.env_file} cannot be read.")
    return env_password(text, opts.env_file, var)


def _restore_all(run: deploy.Run, last: LastDeploy, secret: str) -> None:
    """Each site's database from its backup, by a job on the old digest that checks the file's
    sha256 first; the first failure stops the rollback before the stack changes."""
    assert run.place
    for backup in last.backups:
        run.emit(f"Restoring {backup.site} from {backup.volume_path} (job on {last.previous.ref})")
        argv = ["sh", "-c", _RESTORE, "restore", backup.volume_path, backup.site]
        spec = run.place.job("restore", last.previous.ref, argv)
        job = run_job(
            run.runner, replace(spec, secrets=(f"source={secret},target={SECRET_TARGET},mode=0400",)), 3600
        )
        said = _said(job.output)
        if said.get("sha256") != backup.sha256 or job.exit_code != 0 or "has been restored" not in job.output:
            raise DeployError(
                f"restoring {backup.site} failed (exit {job.exit_code}): "
                + (
                    "the backup in the volume is not the one imagekit copied; "
                    if said.get("sha256") != backup.sha256
                    else ""
                )
                + f"{_last_line(job.output) or job.state}; the stack was not changed.",
                ExitCode.DEPLOY_FAILED,
            )


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _said(output: str) -> dict[str, str]:
    for line in output.splitlines():
        if line.startswith("sha256 "):
            return {"sha256": line.split(" ", 1)[1].strip()}
    return {}
