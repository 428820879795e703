"""`imagekit deploy --engine swarm` on a single-node swarm of a second dockerd 20.10 (issue 21).

One swarm and one registry for the module (tests/support/swarm.py); the images are the fake
bench with a label per version, pushed to the registry, so each version has its own digest and
the swarm's daemon pulls it by digest. The fake project is frappe_docker-shaped (configurator,
backend, queue; sites bind-mounted from tmp_path, so the tests read site_config.json directly).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from frappe_imagekit.deploy import composeconfig
from frappe_imagekit.deploy.compose import detect_compose
from frappe_imagekit.deploy.swarm import stack as swarmstack
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.runner import LocalRunner
from tests.support.benchimage import build_fake_bench, write_project
from tests.support.cli import invoke
from tests.support.machinelock import machine_lock
from tests.support.registry import free_port
from tests.support.swarm import SwarmLab, check_failed_patch, rollback_prod, sigterm_during_migrate
from tests.support.workspace import CANARY, make_workspace
from tests.unit.test_history_data import make_manifest, write

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("swarm")]

SITES = ("a.local", "b.local")
FAILING = "myapp.patches.v1_0.fix_invoices #2024-05-01"  # a line of the fake bench's patches.txt


@dataclass
class Lab:
    swarm: SwarmLab
    digests: dict[str, str]
    repo: str


@dataclass
class Stack:
    name: str
    folder: Path
    ws: Path
    state: Path

    def site_config(self, site: str) -> dict:
        return json.loads((self.folder / "sites" / site / "site_config.json").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = build_fake_bench("/usr/bin/docker")
    with machine_lock("swarm"):  # swarms of one machine share the gossip port 7946: one at a time
        swarm = SwarmLab.start(tmp_path_factory.mktemp("swarm"))
        try:
            digests = {v: swarm.push(base, "fb", v) for v in ("v1", "v2", "v3")}
            yield Lab(swarm, digests, swarm.repo("fb"))
        finally:
            swarm.stop()


def deploy(lab: Lab, stack: Stack, version: str, *extra: str):  # type: ignore[no-untyped-def]
    compose = str(stack.folder / "compose.yaml")
    args = ["deploy", "--engine", "swarm", "--project", stack.name, "--compose", compose,
            "--version", version, "--docker-host", lab.swarm.url, "--state-dir", str(stack.state),
            "--workspace", str(stack.ws), "--json", *extra]  # fmt: skip
    result = invoke(*args)
    return result, json.loads(result.stdout) if result.stdout.strip().startswith("{") else None


def make_stack(lab: Lab, tmp: Path, name: str) -> Stack:
    folder = tmp / "stack"
    write_project(folder, SITES)
    ws = make_workspace(tmp / "ws", env={"IMAGE_NAME": lab.repo})
    for n, version in enumerate(("v1", "v2", "v3")):  # the builds `imagekit history` joins deploys to
        write(ws / "builds", make_manifest(version, f"2026-12-0{n + 1}T10:00:00+00:00", image_name=lab.repo))
    return Stack(name, folder, ws, tmp / "state")


def deployed_cells(stack: Stack) -> dict[str, str]:
    """`imagekit history`'s "deployed" cell of each build."""
    listed = invoke("history", "-w", str(stack.ws))
    assert listed.exit_code == 0 and "skipped" not in listed.stderr, listed.output
    return {line.split("\t")[0]: line.split("\t")[6] for line in listed.stdout.splitlines()[2:]}


@pytest.fixture(scope="module")
def on_v2(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict, dict]]:
    """One stack deployed with v1, then v2: the reports of both."""
    stack = make_stack(lab, tmp_path_factory.mktemp("ikswa"), "ikswa")
    try:
        first, first_report = deploy(lab, stack, "v1")
        assert first.exit_code == 0, first.output
        second, second_report = deploy(lab, stack, "v2")
        assert second.exit_code == 0, second.output
        yield stack, first_report, second_report
    finally:
        lab.swarm.remove_stack(stack.name)


