"""The outage users feel during `imagekit deploy` against bare `compose down && compose up -d`,
in one run: the non-503 failure (no answer, or a 5xx other than the maintenance 503) and the 503
window, per deploy.

What users see is sampled every 20 ms: `GET /api/method/ping` with `Host: a.local` on the
backend's port, published on 127.0.0.1 only. A sample is `up` (200), `maintenance` (503: the page
frappe shows while it is updated) or a failure: `5xx` (another 5xx: frappe's 500 while MariaDB
and Redis are gone) or `no answer` (refused, reset, timed out). The stack is shaped like
frappe_docker's with its mariadb and redis overrides (three -f files): configurator, backend,
queue, websocket and scheduler (PID 1 ignores SIGTERM, as `node socketio.js` and `bench schedule`
do), a frontend that depends on the backend and ignores SIGTERM for its 10 s stop timeout (as
the nginx-entrypoint.sh of imagekit's Containerfile did without `exec`: real-lab-2026-12-07 run
25b), db, redis-cache and redis-queue. The fake backend answers as frappe 15.55.1 did with them
gone (tests/fixtures/frappe-v15-lab/58*): 500 without MariaDB, and in maintenance 500 when Redis
is gone too. Three sequences deploy the same fake bench image alternately, ROUNDS times each:
imagekit (backup, checks, recreate of what changed, migrate of two sites, maintenance window),
imagekit --full-down (compose down first, as every deploy did before), and the bare down && up.

    python -m benchmarks.deploy.run [ROUNDS]

Printed per deploy and as medians: the non-503 failure, the 503 window, the deploy time and, for
imagekit, backup + recreate + migrate from its report (the 503 window's goal: no longer than
that); the ratio of the non-503 failure imagekit / bare. Exits 1 when an imagekit deploy failed
users (non-503) for more than 5 s.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from frappe_imagekit import process
from frappe_imagekit.deploy.sequence import DeployOptions, DeployReport, deploy
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace
from tests.support.baseimage import ensure_busybox_image
from tests.support.benchimage import (
    IGNORE_TERM,
    build_fake_bench,
    compose_yaml,
    write_overrides,
    write_project,
)

SERVICES = ("configurator", "backend", "queue", "websocket", "scheduler")
UP, MAINTENANCE, ERROR, NO_ANSWER = "up", "maintenance", "5xx", "no answer"
GOAL = 5.0  # seconds of non-503 failure per deploy
# frappe_docker's frontend (nginx) depends on the backend, so compose stops the backend after it;
# its PID 1 was bash running nginx as a child, which ignores SIGTERM: compose waits out its 10 s
# (real-lab-2026-12-07 run 25b: kill 12:33:51, killed 12:34:01, backend stopped after it)
FRONTEND = f"""  frontend:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    stop_grace_period: 10s
    depends_on: [backend, websocket]
    command: ['sh', '-c', '{IGNORE_TERM}']
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_stack(folder: Path, busybox: str, port: int) -> list[Path]:
    """compose.yaml (app services, frontend, the backend's port on 127.0.0.1) and the overrides."""
    compose = write_project(folder, services=SERVICES)
    text = compose_yaml(SERVICES, networked=True) + FRONTEND
    head = "  backend:\n    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}\n"
    compose.write_text(text.replace(head, head + f'    ports:\n      - "127.0.0.1:{port}:8000"\n'))
    return [compose, *write_overrides(folder, busybox)]


