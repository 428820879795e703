"""The imagekit commands a deploy prints, and the steps that fit its failure.

Every command printed must work when pasted, on the stack it came from (issue 18: a printed
``imagekit deploy --compose compose.yaml`` dropped frappe_docker's db and redis overrides and, run,
took production down). So a printed ``imagekit deploy``/``imagekit rollback`` names the deploy's own
stack: the named target it was started from (``imagekit deploy lab``), else every ``-f`` file in
order, the env file, the project and the state folder, with the SSH options of a remote target and
``-w`` when the workspace is not the current folder (``ImagekitCall``).

A step is advised only when it fits the failure (``go_back_step``, ``health_failed_step``):

- the way back from a failed migrate is ``imagekit rollback``: it restores the backup this deploy
  took before migrate and runs what ran before it (``previous_version``, from last-up.json), both
  together, and reads the MariaDB root password from the env file onto bench's stdin. A printed
  ``bench restore`` would ask for that password at a prompt (frappe's getpass) and leave the
  image to the user; typing it is the only way to keep it out of argv and the output.
- a site whose migrate succeeded but that fails its health check has a good, migrated database: the
  fault is a service (a crash-looping nginx). Restoring the backup under the older version would
  pair old code with the newer schema, so the advice is to fix the service and start it again.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from frappe_imagekit.deploy.migrate_report import BenchPlace, step

# what `imagekit rollback` accepts of the options a deploy repeats (it has no -f, --env-file ...)
ROLLBACK_OPTIONS = frozenset(
    {"--project", "--host", "--known-hosts", "--identity", "--ssh-config", "--docker-host", "--state-dir",
     "--sites", "--backend-service", "-w"}
)  # fmt: skip


@dataclass(frozen=True)
class ImagekitCall:
    """How to run imagekit again on the same stack.

    ``target``: the named target the deploy was started from (its project, files, env file, state
    folder and SSH settings come from imagekit.toml); else ``where`` names them as options.
    ``options``: what the command line gave besides (SSH options, --sites, --image-var, ...)."""

    target: str | None
    where: tuple[tuple[str, str], ...] = ()  # --project, every --compose, --env-file, --state-dir, --host
    options: tuple[tuple[str, str], ...] = ()

    def deploy(self, *args: str) -> str:
        return shlex.join([*self._argv("deploy", lambda _option: True), *args])

    def rollback(self, *args: str) -> str:
        return shlex.join([*self._argv("rollback", ROLLBACK_OPTIONS.__contains__), *args])

    def workspace(self) -> list[str]:
        """``-w FOLDER`` when the deploy's workspace is not the current folder (for imagekit build)."""
        return [item for option, value in self.options if option == "-w" for item in (option, value)]

    def _argv(self, command: str, accepts: Callable[[str], bool]) -> list[str]:
        argv = ["imagekit", command]
        pairs = list(self.options)
        if self.target is not None:
            argv.append(self.target)
        else:
            pairs = [*self.where, *pairs]
        for option, value in pairs:
            if accepts(option):
                argv += [option, value]
        return argv


def imagekit_call(
    target: str | None,
    project: str,
    compose_files: Sequence[str],
    *,
    env_file: str | None = None,
    state_dir: str | None = None,
    host: str = "local",
    options: Sequence[tuple[str, str]] = (),
) -> ImagekitCall:
    """The named target, else every option that names the stack (files absolute, in order)."""
    if target is not None:
        return ImagekitCall(target, options=tuple(options))
    where = [("--project", project), *(("--compose", path) for path in compose_files)]
    where += [
        (option, value) for option, value in (("--env-file", env_file), ("--state-dir", state_dir)) if value
    ]
    if host != "local":
        where.append(("--host", host))
    return ImagekitCall(None, where=tuple(where), options=tuple(options))


def go_back_step(
    call: ImagekitCall,
    *,
    deploy_id: str | None,
    version: str,
    replaced: bool,
    backed_up: bool,
    previous: str | None,
) -> str:
    """The way back after a failed migrate (or a failed health check), as far as it fits.

    ``replaced``: this deploy stopped the old containers and started its version (not
    --migrate-only); ``backed_up``: it took a backup of every site before migrate; ``previous``:
    the version that ran before it (last-up.json), None on the stack's first deploy."""
    if not replaced:  # --migrate-only: the deploy that put this version in place is the one to undo
        return step(
            "or go back (frappe has no reverse migrations): imagekit rollback undoes the deploy that "
            "put this version in place, restoring the backup it took and the version before it. The "
            "first command names that deploy and what will be lost, the second does it:",
            call.rollback("--dry-run"),
            call.rollback("--yes"),
        )
    if previous is None:
        return step(
            "nothing ran on this stack before this deploy, so there is no version to go back to: the "
            "way out is a version that migrates."
        )
    if previous == version:
        return step(
            f"{version} also ran before this deploy, so there is no other version to go back to "
            "(imagekit rollback goes back to another version): the way out is a fix."
        )
    if not backed_up:
        return step(
            f"going back to {previous} needs the databases from before migrate (frappe has no reverse "
            "migrations), and this deploy took no backup (--no-backup): restore a backup of your own "
            f"first, then deploy {previous} (never {previous} on the migrated database)."
        )
    pinned = ["--deploy", deploy_id] if deploy_id else []
    return step(
        "or go back (frappe has no reverse migrations): imagekit rollback restores the backup this "
        f"deploy took before migrate and runs {previous} again (what ran before it), database and image "
        "together; it reads the database root password from the env file. The first command shows "
        "what it will restore and what will be lost, the second does it:",
        call.rollback(*pinned, "--dry-run"),
        call.rollback(*pinned, "--yes"),
    )


def health_failed_step(place: BenchPlace, call: ImagekitCall, site: str, service: str, version: str) -> str:
    """A site out of maintenance whose migrate succeeded and that failed its health check."""
    return step(
        f"{site} is live (maintenance mode is off) and failed its health check through {service} (see "
        "the error below) after its migrate succeeded: its database matches this version, so a "
        "restore under an older version would pair old code with the newer schema. Put the site back "
        "in maintenance while you look, see which service fails and why (a crash loop, its "
        f"configuration, the env file), fix it, start {service} again on {version}, and once the site "
        "answers end the maintenance:",
        place.bench("--site", site, "set-maintenance-mode", "on"),
        place.on_host(place.compose_argv("ps")),
        place.on_host(place.compose_argv("logs", "--tail", "50", service)),
        place.up(service),
        place.bench("--site", site, "set-maintenance-mode", "off"),
    )


def redeploy_step(call: ImagekitCall, version: str) -> str:
    """After a fix outside the image: deploy the same version again with ``--full-down`` (its
    migrate has nothing to do); without it compose recreates only what changed."""
    return step(
        f"or, if the fix needs every service recreated, deploy {version} again with --full-down (it "
        "stops and recreates every service, MariaDB and Redis too; nothing is left to migrate); end "
        "the maintenance as above if the site is still in it:",
        call.deploy("--version", version, "--full-down"),
    )