def test_v1_then_v2_every_task_runs_v2s_digest(lab: Lab, on_v2: tuple[Stack, dict, dict]):
    stack, first, second = on_v2
    v2 = f"{lab.repo}@{lab.digests['v2']}"
    assert second["ref"] == v2
    assert second["previous_image"] == f"{lab.repo}@{lab.digests['v1']}"
    assert lab.swarm.services(stack.name) == {f"{stack.name}_backend": v2, f"{stack.name}_queue": v2}
    assert lab.swarm.task_images(stack.name) == {f"{stack.name}_backend": {v2}, f"{stack.name}_queue": {v2}}
    assert [(s["site"], s["result"], s["maintenance"]) for s in second["sites"]] == [
        ("a.local", "ok", "off"), ("b.local", "ok", "off")
    ]  # fmt: skip
    for site in SITES:  # migrate ran inside the window; the window is closed now
        saw = json.loads((stack.folder / "sites" / site / "migrate_saw_config").read_text())
        assert (saw["maintenance_mode"], saw["pause_scheduler"]) == (1, True)
        config = stack.site_config(site)
        assert (config["maintenance_mode"], config["pause_scheduler"]) == (0, False)
    assert lab.swarm.leftover_jobs() == []
    # history names the engine: the workspace's copies of the two records, as the state folder's
    assert deployed_cells(stack) == {"v3": "-", "v2": f"{stack.name}@local (swarm)",
                                     "v1": f"was {stack.name}@local (swarm)"}  # fmt: skip
    state = sorted((stack.state / "projects" / stack.name / "swarm-deploys").glob("*.json"))
    copies = sorted((stack.ws / "deploys" / "swarm").glob("*.json"))
    assert [json.loads(p.read_text()) for p in copies] == [json.loads(p.read_text()) for p in state]
    assert [p.name for p in copies] == [f"{r['deploy_id']}-{stack.name}.json" for r in (first, second)]


def test_the_backups_are_copied_off_the_volume_and_hashed(on_v2: tuple[Stack, dict, dict]):
    stack, first, second = on_v2
    assert first["backups"] == []  # nothing ran before v1: no window, no backup
    dumps = [b for b in second["backups"] if b["path"].endswith("-database.sql.gz")]
    assert sorted(b["site"] for b in dumps) == list(SITES)
    for backup in dumps:
        copy = Path(backup["path"])
        assert copy.is_relative_to(stack.state) and copy.stat().st_mode & 0o777 == 0o600
        digest = subprocess.run(["sha256sum", str(copy)], capture_output=True, text=True).stdout.split()[0]
        assert (backup["size"], backup["sha256"]) == (copy.stat().st_size, digest)


