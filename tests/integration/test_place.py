"""Issue 18 item 9: a local and an SSH target on the same daemon are one place. imagekit
identifies the daemon by ``docker info``'s ID; over a real sshd to this machine it is the one
the local runner sees, so their deploy records count as one place in history and backups."""

from __future__ import annotations

import pytest

from frappe_imagekit.deploy import place
from frappe_imagekit.deploy.sequence import open_runner
from frappe_imagekit.runner import LocalRunner
from tests.support import dockerd

pytestmark = pytest.mark.integration


def test_local_and_ssh_runners_name_the_same_daemon(docker_daemon: str, sshd) -> None:  # type: ignore[no-untyped-def]
    expected = dockerd.docker(docker_daemon, "info", "--format", "{{.ID}}", timeout=60).stdout.strip()
    local = place.daemon_of(LocalRunner())
    remote_runner = open_runner(
        sshd.spec, known_hosts=str(sshd.known_hosts), identity_file=str(sshd.client_key)
    )
    try:
        remote = place.daemon_of(remote_runner)
    finally:
        remote_runner.close()
    assert local == remote == expected and place.daemon_id(expected) == expected
    places = place.Places([("labik", "local", local), ("labik", sshd.spec, remote)])
    assert places.key("labik", "local", local) == places.key("labik", sshd.spec, remote)
    assert places.key("labik", sshd.spec) == places.key("labik", "local")  # learnt from the records
