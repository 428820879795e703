"""Outage of `imagekit deploy` against bare `compose down && compose up -d`, in one run, and the
cost of the maintenance window apart from it.

What users see is sampled every 20 ms: `GET /api/method/ping` with `Host: a.local` on the
backend's port, published on 127.0.0.1 only. Each sample is `up` (200), `maintenance` (503: frappe
answers every request so while maintenance_mode is on; a page, not an outage) or `no answer`
(refused, reset, timed out): the outage. The stack is shaped like frappe_docker's:
configurator, backend, queue, and a websocket and scheduler whose PID 1 ignores SIGTERM (as
`node socketio.js` and `bench schedule` do), with compose's 10 s stop timeout. Three sequences
deploy the same fake bench image (tests/support/benchimage) with the same compose file,
alternately, ROUNDS times each: imagekit (backup, checks, migrate of two sites, health check,
maintenance window), imagekit --no-maintenance, and the bare down && up. Printed: the medians of
the outage, of the time in maintenance and of the whole deploy; the outage ratio against bare
(goal <= 0.6) and the window's added cost (deploy time with it minus without).

    python -m benchmarks.deploy.run [ROUNDS]
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
from frappe_imagekit.deploy.sequence import DeployOptions, deploy
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace
from tests.support.baseimage import ensure_busybox_image
from tests.support.benchimage import build_fake_bench, write_project

SERVICES = ("configurator", "backend", "queue", "websocket", "scheduler")
UP, MAINTENANCE, NO_ANSWER = "up", "maintenance", "no answer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def publish_backend(compose: Path, port: int) -> None:
    """The backend on its project network with port 8000 published on 127.0.0.1 only."""
    text = compose.read_text()
    head = "  backend:\n    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}\n"
    published = head + f'    ports:\n      - "127.0.0.1:{port}:8000"\n'
    compose.write_text(text.replace(head + '    network_mode: "none"\n', published))


def ask(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/api/method/ping", headers={"Host": "a.local"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return NO_ANSWER
    finally:
        conn.close()
    return UP if status == 200 else MAINTENANCE if status == 503 else NO_ANSWER


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

    def seconds(self, state: str) -> float:
        pairs = zip(self.samples, self.samples[1:], strict=False)
        return sum(later - at for (at, seen), (later, _) in pairs if seen == state)


def bare(project: str, compose: Path, repo: str, tag: str) -> None:
    env = {"CUSTOM_IMAGE": repo, "CUSTOM_TAG": tag, "PULL_POLICY": "never"}
    base = ["docker-compose", "-p", project, "-f", str(compose)]
    for args in (["down", "--remove-orphans"], ["up", "-d"]):
        done = process.run([*base, *args], env=env)
        assert done.returncode == 0, done.stderr


def main(rounds: int) -> int:
    ensure_busybox_image("/usr/bin/docker")
    image = build_fake_bench("/usr/bin/docker")
    project = f"ik-bench-{secrets.token_hex(4)}"
    repo = f"{project}/bench"
    folder = Path(tempfile.mkdtemp(prefix="ik-bench-deploy-"))
    compose = write_project(folder / "srv", services=SERVICES)
    port = free_port()
    publish_backend(compose, port)
    ws = Workspace.at(folder / "ws")
    tags = ["v1", "v2"]
    for tag in tags:
        process.run(["docker", "tag", image, f"{repo}:{tag}"])
    os.environ["XDG_STATE_HOME"] = str(folder / "state")
    runner = LocalRunner()
    names = ("imagekit", "no-maintenance", "bare")
    figures: dict[str, dict[str, list[float]]] = {
        n: {"outage": [], "maintenance": [], "deploy": []} for n in names
    }

    def imagekit(tag: str, window: bool = True) -> None:
        opts = DeployOptions(project=project, compose_file=str(compose), image=repo, version=tag,
                             maintenance=window)  # fmt: skip
        report = deploy(runner, ws, opts)
        assert report.result == "succeeded", report

    sequences: dict[str, Callable[[str], None]] = {
        "imagekit": imagekit,
        "no-maintenance": lambda tag: imagekit(tag, window=False),
        "bare": lambda tag: bare(project, compose, repo, tag),
    }
    try:
        imagekit("v1")  # first up: nothing to stop yet
        for i in range(rounds):
            for n, name in enumerate(names):
                tag = tags[(i * len(names) + n + 1) % 2]
                started = time.monotonic()
                with Watch(port) as watch:
                    sequences[name](tag)
                    took = time.monotonic() - started
                got = figures[name]
                got["outage"].append(watch.seconds(NO_ANSWER))
                got["maintenance"].append(watch.seconds(MAINTENANCE))
                got["deploy"].append(took)
                print(f"round {i + 1} {name:15s} outage {got['outage'][-1]:5.2f}s  maintenance (503) "
                      f"{got['maintenance'][-1]:5.2f}s  deploy {took:5.2f}s", flush=True)  # fmt: skip
    finally:
        label = f"label=com.docker.compose.project={project}"
        ids = process.run(["docker", "ps", "-aq", "--filter", label]).stdout.split()
        if ids:
            process.run(["docker", "rm", "-f", *ids])
        process.run(["docker", "rmi", *(f"{repo}:{t}" for t in tags)])
    median = {n: {k: statistics.median(v) for k, v in figures[n].items()} for n in names}
    for name in names:
        m = median[name]
        print(f"median {name:15s} outage {m['outage']:.2f}s, maintenance {m['maintenance']:.2f}s, "
              f"deploy {m['deploy']:.2f}s")  # fmt: skip
    ratio = median["imagekit"]["outage"] / median["bare"]["outage"]
    cost = median["imagekit"]["deploy"] - median["no-maintenance"]["deploy"]
    print(f"outage ratio imagekit / bare down&&up: {ratio:.2f} (goal <= 0.6); the maintenance window "
          f"adds {cost:.2f}s to the deploy and {median['imagekit']['maintenance']:.2f}s of 503")  # fmt: skip
    return 0 if ratio <= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