def test_rollback_restores_each_sites_backup_on_v1s_digest(lab: Lab, on_v2: tuple[Stack, dict, dict]):
    stack, _, second = on_v2
    table = stack.folder / "sites" / "a.local" / "db" / "tabNote"  # the fake bench's database
    table.parent.mkdir(exist_ok=True)
    table.write_text("written under v2\n")  # after v2's backup: the rollback must drop it
    try:
        result = rollback_prod(
            stack.folder, stack.ws, stack.name, stack.state, f'docker_host = "{lab.swarm.url}"\n'
        )
    finally:
        (stack.ws / "imagekit.toml").unlink()
    report = json.loads(result.stdout)
    said = result.stderr.splitlines()
    v1 = f"{lab.repo}@{lab.digests['v1']}"
    assert result.exit_code == 0, result.output
    assert (report["error"], report["ref"], report["version"]) == (None, v1, "v1")
    assert lab.swarm.task_images(stack.name) == {f"{stack.name}_backend": {v1}, f"{stack.name}_queue": {v1}}
    assert not table.exists()  # the database is the backup's again
    # a rollback takes no backup, and says so
    assert [s.split(" (job")[0] for s in said if s.startswith("Maintenance on")] == [
        "Maintenance on for a.local, b.local"
    ]
    assert [s for s in said if s.startswith("Restoring")] == [
        f"Restoring {b['site']} from {b['volume_path']} (job on {v1})"
        for b in second["backups"] if b["path"].endswith("-database.sql.gz")
    ]  # fmt: skip
    digest = hashlib.sha256(CANARY.encode()).hexdigest()  # what bench read on stdin
    assert (stack.folder / "sites" / "a.local" / ".root_password_sha256").read_text().strip() == digest
    assert all(stack.site_config(s)["maintenance_mode"] == 0 for s in SITES)
    assert lab.swarm.docker("secret", "ls", "-q").stdout == "" and lab.swarm.leftover_jobs() == []
    records = "".join(p.read_text() for p in (stack.state / "projects" / stack.name).rglob("*.json"))
    assert (
        CANARY not in records + "".join(said) and lab.swarm.docker("service", "ls").stdout.count("_ik-") == 0
    )
    assert (report["kind"], report["rollback_of"]) == ("rollback", second["deploy_id"])
    assert deployed_cells(stack) == {"v3": "-", "v2": f"was {stack.name}@local (swarm, rolled back to v1)",
                                     "v1": f"{stack.name}@local (swarm, rollback from v2)"}  # fmt: skip
    shown = invoke("history", "v1", "--json", "-w", str(stack.ws))
    assert [(d["engine"], d["kind"], d["digest"]) for d in json.loads(shown.stdout)["deploys"]] == [
        ("swarm", "deploy", lab.digests["v1"]), ("swarm", "rollback", lab.digests["v1"])
    ]  # fmt: skip


