"""`imagekit sandbox` and `imagekit backups` against the real Docker daemon and compose.

One scenario: production deployed with v1, data written, deployed again with v2 (whose deploy
takes the backup), more data written; then a sandbox of v1 with that backup beside it. Refusals
run against the same stack, before and after, and cost no stack of their own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from frappe_imagekit.deploy import sandbox as sandbox_module
from tests.support.benchimage import SLEEP_FOREVER
from tests.support.benchimage.fixtures import bench_image, docker, remove_project  # noqa: F401
from tests.support.cli import invoke

CANARY = "sbx-root-pw-canary-7f3a9c"
ADMIN_CANARY = "sbx-admin-pw-canary-c41d"
KEY = "s4ndb0xKeyOfTheBackupAAAAAAAAAAAAAAAAAAAAAA="  # a Fernet key's shape: 43 characters and =
COMPOSE = """version: "3.7"
services:
  configurator:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    restart: "no"
    command: ["sh", "-c", "echo configured; ls sites"]
    environment: {{DB_HOST: db, REDIS_CACHE: "redis://db:6379"}}
    volumes: ["sites:/home/frappe/frappe-bench/sites"]
  backend:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    stop_grace_period: 1s
    labels: ["traefik.enable=true", "traefik.http.routers.erp.rule=Host(`erp.example.com`)"]
    environment: {{VIRTUAL_HOST: erp.example.com, LETSENCRYPT_HOST: erp.example.com}}
    command: ["sh", "-c", 'httpd -p 8000 -h /srv/www; {sleep}']
    ports: ["127.0.0.1:{port}:8000"]
    volumes: ["sites:/home/frappe/frappe-bench/sites"]
  db:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    stop_grace_period: 1s
    command: ["sh", "-c", '{sleep}']
    environment: {{MYSQL_ROOT_PASSWORD: "${{DB_PASSWORD}}"}}  # frappe_docker's mariadb override
    healthcheck: {{test: "echo --password=${{DB_PASSWORD}}", interval: 1s}}
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


def proxy_routes(container: str) -> list[str]:
    (found,) = json.loads(docker("inspect", container).stdout)
    env = [e.partition("=")[0] for e in found["Config"]["Env"] if e.startswith(("VIRTUAL_", "LETSENCRYPT_"))]
    return sorted(env + [k for k in found["Config"]["Labels"] if k.startswith("traefik.")])


def holding(folder: Path, secret: str) -> list[str]:
    """The files under ``folder`` that contain ``secret``."""
    return [str(f) for f in folder.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]


