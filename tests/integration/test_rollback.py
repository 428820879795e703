# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""imagekit rollback against the real dockerd, docker-compose and sshd, with the fake bench:
its "database" (sites/<site>/db/, one file per table) is dumped by `bench backup` and put back by
`bench restore`, so the tests see data and schema come back."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from frappe_imagekit.deploy.migrate_parse import SiteResult
from frappe_imagekit.deploy.migrate_report import BenchPlace, StepContext, next_steps, step_commands
from frappe_imagekit.errors import ExitCode
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    project,
)
from tests.support.cli import cli as invoke
from tests.support.sshd import SSHServer

CANARY = "Root-Pw-Canary-7f3a9c"
FAILING_PATCH = "myapp.patches.v1_0.fix_invoices #2024-05-01"
NEW_TABLE = "tabInvoice Recompute Log"


def prepare(project: Project, password: str = CANARY) -> Path:
    """An env file with frappe_docker's DB_PASSWORD (MariaDB's root password, as the fake knows
    it), manifests for v1 and v2, and some data in a.local."""
    env_file = project.folder / "erp.env"
    env_file.write_text(f"DB_PASSWORD={password}\n")
    (project.sites_dir / ".db_root_password").write_text(CANARY + "\n")
    builds = project.ws / "builds"
    builds.mkdir()
    for number, version in enumerate(("v1", "v2")):
        (builds / f"{version}.json").write_text(json.dumps({
            "schema_version": 1, "version": version, "status": "succeeded",
            "created": f"2026-12-0{number + 1}T10:00:00+00:00",
            "image": {"name": project.repo, "tag": version, "ref": f"{project.repo}:{version}"},
        }))  # fmt: skip
    write_rows(project, "a.local", "tabSales Invoice", "INV-0001")
    write_rows(project, "b.local", "tabToDo", "call the accountant")
    return env_file


