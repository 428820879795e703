#!/usr/bin/env bash
# The project's one test command:   bash scripts/test.sh [pytest arguments...]
#
# Prepares a fresh Debian 12 or Debian 13 machine (as root) for the whole suite, then runs pytest:
#   1. apt-get installs whatever is missing of docker.io docker-compose openssh-server
#      busybox-static git debootstrap iproute2, plus docker-cli docker-buildx on Debian 13
#      and later (read from /etc/os-release; no apt at all when everything is there);
#   2. pip install -e '.[test]' (into .venv when the system Python is externally managed),
#      then mypy (strict, see [tool.mypy] in pyproject.toml) on the package: a type error fails
#      the run here, before any test;
#   3. starts dockerd only if no daemon answers, and stops that one (and only that one) on exit;
#   4. builds the local base image imagekit-test/busybox:1 unless it exists;
#   5. runs `python -m pytest -n WORKERS --dist loadgroup --durations=25 "$@"` and exits with its
#      code: WORKERS pytest-xdist workers (2 x cores + 1, at most 8; IMAGEKIT_TEST_WORKERS=N sets it,
#      0 runs in this one process); options given to the script come after these and win.
# With CI=true a daemon that cannot be reached fails the run instead of skipping tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian 12 (bookworm): docker.io 20.10 carries the CLI and its own BuildKit client, and
# docker-compose is v1. Debian 13 (trixie) and later: docker.io 26 has no `docker` command
# (docker-cli has it), CLI 23+ builds with BuildKit only through docker-buildx, and
# docker-compose is v2. debootstrap makes the Debian 13 test host (tests/support/debian13.py).
COMMON_PACKAGES=(docker.io docker-compose openssh-server busybox-static git debootstrap iproute2 docker-registry)
BUILDX_PACKAGES=(docker-cli docker-buildx)
OS_RELEASE="${IMAGEKIT_OS_RELEASE:-/etc/os-release}"
APT_PACKAGES=()                    # set by main from apt_packages
STATE_DIR="$ROOT/.imagekit-test"   # git-ignored: pip stamp, logs of daemons we start
DOCKERD_WAIT_SECONDS=30
DOCKERD_PID=""                     # set only when this script started dockerd
DOCKERD_LOG=""
PYTHON="${PYTHON:-}"
MAX_DEFAULT_WORKERS=8              # one Docker daemon serves them all: more do not help

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { printf '[test.sh] ERROR: %s\n' "$*" >&2; exit 1; }
in_ci() { [[ "${CI:-}" =~ ^([Tt]rue|TRUE|1|yes)$ ]]; }

# Outside CI a missing daemon only means the integration tests skip; in CI it is fatal.
docker_unavailable() {
    if in_ci; then die "CI=true and $*; integration tests must run in CI."; fi
    log "WARNING: $*; integration tests will be skipped."
}

# ---------------------------------------------------------------- 1. Debian packages

# Echo VERSION_ID (e.g. 12, 13) of a Debian system, or nothing when it is not Debian.
debian_release() {
    [[ -r "$OS_RELEASE" ]] || return 0
    (
        # shellcheck disable=SC1090  # os-release is a shell fragment by definition
        source "$OS_RELEASE"
        if [[ "${ID:-}" == debian || " ${ID_LIKE:-} " == *" debian "* ]]; then
            case "${VERSION_CODENAME:-}" in
                bookworm) echo 12 ;;
                trixie) echo 13 ;;
                *) echo "${VERSION_ID:-${VERSION_CODENAME:-unknown}}" ;;
            esac
        fi
    )
}

# Echo the packages the suite needs, one a line, for the Debian release in $OS_RELEASE.
apt_packages() {
    local release
    release="$(debian_release)"
    printf '%s\n' "${COMMON_PACKAGES[@]}"
    # bookworm and older have no docker-buildx package and need none; every other release
    # (13, testing/sid, unknown) has Docker 23+ and needs it.
    if [[ ! "$release" =~ ^(9|10|11|12)$ ]]; then
        printf '%s\n' "${BUILDX_PACKAGES[@]}"
    fi
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
            || echo "$pkg"
    done
}

