"""The harness works: a daemon answers and a BuildKit build takes a secret from the environment.

Later issues build on exactly this: ``RUN --mount=type=secret`` fed by ``--secret id=X,env=VAR``
with the value only in the docker process's environment, never in argv, history or layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sys
from pathlib import Path

import pytest

from frappe_imagekit import process
from frappe_imagekit.redact import Redactor
from tests.support import dockerd

pytestmark = pytest.mark.integration

SECRET_ENV = "IK_HARNESS_APPS_JSON"
CONTAINERFILE = """\
# syntax-free on purpose: no frontend image can be pulled here
FROM {base}
RUN --mount=type=secret,id=apps_json,target=/opt/apps.json cat /opt/apps.json | sha256sum > /hash
"""


def test_busybox_image_has_the_promised_rootfs(docker_daemon: str, busybox_image: str) -> None:
    script = "id -u frappe; id -g frappe; echo ~frappe; test -d /tmp && echo tmp; ls /bin/sh"
    done = dockerd.docker(docker_daemon, "run", "--rm", busybox_image, "sh", "-c", script)
    assert done.stdout.split() == ["1000", "1000", "/home/frappe", "tmp", "/bin/sh"]


def test_buildkit_secret_reaches_the_build_and_nothing_else(
    docker_daemon: str,
    busybox_image: str,
    unique_name,
    cleanup_images: list[str],
    tmp_path: Path,
) -> None:
    canary = "ghp_" + secrets.token_hex(18)
    apps_json = json.dumps([{"url": f"https://{canary}@github.com/acme/app.git", "branch": "main"}])
    (tmp_path / "Containerfile").write_text(CONTAINERFILE.format(base=busybox_image))
    image = f"{unique_name('harness')}:test"
    cleanup_images.append(image)
    argv = [
        docker_daemon, "build", "--no-cache", "--progress=plain",
        "--secret", f"id=apps_json,env={SECRET_ENV}",
        "-f", str(tmp_path / "Containerfile"), "-t", image, str(tmp_path),
    ]  # fmt: skip
    assert canary not in " ".join(argv)

    built = process.run(argv, env={"DOCKER_BUILDKIT": "1", SECRET_ENV: apps_json}, timeout=120)

    assert built.returncode == 0, built.stderr
    inside = dockerd.docker(docker_daemon, "run", "--rm", image, "cat", "/hash").stdout
    assert inside.split()[0] == hashlib.sha256(apps_json.encode()).hexdigest()
    redactor = Redactor([canary])  # also catches its URL-encoded and base64 forms
    history = dockerd.docker(docker_daemon, "history", "--no-trunc", image).stdout
    saved = dockerd.docker(docker_daemon, "save", image, timeout=120).stdout
    for where, text in (("build output", built.stdout + built.stderr), ("history", history)):
        assert redactor.redact(text) == text, f"canary leaked into {where}"
    assert len(saved) > 1_000_000  # the whole image (busybox alone is ~2 MB) was scanned
    assert redactor.redact(saved) == saved, "canary leaked into the image"


# ---------------------------------------------------------------- scripts/test.sh, daemon logic
# The shared daemon must never be stopped, so the start/stop branch runs against a fake
# `dockerd` (a process that becomes "ready" by creating a file) and a fake `docker info`.

ROOT = Path(__file__).resolve().parents[2]
TEST_SH = ROOT / "scripts" / "test.sh"
FAKE_DOCKER = '#!/bin/sh\n[ "$1" = info ] && [ -e "$FAKE_STATE/up" ]\n'
FAKE_DOCKERD = """#!/bin/sh
echo $$ >"$FAKE_STATE/dockerd.pid"
trap 'rm -f "$FAKE_STATE/up"; echo stopped >"$FAKE_STATE/stopped"; exit 0' TERM
sleep 0.3
[ -n "$FAKE_NEVER_READY" ] || touch "$FAKE_STATE/up"
while :; do sleep 0.1; done
"""
DRIVER = """
source "$TEST_SH"
DOCKER="$FAKE_STATE/bin/docker"; STATE_DIR="$FAKE_STATE"; DOCKERD_WAIT_SECONDS=${WAIT:-3}
PATH="$FAKE_STATE/bin:$PATH"
install_traps
start_dockerd_if_needed
echo "started=$DOCKERD_PID"
"""


def _drive(tmp_path: Path, ending: str, **env: str) -> process.Completed:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("docker", FAKE_DOCKER), ("dockerd", FAKE_DOCKERD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"FAKE_STATE": str(tmp_path), "TEST_SH": str(TEST_SH), "CI": "", **env}
    return process.run(["bash", "-c", DRIVER + ending], env=env, timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/test.sh starts dockerd as root")


@needs_root
@pytest.mark.parametrize(
    ("ending", "code"), [("exit 3", 3), ("kill -TERM $$; sleep 5", 143), ("kill -INT $$", 130)]
)
def test_script_starts_dockerd_when_none_answers_and_stops_it_on_any_exit(
    tmp_path: Path, ending: str, code: int
) -> None:
    done = _drive(tmp_path, ending)

    pid = int((tmp_path / "dockerd.pid").read_text())
    assert done.returncode == code, done.stderr
    assert f"started={pid}" in done.stdout
    assert "starting dockerd" in done.stderr and f"stopping dockerd {pid}" in done.stderr
    assert (tmp_path / "stopped").read_text() == "stopped\n"
    assert not _alive(pid)


@needs_root
def test_script_leaves_a_daemon_it_did_not_start_alone(tmp_path: Path) -> None:
    (tmp_path / "up").touch()

    done = _drive(tmp_path, "exit 0")

    assert done.returncode == 0
    assert "started=\n" in done.stdout
    assert "already answers" in done.stderr and "stopping" not in done.stderr
    assert not (tmp_path / "dockerd.pid").exists()


@needs_root
@pytest.mark.parametrize(("ci", "code"), [("true", 1), ("", 0)])
def test_script_fails_in_ci_when_dockerd_never_answers(tmp_path: Path, ci: str, code: int) -> None:
    done = _drive(tmp_path, "echo went-on", CI=ci, FAKE_NEVER_READY="1", WAIT="1")

    pid = int((tmp_path / "dockerd.pid").read_text())
    assert done.returncode == code
    assert "dockerd did not answer within 1 s" in done.stderr
    assert ("went-on" in done.stdout) == (code == 0)
    if ci:
        assert "CI=true and dockerd did not answer" in done.stderr
        assert "integration tests must run in CI" in done.stderr
    else:
        assert "WARNING" in done.stderr and "integration tests will be skipped" in done.stderr
    assert not _alive(pid)  # the one it started is stopped either way


@pytest.mark.parametrize(
    ("version", "has_buildx", "expected"),
    [("20.10.24+dfsg1", False, True), ("28.2.2", False, False), ("28.2.2", True, True)],
)
def test_script_picks_only_a_buildkit_capable_cli(
    tmp_path: Path, version: str, has_buildx: bool, expected: bool
) -> None:
    cli = tmp_path / "docker"
    buildx = "0" if has_buildx else "1"
    cli.write_text(
        f'#!/bin/sh\n[ "$1" = --version ] && echo "Docker version {version}, build x" && exit 0\n'
        f'[ "$1" = buildx ] && exit {buildx}\nexit 1\n'
    )
    cli.chmod(0o755)

    done = process.run(
        ["bash", "-c", 'source "$TEST_SH"; can_buildkit "$CLI" && echo yes || echo no'],
        env={"TEST_SH": str(TEST_SH), "CLI": str(cli)},
        timeout=30,
    )

    assert done.stdout.strip() == ("yes" if expected else "no")


# ---------------------------------------------------------------- scripts/test.sh, packages per release

OS_RELEASES = {
    "debian12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    "VERSION_CODENAME=bookworm\n",
    "debian13": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
    "VERSION_CODENAME=trixie\n",
    # testing has no VERSION_ID; a future release is newer than 13 either way
    "debian-testing": 'PRETTY_NAME="Debian GNU/Linux forky/sid"\nID=debian\nVERSION_CODENAME=forky\n',
    "ubuntu": 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n',
    "fedora": 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\n',
}
COMMON = [
    "docker.io",
    "docker-compose",
    "openssh-server",
    "busybox-static",
    "git",
    "debootstrap",
    "iproute2",
    "docker-registry",
]


@pytest.mark.parametrize(
    ("system", "release", "extra"),
    [
        ("debian12", "12", []),
        ("debian13", "13", ["docker-cli", "docker-buildx"]),
        ("debian-testing", "forky", ["docker-cli", "docker-buildx"]),
        ("ubuntu", "24.04", ["docker-cli", "docker-buildx"]),
        ("fedora", "", ["docker-cli", "docker-buildx"]),
    ],
)
def test_script_package_list_depends_on_the_release(
    tmp_path: Path, system: str, release: str, extra: list[str]
) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text(OS_RELEASES[system])

    done = process.run(
        ["bash", "-c", 'source "$TEST_SH"; echo "release=$(debian_release)"; apt_packages'],
        env={"TEST_SH": str(TEST_SH), "IMAGEKIT_OS_RELEASE": str(os_release)},
        timeout=30,
    )

    assert done.returncode == 0, done.stderr
    first, *packages = done.stdout.splitlines()
    assert first == f"release={release}"
    assert packages == COMMON + extra


def test_script_without_os_release_still_names_buildx(tmp_path: Path) -> None:
    done = process.run(
        ["bash", "-c", 'source "$TEST_SH"; apt_packages'],
        env={"TEST_SH": str(TEST_SH), "IMAGEKIT_OS_RELEASE": str(tmp_path / "missing")},
        timeout=30,
    )
    assert done.stdout.split() == COMMON + ["docker-cli", "docker-buildx"]


# ---------------------------------------------------------------- scripts/test.sh, pytest-xdist workers


@pytest.mark.parametrize(
    ("cores", "workers", "options"),
    [
        ("2", "", "-n 5 --dist loadgroup --durations=25"),  # 2 x cores + 1: the tests mostly wait
        ("1", "", "-n 3 --dist loadgroup --durations=25"),
        ("3", "", "-n 7 --dist loadgroup --durations=25"),
        ("32", "", "-n 8 --dist loadgroup --durations=25"),  # one daemon: at most 8 by default
        ("2", "5", "-n 5 --dist loadgroup --durations=25"),
        ("2", "0", "--durations=25"),  # 0: no pytest-xdist at all
    ],
)
def test_script_runs_pytest_with_twice_the_cores_and_one_more_workers(
    tmp_path: Path, cores: str, workers: str, options: str
) -> None:
    (tmp_path / "nproc").write_text(f"#!/bin/sh\necho {cores}\n")
    (tmp_path / "nproc").chmod(0o755)

    done = process.run(
        ["bash", "-c", 'source "$TEST_SH"; pytest_options'],
        env={
            "TEST_SH": str(TEST_SH),
            "PATH": f"{tmp_path}:{os.environ['PATH']}",
            "IMAGEKIT_TEST_WORKERS": workers,
        },
        timeout=30,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == options.split()


@pytest.mark.parametrize("workers", ["x", "-1", "1000", "3 4"])
def test_script_refuses_a_bad_worker_count_before_installing_anything(tmp_path: Path, workers: str) -> None:
    python = tmp_path / "python"  # the script's $PYTHON: pip install and pytest would run it
    python.write_text(f'#!/bin/sh\necho "$@" >>{tmp_path / "ran"}\n')
    python.chmod(0o755)

    done = process.run(
        ["bash", str(TEST_SH)], env={"IMAGEKIT_TEST_WORKERS": workers, "PYTHON": str(python)}, timeout=30
    )

    assert done.returncode == 1
    assert done.stderr == (
        f"[test.sh] ERROR: IMAGEKIT_TEST_WORKERS={workers} is not a number of workers: "
        "give e.g. 3, or 0 to run without pytest-xdist.\n"
    )
    assert not (tmp_path / "ran").exists()


FORCE_SKIP = """\
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    pytest.skip("forced by the forceskip plugin")
"""


def test_parallel_ci_run_fails_skips_and_keeps_the_debian13_tests_on_one_worker(tmp_path: Path) -> None:
    """Under pytest-xdist, CI=true still turns an integration test that skips into a failure (in
    the workers) listed in the summary (by the controller), and the users of debian13_host are
    one xdist group, so one worker runs them all and starts one host."""
    (tmp_path / "forceskip.py").write_text(FORCE_SKIP)  # a plugin that skips every test
    tests = [
        f"{Path(__file__).relative_to(ROOT)}::{name}"
        for name in (
            "test_busybox_image_has_the_promised_rootfs",
            "test_debian13_host_has_docker_26_buildx_and_compose_v2_and_no_registry",
            "test_debian13_host_runs_unprivileged_on_loopback_with_its_own_volume",
        )
    ]
    argv = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p", "forceskip",
            "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp"), *tests]  # fmt: skip
    path = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}

    in_ci = process.run(argv, env={**path, "CI": "true"}, cwd=str(ROOT), timeout=180)

    assert in_ci.returncode == 1, in_ci.stdout
    # a skip in setup becomes a failed setup: pytest counts it as an error
    assert "3 errors" in in_ci.stdout and "= integration tests must run in CI =" in in_ci.stdout
    summary = in_ci.stdout.split("= integration tests must run in CI =", 1)[1]
    for test in tests:
        nodeid = f"{test}@debian13" if "debian13_host" in test else test
        message = f"integration tests must run in CI (CI=true), but {nodeid} skipped: Skipped: forced by the"
        assert f"\n{message} forceskip plugin\n" in summary, summary
    ran = [re.search(r"\[(gw\d+)\] \[ *\d+%\] ERROR (\S+)", line) for line in in_ci.stdout.splitlines()]
    workers = {match.groups() for match in ran if match}
    assert len(workers) == 3, in_ci.stdout
    grouped = {worker for worker, nodeid in workers if nodeid.endswith("@debian13")}
    assert len(grouped) == 1 and sum(nodeid.endswith("@debian13") for _, nodeid in workers) == 2


# ---------------------------------------------------------------- the Debian 13 test host


def test_debian13_host_has_docker_26_buildx_and_compose_v2_and_no_registry(debian13_host) -> None:
    versions = debian13_host.versions()
    assert versions["server"].startswith("26.1.") and versions["client"].startswith("26.1.")
    assert versions["buildx"].startswith("0.13.")
    assert versions["compose"].startswith("2.26.")
    # the base image came in with docker load; nothing can be pulled
    images = debian13_host.docker_in("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "imagekit-test/busybox:1" in images
    pulled = debian13_host.docker_in("pull", "busybox:1.36", timeout=60)
    assert pulled.returncode != 0


def test_debian13_host_runs_unprivileged_on_loopback_with_its_own_volume(
    debian13_host, docker_daemon: str
) -> None:
    inspected = json.loads(dockerd.docker(docker_daemon, "inspect", debian13_host.name).stdout)[0]
    host_config = inspected["HostConfig"]
    assert host_config["Privileged"] is False
    assert "ALL" in host_config["CapAdd"]
    # dropped where the outer daemon needs it (20.10); a daemon that lacks it refuses the drop
    assert host_config["CapDrop"] in (["SYS_RESOURCE"], None)
    assert host_config["PortBindings"]["22/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": ""}]
    published = inspected["NetworkSettings"]["Ports"]["22/tcp"]
    assert published == [{"HostIp": "127.0.0.1", "HostPort": str(debian13_host.port)}]  # loopback only
    mounts = {m["Destination"]: m for m in inspected["Mounts"]}
    assert mounts["/var/lib/docker"]["Type"] == "volume"
    assert mounts["/var/lib/docker"]["Name"] == debian13_host.volume
    # the inner daemon stores on that volume with overlay2
    driver = debian13_host.docker_in("info", "--format", "{{.Driver}}").stdout.strip()
    assert driver == "overlay2"


def test_debian13_image_tags_are_hashes_of_their_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import debian13

    image, rootfs = debian13.image_tag(), debian13.rootfs_tag()
    assert image.startswith("imagekit-test/debian13:") and rootfs.startswith("imagekit-test/trixie-rootfs:")
    monkeypatch.setattr(debian13, "INIT_SH", debian13.INIT_SH + "# changed\n")
    assert debian13.image_tag() != image and debian13.rootfs_tag() == rootfs
    other = debian13.aptsources.Mirrors("http://127.0.0.1:9/debian", None)
    monkeypatch.setattr(debian13, "mirrors", lambda: other)
    assert debian13.rootfs_tag() != rootfs
