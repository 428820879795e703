"""Fixtures for the whole suite.

- ``isolated_home`` (autouse): HOME, XDG_* and DOCKER_CONFIG point at a fresh folder per test.
- ``docker_cli`` (session): path of a docker CLI that can build with BuildKit.
- ``docker_daemon`` (session): the same path, after checking that the daemon answers; skips
  without one, but fails when CI=true.
- ``busybox_image`` (session): ``imagekit-test/busybox:1``, made if missing.
- ``unique_name``: ``unique_name("build") -> "ik-build-1a2b3c4d"`` for images and projects.
- ``cleanup_images``: a list; every image name appended is removed after the test.

Tests under tests/integration are marked ``integration`` automatically. When CI=true, an
integration test that skips is reported as a failure: integration tests must run in CI.

Parallel runs (pytest-xdist, ``-n N --dist loadgroup``, as scripts/test.sh runs the suite): a
test that uses one of the expensive shared fixtures in ``SHARED_FIXTURE_GROUPS`` is marked
``xdist_group`` automatically, so all its users run on one worker and the fixture is made once
per run (one Debian 13 host, one fake python base); pytest 9.2 loses these marks (pyproject.toml
pins below it). The slowest integration modules (``SLOW_FIRST``) are handed out first. Images
that every worker needs are made under a machine-wide lock (tests/support/machinelock.py);
everything else a test makes has a unique name.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from frappe_imagekit.deploy import compose
from tests.support import baseimage, dockerd

ROOT = Path(__file__).resolve().parents[1]

# The Ctrl-C tests send SIGINT to an imagekit process as a terminal does. A run started in the
# background by a shell without job control (`cmd &`, nohup) inherits SIGINT ignored, and so would
# every imagekit it starts (an ignored signal stays ignored across exec): give it back its default
# here, in the pytest process and each xdist worker, so that their children start with it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

INTEGRATION_DIR = ROOT / "tests" / "integration"
_CI_FAILURES: list[str] = []
_CI_PREFIX = "integration tests must run in CI (CI=true), but "
# fixture -> xdist group: every test that uses the fixture runs on the same worker, so the
# fixture (session or module scoped, expensive, or one-per-machine) is made once per run.
SHARED_FIXTURE_GROUPS = {
    "debian13_host": "debian13",  # a 616 MB container with its own dockerd: one per run
    "fake_base": "exact-build",  # test_exact_build.py's fake python base, built per module
    "deployed_v1": "deployed-v1",  # a deployed fake stack per module, shared by read-only tests
}
_GITCONFIG = "[user]\n\tname = imagekit tests\n\temail = tests@example.invalid\n"
# Integration modules with the slowest tests (each module's slowest 55-150 s in the lead's
# `--durations=0` run of December 7, 3 workers on the loaded 2-core machine), slowest first: they
# run first, whole modules in this order, so that the short tests fill the end of a parallel run
# instead of one worker finishing a long test alone. The xdist groups (SHARED_FIXTURE_GROUPS,
# test_swarm.py's) start before them anyway: --dist loadgroup hands out the largest units first.
SLOW_FIRST = (
    "test_deploy_nextsteps.py",
    "test_deploy_outage.py",
    "test_sandbox.py",
    "test_deploy_prune_backups.py",
    "test_backups_verify.py",
    "test_deploy_truth.py",
    "test_rollback.py",
    "test_deploy_ssh.py",
    "test_deploy_maintenance.py",
    "test_rehearse.py",
    "test_deploy.py",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


# Property tests explore new random inputs on every developer run; in CI they replay the same
# derandomized examples, so a submission is judged on what was tested before it was made.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if in_ci() else "default")


def _unavailable(reason: str) -> None:
    """Fail when CI=true, otherwise skip: integration tests must never be skipped in CI."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}: integration tests must run in CI.", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every per-user folder at a fresh folder; returns the fake HOME.

    It is a sibling of ``tmp_path``, not inside it, so a test's own ``tmp_path`` stays empty
    (a git workspace made there is not dirtied by a .gitconfig).
    """
    home = tmp_path_factory.mktemp("home")
    for var, sub in (
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("DOCKER_CONFIG", ".docker"),
    ):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (home / ".gitconfig").write_text(_GITCONFIG)
    return home


# The fake bench's services start in milliseconds and none restarts unless a test makes it crash
# loop: one second of settle still sees a restart (the restart count is compared, not only the
# state) and saves 2 s per wait. Imagekit run as a program (pasted commands) keeps the product's 3 s.
TEST_SETTLE = 1.0


@pytest.fixture(autouse=True)
def short_settle(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process deploys, rollbacks and sandboxes of an integration test (its API calls and
    CliRunner's) settle TEST_SETTLE s after up (``compose.SETTLE``, their options' default); a
    test whose service must crash-loop within the product's 3 s takes ``product_settle``."""
    if "product_settle" not in request.fixturenames and INTEGRATION_DIR in Path(str(request.path)).parents:
        monkeypatch.setattr(compose, "SETTLE", TEST_SETTLE)


