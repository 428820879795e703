"""One exception family for every failure a user can act on.

The CLI turns an ``ImagekitError`` into one red line on stderr and its exit code. Anything else
that escapes is a bug and is reported as such (exit 70), without local variables.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    VALIDATION = 1  # the workspace has errors (.env, apps.json, refs), or check found errors
    USAGE = 2  # bad command-line options (typer/click)
    GIT = 3  # a git remote could not be reached or refused us
    DOCKER = 4  # docker missing, daemon down, or the build itself failed
    LEAK = 5  # the leak scan found a secret in the image
    TAG_EXISTS = 6  # the version/tag is already taken
    REMOTE = 7  # SSH: unreachable host, unknown/changed host key, auth refused
    LOCKED = 8  # another deploy holds the project lock
    PATCH_FAILED = 9  # bench migrate failed in a patch
    MIGRATE_FAILED = 10  # bench migrate failed otherwise (import, doctype sync, lock, services)
    DRIFT = 11  # rebuild: a recorded ref now points elsewhere; apps.lock.json: a tag entry not at its tag
    NOT_FOUND = 12  # unknown version, missing manifest or file
    DEPLOY_FAILED = 13  # compose down/up or a service failed during deploy
    INTERNAL = 70  # a bug in imagekit
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


class ImagekitError(Exception):
    """A failure with a message that says what went wrong and what to do next."""

    exit_code: ExitCode = ExitCode.VALIDATION

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigError(ImagekitError):
    """The workspace (.env, de-example.env, apps.json) is missing or invalid."""

    exit_code = ExitCode.VALIDATION


class GitError(ImagekitError):
    """A git remote failed: unreachable, authentication refused, ref missing."""

    exit_code = ExitCode.GIT


class DockerError(ImagekitError):
    """Docker is missing, the daemon does not answer, or a docker command failed."""

    exit_code = ExitCode.DOCKER


class LeakError(ImagekitError):
    """A secret was found in a built image."""

    exit_code = ExitCode.LEAK


class TagExistsError(ImagekitError):
    """The requested version or tag is already used."""

    exit_code = ExitCode.TAG_EXISTS


class RemoteError(ImagekitError):
    """SSH transport failure: host key, authentication, connection."""

    exit_code = ExitCode.REMOTE


class LockHeldError(ImagekitError):
    """Another deploy of the same project holds the lock."""

    exit_code = ExitCode.LOCKED


class MigrateError(ImagekitError):
    """bench migrate failed; ``report`` carries the parsed details."""

    exit_code = ExitCode.MIGRATE_FAILED


class DriftError(ImagekitError):
    """A rebuild would not reproduce the recorded image."""

    exit_code = ExitCode.DRIFT


class NotFoundError(ImagekitError):
    """A version, manifest or file that was asked for does not exist."""

    exit_code = ExitCode.NOT_FOUND


class DeployError(ImagekitError):
    """compose down/up or a service failed during deploy."""

    exit_code = ExitCode.DEPLOY_FAILED


class UsageError(ImagekitError):
    """A command-line option has a value that cannot be used (checked before anything runs)."""

    exit_code = ExitCode.USAGE
