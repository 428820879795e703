"""A rehearsal against the deploy it stands for, on the fake stack with two sites: wall time of
each, and what production's users see during each (the deploy benchmark's probe: every 20 ms
`GET /api/method/ping` with `Host: a.local` on production's port, 127.0.0.1 only).

The stack is tests/integration/test_sandbox.py's (named volumes, so a sandbox may stand beside it:
configurator, backend serving ping, db). Production runs v1 with a.local and b.local; each round
rehearses the other version (`imagekit rehearse`: backups while production serves, one sandbox with
both sites, migrate, health, sandbox removed), then deploys it (`imagekit deploy`: backup,
maintenance window, recreate, migrate).

    python -m benchmarks.rehearse.run [ROUNDS]   # exits 1 when a rehearsal failed a request

Printed per round and as medians: the rehearsal's wall time and its failed requests (goal: zero)
and 503s (goal: zero, no maintenance), the deploy's wall time, failures and 503 window.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.deploy.run import ERROR, MAINTENANCE, NO_ANSWER, Watch, free_port
from frappe_imagekit import process
from frappe_imagekit.deploy.rehearse import RehearseOptions, rehearse
from frappe_imagekit.deploy.sandbox import SandboxOptions
from frappe_imagekit.deploy.sequence import DeployOptions, deploy
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace
from tests.integration.test_sandbox import COMPOSE, SLEEP
from tests.support.baseimage import ensure_busybox_image
from tests.support.benchimage import build_fake_bench

SITES = ("a.local", "b.local")


def sites(project: str) -> None:
    labels = [f"label=com.docker.compose.project={project}", "label=com.docker.compose.service=backend"]
    found = process.run(["docker", "ps", "-q", *(a for label in labels for a in ("--filter", label))])
    backend = found.stdout.split()[0]
    for site in SITES:
        script = (f"bench new-site {site} --admin-password=admin --db-root-password=x >/dev/null"
                  f" && mkdir -p sites/{site}/db && echo row-1 > sites/{site}/db/tabUser")  # fmt: skip
        assert process.run(["docker", "exec", backend, "sh", "-c", script]).returncode == 0


def main(rounds: int) -> int:
    ensure_busybox_image("/usr/bin/docker")
    image = build_fake_bench("/usr/bin/docker")
    project = f"ik-bench-reh-{secrets.token_hex(4)}"
    repo, tags = f"{project}/bench", ["v1", "v2"]
    folder = Path(tempfile.mkdtemp(prefix="ik-bench-rehearse-"))
    port = free_port()
    compose = folder / "compose.yaml"
    compose.write_text(COMPOSE.format(port=port, extra="", sleep=SLEEP))
    ws = Workspace.at(folder / "ws")
    (folder / "ws").mkdir()
    (folder / "ws" / ".env").write_text(f"IMAGE_NAME={repo}\n")
    for tag in tags:
        process.run(["docker", "tag", image, f"{repo}:{tag}"])
    os.environ["XDG_STATE_HOME"] = str(folder / "state")
    runner = LocalRunner()
    figures: dict[str, list[float]] = {
        k: [] for k in ("r_time", "r_fail", "r_503", "d_time", "d_fail", "d_503")
    }

    def deploy_to(tag: str) -> None:
        opts = DeployOptions(project=project, compose_file=str(compose), image=repo, version=tag,
                             health_check=False, up_timeout=30)  # fmt: skip
        assert deploy(runner, ws, opts).result == "succeeded"

    try:
        deploy_to("v1")
        sites(project)
        for i in range(rounds):
            tag = tags[(i + 1) % 2]
            sbx = SandboxOptions(version=tag, backup="rehearsal.sql.gz", image=repo, project=project,
                                 compose_files=(str(compose),), port=free_port(), up_timeout=30)  # fmt: skip
            started = time.monotonic()
            with Watch(port) as watch:
                report = rehearse(runner, ws, RehearseOptions(sbx))
                took = time.monotonic() - started
            assert report.result == "succeeded", report
            figures["r_time"].append(took)
            figures["r_fail"].append(watch.seconds(ERROR, NO_ANSWER))
            figures["r_503"].append(watch.seconds(MAINTENANCE))
            failed_requests = sum(1 for _, seen in watch.samples if seen in (ERROR, NO_ANSWER, MAINTENANCE))
            started = time.monotonic()
            with Watch(port) as dwatch:
                deploy_to(tag)
                dtook = time.monotonic() - started
            figures["d_time"].append(dtook)
            figures["d_fail"].append(dwatch.seconds(ERROR, NO_ANSWER))
            figures["d_503"].append(dwatch.seconds(MAINTENANCE))
            print(f"round {i + 1} {tag}: rehearsal {took:5.2f}s ({len(watch.samples)} requests, "
                  f"{failed_requests} failed or 503)  deploy {dtook:5.2f}s (non-503 failure "
                  f"{figures['d_fail'][-1]:.2f}s, 503 window {figures['d_503'][-1]:.2f}s)  "
                  f"rehearsal steps {report.timings}", flush=True)  # fmt: skip
            if failed_requests:
                figures.setdefault("failed", []).append(failed_requests)
    finally:
        cleanup(project, repo, tags)
    m = {k: statistics.median(v) for k, v in figures.items() if v}
    print(f"median: rehearsal {m['r_time']:.2f}s (failure {m['r_fail']:.2f}s, 503 {m['r_503']:.2f}s), "
          f"deploy {m['d_time']:.2f}s (failure {m['d_fail']:.2f}s, 503 {m['d_503']:.2f}s); "
          f"rehearsal / deploy {m['r_time'] / m['d_time']:.2f}")  # fmt: skip
    return 1 if figures.get("failed") else 0


def cleanup(project: str, repo: str, tags: list[str]) -> None:
    for kind, rm in (
        ("ps", ["rm", "-f", "-v"]),
        ("volume", ["volume", "rm", "-f"]),
        ("network", ["network", "rm"]),
    ):
        listing = {"ps": ["ps", "-aq"], "volume": ["volume", "ls", "-q"], "network": ["network", "ls", "-q"]}[
            kind
        ]
        ids = process.run(
            ["docker", *listing, "--filter", f"label=com.docker.compose.project={project}"]
        ).stdout
        if ids.split():
            process.run(["docker", *rm, *ids.split()])
    process.run(["docker", "rmi", *(f"{repo}:{t}" for t in tags)])


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
