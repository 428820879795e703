# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""Every command a failed deploy prints works when pasted, on the stack it came from (issue 18
item 2): a named target over three compose files (db and redis-cache live in an override, as in
frappe_docker), an env file, compose v1 and the fake bench. The commands are taken from imagekit's
own output and run by a shell with no terminal, as a script or a CI job would run them."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from frappe_imagekit.deploy.record import stamp
from frappe_imagekit.errors import ExitCode
from tests.support.benchimage import SERVE_BACKEND, SLEEP_FOREVER
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    project,
)
from tests.support.benchimage.transcripts import load
from tests.support.cli import cli

ROOT_PASSWORD = "Root-Pw-Canary-51d2"
FAILING_PATCH = "myapp.patches.v1_0.fix_invoices #2024-05-01"
NEW_TABLE = "tabInvoice Recompute Log"
# frappe_docker keeps MariaDB and Redis in overrides/: a command without them has no db
DB_AND_REDIS = f"""\
services:
  db:
    image: {{busybox}}
    network_mode: "none"
    stop_grace_period: 1s
    command: ["sh", "-c", '{SLEEP_FOREVER}']
  redis-cache:
    image: {{busybox}}
    network_mode: "none"
    stop_grace_period: 1s
    command: ["sh", "-c", '{SLEEP_FOREVER}']
"""
# a third file, as the lab's port file: the backend's port comes from the env file
BACKEND_PORT = f"""\
services:
  backend:
    command: ['sh', '-c', '{SERVE_BACKEND.replace("8000", "${BACKEND_PORT}")}']
"""
# the command lines of the printed next steps (indented under their sentence)
COMMAND = re.compile(r"^ {4,}((?:imagekit|docker-compose|env|ssh) .*)$", re.MULTILINE)


def make_stack(project: Project, busybox: str) -> Path:
    """compose.yaml + overrides/compose.db.yaml + overrides/compose.port.yaml, an env file, and
    the target ``stack`` naming them in the workspace's imagekit.toml; returns the env file."""
    project.compose.write_text(project.compose.read_text().replace('version: "3.7"\n', ""))
    overrides = project.folder / "overrides"
    overrides.mkdir()
    (overrides / "compose.db.yaml").write_text(DB_AND_REDIS.format(busybox=busybox))
    (overrides / "compose.port.yaml").write_text(BACKEND_PORT)
    env_file = project.folder / "stack.env"
    env_file.write_text(f"DB_PASSWORD={ROOT_PASSWORD}\nBACKEND_PORT=8000\n")
    (project.sites_dir / ".db_root_password").write_text(ROOT_PASSWORD + "\n")
    files = [project.compose, overrides / "compose.db.yaml", overrides / "compose.port.yaml"]
    (project.ws / "imagekit.toml").write_text(
        f'[targets.stack]\nproject = "{project.name}"\ncompose = {json.dumps([str(f) for f in files])}\n'
        f'env_file = "{env_file}"\nstate_dir = "{project.state}"\nup_timeout = 30\n'
    )
    return env_file


def deploy(project: Project, *args: str):  # type: ignore[no-untyped-def]
    return cli("deploy", "stack", "-w", str(project.ws), *args)


def printed(output: str) -> list[str]:
    """The commands of the next steps in imagekit's output, each once, in order."""
    return list(dict.fromkeys(COMMAND.findall(output)))