@pytest.fixture
def product_settle() -> float:
    """The product's settle time for this test's in-process runs (``short_settle`` leaves it)."""
    return compose.SETTLE


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("deploy") -> "ik-deploy-1a2b3c4d"``: lower-case, valid for images and
    compose projects, unique across the engineers sharing one daemon."""

    def make(prefix: str) -> str:
        return f"ik-{prefix.lower()}-{secrets.token_hex(4)}"

    return make


# ---------------------------------------------------------------- docker


@pytest.fixture(scope="session")
def docker_cli() -> str:
    """Path of a docker CLI that can build with BuildKit (``$IMAGEKIT_TEST_DOCKER`` wins)."""
    cli = dockerd.find_buildkit_docker()
    if cli is None:
        _unavailable("no docker CLI that can build with BuildKit (buildx, or a CLI older than 23)")
    return cli


@pytest.fixture(scope="session")
def docker_daemon(docker_cli: str) -> str:
    """The docker CLI path, once ``docker info`` answers."""
    problem = dockerd.daemon_problem(docker_cli)
    if problem:
        _unavailable(f"no Docker daemon answers ({problem})")
    return docker_cli


@pytest.fixture(scope="session")
def busybox_image(docker_daemon: str) -> str:
    """``imagekit-test/busybox:1``, the local base image (no Docker Hub here)."""
    try:
        return baseimage.ensure_busybox_image(docker_daemon)
    except baseimage.BaseImageError as exc:
        _unavailable(str(exc))
        raise  # unreachable: _unavailable always raises


@pytest.fixture
def cleanup_images(docker_daemon: str) -> Iterator[list[str]]:
    """Append image references to the list; they are removed (``rmi -f``) after the test."""
    names: list[str] = []
    yield names
    for name in names:
        dockerd.docker(docker_daemon, "rmi", "-f", name, check=False, timeout=120)


# ---------------------------------------------------------------- CI: never skip integration


def _in_integration_dir(nodeid: str) -> bool:
    return INTEGRATION_DIR in (ROOT / nodeid.split("::")[0]).parents


def xdist_group(item: pytest.Item) -> str | None:
    """The group of the first fixture of SHARED_FIXTURE_GROUPS that ``item`` uses, if any."""
    names = set(getattr(item, "fixturenames", ()))
    return next((group for fixture, group in SHARED_FIXTURE_GROUPS.items() if fixture in names), None)


def run_order(item: pytest.Item) -> tuple[int, int]:
    """SLOW_FIRST modules first (in its order), then the other integration tests, then the rest;
    a stable sort keeps each module's tests together and in their own order."""
    path = Path(str(item.path))
    if INTEGRATION_DIR not in path.parents:
        return (2, 0)
    if path.name in SLOW_FIRST:
        return (0, SLOW_FIRST.index(path.name))
    return (1, 0)


# tryfirst: pytest-xdist reads the xdist_group marks in its own modifyitems hook, and hands the
# tests out in this order (groups first: --dist loadgroup puts the largest units first).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=run_order)
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)
        group = xdist_group(item)
        if group and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))


