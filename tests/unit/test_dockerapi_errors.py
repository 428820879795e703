"""dockerapi's error mapping: every SDK failure becomes one DockerError sentence with the fix."""

from __future__ import annotations

import subprocess
import sys

import docker.errors
import pytest
import requests

from frappe_imagekit import dockerapi
from frappe_imagekit.errors import DockerError, ExitCode


def test_not_found_says_build_or_pull() -> None:
    error = dockerapi._api_error("docker history x:1", docker.errors.ImageNotFound("no such image"))
    assert isinstance(error, DockerError) and error.exit_code is ExitCode.DOCKER
    assert str(error) == (
        "docker history x:1 failed: the image does not exist locally: build or pull it first"
    )


def test_api_error_quotes_the_daemon() -> None:
    response = requests.Response()
    response.status_code = 409
    exc = docker.errors.APIError("conflict", response, explanation="image is in use by abc")
    error = dockerapi._api_error("docker rmi x:1", exc)
    assert str(error) == ("docker rmi x:1 failed: the daemon said image is in use by abc: fix that and retry")


def test_lost_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/elsewhere.sock")
    error = dockerapi._api_error("docker save x:1", requests.exceptions.ConnectionError("reset"))
    assert str(error) == (
        "docker save x:1 failed: lost the connection to the Docker daemon at "
        "unix:///run/elsewhere.sock (ConnectionError): check that it is running and retry"
    )


def test_daemon_address_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert dockerapi.daemon_address() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert dockerapi.daemon_address() == "tcp://127.0.0.1:2375"
    assert dockerapi.daemon_address("ssh://me@host") == "ssh://me@host"


def test_importing_the_module_does_not_import_docker() -> None:
    code = (
        "import sys, frappe_imagekit.dockerapi, frappe_imagekit.leakscan, "
        "frappe_imagekit.build.containerfile; print('docker' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