def ask(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/api/method/ping", headers={"Host": "a.local"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return NO_ANSWER
    finally:
        conn.close()
    return UP if status == 200 else MAINTENANCE if status == 503 else ERROR


class Watch:
    """Samples what users see while one deploy runs; sums the time spent in each state."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 60  # until the site answers again
        while time.monotonic() < deadline and (not self.samples or self.samples[-1][1] != UP):
            time.sleep(0.05)
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), ask(self.port)))
            time.sleep(0.02)

    def seconds(self, *states: str) -> float:
        pairs = zip(self.samples, self.samples[1:], strict=False)
        return sum(later - at for (at, seen), (later, _) in pairs if seen in states)


def bare(project: str, files: list[Path], repo: str, tag: str) -> None:
    env = {"CUSTOM_IMAGE": repo, "CUSTOM_TAG": tag, "PULL_POLICY": "never"}
    base = ["docker-compose", "-p", project, *(a for f in files for a in ("-f", str(f)))]
    for args in (["down", "--remove-orphans"], ["up", "-d"]):
        done = process.run([*base, *args], env=env)
        assert done.returncode == 0, done.stderr


def inside_window(report: DeployReport | None) -> float:
    """backup + recreate (up, image check) + migrate of an imagekit deploy: the 503 window's goal."""
    if report is None:
        return 0.0
    return sum(report.timings.get(k, 0.0) for k in ("backup", "down", "up", "image_check", "migrate"))


def main(rounds: int) -> int:
    busybox = ensure_busybox_image("/usr/bin/docker")
    image = build_fake_bench("/usr/bin/docker")
    project = f"ik-bench-{secrets.token_hex(4)}"
    repo = f"{project}/bench"
    folder = Path(tempfile.mkdtemp(prefix="ik-bench-deploy-"))
    port = free_port()
    files = write_stack(folder / "srv", busybox, port)
    ws = Workspace.at(folder / "ws")
    tags = ["v1", "v2"]
    for tag in tags:
        process.run(["docker", "tag", image, f"{repo}:{tag}"])
    os.environ["XDG_STATE_HOME"] = str(folder / "state")
    runner = LocalRunner()
    names = ("imagekit", "full-down", "bare")
    keys = ("failure", "error", "maintenance", "deploy", "goal")
    figures: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in names}

    def imagekit(tag: str, full_down: bool = False) -> DeployReport:
        opts = DeployOptions(project=project, compose_file=str(files[0]), image=repo, version=tag,
                             compose_overrides=tuple(str(f) for f in files[1:]), full_down=full_down,
                             health_check=False)  # fmt: skip
        report = deploy(runner, ws, opts)
        assert report.result == "succeeded", report
        return report

    def bare_run(tag: str) -> None:
        bare(project, files, repo, tag)

    sequences: dict[str, Callable[[str], DeployReport | None]] = {
        "imagekit": imagekit,
        "full-down": lambda tag: imagekit(tag, full_down=True),
        "bare": bare_run,
    }
    try:
        imagekit("v1")  # first up: nothing to stop yet
        for i in range(rounds):
            for n, name in enumerate(names):
                tag = tags[(i * len(names) + n + 1) % 2]
                started = time.monotonic()
                with Watch(port) as watch:
                    report = sequences[name](tag)
                    took = time.monotonic() - started
                got = figures[name]
                got["failure"].append(watch.seconds(ERROR, NO_ANSWER))
                got["error"].append(watch.seconds(ERROR))
                got["maintenance"].append(watch.seconds(MAINTENANCE))
                got["deploy"].append(took)
                got["goal"].append(inside_window(report))
                print(f"round {i + 1} {name:10s} non-503 {got['failure'][-1]:5.2f}s (of it 5xx "
                      f"{got['error'][-1]:5.2f}s)  503 window {got['maintenance'][-1]:5.2f}s  "
                      f"deploy {took:5.2f}s  backup+recreate+migrate {got['goal'][-1]:5.2f}s",
                      flush=True)  # fmt: skip
    finally:
        cleanup(project, repo, tags)
    return report_medians(figures, names)


def report_medians(figures: dict[str, dict[str, list[float]]], names: tuple[str, ...]) -> int:
    median = {n: {k: statistics.median(v) for k, v in figures[n].items()} for n in names}
    for name in names:
        m = median[name]
        print(f"median {name:10s} non-503 {m['failure']:.2f}s (5xx {m['error']:.2f}s), 503 window "
              f"{m['maintenance']:.2f}s, deploy {m['deploy']:.2f}s, "
              f"backup+recreate+migrate {m['goal']:.2f}s")  # fmt: skip
    ratio = median["imagekit"]["failure"] / max(median["bare"]["failure"], 1e-9)
    worst = max(figures["imagekit"]["failure"])
    over = max(
        w - g for w, g in zip(figures["imagekit"]["maintenance"], figures["imagekit"]["goal"], strict=True)
    )
    print(f"non-503 failure imagekit / bare down&&up: {ratio:.2f}; imagekit's worst {worst:.2f}s "
          f"(goal <= {GOAL:.0f}s); its 503 window exceeds backup+recreate+migrate by at most "
          f"{over:.2f}s")  # fmt: skip
    return 0 if worst <= GOAL else 1


def cleanup(project: str, repo: str, tags: list[str]) -> None:
    label = f"label=com.docker.compose.project={project}"
    ids = process.run(["docker", "ps", "-aq", "--filter", label]).stdout.split()
    if ids:
        process.run(["docker", "rm", "-f", *ids])
    process.run(["docker", "network", "rm", f"{project}_default"])
    process.run(["docker", "rmi", *(f"{repo}:{t}" for t in tags)])


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
