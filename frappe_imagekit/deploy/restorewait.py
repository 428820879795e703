"""Waiting for a ``bench restore`` that runs on in the backend after rollback was interrupted
(stopping it half-way would leave the site's database half loaded), and what to say about it."""

from __future__ import annotations

from frappe_imagekit.deploy.benchsite import RESTORE_PID, RESTORE_STATUS
from frappe_imagekit.errors import ImagekitError
from frappe_imagekit.runner import Runner

# $1 pid file, $2 status file: wait while the restore named there runs; print its exit status
_WAIT = r"""
pid=$(cat "$1" 2>/dev/null) || { echo none; exit 0; }
while grep -q restore "/proc/$pid/cmdline" 2>/dev/null; do sleep 0.2; done
cat "$2" 2>/dev/null || echo unknown
"""


def wait_restore_argv(container_id: str) -> list[str]:
    return ["docker", "exec", container_id, "sh", "-c", _WAIT, "wait", RESTORE_PID, RESTORE_STATUS]


def wait_restore(runner: Runner, container_id: str) -> str:
    """Wait for the restore started in the container to end; return bench's exit status
    (``0``...), ``none`` (no restore recorded), ``unknown`` (ended without one), or
    ``waiting stopped`` (interrupted again, or the container could not be asked)."""
    try:
        done = runner.run(wait_restore_argv(container_id), timeout=3600)
    except (ImagekitError, KeyboardInterrupt):
        return "waiting stopped"
    word = done.stdout.split()[-1:] if done.returncode == 0 else []
    return word[0] if word and (word[0].isdigit() or word[0] in ("none", "unknown")) else "waiting stopped"


def interrupted_restore_note(site: str, how: str, top: str) -> str:
    """The sentence for the report of a rollback interrupted during the restore of ``site``;
    ``top``: the ``docker top`` line as it runs where the stack is (``BenchPlace.on_host``)."""
    if how == "0":
        said = "imagekit waited for it to end in the backend: it finished, the site holds the backup's data"
    elif how.isdigit():
        said = f"imagekit waited for it to end in the backend: it failed (exit {how}); restore it again"
    elif how == "none":
        said = "it had not started in the backend"
    elif how == "unknown":
        said = "it ended in the backend without an exit status (killed?): restore it again"
    else:
        said = (
            f"imagekit stopped waiting for it ({how}): it may still run in the backend, look with "
            f"`{top}` before anything else"
        )
    return f"rollback was interrupted during the restore of {site}: {said}."