def write_rows(project: Project, site: str, table: str, *rows: str) -> None:
    path = project.site_file(site, f"db/{table}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.writelines(row + "\n" for row in rows)


def tables(project: Project, site: str) -> dict[str, list[str]]:
    folder = project.site_file(site, "db")
    return {p.name: p.read_text().splitlines() for p in sorted(folder.iterdir())}


def deploy_v1_then_failing_v2(project: Project, env_file: Path, *extra: str) -> None:
    first = invoke(*project.cli_args("--version", "v1", "--env-file", str(env_file), *extra))
    assert first.exit_code == 0, first.output
    write_rows(project, "a.local", "tabSales Invoice", "INV-0002")  # before v2's backup
    project.site_file("a.local", "fail_patch").write_text(FAILING_PATCH + "\n")
    project.site_file("a.local", "fail_patch_creates").write_text(NEW_TABLE + "\n")
    second = invoke(*project.cli_args("--version", "v2", "--env-file", str(env_file), *extra))
    assert second.exit_code == ExitCode.PATCH_FAILED, second.output
    assert NEW_TABLE in tables(project, "a.local")  # the patch changed the schema, then failed
    project.site_file("a.local", "fail_patch").unlink()
    write_rows(project, "a.local", "tabSales Invoice", "INV-0003")  # after the backup: lost


def interrupt_when(args: list[str], line: bytes, started: Path | None = None) -> tuple[int, bytes]:
    """Run a real `imagekit` process, send SIGINT once it printed ``line`` on stderr (and the
    file ``started`` exists: the fake's restore writes it once it has read the password)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "frappe_imagekit", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stderr is not None
    for raw in proc.stderr:
        if line in raw:
            break
    deadline = time.monotonic() + 30
    while started is not None and not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # into bench restore
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def rollback_args(project: Project, *extra: str) -> list[str]:
    return ["rollback", "--project", project.name, "--state-dir", str(project.state),
            "-w", str(project.ws), "--up-timeout", "30", *extra]  # fmt: skip


def test_rollback_restores_data_and_schema_and_runs_the_old_image(project: Project):
    env_file = prepare(project, password="not-the-root-password")
    deploy_v1_then_failing_v2(project, env_file)
    v2_id = project.records()[-1]["started"]

    refused = invoke(*rollback_args(project))  # CliRunner has no terminal
    assert refused.exit_code == ExitCode.USAGE == 2
    assert "no terminal to ask" in refused.output and "--yes" in refused.output

    dry = invoke(*rollback_args(project, "--dry-run"))
    assert dry.exit_code == 0, dry.output
    assert "undo deploy" in dry.output and "of v2 (patch-failed" in dry.output
    assert f"go back to {project.repo}:v1" in dry.output
    assert "restore a.local from " in dry.output and "restore b.local from " in dry.output
    assert "What will be lost:" in dry.output and "a.local: every change to its database since" in dry.output
    assert project.services()["backend"]["Config"]["Image"] == f"{project.repo}:v2"  # nothing changed

    # a wrong root password: restore fails after down; the record says how far it got
    wrong = invoke(*rollback_args(project, "--yes"))
    assert wrong.exit_code == ExitCode.DEPLOY_FAILED, wrong.output
    # real frappe prints the pymysql error tuple (frappe-v15-lab/55b-restore-existing-wrong-password.txt)
    assert "bench restore of a.local failed ((1045, \"Access denied for user 'root'" in wrong.output
    assert "is DB_PASSWORD the database root password?" in wrong.output
    failed = project.records()[-1]
    assert (failed["kind"], failed["result"]) == ("rollback", "failed")
    assert failed["progress"] == ["locked", "down"]
    assert "the project is down or runs the backend only" in failed["next_step"]
    assert "--deploy" in failed["next_step"] and "--to v1 --yes" in failed["next_step"]
    assert not project.lock_dir.exists()

    env_file.write_text(f"DB_PASSWORD={CANARY}\n")  # the env file of the last up is the kept copy
    (project.state / "projects" / project.name / "env").write_text(f"DB_PASSWORD={CANARY}\n")
    # Ctrl-C while a.local is restored: the restore in the backend is waited for (not left running
    # unseen, issue 19 item 6) and said; recorded as interrupted, with how far it got, lock released
    project.site_file("a.local", "slow_restore").write_text("4\n")
    started = project.site_file("a.local", ".root_password_sha256")
    started.unlink(missing_ok=True)
    code, err = interrupt_when(rollback_args(project, "--yes"), b"restoring a.local", started)
    project.site_file("a.local", "slow_restore").unlink()
    assert code == ExitCode.INTERRUPTED, err
    waited = (
        "rollback was interrupted during the restore of a.local: imagekit waited for it to end in the "
        "backend: it finished, the site holds the backup's data."
    )
    assert waited.encode() in err
    stopped = project.records()[-1]
    assert (stopped["kind"], stopped["result"], stopped["progress"]) == (
        "rollback",
        "interrupted",
        ["locked", "down", "restored a.local"],
    )
    assert waited in stopped["notes"] and stopped["sites"][0]["restored"] == "ok"
    assert tables(project, "a.local") == {"tabSales Invoice": ["INV-0001", "INV-0002"]}  # whole
    backend = project.services()["backend"]["Id"]
    top = subprocess.run(["docker", "top", backend, "-o", "pid,args"], capture_output=True, text=True)
    assert "restore" not in top.stdout, top.stdout
    assert "run `imagekit rollback" in stopped["next_step"]
    assert not project.lock_dir.exists()
    done = invoke(*rollback_args(project, "--yes", "--json"))
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)  # stdout is the JSON alone; progress went to stderr
    assert report["result"] == "succeeded" and report["kind"] == "rollback"
    for site in ("a.local", "b.local"):  # progress (issue 24 item 4): each site's restore
        assert f"progress: restore {site} started" in done.stderr
        assert re.search(rf"^progress: restore {site} done in \d+\.\d s$", done.stderr, re.M), done.stderr
    assert (report["version"], report["rolled_back_from"]) == ("v1", "v2")
    assert [(s["site"], s["restored"], s["health"]) for s in report["sites"]] == [
        ("a.local", "ok", "ok"),
        ("b.local", "ok", "ok"),
    ]
    # the data of the backup is back, the table the failed patch made is gone, the later write too
    assert tables(project, "a.local") == {"tabSales Invoice": ["INV-0001", "INV-0002"]}
    assert tables(project, "b.local") == {"tabToDo": ["call the accountant"]}
    services = project.services()
    assert {name: c["Config"]["Image"] for name, c in services.items() if name != "configurator"} == {
        "backend": f"{project.repo}:v1",
        "queue": f"{project.repo}:v1",
    }
    assert all(c["State"]["Running"] for n, c in services.items() if n != "configurator")

    record = project.records()[-1]
    assert record["rollback_of"] == v2_id.replace("-", "").replace(":", "")[:15] + "Z"
    assert record["served"] is True and record["previous_version"] == "v2"
    assert record["progress"] == ["locked", "down", "restored a.local", "restored b.local", "up",
                                  "image checked", "sites answer"]  # fmt: skip
    records = "".join(p.read_text() for p in (project.ws / "deploys").iterdir())
    everything = "\n".join([done.output, wrong.output, records, project.audit_log.read_text()])
    assert CANARY not in everything
    audit = [json.loads(line) for line in project.audit_log.read_text().splitlines()]
    assert [(a["kind"], a["version"], a["result"]) for a in audit] == [
        ("deploy", "v1", "succeeded"), ("deploy", "v2", "patch-failed"),
        ("rollback", "v1", "failed"), ("rollback", "v1", "interrupted"), ("rollback", "v1", "succeeded"),
    ]  # fmt: skip
    assert audit[1]["previous_version"] == "v1" and audit[1]["served"] is True

    history = invoke("history", "--json", "-w", str(project.ws))
    assert history.exit_code == 0, history.output
    rows = {row["version"]: row for row in json.loads(history.stdout)["builds"]}
    where = f"{project.name}@local"
    assert rows["v1"]["deployed_to"] == [where]
    assert [(d["kind"], d["result"]) for d in rows["v1"]["deploys"]] == [
        ("deploy", "succeeded"),
        ("rollback", "succeeded"),
    ]
    assert [(d["result"], d["rolled_back_to"]) for d in rows["v2"]["deploys"]] == [("patch-failed", "v1")]
    shown = invoke("history", "-w", str(project.ws))
    assert "patch-failed, rolled back to v1" in shown.output

    again = invoke(*project.cli_args("--env-file", str(env_file)))  # no --version: v2 is the newest
    assert again.exit_code == ExitCode.USAGE, again.output
    assert f"v2, the newest build, was rolled back on {where}" in again.output
    assert "--version v2" in again.output
    twice = invoke(*rollback_args(project, "--yes"))
    assert twice.exit_code == ExitCode.USAGE and "already a rollback" in twice.output


def test_rollback_over_ssh(project: Project, sshd: SSHServer):
    env_file = prepare(project)
    ssh = ["--host", sshd.spec, "--known-hosts", str(sshd.known_hosts), "--identity", str(sshd.client_key)]
    deploy_v1_then_failing_v2(project, env_file, *ssh)

    done = invoke(*rollback_args(project, "--yes", *ssh))
    assert done.exit_code == 0, done.output
    assert f"Rollback of {project.name} on root@127.0.0.1:{sshd.port} from v2 to v1: succeeded" in done.output
    assert tables(project, "a.local") == {"tabSales Invoice": ["INV-0001", "INV-0002"]}
    assert project.services()["backend"]["Config"]["Image"] == f"{project.repo}:v1"
    record = project.records()[-1]
    assert (record["kind"], record["host"], record["result"]) == (
        "rollback", f"root@127.0.0.1:{sshd.port}", "succeeded",
    )  # fmt: skip
    assert CANARY not in done.output and CANARY not in project.audit_log.read_text()


def test_rollback_restores_the_files_archives_the_deploy_took(project: Project):
    """Issue 18 item 1: a deploy with --backup-files took the public and private files archives;
    rollback passes both to bench restore (--with-public-files/--with-private-files, as real
    bench takes them: tests/fixtures/frappe-v15-lab/54-restore-existing-with-files.txt)."""
    env_file = prepare(project)
    deploy_v1_then_failing_v2(project, env_file, "--backup-files")
    names = [Path(f["path"]).name for f in project.records()[-1]["sites"][0]["backup_files"]]
    public, private = (n for n in names if n.endswith(".tar"))

    dry = invoke(*rollback_args(project, "--dry-run"))
    assert "and its files archives (--with-public-files/--with-private-files): bench restore" in dry.output
    done = invoke(*rollback_args(project, "--yes"))
    assert done.exit_code == 0, done.output
    given = project.site_file("a.local", "restore_files_args").read_text().splitlines()
    deploy_id = project.records()[-2]["started"].replace("-", "").replace(":", "")[:15] + "Z"
    assert given == [
        f"--with-public-files /tmp/imagekit-restore-{deploy_id}-{public}",
        f"--with-private-files /tmp/imagekit-restore-{deploy_id}-{private}",
    ]
    assert tables(project, "a.local") == {"tabSales Invoice": ["INV-0001", "INV-0002"]}
    backend = project.services()["backend"]["Id"]
    left = subprocess.run(["docker", "exec", backend, "sh", "-c", "ls /tmp"], capture_output=True, text=True)
    assert "imagekit-restore-" not in left.stdout  # the copies put in were removed


def test_the_printed_manual_restore_feeds_the_root_password_from_the_env_file(project: Project):
    """migrate-report's way back from a transcript: `bench restore` reads the root password from
    stdin (frappe-v15-lab/55-restore-existing-stdin-password.txt); the printed line pipes it from
    the env file, so it is neither typed (echoed without a terminal) nor in argv. Pasted here."""
    env_file = prepare(project)
    deploy_v1_then_failing_v2(project, env_file)
    backup = next(s["backup"] for s in project.records()[-1]["sites"] if s["site"] == "a.local")
    place = BenchPlace(project=project.name, compose=("docker-compose",),
                       compose_files=(str(project.compose),), env_file=str(env_file))  # fmt: skip
    failed = SiteResult(
        "a.local", "failed", "patch-failed", failed_patch=FAILING_PATCH, exception="KeyError: '5'"
    )
    (line,) = step_commands(next_steps(failed, StepContext(place=place))[-1])
    assert CANARY not in line and line.endswith(" restore BACKUP")

    done = subprocess.run(["sh", "-c", line.replace("BACKUP", shlex.quote(backup))], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "CUSTOM_IMAGE": project.repo,
                                                       "CUSTOM_TAG": "v2"})  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Site a.local has been restored" in done.stdout and CANARY not in done.stdout + done.stderr
    assert NEW_TABLE not in tables(project, "a.local")  # the backup's schema and data are back
    assert tables(project, "a.local")["tabSales Invoice"] == ["INV-0001", "INV-0002"]
