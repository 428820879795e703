"""Outage of `imagekit deploy` against bare `compose down && compose up -d`, in one run.

Outage = from the backend stopping (its first `kill`/`die`/`stop` docker event: the site stops
answering) to the new backend answering `bench version` through `docker exec`. The stack is
shaped like frappe_docker's: configurator, backend, queue, and a websocket and scheduler whose
PID 1 ignores SIGTERM (as `node socketio.js` and `bench schedule` do), with compose's 10 s stop
timeout. Both sequences deploy the same fake bench image (tests/support/benchimage) with the
same compose file, alternately, ROUNDS times each; the medians and their ratio are printed
(goal: ratio <= 0.6). imagekit's deploy includes its checks (backup, compose config, image and
app checks, migrate, health check); only the outage is compared.

    python -m benchmarks.deploy.run [ROUNDS]
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from frappe_imagekit import process
from frappe_imagekit.deploy.sequence import DeployOptions, deploy
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace
from tests.support.baseimage import ensure_busybox_image
from tests.support.benchimage import build_fake_bench, write_project

SERVICES = ("configurator", "backend", "queue", "websocket", "scheduler")


class Window:
    """Watches docker events and the backend; measures one downtime window."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.start: float | None = None
        self.end: float | None = None
        self._events = None
        self._stop = threading.Event()

    def __enter__(self) -> Window:
        threading.Thread(target=self._watch_events, daemon=True).start()
        threading.Thread(target=self._probe_backend, daemon=True).start()
        time.sleep(0.5)  # let `docker events` attach
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 60
        while self.end is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        if self._events is not None:
            self._events.kill()

    def _watch_events(self) -> None:
        def on_line(line: str) -> None:
            event = json.loads(line)
            service = (event.get("Actor") or {}).get("Attributes", {}).get("com.docker.compose.service")
            if self.start is None and service == "backend" and event.get("status") in {"kill", "die", "stop"}:
                self.start = event["timeNano"] / 1e9

        def keep(proc) -> None:  # type: ignore[no-untyped-def]
            self._events = proc

        process.run(
            ["docker", "events", "--format", "{{json .}}", "--filter",
             f"label=com.docker.compose.project={self.project}"],
            on_stdout=on_line, on_start=keep,
        )  # fmt: skip

    def _probe_backend(self) -> None:
        label = f"label=com.docker.compose.project={self.project}"
        while not self._stop.is_set():
            if self.start is None:
                time.sleep(0.02)
                continue
            ids = process.run(
                ["docker", "ps", "-q", "--filter", label,
                 "--filter", "label=com.docker.compose.service=backend"],
            ).stdout.split()  # fmt: skip
            if ids:
                done = process.run(["docker", "exec", ids[0], "bench", "version"])
                if done.returncode == 0 and self.start is not None:
                    self.end = time.time()
                    return
            time.sleep(0.02)

    @property
    def seconds(self) -> float:
        assert self.start is not None and self.end is not None, "no window observed"
        return self.end - self.start


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
    ws = Workspace.at(folder / "ws")
    tags = ["v1", "v2"]
    for tag in tags:
        process.run(["docker", "tag", image, f"{repo}:{tag}"])
    os.environ["XDG_STATE_HOME"] = str(folder / "state")
    runner = LocalRunner()
    timings: dict[str, list[float]] = {"imagekit": [], "bare": []}
    try:

        def imagekit(tag: str) -> None:
            opts = DeployOptions(project=project, compose_file=str(compose), image=repo,
                                 version=tag)  # fmt: skip
            report = deploy(runner, ws, opts)
            assert report.result == "succeeded", report

        imagekit("v1")  # first up: nothing to stop yet
        for i in range(rounds):
            for name, step in (("imagekit", imagekit), ("bare", None)):
                tag = tags[(i + 1) % 2]
                with Window(project) as window:
                    if step:
                        step(tag)
                    else:
                        bare(project, compose, repo, tag)
                timings[name].append(window.seconds)
                print(f"round {i + 1} {name:8s} outage {window.seconds:.2f}s", flush=True)
    finally:
        label = f"label=com.docker.compose.project={project}"
        ids = process.run(["docker", "ps", "-aq", "--filter", label]).stdout.split()
        if ids:
            process.run(["docker", "rm", "-f", *ids])
        process.run(["docker", "rmi", *(f"{repo}:{t}" for t in tags)])
    ik, base = statistics.median(timings["imagekit"]), statistics.median(timings["bare"])
    ratio = ik / base
    print(f"median outage: imagekit {ik:.2f}s, bare down&&up {base:.2f}s, ratio {ratio:.2f} (goal <= 0.6)")
    return 0 if ratio <= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