def paste(line: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run a printed line in a shell from another folder, with no terminal (stdin not a TTY)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for name in ("CUSTOM_IMAGE", "CUSTOM_TAG", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"):
        env.pop(name, None)
    return subprocess.run(["sh", "-c", line], cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def run_ok(line: str, tmp: Path) -> str:
    done = paste(line, tmp)
    assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def one(commands: list[str], pattern: str) -> str:
    (found,) = [c for c in commands if re.search(pattern, c)]
    return found


def maintenance_mode(project: Project, site: str) -> int:
    return int(json.loads(project.site_file(site, "site_config.json").read_text()).get("maintenance_mode", 0))


def state(project: Project, service: str) -> tuple[str, str]:
    container = project.services()[service]
    return container["Config"]["Image"], container["State"]["Status"]


def test_every_printed_step_works_pasted_on_a_three_file_target(
    project: Project, busybox_image: str, tmp_path: Path
):
    make_stack(project, busybox_image)
    first = deploy(project, "--version", "v1")
    assert first.exit_code == 0, first.output
    assert state(project, "db") == (busybox_image, "running")
    here = tmp_path / "elsewhere"
    here.mkdir()
    files = "-f " + " -f ".join(
        shlex.quote(str(p)) for p in (project.compose, *sorted((project.folder / "overrides").iterdir()))
    )
    compose = f"docker-compose -p {project.name} {files} --env-file {project.folder / 'stack.env'}"

    # 1. MariaDB down during a --migrate-only (the real transcript of it): start db, end the
    #    maintenance by hand, migrate again
    subprocess.run(
        ["docker", "stop", "-t", "1", project.services()["db"]["Id"]], check=True, capture_output=True
    )
    transcript = load("17-migrate-db-down")
    for site in project.sites:
        text = transcript.text_bytes.replace(transcript.truth["site"].encode(), site.encode())
        project.site_file(site, "replay.txt").write_bytes(text)
    down = deploy(project, "--version", "v1", "--migrate-only")
    assert down.exit_code == ExitCode.MIGRATE_FAILED, down.output
    commands = printed(down.output)
    up_db = one(commands, r" up -d db$")
    run_ok(up_db, here)
    assert state(project, "db") == (busybox_image, "running")
    assert up_db == f"env CUSTOM_IMAGE={project.repo} CUSTOM_TAG=v1 PULL_POLICY=never {compose} up -d db"
    off = one(commands, r"--site a.local set-maintenance-mode off$")
    assert maintenance_mode(project, "a.local") == 1
    run_ok(off, here)
    assert maintenance_mode(project, "a.local") == 0
    assert off == f"{compose} exec -T backend bench --site a.local set-maintenance-mode off"
    resume = one(commands, r"--site a.local scheduler resume$")
    run_ok(resume, here)
    for site in project.sites:
        project.site_file(site, "replay.txt").unlink()
    again = one(commands, r"^imagekit deploy .*--migrate-only$")
    assert again == f"imagekit deploy stack -w {project.ws} --version v1 --migrate-only"
    run_ok(again, here)
    assert project.records()[-1]["result"] == "succeeded"
    assert maintenance_mode(project, "b.local") == 0

    # 2. v1 deployed again (as the lab's run 19): migrate succeeds, then the backend answers nothing
    #    (a wrong port in the env file). No restore, no older version (v1 ran before, not the build
    #    before it): fix the service and start it again
    env_file = project.folder / "stack.env"
    env_file.write_text(env_file.read_text().replace("BACKEND_PORT=8000", "BACKEND_PORT=8001"))
    broken = deploy(project, "--version", "v1")
    assert broken.exit_code == ExitCode.DEPLOY_FAILED, broken.output
    assert "a.local did not answer at http://127.0.0.1:8000" in broken.output
    commands = printed(broken.output)
    assert not [c for c in commands if " restore " in c or "rollback" in c or "--version v2" in c]
    assert "v1 also ran before this deploy, so there is no other version to go back to" in broken.output
    run_ok(one(commands, r"--site a.local set-maintenance-mode on$"), here)
    assert maintenance_mode(project, "a.local") == 1
    run_ok(one(commands, rf"{re.escape(compose)} ps$"), here)
    run_ok(one(commands, r" logs --tail 50 backend$"), here)
    env_file.write_text(env_file.read_text().replace("BACKEND_PORT=8001", "BACKEND_PORT=8000"))
    old_backend = project.services()["backend"]["Id"]
    run_ok(one(commands, r" up -d backend$"), here)
    backend = project.services()["backend"]
    assert backend["Id"] != old_backend and state(project, "backend") == (f"{project.repo}:v1", "running")
    assert "-p ${BACKEND_PORT}" not in json.dumps(backend["Config"]["Cmd"])
    assert "nc -ll -p 8000" in " ".join(backend["Config"]["Cmd"])
    run_ok(one(commands, r"--site a.local set-maintenance-mode off$"), here)
    assert maintenance_mode(project, "a.local") == 0
    redeploy = one(commands, r"^imagekit deploy .*--version v1 --full-down$")
    assert redeploy == f"imagekit deploy stack -w {project.ws} --version v1 --full-down"
    before = {name: c["Id"] for name, c in project.services().items()}
    run_ok(redeploy, here)
    after = {name: c["Id"] for name, c in project.services().items()}
    assert not {name for name in before if after.get(name) == before[name]}  # every service recreated
    record = project.records()[-1]
    assert (record["result"], [s["health"] for s in record["sites"]]) == ("succeeded", ["ok", "ok"])

    # 3. a patch fails in v2: the way back is imagekit rollback to v1, database and image together
    table = project.site_file("a.local", f"db/{NEW_TABLE}")
    project.site_file("a.local", "fail_patch").write_text(FAILING_PATCH + "\n")
    project.site_file("a.local", "fail_patch_creates").write_text(NEW_TABLE + "\n")
    failed = deploy(project, "--version", "v2")
    assert failed.exit_code == ExitCode.PATCH_FAILED, failed.output
    project.site_file("a.local", "fail_patch").unlink()
    assert table.exists() and maintenance_mode(project, "a.local") == 1
    commands = printed(failed.output)
    assert not [c for c in commands if " restore " in c or "--version v1" in c]
    assert one(commands, r"^imagekit deploy stack -w \S+$")  # after `imagekit build` of a fixed release
    deploy_id = project.records()[-1]["started"]
    assert "imagekit rollback restores the backup this deploy took before migrate and runs v1 again" in (
        failed.output.replace("\n        ", " ")
    )
    dry = one(commands, r"^imagekit rollback .*--dry-run$")
    assert dry.startswith("imagekit rollback stack -w ") and "--deploy " in dry
    dry_out = run_ok(dry, here)
    assert "go back to " + f"{project.repo}:v1" in dry_out
    # the plan says what the rollback does: db and redis-cache keep running (lab: it said "down")
    assert "MariaDB, Redis and any other service keep running" in " ".join(dry_out.split())
    assert state(project, "backend")[0] == f"{project.repo}:v2"  # the dry run changed nothing
    run_ok(one(commands, r"^imagekit rollback .*--yes$"), here)
    assert state(project, "backend") == (f"{project.repo}:v1", "running")
    assert not table.exists() and maintenance_mode(project, "a.local") == 0
    assert project.records()[-1]["rollback_of"] == stamp(deploy_id)
    # 4. the next deploy after a rollback: db and redis-cache keep the labels of the target's
    # files, the image's services those of the state folder's copies the rollback ran with (the
    # same contents): not "started with other files" (a real v15 stack refused it, 2026-12-07)
    labels = {c["Config"]["Labels"]["com.docker.compose.project.config_files"]
              for c in project.services().values()}  # fmt: skip
    assert len(labels) == 2, labels
    again = deploy(project, "--version", "v1")
    assert again.exit_code == 0, again.output
    assert "were started with" not in again.output