def container_env(project: str, service: str) -> dict[str, str]:
    (found,) = docker(
        "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).stdout.split()  # fmt: skip
    (data,) = json.loads(docker("inspect", found).stdout)
    return dict(e.partition("=")[::2] for e in data["Config"]["Env"])


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
        self.compose.write_text(COMPOSE.format(port=self.port, extra="", sleep=SLEEP_FOREVER))
        self.env_file = tmp_path / "srv" / "erp.env"
        self.env_file.write_text(f"DB_PASSWORD={CANARY}\n")
        for tag in ("v1", "v2"):
            docker("tag", image, f"{self.repo}:{tag}")

    def where(self, compose: Path | None = None) -> list[str]:
        return ["--project", self.name, "--compose", str(compose or self.compose), "--env-file",
                str(self.env_file), "--state-dir", str(self.state), "-w", str(self.ws)]  # fmt: skip

    def deploy(self, version: str, *extra: str) -> None:
        done = invoke(
            "deploy", *self.where(), "--version", version, "--up-timeout", "30", "--no-health-check", *extra
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


def test_sandbox_of_v1_beside_v2(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "new_admin_password", lambda: ADMIN_CANARY)
    stack.deploy("v1")
    bench_sh(
        stack.name,
        "bench new-site a.local --admin-password=admin --db-root-password=x >/dev/null"
        " && mkdir -p sites/a.local/db"
        " && echo invoice-1 > sites/a.local/db/tabSales_Invoice"
        f' && printf \'{{\\n "db_name": "_a",\\n "encryption_key": "{KEY}"\\n}}\''
        " > sites/a.local/site_config.json"
        " && mkdir -p sites/a.local/public/files sites/a.local/private/files"
        " && echo logo > sites/a.local/public/files/logo.txt"
        " && echo payslip > sites/a.local/private/files/p.txt",
    )
    stack.deploy("v2", "--backup-files")  # takes the backup of a.local (invoice-1 only), files too
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
    assert f"open http://127.0.0.1:{port}/ (the sandbox answers there only" in started.stdout  # type: ignore[attr-defined]
    assert "reverse-proxy labels and variables removed (backend: traefik.enable" in started.stdout  # type: ignore[attr-defined]
    assert proxy_routes(backend_id(sandbox)) == []  # a proxy watching the Docker socket sees no route
    assert proxy_routes(backend_id(stack.name)) == [
        "LETSENCRYPT_HOST", "VIRTUAL_HOST", "traefik.enable", "traefik.http.routers.erp.rule"]  # fmt: skip
    assert CANARY not in started.stdout + started.stderr  # type: ignore[attr-defined]
    # the sandbox's compose file keeps the root password as ${DB_PASSWORD}; compose reads the env file at up.
    # The one file of the state folder holding it is deploy's 0600 copy of the env file (README: state folder)
    env_copy = [str(stack.state / "projects" / stack.name / "env")]
    assert holding(stack.state, CANARY) == env_copy
    assert "${DB_PASSWORD}" in (stack.state / "sandboxes" / sandbox / "compose.yaml").read_text()
    assert container_env(sandbox, "db")["MYSQL_ROOT_PASSWORD"] == CANARY
    assert ping(stack.port) == ping(port) == '{"message":"pong"}\n'  # both answer
    assert bench_sh(sandbox, f"cat sites/{sandbox}/db/tabSales_Invoice") == "invoice-1\n"  # the backup's data
    assert bench_sh(stack.name, "cat sites/a.local/db/tabSales_Invoice") == "invoice-1\ninvoice-2\n"
    assert bench_sh(stack.name, f"test -e sites/{sandbox} || echo absent") == "absent\n"
    given = bench_sh(sandbox, f"cat sites/{sandbox}/.root_password_sha256").strip()
    assert given == hashlib.sha256(CANARY.encode()).hexdigest()  # on stdin, not in argv
    # new-site --source-sql asks no Administrator password (the dump's users keep theirs); the one
    # imagekit puts on stdin after the root password is never read, printed nor kept
    assert ADMIN_CANARY not in started.stdout + started.stderr  # type: ignore[attr-defined]
    assert not [f for f in stack.state.rglob("*") if f.is_file() and ADMIN_CANARY.encode() in f.read_bytes()]
    assert bench_sh(sandbox, f"cat sites/{sandbox}/.user_host_login_scope") == "%\n"
    config = json.loads(bench_sh(sandbox, f"cat sites/{sandbox}/site_config.json"))
    assert config["encryption_key"] == KEY  # the backup's key ...
    assert config["db_name"] != "_a" and config["db_password"]  # ... in the new site's own config
    assert KEY not in started.stdout + started.stderr  # type: ignore[attr-defined]
    assert bench_sh(
        sandbox, f"cat sites/{sandbox}/public/files/logo.txt sites/{sandbox}/private/files/p.txt"
    ) == ("logo\npayslip\n")
    # unpacked as frappe's extract_files does, without a second import by `bench restore`
    assert bench_sh(sandbox, f"test -e sites/{sandbox}/restore_files_args || echo none") == "none\n"
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
    assert holding(stack.state, CANARY) == env_copy
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
    compose.write_text(COMPOSE.format(port=stack.port, extra="\n    external: true", sleep=SLEEP_FOREVER))
    dump = tmp_path / "srv" / "dump.sql.gz"
    dump.write_bytes(b"")
    done = stack.sandbox("v1", "--backup", str(dump), compose=compose)
    assert done.exit_code == 1  # type: ignore[attr-defined]
    assert "volume db-data is external" in done.stderr and "Nothing was started" in done.stderr  # type: ignore[attr-defined]
    assert labelled("ps", f"{stack.name}-sandbox-v1") == []


def variant(stack: Stack, tmp_path: Path, change: Callable[[dict], None]) -> Path:
    data = yaml.safe_load(stack.compose.read_text())
    change(data)
    changed = tmp_path / "srv" / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    return changed


REFUSED = {
    "bind driver_opts": (
        lambda d, prod: d["volumes"].update(
            sites={"driver_opts": {"type": "none", "o": "bind", "device": prod}}
        ),
        "volume sites has driver_opts (device: {prod}, type: none, o)",
    ),
    "outside database": (
        lambda d, prod: d["services"]["configurator"]["environment"].update(DB_HOST="mariadb.prod.internal"),
        "DB_HOST of service configurator names the server mariadb.prod.internal, which is not a service",
    ),
    "pid of a container": (
        lambda d, prod: d["services"]["backend"].update(pid="container:erp-backend-1"),
        "service backend has pid: container:erp-backend-1",
    ),
    "ipc of a service": (
        lambda d, prod: d["services"]["db"].update(ipc="service:backend"),
        "service db has ipc: service:backend",
    ),
    "userns_mode": (
        lambda d, prod: d["services"]["db"].update(userns_mode="host"),
        "service db sets userns_mode",
    ),
}


@pytest.mark.parametrize("attack", sorted(REFUSED))
def test_a_sandbox_that_would_share_with_production_is_refused(
    stack: Stack, tmp_path: Path, attack: str
) -> None:
    prod = tmp_path / "srv" / "prod-sites"  # production's sites folder, behind a bind volume
    prod.mkdir()
    (prod / "site_config.json").write_text("{}")
    change, expected = REFUSED[attack]
    compose = variant(stack, tmp_path, lambda d: change(d, str(prod)))
    dump = tmp_path / "srv" / "dump.sql.gz"
    dump.write_bytes(b"")
    done = stack.sandbox("v1", "--backup", str(dump), "--port", str(free_port()), compose=compose)
    assert done.exit_code == 1, done.stdout + done.stderr  # type: ignore[attr-defined]
    assert expected.format(prod=prod) in done.stderr and "Nothing was started" in done.stderr  # type: ignore[attr-defined]
    sandbox = f"{stack.name}-sandbox-v1"
    assert {kind: labelled(kind, sandbox) for kind in ("ps", "volume", "network")} == {
        "ps": [], "volume": [], "network": []
    }  # fmt: skip
    assert [p.name for p in prod.iterdir()] == ["site_config.json"]


def test_a_name_taken_by_a_stopped_project_is_refused(stack: Stack, tmp_path: Path) -> None:
    other = "other-" + stack.name  # a stopped project: its volume (labelled) and a network, no container
    docker("volume", "create", "--label", f"com.docker.compose.project={other}", f"{other}_sites")
    docker("network", "create", f"{other}_default")
    try:
        dump = tmp_path / "srv" / "dump.sql.gz"
        dump.write_bytes(b"")
        done = stack.sandbox("v1", "--backup", str(dump), "--name", other, "--port", str(free_port()))
        assert done.exit_code == 2, done.stdout + done.stderr  # type: ignore[attr-defined]
        assert f"{other} is taken on local (network {other}_default, volume {other}_sites" in done.stderr  # type: ignore[attr-defined]
        assert "Nothing was started" in done.stderr  # type: ignore[attr-defined]
        assert docker("volume", "inspect", f"{other}_sites", check=False).returncode == 0
        assert labelled("ps", other) == []
    finally:
        docker("network", "rm", f"{other}_default", check=False)


def test_a_wrong_root_password_is_named_and_the_sandbox_removed(stack: Stack, tmp_path: Path) -> None:
    # the sandbox's database root password is not the env file's DB_PASSWORD
    compose = variant(stack, tmp_path, lambda d: d["services"]["configurator"].update(
        command=["sh", "-c", "echo other-root-pw > sites/.db_root_password"]))  # fmt: skip
    dump = tmp_path / "srv" / "20261201_101500-a_local-database.sql.gz"
    dump.write_bytes(gzip.compress(b"CREATE TABLE `tabNote` (`name` varchar(140));\n"))
    dump.chmod(0o644)
    done = stack.sandbox("v1", "--backup", str(dump), "--port", str(free_port()), compose=compose)
    assert done.exit_code == 13, done.stdout + done.stderr  # type: ignore[attr-defined]
    assert (
        "bench new-site --source-sql of the backup into the sandbox failed (pymysql.err.OperationalError: "
        "(1045, \"Access denied for user 'root'@'lab_backend_1.lab_default' (using password: YES)\"))"
    ) in done.stderr  # type: ignore[attr-defined]
    assert "refused the root password: name the env file's variable that holds it with --db-password-var" in (
        done.stderr  # type: ignore[attr-defined]
    )
    assert CANARY not in done.stdout + done.stderr  # type: ignore[attr-defined]
    sandbox = f"{stack.name}-sandbox-v1"
    assert {kind: labelled(kind, sandbox) for kind in ("ps", "volume", "network")} == {
        "ps": [], "volume": [], "network": []
    }  # fmt: skip
