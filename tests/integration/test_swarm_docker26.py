"""`imagekit deploy --engine swarm` over SSH on the Debian 13 host: Docker 26.1's swarm, CLI and
Compose v2 (issue 21, "on Docker 20.10 and 26"): v1, v2, a v3 whose patch fails (exit 9, its
printed release line pasted on the host), then `imagekit rollback` of that deploy back to v2.

The host's own dockerd is made a single-node swarm for this module (``swarm init`` on its
127.0.0.1, its own network namespace: no clash with test_swarm.py's swarm on this machine) and
leaves it afterwards. The images are pushed to a registry on this machine's 127.0.0.1, which an
SSH remote forward makes the host's 127.0.0.1:PORT too, so the swarm pulls them by digest under
the same name. The compose file, the sites and the state folder are in the session's tmp folder,
mounted at the same path in the host.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from frappe_imagekit.errors import ExitCode
from tests.integration.test_swarm import FAILING, SITES, Stack, deployed_cells
from tests.support.benchimage import build_fake_bench, write_project
from tests.support.cli import invoke
from tests.support.debian13 import Debian13Host
from tests.support.registry import LocalRegistry, free_port
from tests.support.swarm import check_failed_patch, push_version, rollback_prod, sigterm_during_migrate
from tests.support.workspace import CANARY, make_workspace
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
    """The host as a single-node swarm, a registry both ends reach, v1 to v3 pushed: digests."""
    base = build_fake_bench("/usr/bin/docker")
    registry = LocalRegistry.start(tmp_path_factory.mktemp("registry26"))
    tunnel = forward(debian13_host, int(registry.address.rsplit(":", 1)[1]))
    init = debian13_host.docker_in("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        assert init.returncode == 0, init.stderr
        repo = f"{registry.address}/fb26"
        yield {"repo": repo, **{v: push_version(repo, base, v) for v in ("v1", "v2", "v3")}}
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


def deploy26(host: Debian13Host, stack: Stack, version: str, project: str = STACK) -> tuple[int, str, dict]:
    """``imagekit deploy --engine swarm --json`` over SSH: exit code, output and report."""
    result = invoke("deploy", "--engine", "swarm", "--project", project, "--version", version,
                    "--compose", str(stack.folder / "compose.yaml"), "--state-dir", str(stack.state),
                    "--workspace", str(stack.ws), "--json", "--host", host.spec,
                    "--known-hosts", str(host.known_hosts), "--identity", str(host.client_key))  # fmt: skip
    return result.exit_code, result.output, json.loads(result.stdout)


def job_services(host: Debian13Host) -> str:
    done = host.docker_in("service", "ls", "--filter", "label=io.imagekit.job", "--format", "{{.Name}}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_v1_v2_a_failing_patch_and_a_rollback_on_docker_26s_swarm(
    debian13_host: Debian13Host, swarm26: dict[str, str], tmp_path: Path
):
    folder = tmp_path / "stack"
    write_project(folder, SITES)
    ws = make_workspace(tmp_path / "ws", env={"IMAGE_NAME": swarm26["repo"]})
    for n, version in enumerate(("v1", "v2", "v3")):
        write(
            ws / "builds",
            make_manifest(version, f"2026-12-0{n + 1}T10:00:00+00:00", image_name=swarm26["repo"]),
        )
    stack = Stack(STACK, folder, ws, tmp_path / "state")
    reports = []
    for version in ("v1", "v2"):
        code, said, report = deploy26(debian13_host, stack, version)
        assert code == 0, said
        reports.append(report)
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
    assert job_services(debian13_host) == ""
    where = f"{STACK}@{debian13_host.spec}"
    assert deployed_cells(stack) == {"v3": "-", "v2": f"{where} (swarm)", "v1": f"was {where} (swarm)"}
    failed = fail_v3(debian13_host, stack)
    v3 = f"{swarm26['repo']}@{swarm26['v3']}"
    assert (failed["ref"], failed["previous_image"], failed["previous_version"]) == (v3, v2, "v2")
    assert task_images(debian13_host, f"{STACK}_backend") == {v3}  # the stack ran v3 after all
    roll_back_to_v2(debian13_host, stack, failed, v2)
    assert deployed_cells(stack) == {
        "v3": f"was {where} (swarm, patch-failed, rolled back to v2)",
        "v2": f"{where} (swarm, rollback from v3)",
        "v1": f"was {where} (swarm)",
    }
    stop_v1s_migrate(debian13_host, stack)


def fail_v3(host: Debian13Host, stack: Stack) -> dict:
    """v3 with a.local's patch failing (it creates a table before it raises): exit 9, both sites
    left in maintenance; the printed release line, pasted on the host, releases a.local."""
    site = stack.folder / "sites" / "a.local"
    (site / "fail_patch").write_text(FAILING + "\n")
    (site / "fail_patch_creates").write_text("tabHalfMigrated\n")
    try:
        code, said, report = deploy26(host, stack, "v3")
    finally:
        (site / "fail_patch").unlink()
        (site / "fail_patch_creates").unlink()
    assert code == ExitCode.PATCH_FAILED == 9, said
    site_a = check_failed_patch(report, FAILING)
    assert [stack.site_config(s)["maintenance_mode"] for s in SITES] == [1, 1]
    assert (site / "db" / "tabHalfMigrated").exists()  # the patch's DDL committed: a half-migrated site
    release = site_a["next_steps"][1].split("release it: ", 1)[1]
    pasted = host.ssh("sh", "-c", release, timeout=120)  # where it came from: the host's docker 26
    assert pasted.returncode == 0, pasted.stderr
    assert [stack.site_config(s)["maintenance_mode"] for s in SITES] == [0, 1]
    assert job_services(host) == ""
    return report


def roll_back_to_v2(host: Debian13Host, stack: Stack, failed: dict, v2: str) -> None:
    """`imagekit rollback prod --yes` of a target on the host: each site's backup of v3's window
    restored by a job on v2's digest (the half-migrated table gone), the stack on v2 again."""
    where = f'host = "{host.spec}"\nknown_hosts = "{host.known_hosts}"\nidentity = "{host.client_key}"\n'
    result = rollback_prod(stack.folder, stack.ws, STACK, stack.state, where)
    assert result.exit_code == 0, result.output
    report, said = json.loads(result.stdout), result.stderr.splitlines()
    assert (report["error"], report["ref"], report["version"]) == (None, v2, "v2")
    assert (report["kind"], report["rollback_of"]) == ("rollback", failed["deploy_id"])
    assert (report["previous_image"], report["previous_version"]) == (failed["ref"], "v3")
    assert {s: task_images(host, f"{STACK}_{s}") for s in ("backend", "queue")} == {
        "backend": {v2}, "queue": {v2}
    }  # fmt: skip
    assert not (stack.folder / "sites" / "a.local" / "db" / "tabHalfMigrated").exists()  # restored
    assert [s for s in said if s.startswith("Restoring")] == [
        f"Restoring {b['site']} from {b['volume_path']} (job on {v2})"
        for b in failed["backups"] if b["path"].endswith("-database.sql.gz")
    ]  # fmt: skip
    assert len(failed["backups"]) >= len(SITES)
    digest = hashlib.sha256(CANARY.encode()).hexdigest()  # what bench read on stdin
    assert (stack.folder / "sites" / "a.local" / ".root_password_sha256").read_text().strip() == digest
    assert [stack.site_config(s)["maintenance_mode"] for s in SITES] == [0, 0]
    assert host.docker_in("secret", "ls", "-q").stdout == "" and job_services(host) == ""
    records = "".join(p.read_text() for p in (stack.state / "projects" / STACK).rglob("*.json"))
    assert CANARY not in records + result.output


