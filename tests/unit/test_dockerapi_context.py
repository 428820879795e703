"""dockerapi.resolve_daemon: the SDK follows DOCKER_HOST, DOCKER_CONTEXT, then the CLI's context.

The context store is written here in the docker CLI's own layout (``contexts/meta/<sha256 of
the name>/meta.json``); tests/integration/test_build_docker26.py checks the same against
contexts made by a real ``docker context create``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from frappe_imagekit import dockerapi
from frappe_imagekit.dockerapi import Daemon, resolve_daemon
from frappe_imagekit.errors import DockerError, ExitCode
from tests.support.dockerd import forget_docker_clients


def _context(config: Path, name: str, host: str, *, tls: bool = False) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    data = {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}
    (meta / "meta.json").write_text(json.dumps(data))
    if tls:
        (config / "contexts" / "tls" / digest / "docker").mkdir(parents=True)


def _use(config: Path, name: str) -> None:
    (config / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "docker-config"
    folder.mkdir()
    return folder


def test_no_config_means_the_default_socket(config: Path) -> None:
    assert resolve_daemon({"DOCKER_CONFIG": str(config)}) == Daemon(
        "unix:///var/run/docker.sock", "docker context default"
    )


def test_docker_host_wins_over_every_context(config: Path) -> None:
    _context(config, "inner", "unix:///tmp/inner.sock")
    _use(config, "inner")
    env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": "tcp://127.0.0.1:2375", "DOCKER_CONTEXT": "inner"}
    assert resolve_daemon(env) == Daemon("tcp://127.0.0.1:2375", "DOCKER_HOST")


def test_docker_context_wins_over_the_current_context(config: Path) -> None:
    _context(config, "inner", "unix:///tmp/inner.sock")
    _context(config, "other", "ssh://me@127.0.0.1:2222")
    _use(config, "other")
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "inner"}
    daemon = resolve_daemon(env)
    assert daemon == Daemon("unix:///tmp/inner.sock", "DOCKER_CONTEXT=inner")
    assert daemon.describe() == "unix:///tmp/inner.sock (DOCKER_CONTEXT=inner)"
    assert resolve_daemon({"DOCKER_CONFIG": str(config)}) == Daemon(
        "ssh://me@127.0.0.1:2222", "docker context other"
    )


def test_default_context_named_explicitly_is_the_socket(config: Path) -> None:
    _use(config, "default")
    assert resolve_daemon({"DOCKER_CONFIG": str(config)}).address == "unix:///var/run/docker.sock"
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "default"}
    assert resolve_daemon(env) == Daemon("unix:///var/run/docker.sock", "DOCKER_CONTEXT=default")


def test_home_docker_folder_is_used_without_docker_config(tmp_path: Path) -> None:
    _context(tmp_path / ".docker", "inner", "unix:///tmp/inner.sock")
    _use(tmp_path / ".docker", "inner")
    assert resolve_daemon({"HOME": str(tmp_path)}).address == "unix:///tmp/inner.sock"


def test_missing_context_names_it_and_the_fix(config: Path) -> None:
    with pytest.raises(DockerError) as info:
        resolve_daemon({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "gone"})
    assert info.value.exit_code == ExitCode.DOCKER
    assert str(info.value) == (
        f"docker context gone (DOCKER_CONTEXT=gone) does not exist in {config}: create it with "
        "`docker context create gone --docker host=...`, or pick another one"
    )


@pytest.mark.parametrize("text", ["{not json", '{"Endpoints": {}}', '{"Endpoints": {"docker": []}}'])
def test_broken_context_is_named(config: Path, text: str) -> None:
    _context(config, "bad", "unix:///x.sock")
    digest = hashlib.sha256(b"bad").hexdigest()
    (config / "contexts" / "meta" / digest / "meta.json").write_text(text)
    with pytest.raises(DockerError, match="docker context bad is unreadable"):
        resolve_daemon({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "bad"})


def test_broken_config_json_is_named(config: Path) -> None:
    (config / "config.json").write_text("{")
    with pytest.raises(DockerError, match=r"cannot read .*config\.json"):
        resolve_daemon({"DOCKER_CONFIG": str(config)})


def test_tls_context_is_flagged(config: Path) -> None:
    _context(config, "secure", "tcp://127.0.0.1:2376", tls=True)
    assert resolve_daemon({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "secure"}).tls is True


def test_daemon_address_follows_the_context(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _context(config, "inner", "unix:///tmp/inner.sock")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("DOCKER_CONTEXT", "inner")
    assert dockerapi.daemon_address() == "unix:///tmp/inner.sock"
    assert dockerapi.daemon_address("ssh://me@host") == "ssh://me@host"


def test_a_daemon_that_does_not_answer_is_named_with_its_context(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _context(config, "inner", "unix:///nonexistent/imagekit-test.sock")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("DOCKER_CONTEXT", "inner")
    forget_docker_clients()
    try:
        with pytest.raises(DockerError) as info:
            dockerapi.client()
    finally:
        forget_docker_clients()
    assert str(info.value).startswith(
        "the Docker daemon does not answer at unix:///nonexistent/imagekit-test.sock (DOCKER_CONTEXT=inner)"
    )
