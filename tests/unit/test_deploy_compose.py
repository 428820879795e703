"""compose argv building and container state interpretation (pure)."""

from __future__ import annotations

import json
import os

import pytest

from frappe_imagekit.deploy import compose
from frappe_imagekit.deploy.compose import (
    ComposeCLI,
    Container,
    compose_argv,
    detect_compose,
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
from frappe_imagekit.runner import LocalRunner

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
    looping = LoopingRunner([0, 1, 2])
    with pytest.raises(DeployError) as info:
        wait_services(looping, "erp", [], 30, poll=0.01, settle=0.2, before={})  # type: ignore[arg-type]
    assert looping.looks == 2  # the look that ends the settle time sees the count risen
    message = info.value.message
    assert message.startswith("service frontend (erp_backend_1) restarted 1 time in 0s (a crash loop")
    assert "nginx: [emerg] invalid variable name" in message
    # restarts before the wait of a container that ran before up are not counted; one that
    # runs unrestarted for the settle time is ready
    runner = LoopingRunner([4])
    assert [c.id for c in wait_services(runner, "erp", [], 30, poll=0.01, settle=0.05, before={"f1": 4})] == [
        "f1"
    ]  # type: ignore[arg-type]
    # not accepted at the first look; looked again once the settle time had passed, not at every poll
    assert runner.looks == 2


# ---------------------------------------------------------------- the compose probe, once per process

# As on this machine: docker 20.10's CLI without the compose plugin answers `docker compose version
# --short` with "unknown flag: --short" and exit 125; docker-compose 1.29.2 prints "1.29.2".
FAKE_DOCKER = '#!/bin/sh\necho run >> "$PROBE_LOG"\necho "unknown flag: --short" >&2\nexit 125\n'
FAKE_COMPOSE_V1 = '#!/bin/sh\necho run >> "$PROBE_LOG"\necho 1.29.2\n'


@pytest.fixture
def fake_compose(tmp_path, monkeypatch):
    """A PATH of a fake docker (no compose plugin) and docker-compose v1 that log each run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE_V1)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "probes.log"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("PROBE_LOG", str(log))
    monkeypatch.setattr(compose, "_DETECTED", {})
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


def test_the_compose_probe_runs_once_per_process_for_the_same_path_and_daemon(fake_compose, monkeypatch):
    assert detect_compose(LocalRunner()) == V1
    assert fake_compose() == 2  # `docker compose version`, then `docker-compose version`
    assert detect_compose(LocalRunner()) == V1
    assert fake_compose() == 2  # asked again: the answer of this process
    detect_compose(LocalRunner(docker_host="unix:///tmp/other.sock"))  # another daemon: asked
    assert fake_compose() == 4
    monkeypatch.setenv("PATH", os.environ["PATH"] + os.pathsep + "/nonexistent")
    detect_compose(LocalRunner())  # another PATH: asked
    assert fake_compose() == 6


def test_a_new_docker_cli_plugin_is_probed_again(fake_compose, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    detect_compose(LocalRunner())
    (tmp_path / "docker" / "cli-plugins").mkdir(parents=True)
    (tmp_path / "docker" / "cli-plugins" / "docker-compose").write_text("")
    detect_compose(LocalRunner())
    assert fake_compose() == 4


def test_another_runner_is_probed_every_time(fake_compose):
    class Double(LocalRunner):  # a runner imagekit does not know (an SSH host, a test's double)
        pass

    detect_compose(Double())
    detect_compose(Double())
    assert fake_compose() == 4


def test_no_compose_is_not_remembered(fake_compose, tmp_path):
    (tmp_path / "bin" / "docker-compose").write_text(FAKE_DOCKER)  # fails as docker does
    for _ in range(2):
        with pytest.raises(DeployError, match="neither `docker compose` nor `docker-compose` works on local"):
            detect_compose(LocalRunner())
    assert fake_compose() == 4  # asked again: a failure is not an answer to keep