def _fail_in_ci(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{_CI_PREFIX}{what} skipped: {reason}"


def _note_ci_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Collect the messages of _fail_in_ci for the summary. It runs where the reports are
    logged: in this process, or in the xdist controller, whose reports come from the workers."""
    message = report.longrepr if report.failed else None
    if isinstance(message, str) and message.startswith(_CI_PREFIX) and message not in _CI_FAILURES:
        _CI_FAILURES.append(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = (yield).get_result()
    skipped = report.skipped and not hasattr(report, "wasxfail")
    if in_ci() and skipped and item.get_closest_marker("integration") is not None:
        _fail_in_ci(report, item.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module-level skip (e.g. importorskip) in tests/integration never reaches makereport.
    if in_ci() and report.skipped and _in_integration_dir(report.nodeid):
        _fail_in_ci(report, report.nodeid)
    _note_ci_failure(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_ci_failure(report)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _CI_FAILURES:
        terminalreporter.section("integration tests must run in CI", sep="=", red=True, bold=True)
        for message in _CI_FAILURES:
            terminalreporter.write_line(message, red=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """A real sshd on 127.0.0.1 (own host key, user key and known_hosts), one per test module."""
    from tests.support.sshd import SSHServer

    server = SSHServer.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


# ---------------------------------------------------------------- the Debian 13 test host
# Docker 26.1, buildx 0.13 and Compose v2 in one container (tests/support/debian13.py). Its
# image is built once and cached on this machine's daemon (tagged by a hash of its inputs);
# one host container runs per session and is removed with its volume at the end. When it
# cannot be built, its tests skip, and fail when CI=true.


@pytest.fixture(scope="session")
def debian13_image(docker_daemon: str) -> str:
    """``imagekit-test/debian13:<hash>``, built when missing (about 2 min cold, 0.1 s warm)."""
    from tests.support import debian13

    try:
        image, _timings = debian13.ensure_image(docker_daemon)
    except (debian13.HostError, OSError) as exc:
        _unavailable(f"the Debian 13 test host could not be built: {exc}")
        raise  # unreachable: _unavailable always raises
    return image


@pytest.fixture(scope="session")
def debian13_host(
    debian13_image: str, docker_daemon: str, busybox_image: str, tmp_path_factory: pytest.TempPathFactory
):
    """A running Debian 13 host (SSH on 127.0.0.1) with ``imagekit-test/busybox:1`` loaded.

    The session's temporary folder is mounted at the same path inside, so a test's tmp_path
    (compose file, state folder, sites) is the same path on the target.
    """
    from tests.support import debian13

    base = tmp_path_factory.getbasetemp()
    name = f"ik-d13-{secrets.token_hex(4)}"
    try:
        host = debian13.Debian13Host.start(
            docker_daemon, debian13_image, name, tmp_path_factory.mktemp("debian13"), shared=[base]
        )
    except debian13.HostError as exc:
        _unavailable(f"the Debian 13 test host did not start: {exc}")
        raise
    try:
        host.load_image(busybox_image)
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def debian13_socket(debian13_host) -> Path:
    """A unix socket on this machine forwarded over SSH to the host's Docker 26 daemon."""
    return debian13_host.forward_socket()


@pytest.fixture(scope="session")
def docker26_cli(debian13_host, docker_daemon: str):
    """The host's docker CLI 26.1 + buildx 0.13, copied out to run on this machine."""
    from tests.support import debian13

    return debian13.extract_cli(docker_daemon, debian13_host.image)


@pytest.fixture
def docker26(docker26_cli, debian13_socket: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """For one test: imagekit builds with CLI 26 + buildx on the Debian 13 daemon.

    Sets IMAGEKIT_DOCKER to CLI 26 and DOCKER_HOST to the forwarded socket (the SDK follows it),
    puts the buildx plugin into this test's DOCKER_CONFIG, and returns the CLI's path.
    """
    docker26_cli.install_plugin(Path(os.environ["DOCKER_CONFIG"]))
    monkeypatch.setenv("IMAGEKIT_DOCKER", str(docker26_cli.docker))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{debian13_socket}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    dockerd.forget_docker_clients()
    yield str(docker26_cli.docker)
    dockerd.forget_docker_clients()
