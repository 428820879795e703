"""dockercli: the pure argv builder, version parsing, and CLI selection with stand-in binaries."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from frappe_imagekit import dockercli
from frappe_imagekit.dockercli import BUILDKIT, BUILDX, BuildRequest, DockerCli, build_command
from frappe_imagekit.errors import DockerError, ExitCode

OLD = DockerCli("/usr/bin/docker", "20.10.24+dfsg1", BUILDKIT)
NEW = DockerCli("/usr/local/bin/docker", "28.2.2", BUILDX)


def _request(cli: DockerCli = OLD, **overrides) -> BuildRequest:
    base = dict(
        cli=cli,
        context=Path("/ws"),
        containerfile=Path("/ws/Containerfile"),
        tag="acme/erp:v1.0.0",
        iidfile=Path("/ws/builds/.v1.0.0.iid"),
        build_args={"FRAPPE_BRANCH": "version-15", "CACHE_BUST": "abc123"},
        secrets=(("apps_json", "IMAGEKIT_APPS_JSON"),),
        labels={"org.opencontainers.image.version": "v1.0.0"},
    )
    return BuildRequest(**{**base, **overrides})


def test_build_command_secret_mode_with_the_cli_own_buildkit() -> None:
    assert build_command(_request()) == [
        "/usr/bin/docker", "build",
        "--progress", "plain",
        "--file", "/ws/Containerfile",
        "--tag", "acme/erp:v1.0.0",
        "--iidfile", "/ws/builds/.v1.0.0.iid",
        "--build-arg", "FRAPPE_BRANCH=version-15",
        "--build-arg", "CACHE_BUST=abc123",
        "--secret", "id=apps_json,env=IMAGEKIT_APPS_JSON",
        "--label", "org.opencontainers.image.version=v1.0.0",
        "/ws",
    ]  # fmt: skip


def test_build_command_buildx_loads_the_image_and_passes_flags() -> None:
    argv = build_command(_request(NEW, no_cache=True, pull=True))
    assert argv[:4] == ["/usr/local/bin/docker", "buildx", "build", "--load"]
    assert argv[-3:] == ["--no-cache", "--pull", "/ws"]


def test_build_command_build_arg_mode_names_the_arg_without_a_value() -> None:
    argv = build_command(_request(secrets=(), env_build_args=("APPS_JSON_BASE64",)))
    assert "--secret" not in argv
    index = argv.index("APPS_JSON_BASE64")
    assert argv[index - 1] == "--build-arg"
    assert not any(arg.startswith("APPS_JSON_BASE64=") for arg in argv)


def test_buildkit_mode_needs_the_switch_in_the_environment_buildx_does_not() -> None:
    assert OLD.env() == {"DOCKER_BUILDKIT": "1"}
    assert NEW.env() == {}
    assert OLD.builder == "docker build (BuildKit)"
    assert NEW.builder == "docker buildx build"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Docker version 20.10.24+dfsg1, build 297e128", ("20.10.24+dfsg1", 20)),
        ("Docker version 28.2.2, build e6534b4", ("28.2.2", 28)),
        ("Docker version 18.09.1-ce, build 4c52b90", ("18.09.1-ce", 18)),
        ("podman version 4.3.1", None),
        ("", None),
    ],
)
def test_parse_client_version(text: str, expected: tuple[str, int] | None) -> None:
    assert dockercli.parse_client_version(text) == expected


def _fake_docker(folder: Path, version: str, *, buildx: bool) -> Path:
    """A stand-in docker binary answering --version and `buildx version` like the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "docker"
    buildx_exit = 0 if buildx else 1
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "Docker version {version}, build x"; exit 0; fi\n'
        f'if [ "$1" = "buildx" ]; then echo "buildx v0.12"; exit {buildx_exit}; fi\n'
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _no_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dockercli, "FALLBACKS", ())


def test_first_docker_on_path_wins_when_it_has_buildx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_fallbacks(monkeypatch)
    new = _fake_docker(tmp_path / "a", "28.2.2", buildx=True)
    _fake_docker(tmp_path / "b", "20.10.24", buildx=False)
    path = f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}"
    cli = dockercli.find_docker(environ={"PATH": path})
    assert (cli.path, cli.mode, cli.note, cli.buildx) == (str(new), BUILDX, None, "buildx v0.12")