def stop_v1s_migrate(host: Debian13Host, stack: Stack) -> None:
    """SIGTERM to `imagekit deploy` while a.local's migrate job runs on the host (v1 over v2, the
    fake bench's migrate sleeping): exit 130, the job removed and said so, its task gone, a.local
    left in maintenance, and the job's bench stopped by SIGINT (test_swarm.py's SIGTERM case)."""
    argv = [sys.executable, "-m", "frappe_imagekit", "deploy", "--engine", "swarm", "--project", STACK,
            "--compose", str(stack.folder / "compose.yaml"), "--version", "v1", "--host", host.spec,
            "--known-hosts", str(host.known_hosts), "--identity", str(host.client_key),
            "--state-dir", str(stack.state), "--workspace", str(stack.ws), "--json",
            "--no-backup"]  # fmt: skip
    site = stack.folder / "sites" / "a.local"
    report, _ = sigterm_during_migrate(host.docker_in, argv, site, f"{STACK}_ik-migrate-")
    assert stack.site_config("a.local")["maintenance_mode"] == 1  # left in maintenance, and said so
    assert (site / "migrate_aborted").exists()  # SIGINT through tini
    assert "a.local stays in maintenance: the deploy was stopped." in report["sites"][0]["next_steps"]


def test_a_sandbox_of_v1_is_its_own_stack_beside_production_on_docker_26(
    debian13_host: Debian13Host, swarm26: dict[str, str], tmp_path: Path
):
    """test_swarm.py's sandbox case on the host's swarm: production (sites in a named volume) on
    v1 then v2; the sandbox of v1 runs v1's digest as its own stack with each site restored from
    v2's backups, answers on the host's 127.0.0.1 only through its one container, is listed, and
    the pasted --down line removes it, its container and its volumes; production stays as it was."""
    host, name = debian13_host, "ikswe"
    folder = tmp_path / "stack"
    write_project(folder, SITES)
    ws = make_workspace(tmp_path / "ws", env={"IMAGE_NAME": swarm26["repo"]})
    for n, version in enumerate(("v1", "v2")):
        write(
            ws / "builds",
            make_manifest(version, f"2026-12-0{n + 1}T10:00:00+00:00", image_name=swarm26["repo"]),
        )
    stack = Stack(name, folder, ws, tmp_path / "state")
    compose = folder / "compose.yaml"
    compose.write_text(compose.read_text().replace("./sites:", "sites:") + "volumes:\n  sites: {}\n")
    seed = (
        "for s in a.local b.local; do mkdir -p sites/$s; printf 'frappe\\nerpnext\\n' > sites/$s/apps.txt; "
        'echo \'{"db_name": "_x"}\' > sites/$s/site_config.json; done'
    )  # the sites write_project makes, in the volume
    v1, v2 = (f"{swarm26['repo']}@{swarm26[v]}" for v in ("v1", "v2"))
    volume = f"{name}_sites:/home/frappe/frappe-bench/sites"
    seeded = host.docker_in("run", "--rm", "-v", volume, v1, "sh", "-c", seed)
    assert seeded.returncode == 0, seeded.stderr
    env_file = folder / "erp.env"
    env_file.write_text(f"DB_PASSWORD={CANARY}\n")
    (ws / "imagekit.toml").write_text(
        f'[targets.prod]\nproject = "{name}"\ncompose = ["{compose}"]\nengine = "swarm"\n'
        f'host = "{host.spec}"\nknown_hosts = "{host.known_hosts}"\nidentity = "{host.client_key}"\n'
        f'state_dir = "{stack.state}"\nenv_file = "{env_file}"\n'
    )
    sandbox = f"{name}-sandbox-v1"
    try:
        for version in ("v1", "v2"):
            code, said, _ = deploy26(host, stack, version, project=name)
            assert code == 0, said
        production = (services(host, name), task_ids(host, name))
        assert production[0] == {f"{name}_backend": v2, f"{name}_queue": v2}
        port = free_port()
        started = invoke("sandbox", "v1", "prod", "--port", str(port), "-w", str(ws))
        assert started.exit_code == 0, started.output
        assert services(host, sandbox) == {f"{sandbox}_backend": v1, f"{sandbox}_queue": v1}
        assert (services(host, name), task_ids(host, name)) == production
        for site in SITES:  # restored (the site exists, maintenance off) and reached on loopback
            got = host.ssh("busybox", "wget", "-q", "-O", "-", "--header", f"Host: {site}",
                           f"http://127.0.0.1:{port}/api/method/ping", timeout=30)  # fmt: skip
            assert got.stdout.strip() == '{"message":"pong"}', got.stderr
        web = host.docker_in("ps", "--filter", f"name={sandbox}-way-in", "--format", "{{.Ports}}").stdout
        assert web.strip() == f"127.0.0.1:{port}->8000/tcp"  # the one way in, loopback only
        ports = host.docker_in(
            "service", "inspect", "--format", "{{json .Endpoint.Ports}}", f"{sandbox}_backend"
        )
        assert ports.stdout.strip() in ("null", "[]")  # the stack itself publishes nothing
        assert CANARY not in started.stdout + started.stderr
        assert [n for n in job_services(host).split() if n.startswith(sandbox)] == []
        assert host.docker_in("secret", "ls", "-q").stdout == ""
        listed = invoke("sandbox", "--list", "prod", "--json", "-w", str(ws))
        assert [(s["name"], s["version"], s["of"]) for s in json.loads(listed.stdout)] == [
            (sandbox, "v1", name)
        ]
        namespace = f"label=com.docker.stack.namespace={sandbox}"
        assert host.docker_in("volume", "ls", "-q", "--filter", namespace).stdout.split() == [
            f"{sandbox}_sites"
        ]
        refused = invoke("sandbox", "prod", "--down", name, "-w", str(ws))
        assert refused.exit_code == 2 and "is not a sandbox of imagekit" in refused.stderr
        line = started.stdout.rsplit("remove it with `", 1)[1].split("`", 1)[0]
        assert shlex.split(line)[:2] == ["imagekit", "sandbox"]
        removed = invoke(*shlex.split(line)[1:])  # pasted: it talks to the host it came from
        assert removed.exit_code == 0, removed.output
        assert services(host, sandbox) == {}
        assert host.docker_in("volume", "ls", "-q", "--filter", f"name={sandbox}").stdout == ""
        assert host.docker_in("ps", "-aq", "--filter", f"name={sandbox}").stdout == ""
        assert (services(host, name), task_ids(host, name)) == production
        assert host.docker_in("volume", "inspect", f"{name}_sites").returncode == 0
    finally:
        host.docker_in("rm", "-f", f"{sandbox}-way-in")
        for gone in (sandbox, name):
            host.docker_in("stack", "rm", gone)
        wait_gone(host, f"label=com.docker.stack.namespace={name}")
        host.docker_in("volume", "rm", f"{name}_sites")


def services(host: Debian13Host, stack: str) -> dict[str, str]:
    """Each service of ``stack`` and the image its spec names."""
    done = host.docker_in("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                          "--format", "{{.Name}} {{.Image}}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def task_ids(host: Debian13Host, stack: str) -> set[str]:
    names = list(services(host, stack))
    return set(host.docker_in("service", "ps", "-q", *names).stdout.split()) if names else set()


def wait_gone(host: Debian13Host, label: str, timeout: float = 60) -> None:
    """Until no container carries ``label`` (a removed stack's tasks stop a moment later)."""
    deadline = time.monotonic() + timeout
    while host.docker_in("ps", "-aq", "--filter", label).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.5)