install_packages() {
    local -a missing
    if ! command -v dpkg-query >/dev/null; then
        log "not a Debian system: skipping apt; install ${APT_PACKAGES[*]} yourself"
        return 0
    fi
    mapfile -t missing < <(missing_packages "${APT_PACKAGES[@]}" "$@")
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if ((EUID != 0)); then
        if in_ci; then die "missing Debian packages ${missing[*]} and not root to install them."; fi
        log "WARNING: missing ${missing[*]} (run as root to install them); going on"
        return 0
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- 2. Python and the package

# Echo the extra Debian packages Python needs (none, python3-venv, or python3 itself).
python_packages_needed() {
    if [[ -n "$PYTHON" || -x "$ROOT/.venv/bin/python" ]]; then
        return 0
    elif ! command -v python3 >/dev/null; then
        echo python3 python3-venv
    elif python_is_externally_managed python3 && ! python3 -c 'import ensurepip' 2>/dev/null; then
        echo python3-venv
    fi
}

python_is_externally_managed() {
    "$1" - <<'EOF'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
EOF
}

# $PYTHON if given, else .venv, else python3 (or a new .venv when python3 is Debian's own).
pick_python() {
    if [[ -n "$PYTHON" ]]; then
        return 0
    elif [[ -x "$ROOT/.venv/bin/python" ]]; then
        PYTHON="$ROOT/.venv/bin/python"
    elif python_is_externally_managed python3; then
        log "system Python is externally managed: creating .venv"
        python3 -m venv "$ROOT/.venv"
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
    fi
}

# pip install -e '.[test]', skipped when pyproject.toml is unchanged since the last install.
install_project() {
    local stamp="$STATE_DIR/pip-stamp" want
    want="$PYTHON $(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
        && "$PYTHON" -c 'import frappe_imagekit, pytest, mypy, xdist' 2>/dev/null; then
        return 0
    fi
    log "pip install -e '.[test]' ($PYTHON)"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" >"$stamp"
}

# mypy with the installed Python and the [tool.mypy] settings (strict) of pyproject.toml.
check_types() {
    log "mypy frappe_imagekit ($PYTHON)"
    "$PYTHON" -m mypy frappe_imagekit || die "mypy found type errors (above): fix them, then run again."
}

# ---------------------------------------------------------------- 3. Docker

# True when CLI $1 can build with BuildKit: it has buildx, or it is older than 23 (18.09-22.x
# carry their own BuildKit client; 23+ hand `docker build` to the buildx plugin).
can_buildkit() {
    local cli="$1" major
    major="$("$cli" --version 2>/dev/null | sed -nE 's/^Docker version ([0-9]+)\..*/\1/p')"
    [[ -n "$major" ]] || return 1
    ((major < 23)) || "$cli" buildx version >/dev/null 2>&1
}

# Echo the docker CLI the tests should use: $IMAGEKIT_TEST_DOCKER, else the first that can BuildKit.
pick_docker_cli() {
    local cli
    if [[ -n "${IMAGEKIT_TEST_DOCKER:-}" ]]; then
        echo "$IMAGEKIT_TEST_DOCKER"
        return 0
    fi
    for cli in $(type -ap docker) /usr/bin/docker /usr/local/bin/docker; do
        if [[ -x "$cli" ]] && can_buildkit "$cli"; then
            echo "$cli"
            return 0
        fi
    done
    return 1
}

daemon_answers() { "$DOCKER" info >/dev/null 2>&1; }

start_dockerd_if_needed() {
    if daemon_answers; then
        log "a Docker daemon already answers: using it (and leaving it running)"
        return 0
    fi
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        docker_unavailable "DOCKER_HOST=$DOCKER_HOST does not answer (this script only starts a local dockerd)"
        return 0
    fi
    if ! command -v dockerd >/dev/null || ((EUID != 0)); then
        docker_unavailable "no Docker daemon answers and this script cannot start dockerd (needs root and docker.io)"
        return 0
    fi
    DOCKERD_LOG="$STATE_DIR/dockerd.log"
    log "starting dockerd (log: $DOCKERD_LOG)"
    dockerd >"$DOCKERD_LOG" 2>&1 &
    DOCKERD_PID=$!
    local deadline=$((SECONDS + DOCKERD_WAIT_SECONDS))
    while ((SECONDS < deadline)) && kill -0 "$DOCKERD_PID" 2>/dev/null; do
        if daemon_answers; then
            log "dockerd $DOCKERD_PID is ready"
            return 0
        fi
        sleep 0.5
    done
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    stop_dockerd
    docker_unavailable "dockerd did not answer within ${DOCKERD_WAIT_SECONDS} s (log: $DOCKERD_LOG)"
}

# Stop the daemon this script started, by its pid; never one it did not start.
stop_dockerd() {
    local pid="$DOCKERD_PID" tries
    [[ -n "$pid" ]] || return 0
    DOCKERD_PID=""
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping dockerd $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((tries = 0; tries < 100; tries++)); do  # up to 20 s for containers to stop
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- 4. pytest options

# Echo how many pytest-xdist workers to run: $IMAGEKIT_TEST_WORKERS, else twice the cores and one
# more (at most MAX_DEFAULT_WORKERS): integration tests mostly wait (containers start and stop,
# settle times, compose, sshd, git over HTTP), and much of the machine's CPU goes to what runs
# while they wait (every running container, the Debian 13 host's daemon), so fewer minutes cost
# less CPU. Measured on 2 cores, the whole suite: 3 workers 691 s (13% of the CPU idle), 4
# workers 634 s (4%), 5 workers 557 s (2%).
test_workers() {
    local workers="${IMAGEKIT_TEST_WORKERS:-}" cores
    if [[ -z "$workers" ]]; then
        cores="$(nproc 2>/dev/null || echo 1)"
        workers=$((2 * cores + 1 < MAX_DEFAULT_WORKERS ? 2 * cores + 1 : MAX_DEFAULT_WORKERS))
    fi
    if [[ ! "$workers" =~ ^[0-9]{1,3}$ ]]; then
        die "IMAGEKIT_TEST_WORKERS=$workers is not a number of workers: give e.g. 3, or 0 to run without pytest-xdist."
    fi
    echo "$((10#$workers))"
}

# Echo pytest's own options, one a line: the workers (tests that share an expensive fixture stay
# on one worker: tests/conftest.py marks them xdist_group), and the 25 slowest tests at the end.
pytest_options() {
    local workers
    workers="$(test_workers)" || return 1
    if ((workers > 0)); then
        printf '%s\n' -n "$workers" --dist loadgroup
    fi
    printf '%s\n' --durations=25
}

# ---------------------------------------------------------------- main

main() {
    local status=0 options
    local -a pytest_opts
    options="$(pytest_options)" || exit 1  # a bad IMAGEKIT_TEST_WORKERS stops before any install
    mapfile -t pytest_opts <<<"$options"
    mkdir -p "$STATE_DIR"
    mapfile -t APT_PACKAGES < <(apt_packages)
    # shellcheck disable=SC2046  # word splitting intended: zero, one or two package names
    install_packages $(python_packages_needed)
    pick_python
    install_project
    check_types
    PATH="$(dirname "$PYTHON"):$PATH"  # `imagekit` and `python` are the tested install

    DOCKER=/usr/bin/docker  # Debian's CLI; only used here to ask the daemon
    [[ -x "$DOCKER" ]] || DOCKER="$(command -v docker || true)"
    if [[ -z "$DOCKER" ]]; then
        docker_unavailable "no docker CLI is installed"
    else
        start_dockerd_if_needed
    fi

    if IMAGEKIT_TEST_DOCKER="$(pick_docker_cli)"; then
        export IMAGEKIT_TEST_DOCKER
        log "tests use docker CLI $IMAGEKIT_TEST_DOCKER"
    else
        docker_unavailable "no docker CLI can build with BuildKit (needs buildx, or a CLI older than 23)"
        unset IMAGEKIT_TEST_DOCKER
    fi

    if [[ -n "$DOCKER" ]] && daemon_answers && [[ -n "${IMAGEKIT_TEST_DOCKER:-}" ]]; then
        "$PYTHON" -m tests.support.baseimage "$IMAGEKIT_TEST_DOCKER" >/dev/null \
            || docker_unavailable "the base image imagekit-test/busybox:1 could not be built"
    fi

    log "python -m pytest ${pytest_opts[*]} $*"
    "$PYTHON" -m pytest "${pytest_opts[@]}" "$@" || status=$?
    return "$status"
}

# Whatever ends the run (pytest, an error, Ctrl-C, SIGTERM), stop the dockerd we started.
install_traps() {
    trap stop_dockerd EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Sourcing the file (tests/integration/test_harness.py does) defines the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    install_traps
    main "$@"
fi
