# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""`imagekit init` then deploy's own checks, and `imagekit site new` on the fake bench stack."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from frappe_imagekit.errors import ExitCode
from tests.support.benchimage import frontend_service, write_project
from tests.support.benchimage.fixtures import bench_image, docker, remove_project  # noqa: F401
from tests.support.cli import invoke

pytestmark = pytest.mark.integration

ROOT = "Root-CANARY-0123456789abcdef"
ADMIN = "Admin-CANARY-0123456789abcdef"
SERVICES = {
    "configurator", "backend", "frontend", "websocket", "queue-short", "queue-long", "scheduler",
    "db", "redis-cache", "redis-queue",
}  # fmt: skip


def test_init_renders_with_compose_v1_and_the_dry_run_plans_every_service(
    tmp_path: Path, unique_name: Callable[[str], str], bench_image: str
):
    name = unique_name("init")
    folder = tmp_path / name
    init = invoke("init", str(folder), "--offline", "--apps", "erpnext,hrms")
    assert init.exit_code == 0, init.output

    # compose v1 renders the layout (COMPOSE_FILE of .env names every file) without warnings
    env = {**os.environ, "CUSTOM_IMAGE": f"local/{name}", "CUSTOM_TAG": "v1.0.0"}
    env.pop("COMPOSE_FILE", None)
    rendered = subprocess.run(["docker-compose", "config"], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert "WARNING" not in rendered.stderr, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    assert set(config["services"]) == SERVICES
    assert config["services"]["frontend"]["ports"] == ["127.0.0.1:8080:8080/tcp"]
    # nginx gets $host itself (`config` prints a literal $ as $$), not "$$host" nor "" (FACTS.md)
    assert config["services"]["frontend"]["environment"]["FRAPPE_SITE_NAME_HEADER"] == "$$host"
    # the database and Redis images come from .env (a mirror where Docker Hub is out of reach)
    assert config["services"]["db"]["image"] == "mariadb:10.11"
    assert {config["services"][s]["image"] for s in ("redis-cache", "redis-queue")} == {"redis:6.2-alpine"}
    env_text = (folder / ".env").read_text()
    (folder / ".env").write_text(
        env_text.replace("MARIADB_IMAGE=mariadb:10.11", "MARIADB_IMAGE=mirror.local/mariadb:10.11")
    )

    # the printed next steps, pasted from elsewhere: cd, then the deploy line (as a dry run, on
    # the image the workspace names; the fake bench stands in for a build) passes deploy's checks
    lines = [line.strip() for line in init.stdout.splitlines()]
    (cd,) = [line for line in lines if line.startswith("cd ")]
    assert "imagekit build && imagekit deploy local" in lines
    image = f"local/{name}:v1.0.0"
    docker("tag", bench_image, image)
    paste = (
        f"{cd} && imagekit deploy local --dry-run --version v1.0.0 --json --state-dir {tmp_path / 'state'}"
    )
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    try:
        pasted = subprocess.run(["sh", "-c", paste], cwd=tmp_path, env={**os.environ, "PATH": path},
                                capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        docker("rmi", image, check=False)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    report = json.loads(pasted.stdout)
    assert report["result"] == "dry-run"
    assert set(report["services"]) == SERVICES
    assert {s: i for s, i in report["services"].items() if i == image}.keys() == SERVICES - {
        "db", "redis-cache", "redis-queue",
    }  # fmt: skip
    assert report["oneshot_services"] == ["configurator"]
    assert report["services"]["db"] == "mirror.local/mariadb:10.11"  # .env's MARIADB_IMAGE
    # an image the daemon lacks is named before anything runs: up would pull it (real lab, issue 24)
    assert (
        "db use mirror.local/mariadb:10.11, which is not on this machine: up pulls it from its registry, "
        "which must be reachable from there (or load the image there first)."
    ) in report["notes"]


@pytest.fixture
def stack(  # type: ignore[no-untyped-def]
    tmp_path: Path, unique_name: Callable[[str], str], bench_image: str, busybox_image: str
):
    """A frappe_docker-shaped fake stack with no site yet, and a workspace whose target runs it."""
    name = unique_name("sitenew")
    folder = tmp_path / "srv"
    compose = write_project(folder, sites=())
    # the frontend published on a port docker picks on 127.0.0.1 (`docker port` tells it), the
    # backend beside it on the project's network
    backend = "  backend:\n    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}\n"
    text = compose.read_text().replace(backend + '    network_mode: "none"\n', backend)
    compose.write_text(text + frontend_service(busybox_image, publish="127.0.0.1::8080"))
    (folder / "www" / "api" / "method").mkdir(parents=True)
    (folder / "www" / "api" / "method" / "ping").write_text('{"message":"pong"}\n')
    (folder / "sites").mkdir(exist_ok=True)
    (folder / "sites" / ".db_root_password").write_text(ROOT + "\n")
    repo = f"{name}/bench"
    docker("tag", bench_image, f"{repo}:v1")
    env_file = folder / "stack.env"
    env_file.write_text(f"DB_PASSWORD={ROOT}\nADMIN_PASSWORD={ADMIN}\n")
    ws = tmp_path / "ws"
    (ws / "builds").mkdir(parents=True)
    (ws / "imagekit.toml").write_text(
        f'[targets.local]\nproject = "{name}"\ncompose = ["{compose}"]\nenv_file = "{env_file}"\n'
        f'state_dir = "{tmp_path / "state"}"\nup_timeout = 30\n'
    )
    manifest = {
        "schema_version": 1, "version": "v1", "status": "succeeded", "created": "2026-12-07T13:00:00Z",
        "image": {"name": repo, "ref": f"{repo}:v1"}, "frappe": {"ref": "version-15"},
        "apps": [{"name": "erpnext", "ref": "v15.17.3"}, {"name": "hrms", "ref": "v15.13.1"}],
    }  # fmt: skip
    (ws / "builds" / "v1.json").write_text(json.dumps(manifest))
    yield name, folder, ws
    remove_project(name)
    docker("rmi", f"{repo}:v1", check=False)


def test_first_site_on_the_fake_bench_is_made_and_answers(stack):  # type: ignore[no-untyped-def]
    name, folder, ws = stack
    up = invoke("deploy", "local", "-w", str(ws))
    assert up.exit_code == 0, up.output
    assert (
        "no site yet: nothing to migrate; create the first one with imagekit site new SITE local."
        in up.output
    )

    result = invoke("site", "new", "c.local", "local", "-w", str(ws))

    assert result.exit_code == 0, result.output
    assert "creating c.local with frappe, erpnext, hrms (v1)" in result.stdout
    assert "site c.local is ready: apps frappe, erpnext, hrms; health ok." in result.stdout
    # the printed URL, opened: c.local resolves to this machine as the line says (Host header here)
    (url, published) = re.findall(
        r"open (http://c\.local:\d+/) \(the frontend is published on (\S+)\)", result.stdout
    )[0]
    assert published.startswith("127.0.0.1:") and url == f"http://c.local:{published.split(':')[1]}/"
    request = urllib.request.Request(f"http://{published}/api/method/ping", headers={"Host": "c.local"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        assert (answer.status, answer.read()) == (200, b'{"message":"pong"}\n')
    assert ROOT not in result.output and ADMIN not in result.output
    site = folder / "sites" / "c.local"
    assert (site / "apps.txt").read_text().split() == ["frappe", "erpnext", "hrms"]
    # bench read the root password, then the Administrator password twice (transcript 48)
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    assert (site / ".root_password_sha256").read_text().strip() == sha(ROOT)
    assert (site / ".admin_password_sha256").read_text().strip() == sha(ADMIN)

    again = invoke("site", "new", "c.local", "local", "-w", str(ws))
    assert again.exit_code == ExitCode.USAGE, again.output
    assert f"site c.local already exists in project {name}: pick another name." in again.stderr

    # a wrong root password leaves d.local half-made (53); the drop-site command printed, pasted with
    # the root password on its input, removes it (53c), and the site can be made again
    (folder / "sites" / ".db_root_password").write_text("another-root\n")
    failed = invoke("site", "new", "d.local", "local", "-w", str(ws))
    assert failed.exit_code == ExitCode.DEPLOY_FAILED, failed.output
    assert (
        "set DB_PASSWORD in the env file to the database's root password, then drop it with `"
        in failed.stderr
    )
    assert ROOT not in failed.output and (folder / "sites" / "d.local").is_dir()
    (command,) = re.findall(r"`(docker exec -i \S+ bench drop-site d\.local --no-backup)`", failed.stderr)
    pasted = subprocess.run(
        ["sh", "-c", command], input=ROOT + "\n", capture_output=True, text=True, timeout=60
    )
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert "Moving site to archive" in pasted.stdout and not (folder / "sites" / "d.local").exists()
    (folder / "sites" / ".db_root_password").write_text(ROOT + "\n")
    assert invoke("site", "new", "d.local", "local", "-w", str(ws)).exit_code == 0


def test_init_renders_with_compose_v2(tmp_path: Path, debian13_image: str):
    """Compose v2 (2.26, the Debian 13 test host's image; `config` needs no daemon) renders the
    same layout: every service, the frontend on 127.0.0.1 only, nginx's $host passed on as such."""
    folder = tmp_path / "erp"
    assert invoke("init", str(folder), "--offline").exit_code == 0
    rendered = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{folder}:/w:ro", "-w", "/w", "-e", "CUSTOM_IMAGE=local/erp",
         "-e", "CUSTOM_TAG=v1.0.0", "--entrypoint", "docker", debian13_image, "compose", "config"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert "level=warning" not in rendered.stderr, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    assert config["name"] == "erp"
    assert set(config["services"]) == SERVICES
    assert config["services"]["frontend"]["environment"]["FRAPPE_SITE_NAME_HEADER"] == "$$host"  # $host
    (port,) = config["services"]["frontend"]["ports"]
    assert (port["host_ip"], str(port["published"]), port["target"]) == ("127.0.0.1", "8080", 8080)
    assert config["services"]["backend"]["image"] == "local/erp:v1.0.0"
    assert config["services"]["backend"]["depends_on"]["configurator"]["condition"] == (
        "service_completed_successfully"
    )
