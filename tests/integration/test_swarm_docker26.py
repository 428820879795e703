"""`imagekit deploy --engine swarm` over SSH on the Debian 13 host: Docker 26.1's swarm, CLI and
Compose v2 (issue 21, "on Docker 20.10 and 26").

The host's own dockerd is made a single-node swarm for this module (``swarm init`` on its
127.0.0.1, its own network namespace: no clash with test_swarm.py's swarm on this machine) and
leaves it afterwards. The images are pushed to a registry on this machine's 127.0.0.1, which an
SSH remote forward makes the host's 127.0.0.1:PORT too, so the swarm pulls them by digest under
the same name. The compose file, the sites and the state folder are in the session's tmp folder,
mounted at the same path in the host.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_swarm import SITES, Stack, deployed_cells
from tests.support.benchimage import build_fake_bench, write_project
from tests.support.cli import invoke
from tests.support.debian13 import Debian13Host
from tests.support.registry import LocalRegistry
from tests.support.swarm import push_version
from tests.support.workspace import make_workspace
from tests.unit.test_history_data import make_manifest, write

pytestmark = pytest.mark.integration
STACK = "ikswd"


def forward(host: Debian13Host, port: int) -> subprocess.Popen[bytes]:
    """The host's 127.0.0.1:``port`` carried to this machine's 127.0.0.1:``port`` (ssh -R)."""
    argv = host.ssh_argv("-N", "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{port}:127.0.0.1:{port}")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while host.ssh("busybox", "wget", "-q", "-O", "-", f"http://127.0.0.1:{port}/v2/").returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"ssh -R {port} failed: {proc.communicate()[1].decode()}")
        time.sleep(0.3)
    return proc


@pytest.fixture(scope="module")
def swarm26(
    debian13_host: Debian13Host, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The host as a single-node swarm, a registry both ends reach, v1 and v2 pushed: digests."""
    base = build_fake_bench("/usr/bin/docker")
    registry = LocalRegistry.start(tmp_path_factory.mktemp("registry26"))
    tunnel = forward(debian13_host, int(registry.address.rsplit(":", 1)[1]))
    init = debian13_host.docker_in("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        assert init.returncode == 0, init.stderr
        repo = f"{registry.address}/fb26"
        yield {"repo": repo, **{v: push_version(repo, base, v) for v in ("v1", "v2")}}
    finally:
        debian13_host.docker_in("stack", "rm", STACK)
        debian13_host.docker_in("swarm", "leave", "--force")
        tunnel.terminate()
        tunnel.wait(timeout=10)
        registry.stop()


def task_images(host: Debian13Host, service: str) -> set[str]:
    done = host.docker_in("service", "ps", "--no-trunc", "--filter", "desired-state=running",
                          "--format", "{{.Image}} {{.CurrentState}}", service)  # fmt: skip
    return {line.split(" ")[0] for line in done.stdout.splitlines() if " Running" in line}


def test_v1_then_v2_on_docker_26s_swarm_every_task_runs_v2s_digest(
    debian13_host: Debian13Host, swarm26: dict[str, str], tmp_path: Path
):
    folder = tmp_path / "stack"
    write_project(folder, SITES)
    ws = make_workspace(tmp_path / "ws", env={"IMAGE_NAME": swarm26["repo"]})
    for n, version in enumerate(("v1", "v2")):
        write(
            ws / "builds",
            make_manifest(version, f"2026-12-0{n + 1}T10:00:00+00:00", image_name=swarm26["repo"]),
        )
    stack = Stack(STACK, folder, ws, tmp_path / "state")
    ssh = ["--host", debian13_host.spec, "--known-hosts", str(debian13_host.known_hosts),
           "--identity", str(debian13_host.client_key)]  # fmt: skip
    reports = []
    for version in ("v1", "v2"):
        result = invoke("deploy", "--engine", "swarm", "--project", STACK, "--version", version,
                        "--compose", str(folder / "compose.yaml"), "--state-dir", str(stack.state),
                        "--workspace", str(ws), "--json", *ssh)  # fmt: skip
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    v1, v2 = (f"{swarm26['repo']}@{swarm26[v]}" for v in ("v1", "v2"))
    assert (reports[1]["ref"], reports[1]["previous_image"], reports[1]["previous_version"]) == (v2, v1, "v1")
    assert reports[1]["host"] == debian13_host.spec
    assert {s: task_images(debian13_host, f"{STACK}_{s}") for s in ("backend", "queue")} == {
        "backend": {v2}, "queue": {v2}
    }  # fmt: skip
    assert [(s["site"], s["result"], s["maintenance"]) for s in reports[1]["sites"]] == [
        ("a.local", "ok", "off"), ("b.local", "ok", "off")
    ]  # fmt: skip
    for site in SITES:  # v2's migrate ran inside the window (jobs on Docker 26), which is closed now
        saw = json.loads((folder / "sites" / site / "migrate_saw_config").read_text())
        assert (saw["maintenance_mode"], saw["pause_scheduler"]) == (1, True)
        assert stack.site_config(site)["maintenance_mode"] == 0
    assert [b["site"] for b in reports[1]["backups"] if b["path"].endswith("-database.sql.gz")] == list(SITES)
    jobs = debian13_host.docker_in(
        "service", "ls", "--filter", "label=io.imagekit.job", "--format", "{{.Name}}"
    )
    assert jobs.stdout == "" and jobs.returncode == 0
    where = f"{STACK}@{debian13_host.spec}"
    assert deployed_cells(stack) == {"v2": f"{where} (swarm)", "v1": f"was {where} (swarm)"}
