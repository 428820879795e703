"""compose argv building and container state interpretation (pure)."""

from __future__ import annotations

import json

import pytest

from frappe_imagekit.deploy.compose import (
    ComposeCLI,
    Container,
    compose_argv,
    down_args,
    inspect_command,
    kill_command,
    logs_command,
    ps_command,
    service_problem,
    service_ready,
    up_args,
    wait_services,
)
from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed

V1 = ComposeCLI(("docker-compose",), "1.29.2")
V2 = ComposeCLI(("docker", "compose"), "2.29.1")

# Trimmed from a real `docker inspect` of a docker-compose v1 container.
INSPECT = {
    "Id": "4f1c" + "0" * 60,
    "Name": "/erp_backend_1",
    "State": {"Status": "running", "Running": True, "ExitCode": 0},
    "Config": {
        "Image": "desiredeffect/erpnext-custom:v1.1.5",
        "Labels": {
            "com.docker.compose.config-hash": "9a6b",
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.project": "erp",
            "com.docker.compose.project.config_files": "/srv/erp/compose-main.yaml",
            "com.docker.compose.project.working_dir": "/srv/erp",
            "com.docker.compose.service": "backend",
            "com.docker.compose.version": "1.29.2",
        },
    },
}


def test_compose_argv_v1_and_v2():
    assert compose_argv(V1, "erp", ["/srv/c.yaml"], *up_args(V1)) == [
        "docker-compose", "-p", "erp", "-f", "/srv/c.yaml",
        "up", "-d", "--remove-orphans", "--timeout", "10",
    ]  # fmt: skip
    # no --force-recreate: it would stop MariaDB and Redis as down does (issue 18 item 6)
    assert "--force-recreate" not in up_args(V2, 3) and up_args(V2, 3)[-2:] == ["--timeout", "3"]
    argv = compose_argv(
        V2, "erp", ["/state/compose.yaml"], *down_args(V2, 5),
        project_dir="/srv/erp", env_file="/state/env",
    )  # fmt: skip
    assert argv == [
        "docker", "compose", "-p", "erp", "--project-directory", "/srv/erp",
        "-f", "/state/compose.yaml", "--env-file", "/state/env",
        "down", "--remove-orphans", "--timeout", "5",
    ]  # fmt: skip
    assert V2.is_v2 and not V1.is_v2


def test_container_commands_are_argv_lists():
    assert ps_command("erp") == [
        "docker", "ps", "-aq", "--no-trunc", "--filter", "label=com.docker.compose.project=erp",
    ]  # fmt: skip
    assert inspect_command(["a1", "b2"]) == ["docker", "inspect", "a1", "b2"]
    assert kill_command(["a1", "b2"]) == ["docker", "kill", "--signal", "KILL", "a1", "b2"]
    assert logs_command("a1") == ["docker", "logs", "--tail", "20", "a1"]
    assert logs_command("a1", 5) == ["docker", "logs", "--tail", "5", "a1"]


def test_container_from_inspect():
    c = Container.from_inspect(INSPECT)
    assert (c.name, c.service, c.state, c.health, c.oneoff) == (
        "erp_backend_1", "backend", "running", None, False,
    )  # fmt: skip
    assert c.config_files == "/srv/erp/compose-main.yaml"
    assert c.working_dir == "/srv/erp"


def _with_state(**state) -> Container:  # type: ignore[no-untyped-def]
    return Container.from_inspect({**INSPECT, "State": state})


@pytest.mark.parametrize(
    ("state", "oneshot", "ready", "problem"),
    [
        ({"Status": "running"}, False, True, None),
        ({"Status": "created"}, False, False, None),
        ({"Status": "running", "Health": {"Status": "starting"}}, False, False, None),
        ({"Status": "running", "Health": {"Status": "healthy"}}, False, True, None),
        ({"Status": "running", "Health": {"Status": "unhealthy"}}, False, False, "is unhealthy"),
        ({"Status": "exited", "ExitCode": 0}, True, True, None),
        ({"Status": "running"}, True, False, None),
        ({"Status": "exited", "ExitCode": 3}, True, False, "exited with code 3"),
        ({"Status": "exited", "ExitCode": 0}, False, False, "exited with code 0"),
        ({"Status": "restarting", "ExitCode": 1}, False, False, "is restarting (last exit code 1)"),
    ],
)
def test_service_readiness(state, oneshot, ready, problem):
    container = _with_state(**state)
    assert service_ready(container, oneshot) is ready
    assert service_problem(container, oneshot) == problem


class LoopingRunner:
    """docker ps/inspect/logs of one frontend container as a crash loop shows it to a poller:
    `running` at every look (real-lab 01b), its RestartCount rising between looks."""

    host = "local"

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts
        self.looks = 0

    def run(self, argv: list[str], **_kwargs: object) -> Completed:
        if argv[:2] == ["docker", "ps"]:
            return Completed(argv, 0, "f1\n", "")
        if argv[:2] == ["docker", "logs"]:
            return Completed(argv, 0, "", "nginx: [emerg] invalid variable name in frappe.conf:16\n")
        count = self.counts[min(self.looks, len(self.counts) - 1)]
        self.looks += 1
        item = {**INSPECT, "Id": "f1", "RestartCount": count,
                "Config": {"Labels": {"com.docker.compose.service": "frontend"}}}  # fmt: skip
        return Completed(argv, 0, json.dumps([item]), "")


def test_a_service_running_at_every_look_but_restarting_between_is_a_crash_loop():
    with pytest.raises(DeployError) as info:
        wait_services(LoopingRunner([0, 0, 1, 2]), "erp", [], 30, poll=0.01, settle=5, before={})  # type: ignore[arg-type]
    message = info.value.message
    assert message.startswith("service frontend (erp_backend_1) restarted 1 time in 0s (a crash loop")
    assert "nginx: [emerg] invalid variable name" in message
    # restarts before the wait of a container that ran before up are not counted; one that
    # runs unrestarted for the settle time is ready
    runner = LoopingRunner([4])
    assert [c.id for c in wait_services(runner, "erp", [], 30, poll=0.01, settle=0.05, before={"f1": 4})] == [
        "f1"
    ]  # type: ignore[arg-type]
    assert runner.looks > 2  # looked again during the settle time, not once
