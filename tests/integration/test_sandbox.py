"""`imagekit sandbox` and `imagekit backups` against the real Docker daemon and compose.

One scenario: production deployed with v1, data written, deployed again with v2 (whose deploy
takes the backup), more data written; then a sandbox of v1 with that backup beside it. Refusals
run against the same stack, before and after, and cost no stack of their own.
"""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.benchimage.fixtures import bench_image, docker, remove_project  # noqa: F401
from tests.support.cli import invoke

CANARY = "sbx-root-pw-canary-7f3a9c"
SLEEP = 'trap "exit 0" TERM; while :; do sleep 1 & wait $$!; done'
COMPOSE = """version: "3.7"
services:
  configurator:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    restart: "no"
    command: ["sh", "-c", "echo configured; ls sites"]
    volumes: ["sites:/home/frappe/frappe-bench/sites"]
  backend:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    stop_grace_period: 1s
    command: ["sh", "-c", 'httpd -p 8000 -h /srv/www; {sleep}']
    ports: ["127.0.0.1:{port}:8000"]
    volumes: ["sites:/home/frappe/frappe-bench/sites"]
  db:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    stop_grace_period: 1s
    command: ["sh", "-c", '{sleep}']
    volumes: ["db-data:/var/lib/mysql"]
volumes:
  sites:
  db-data:{extra}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ping(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/method/ping", timeout=10) as answer:
        return answer.read().decode()


def labelled(kind: str, project: str) -> list[str]:
    listing = {"ps": ("ps", "-aq"), "volume": ("volume", "ls", "-q"), "network": ("network", "ls", "-q")}
    return docker(*listing[kind], "--filter", f"label=com.docker.compose.project={project}").stdout.split()


def backend_id(project: str) -> str:
    (found,) = docker(
        "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", "label=com.docker.compose.service=backend",
    ).stdout.split()  # fmt: skip
    return found


def bench_sh(project: str, script: str) -> str:
    return docker("exec", backend_id(project), "sh", "-c", script).stdout


class Stack:
    def __init__(self, tmp_path: Path, name: str, image: str) -> None:
        self.name, self.port = name, free_port()
        self.repo = f"{name}/bench"
        self.state, self.ws = tmp_path / "state", tmp_path / "ws"
        self.ws.mkdir()
        (self.ws / ".env").write_text(f"IMAGE_NAME={self.repo}\n")
        self.compose = tmp_path / "srv" / "compose.yaml"
        self.compose.parent.mkdir()
        self.compose.write_text(COMPOSE.format(port=self.port, extra="", sleep=SLEEP))
        self.env_file = tmp_path / "srv" / "erp.env"
        self.env_file.write_text(f"DB_PASSWORD={CANARY}\n")
        for tag in ("v1", "v2"):
            docker("tag", image, f"{self.repo}:{tag}")

    def where(self, compose: Path | None = None) -> list[str]:
        return ["--project", self.name, "--compose", str(compose or self.compose), "--env-file",
                str(self.env_file), "--state-dir", str(self.state), "-w", str(self.ws)]  # fmt: skip

    def deploy(self, version: str) -> None:
        done = invoke(
            "deploy", *self.where(), "--version", version, "--up-timeout", "30", "--no-health-check"
        )
        assert done.exit_code == 0, done.stdout + done.stderr

    def sandbox(self, *args: str, compose: Path | None = None) -> object:
        return invoke("sandbox", *args, *self.where(compose), "--up-timeout", "30")

    def resources(self) -> dict[str, list[str]]:
        return {kind: sorted(labelled(kind, self.name)) for kind in ("ps", "volume", "network")}


@pytest.fixture
def stack(tmp_path: Path, unique_name: Callable[[str], str], bench_image: str) -> Iterator[Stack]:  # noqa: F811
    made = Stack(tmp_path, unique_name("sbx"), bench_image)
    yield made
    for project in (made.name, f"{made.name}-sandbox-v1", "other-" + made.name):
        remove_project(project)
        for kind, rm in (("volume", ("volume", "rm", "-f")), ("network", ("network", "rm"))):
            ids = labelled(kind, project)
            if ids:
                docker(*rm, *ids, check=False)
    docker("rmi", f"{made.repo}:v1", f"{made.repo}:v2", check=False)


def test_sandbox_of_v1_beside_v2(stack: Stack) -> None:
    stack.deploy("v1")
    bench_sh(
        stack.name,
        "bench new-site a.local --db-root-password r --admin-password a >/dev/null"
        " && mkdir -p sites/a.local/db"
        " && echo invoice-1 > sites/a.local/db/tabSales_Invoice",
    )
    stack.deploy("v2")  # takes the backup of a.local (invoice-1 only)
    bench_sh(stack.name, "echo invoice-2 >> sites/a.local/db/tabSales_Invoice")

    listed = invoke("backups", "--project", stack.name, "--state-dir", str(stack.state), "-w", str(stack.ws),
                    "--json")  # fmt: skip
    assert listed.exit_code == 0, listed.stderr
    (backup,) = json.loads(listed.stdout)["backups"]
    assert backup["site"] == "a.local" and backup["version"] == "v2" and backup["data_of"] == "v1"
    assert backup["name"] == f"a.local@{backup['deploy_id']}"
    assert backup["database"].startswith(
        f"{stack.state}/projects/{stack.name}/backups/{backup['deploy_id']}/"
    )
    assert backup["size"] > 0 and backup["sha256"]
    table = invoke("backups", "--project", stack.name, "--state-dir", str(stack.state), "-w", str(stack.ws))
    assert backup["name"] in table.stdout and "v2" in table.stdout

    production = stack.resources()
    sandbox = f"{stack.name}-sandbox-v1"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    refusals = {
        "name": stack.sandbox("v1", "--backup", backup["name"], "--name", stack.name),
        "production port": stack.sandbox("v1", "--backup", backup["name"], "--port", str(stack.port)),
        "busy port": stack.sandbox("v1", "--backup", backup["name"], "--port", str(busy.getsockname()[1])),
        "unknown backup": stack.sandbox("v1", "--backup", "a.local@20000101T000000Z"),
        "down production": invoke("sandbox", "--down", stack.name),
    }
    busy.close()
    assert {k: r.exit_code for k, r in refusals.items()} == {  # type: ignore[attr-defined]
        "name": 2, "production port": 2, "busy port": 2, "unknown backup": 12, "down production": 2,
    }  # fmt: skip
    assert "is the production project's" in refusals["name"].stderr  # type: ignore[attr-defined]
    production_port = refusals["production port"].stderr  # type: ignore[attr-defined]
    assert f"port {stack.port} on 127.0.0.1 is in use" in production_port
    assert f"of project {stack.name})" in production_port
    assert "is in use on local (a process of this machine)" in refusals["busy port"].stderr  # type: ignore[attr-defined]
    assert f"{stack.name} is not a sandbox" in refusals["down production"].stderr  # type: ignore[attr-defined]
    assert labelled("ps", sandbox) == [] and stack.resources() == production

    port = free_port()
    started = stack.sandbox("v1", "--backup", backup["name"], "--port", str(port))
    assert started.exit_code == 0, started.stdout + started.stderr  # type: ignore[attr-defined]
    assert f"open http://127.0.0.1:{port}/" in started.stdout  # type: ignore[attr-defined]
    assert CANARY not in started.stdout + started.stderr  # type: ignore[attr-defined]
    assert ping(stack.port) == ping(port) == '{"message":"pong"}\n'  # both answer
    assert bench_sh(sandbox, f"cat sites/{sandbox}/db/tabSales_Invoice") == "invoice-1\n"  # the backup's data
    assert bench_sh(stack.name, "cat sites/a.local/db/tabSales_Invoice") == "invoice-1\ninvoice-2\n"
    assert bench_sh(stack.name, f"test -e sites/{sandbox} || echo absent") == "absent\n"
    given = bench_sh(sandbox, f"cat sites/{sandbox}/.root_password_sha256").strip()
    assert given == hashlib.sha256(CANARY.encode()).hexdigest()  # on stdin, not in argv
    assert sorted(labelled("volume", sandbox)) == [f"{sandbox}_db-data", f"{sandbox}_sites"]

    shown = invoke("sandbox", "--list", "--json", "--state-dir", str(stack.state))
    (entry,) = [s for s in json.loads(shown.stdout) if s["name"] == sandbox]
    assert entry["version"] == "v1" and entry["backup"] == backup["name"] and entry["of"] == stack.name
    assert entry["url"] == f"http://127.0.0.1:{port}/" and entry["running"] == 2

    again = stack.sandbox("v1", "--backup", backup["name"], "--port", str(free_port()))
    assert again.exit_code == 2 and "already exists" in again.stderr  # type: ignore[attr-defined]

    removed = invoke("sandbox", "--down", sandbox, "--state-dir", str(stack.state))
    assert removed.exit_code == 0, removed.stderr
    assert {kind: labelled(kind, sandbox) for kind in ("ps", "volume", "network")} == {
        "ps": [], "volume": [], "network": []
    }  # fmt: skip
    assert not (stack.state / "sandboxes" / sandbox).exists()
    assert stack.resources() == production  # production's containers, volumes and networks untouched
    assert ping(stack.port) == '{"message":"pong"}\n'
    assert invoke("sandbox", "--down", sandbox).exit_code == 12

    with open(backup["database"], "ab") as changed:  # a backup changed since its deploy
        changed.write(b"x")
    tampered = stack.sandbox("v1", "--backup", backup["name"], "--port", str(free_port()))
    assert tampered.exit_code == 13 and "sha256 differs" in tampered.stderr  # type: ignore[attr-defined]
    assert f"removing the unfinished sandbox {sandbox}" in tampered.stderr  # type: ignore[attr-defined]
    assert {kind: labelled(kind, sandbox) for kind in ("ps", "volume", "network")} == {
        "ps": [], "volume": [], "network": []
    }  # fmt: skip
    assert not (stack.state / "sandboxes" / sandbox).exists()


def test_sandbox_refuses_an_external_volume(stack: Stack, tmp_path: Path) -> None:
    compose = tmp_path / "srv" / "external.yaml"
    compose.write_text(COMPOSE.format(port=stack.port, extra="\n    external: true", sleep=SLEEP))
    dump = tmp_path / "srv" / "dump.sql.gz"
    dump.write_bytes(b"")
    done = stack.sandbox("v1", "--backup", str(dump), compose=compose)
    assert done.exit_code == 1  # type: ignore[attr-defined]
    assert "volume db-data is external" in done.stderr and "Nothing was started" in done.stderr  # type: ignore[attr-defined]
    assert labelled("ps", f"{stack.name}-sandbox-v1") == []