def test_new_cli_without_buildx_falls_back_to_an_older_one_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_fallbacks(monkeypatch)
    new = _fake_docker(tmp_path / "a", "28.2.2", buildx=False)
    old = _fake_docker(tmp_path / "b", "20.10.24", buildx=False)
    cli = dockercli.find_docker(environ={"PATH": f"{new.parent}{os.pathsep}{old.parent}"})
    assert (cli.path, cli.mode, cli.version) == (str(old), BUILDKIT, "20.10.24")
    assert cli.note == (
        f"{new} is docker CLI 28.2.2 without the buildx plugin; "
        f"using {old} (CLI 20.10.24, docker build (BuildKit))"
    )


def test_no_capable_cli_explains_how_to_get_buildx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_fallbacks(monkeypatch)
    new = _fake_docker(tmp_path / "a", "28.2.2", buildx=False)
    with pytest.raises(DockerError) as caught:
        dockercli.find_docker(environ={"PATH": str(new.parent)})
    assert caught.value.exit_code == ExitCode.DOCKER
    assert f"{new} is docker CLI 28.2.2 without the buildx plugin" in caught.value.message
    assert "install the docker buildx plugin" in caught.value.message
    assert "IMAGEKIT_DOCKER" in caught.value.message


def test_imagekit_docker_names_the_binary_and_must_qualify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_fallbacks(monkeypatch)
    old = _fake_docker(tmp_path / "old", "20.10.24", buildx=False)
    new = _fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    chosen = dockercli.find_docker(environ={"IMAGEKIT_DOCKER": str(old), "PATH": str(new.parent)})
    assert chosen.path == str(old)
    with pytest.raises(DockerError, match=r"IMAGEKIT_DOCKER names .* cannot build with BuildKit"):
        dockercli.find_docker(environ={"IMAGEKIT_DOCKER": str(new), "PATH": str(old.parent)})
    with pytest.raises(DockerError, match=r"^--docker names "):
        dockercli.find_docker(str(new), environ={"PATH": str(old.parent)})


def test_missing_binary_is_a_docker_error(tmp_path: Path) -> None:
    with pytest.raises(DockerError, match="not a working docker CLI"):
        dockercli.find_docker(str(tmp_path / "nope"), environ={})


def test_a_request_without_tag_names_none() -> None:
    from dataclasses import replace

    argv = build_command(replace(_request(), tag=None))
    assert "--tag" not in argv and argv[argv.index("--iidfile") + 1] == "/ws/builds/.v1.0.0.iid"


def test_build_command_buildx_writes_a_metadata_file() -> None:
    argv = build_command(_request(NEW, metadata_file=Path("/ws/builds/.v1.0.0.metadata.json")))
    index = argv.index("--metadata-file")
    assert argv[index + 1] == "/ws/builds/.v1.0.0.metadata.json"
    assert argv[index - 2 : index] == ["--iidfile", "/ws/builds/.v1.0.0.iid"]


def test_build_command_classic_buildkit_client_has_no_metadata_file() -> None:
    # docker 20.10's own BuildKit client rejects --metadata-file
    argv = build_command(_request(OLD, metadata_file=Path("/ws/builds/.v1.0.0.metadata.json")))
    assert "--metadata-file" not in argv


@pytest.mark.parametrize(
    ("text", "digest"),
    [
        ('{"containerimage.digest": "sha256:' + "a" * 64 + '", "image.name": "x:1"}', "sha256:" + "a" * 64),
        ('{"containerimage.digest": "sha256:short"}', None),
        ('{"buildx.build.ref": "default/default/abc"}', None),
        ("[1, 2]", None),
        ("{broken", None),
    ],
)
def test_read_metadata_digest(tmp_path: Path, text: str, digest: str | None) -> None:
    path = tmp_path / "meta.json"
    path.write_text(text)
    assert dockercli.read_metadata_digest(path) == digest
    assert dockercli.read_metadata_digest(tmp_path / "missing.json") is None
    assert dockercli.read_metadata_digest(None) is None
