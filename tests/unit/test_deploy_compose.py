"""compose argv building and container state interpretation (pure)."""

from __future__ import annotations

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
)

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
        "up", "-d", "--force-recreate", "--remove-orphans",
    ]  # fmt: skip
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
