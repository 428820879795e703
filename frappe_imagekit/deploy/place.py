"""Where a deploy ran: one *place* per project on one Docker daemon.

A deploy record names its target by ``host`` ("local", or the SSH ``user@host:port``) and,
since this round, by ``daemon_id``: the daemon's own ID (``docker info`` ``ID``). A local target
and an SSH target on the same daemon are one place; records without an ID (older ones, or a
daemon that did not say) take the ID that another record of the same ``project@host`` carries,
else stay keyed by ``project@host``. The ID is read from records others edit: it is used only
when it has the daemon ID's shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from frappe_imagekit.runner import Runner

# docker 20.10: twelve base32 groups joined by ":" (ABCD:EFGH:...); newer engines: a UUID
_DAEMON_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:-]{7,127}")


def daemon_id(value: object) -> str | None:
    """``value`` when it has the shape of a daemon ID, else None."""
    return value if isinstance(value, str) and _DAEMON_ID.fullmatch(value) else None


def daemon_of(runner: Runner) -> str | None:
    """The ID of the daemon ``runner`` talks to (None when docker does not say)."""
    done = runner.run(["docker", "info", "--format", "{{.ID}}"], timeout=30)
    return daemon_id(done.stdout.strip()) if done.returncode == 0 else None


class Places:
    """Place keys for the records given: ``(project, host, daemon ID or None)`` each."""

    def __init__(self, records: Iterable[tuple[str, str, str | None]]) -> None:
        self._daemon: dict[str, str] = {}
        for project, host, daemon in records:
            if daemon_id(daemon):
                self._daemon.setdefault(where(project, host), str(daemon))

    def key(self, project: str, host: str | None, daemon: object = None) -> str:
        found = daemon_id(daemon) or self._daemon.get(where(project, host))
        return f"{project}@docker:{found}" if found else where(project, host)


def where(project: str, host: str | None) -> str:
    return f"{project}@{host or 'local'}"