def test_a_failing_patch_exits_9_and_leaves_the_site_in_maintenance(
    lab: Lab, on_v2: tuple[Stack, dict, dict]
):
    stack, _, _ = on_v2
    (stack.folder / "sites" / "a.local" / "fail_patch").write_text(FAILING + "\n")
    try:
        result, report = deploy(lab, stack, "v3")
    finally:
        (stack.folder / "sites" / "a.local" / "fail_patch").unlink()

    assert result.exit_code == ExitCode.PATCH_FAILED == 9, result.output
    site_a = check_failed_patch(report, FAILING)
    assert stack.site_config("a.local")["maintenance_mode"] == 1
    assert stack.site_config("b.local")["maintenance_mode"] == 1
    # the printed way out works pasted: the release job takes a.local out of maintenance
    release = site_a["next_steps"][1].split("release it: ", 1)[1]
    pasted = subprocess.run(["sh", "-c", release], capture_output=True, text=True, timeout=120,
                            env={"DOCKER_HOST": lab.swarm.url, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
    assert stack.site_config("a.local")["maintenance_mode"] == 0
    assert shlex.split(release)[0] == "docker" and lab.swarm.job_services() == []


def test_sigterm_during_the_migrate_job_stops_the_job_and_says_so(lab: Lab, on_v2: tuple[Stack, dict, dict]):
    stack, _, _ = on_v2
    compose = str(stack.folder / "compose.yaml")
    argv = [sys.executable, "-m", "frappe_imagekit", "deploy", "--engine", "swarm", "--project", stack.name,
            "--compose", compose, "--version", "v1", "--docker-host", lab.swarm.url,
            "--state-dir", str(stack.state), "--workspace", str(stack.ws), "--json",
            "--no-backup"]  # fmt: skip
    site = stack.folder / "sites" / "a.local"
    report, _ = sigterm_during_migrate(lab.swarm.docker, argv, site, f"{stack.name}_ik-migrate-")
    assert stack.site_config("a.local")["maintenance_mode"] == 1  # left in maintenance, and said so
    # the job's bench got SIGINT through tini and unwound as frappe does (fake bench: migrate_aborted)
    assert (site / "migrate_aborted").exists()
    assert "a.local stays in maintenance: the deploy was stopped." in report["sites"][0]["next_steps"]


def test_two_nodes_refuse_a_local_sites_folder_before_anything_changes(lab: Lab, tmp_path: Path):
    stack = make_stack(lab, tmp_path, "ikswb")  # sites bind-mounted: a folder of one node
    worker = lab.swarm.join_worker()
    try:
        result, _ = deploy(lab, stack, "v1")
    finally:
        lab.swarm.drop_worker(worker)
    assert result.exit_code == ExitCode.DEPLOY_FAILED == 13, result.output
    assert "the swarm has 2 nodes but backend's sites folder is" in result.output
    assert (
        "Put it on shared storage (an NFS volume" in result.output and "nothing was changed" in result.output
    )
    assert lab.swarm.services("ikswb") == {} and lab.swarm.job_services() == []
    assert not (stack.state / "projects" / "ikswb" / "lock").exists()


def test_dockers_own_stack_loader_takes_the_rendered_file_and_refuses_the_raw_one(tmp_path: Path):
    """`docker stack config` (CLI 23+, the loader of `stack deploy` on Docker 26) on the fake
    project as compose renders it: the raw configuration is refused, the stack file is taken."""
    cli = shutil.which("docker") or "docker"
    folder = tmp_path / "p"
    write_project(folder, SITES)
    (folder / "compose.yaml").write_text((folder / "compose.yaml").read_text() + "    pull_policy: never\n")
    runner = LocalRunner()
    env = {"CUSTOM_IMAGE": "127.0.0.1:5000/fb", "CUSTOM_TAG": "v1"}
    data = composeconfig.render_data(
        runner, detect_compose(runner), "iksc", [str(folder / "compose.yaml")], env
    )
    pin = swarmstack.pin("127.0.0.1:5000/fb", "sha256:" + "0" * 64)
    rendered = swarmstack.render_stack(data, "127.0.0.1:5000/fb:v1", pin, oneshot=["configurator"])
    (tmp_path / "raw.json").write_text(json.dumps(data))
    (tmp_path / "stack.json").write_text(rendered.text())
    raw = subprocess.run(
        [cli, "stack", "config", "-c", str(tmp_path / "raw.json")], capture_output=True, text=True
    )
    assert raw.returncode != 0 and "is not allowed" in raw.stderr, raw.stderr
    done = subprocess.run(
        [cli, "stack", "config", "-c", str(tmp_path / "stack.json")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"image: {pin.ref}") == 2  # backend and queue, pinned
    assert "configurator" not in done.stdout and "pull_policy" not in done.stdout


def test_a_sandbox_of_v1_is_its_own_stack_beside_production_and_goes_with_its_volumes(
    lab: Lab, tmp_path: Path
):
    """Issue 21 item 6: production (sites in a named volume) on v1 then v2; the sandbox of v1 runs
    v1's digest as its own stack with each site restored from v2's backups, answers on 127.0.0.1
    only through its one container, is listed, and the pasted --down line removes it, its
    container and its volumes; production's services, tasks and digest stay as they were."""
    stack = make_stack(lab, tmp_path, "ikswsb")
    compose = stack.folder / "compose.yaml"
    compose.write_text(compose.read_text().replace("./sites:", "sites:") + "volumes:\n  sites: {}\n")
    seed = (
        "for s in a.local b.local; do mkdir -p sites/$s; printf 'frappe\\nerpnext\\n' > sites/$s/apps.txt; "
        'echo \'{"db_name": "_x"}\' > sites/$s/site_config.json; done'
    )  # the sites write_project makes, in the volume
    volume = f"{stack.name}_sites:/home/frappe/frappe-bench/sites"
    v1, v2 = (f"{lab.repo}@{lab.digests[v]}" for v in ("v1", "v2"))
    assert lab.swarm.docker("run", "--rm", "-v", volume, v1, "sh", "-c", seed).returncode == 0
    env_file = stack.folder / "erp.env"
    env_file.write_text(f"DB_PASSWORD={CANARY}\n")
    (stack.ws / "imagekit.toml").write_text(
        f'[targets.prod]\nproject = "{stack.name}"\ncompose = ["{compose}"]\nengine = "swarm"\n'
        f'docker_host = "{lab.swarm.url}"\nstate_dir = "{stack.state}"\nenv_file = "{env_file}"\n'
    )
    sandbox = f"{stack.name}-sandbox-v1"
    try:
        for version in ("v1", "v2"):
            done, _ = deploy(lab, stack, version)
            assert done.exit_code == 0, done.output
        production = (lab.swarm.services(stack.name), _task_ids(lab, stack.name))
        assert production[0] == {f"{stack.name}_backend": v2, f"{stack.name}_queue": v2}
        port = free_port()
        started = invoke("sandbox", "v1", "prod", "--port", str(port), "-w", str(stack.ws))
        assert started.exit_code == 0, started.output
        assert lab.swarm.services(sandbox) == {f"{sandbox}_backend": v1, f"{sandbox}_queue": v1}
        assert (lab.swarm.services(stack.name), _task_ids(lab, stack.name)) == production
        for site in SITES:  # restored (the site exists, maintenance off) and reached on loopback
            assert _get(port, site) == '{"message":"pong"}'
        web = lab.swarm.docker("ps", "--filter", f"name={sandbox}-way-in", "--format", "{{.Ports}}").stdout
        assert web.strip() == f"127.0.0.1:{port}->8000/tcp"  # the one way in, loopback only
        ports = lab.swarm.docker(
            "service", "inspect", "--format", "{{json .Endpoint.Ports}}", f"{sandbox}_backend"
        )
        assert ports.stdout.strip() in ("null", "[]")  # the stack itself publishes nothing
        assert CANARY not in started.stdout + started.stderr
        assert [n for n in lab.swarm.leftover_jobs() if n.startswith(sandbox)] == []
        assert lab.swarm.docker("secret", "ls", "-q").stdout == ""
        listed = invoke("sandbox", "--list", "prod", "--json", "-w", str(stack.ws))
        assert [(s["name"], s["version"], s["of"]) for s in json.loads(listed.stdout)] == [
            (sandbox, "v1", stack.name)
        ]
        namespace = f"label=com.docker.stack.namespace={sandbox}"
        volumes = lab.swarm.docker("volume", "ls", "-q", "--filter", namespace).stdout.split()
        assert volumes == [f"{sandbox}_sites"]  # its own, beside production's
        refused = invoke("sandbox", "prod", "--down", stack.name, "-w", str(stack.ws))
        assert refused.exit_code == 2 and "is not a sandbox of imagekit" in refused.stderr
        line = started.stdout.rsplit("remove it with `", 1)[1].split("`", 1)[0]
        assert shlex.split(line)[:2] == ["imagekit", "sandbox"]
        removed = invoke(*shlex.split(line)[1:])
        assert removed.exit_code == 0, removed.output
        assert lab.swarm.services(sandbox) == {}
        assert lab.swarm.docker("volume", "ls", "-q", "--filter", f"name={sandbox}").stdout == ""
        assert lab.swarm.docker("ps", "-aq", "--filter", f"name={sandbox}").stdout == ""
        assert (lab.swarm.services(stack.name), _task_ids(lab, stack.name)) == production
        assert lab.swarm.docker("volume", "inspect", f"{stack.name}_sites").returncode == 0
    finally:
        lab.swarm.remove_stack(sandbox)
        lab.swarm.remove_stack(stack.name)
        lab.swarm.docker("volume", "rm", f"{stack.name}_sites")


def _task_ids(lab: Lab, stack: str) -> set[str]:
    names = list(lab.swarm.services(stack))
    return set(lab.swarm.docker("service", "ps", "-q", *names).stdout.split()) if names else set()


def _get(port: int, site: str) -> str:
    done = subprocess.run(["wget", "-q", "-O", "-", "--header", f"Host: {site}",
                           f"http://127.0.0.1:{port}/api/method/ping"], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    return done.stdout.strip()
