# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""`imagekit rehearse` against the real Docker daemon and compose, on test_sandbox's stack:
production runs v1 with two sites; v2 is rehearsed beside it while a probe keeps asking production.

The fake bench fails a patch when the site's ``fail_patch`` names it (tests/support/benchimage/bench);
a restored site is made by ``bench new-site --source-sql`` (51-new-site-source-sql.txt), which
refuses an existing folder (52-...-existing.txt), so the test writes ``fail_patch`` into the
sandbox's site just before its migrate: "v2's patch fails on this data".
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from frappe_imagekit.deploy import rehearse as rehearse_module
from frappe_imagekit.runner import Runner, this_host
from tests.integration.test_sandbox import CANARY, Stack, backend_id, bench_sh, free_port, labelled, ping
from tests.support.benchimage.fixtures import bench_image, docker, remove_project  # noqa: F401
from tests.support.cli import invoke

FAILING = "myapp.patches.v1_0.fix_invoices #2024-05-01"  # a line of the fake image's patches.txt
# every file of production's sites volume but the backups bench writes, with its hash
VOLUME = "find sites -type f ! -path '*/private/backups/*' | sort | xargs sha256sum"


@pytest.fixture
def stack(tmp_path: Path, unique_name: Callable[[str], str], bench_image: str) -> Iterator[Stack]:
    made = Stack(tmp_path, unique_name("reh"), bench_image)
    yield made
    for project in (made.name, f"{made.name}-rehearsal-v2"):
        remove_project(project)
        for kind, rm in (("volume", ("volume", "rm", "-f")), ("network", ("network", "rm"))):
            ids = labelled(kind, project)
            if ids:
                docker(*rm, *ids, check=False)
    docker("rmi", f"{made.repo}:v1", f"{made.repo}:v2", check=False)


class Probe:
    """Asks production's ping every 50 ms while a rehearsal runs; counts the failed answers."""

    def __init__(self, port: int) -> None:
        self.port, self.asked, self.failed = port, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.asked += 1
            try:
                if ping(self.port) != '{"message":"pong"}\n':
                    self.failed += 1
            except (OSError, urllib.error.URLError):
                self.failed += 1

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def production(stack: Stack) -> dict[str, object]:
    """What must not change: container ids, volumes, networks, and the volume's files."""
    ids = docker("ps", "-aq", "--no-trunc", "--filter", f"label=com.docker.compose.project={stack.name}")
    return {"ids": sorted(ids.stdout.split()), **stack.resources(), "files": bench_sh(stack.name, VOLUME)}


def two_sites(stack: Stack) -> None:
    stack.deploy("v1")
    for site, rows in (("a.local", "invoice-1"), ("b.local", "note-1")):
        bench_sh(
            stack.name,
            f"bench new-site {site} --admin-password=admin --db-root-password=x >/dev/null"
            f" && mkdir -p sites/{site}/db && echo {rows} > sites/{site}/db/tabData",
        )


def rehearse(stack: Stack, *extra: str):  # type: ignore[no-untyped-def]
    return invoke("rehearse", "v2", *stack.where(), "--port", str(free_port()), "--up-timeout", "30", *extra)


def test_a_failing_patch_is_found_while_production_serves(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_sites(stack)
    real_migrate = rehearse_module.migrate_site
    seen: dict[str, str] = {}

    def failing_in_v2(runner: Runner, backend: str, site: str, emit: Callable[[str], None]) -> object:
        seen[site] = docker("exec", backend, "cat", f"sites/{site}/db/tabData").stdout  # the backup's rows
        if site == "a.local":
            docker("exec", backend, "sh", "-c", f"echo '{FAILING}' > sites/{site}/fail_patch")
            seen["deploy"] = deploy_meanwhile(stack)
        return real_migrate(runner, backend, site, emit)

    monkeypatch.setattr(rehearse_module, "migrate_site", failing_in_v2)
    before = production(stack)
    with Probe(stack.port) as probe:
        done = rehearse(stack)
    assert done.exit_code == 9, done.stdout + done.stderr
    assert probe.asked > 5 and probe.failed == 0  # production kept serving
    assert production(stack) == before  # same containers, volumes, networks; no file of the volume changed
    for site in ("a.local", "b.local"):  # no maintenance flag ever set on production's sites
        config = json.loads(bench_sh(stack.name, f"cat sites/{site}/site_config.json"))
        assert "maintenance_mode" not in config and "pause_scheduler" not in config
    # a deploy started mid-rehearsal met production's deploy lock, held by the rehearsal: exit 8
    code, err = seen.pop("deploy")
    assert code == 8, err
    assert f"project {stack.name} on " in err and "deploying v2 (rehearsal)" in err
    assert seen == {"a.local": "invoice-1\n", "b.local": "note-1\n"}  # one sandbox, every site, its data
    assert not (stack.state / "projects" / stack.name / "lock").exists()  # released at the end
    assert f"a.local: failed in patch {FAILING}" in done.stdout
    assert "b.local: ok" in done.stdout
    assert "production was not touched" in done.stdout
    assert "imagekit rollback" not in done.stdout and "imagekit deploy" not in done.stdout
    assert f"imagekit rehearse v2 --project {stack.name} --compose {stack.compose}" in done.stdout
    assert "--port" in done.stdout  # the sandbox's port, as given
    assert "no maintenance mode" in done.stderr and CANARY not in done.stdout + done.stderr
    sandbox = f"{stack.name}-rehearsal-v2"
    assert {kind: labelled(kind, sandbox) for kind in ("ps", "volume", "network")} == {
        "ps": [], "volume": [], "network": []
    }  # fmt: skip
    (path,) = (stack.ws / "deploys").glob("*-rehearsal.json")
    record = json.loads(path.read_text())
    assert (record["kind"], record["version"], record["result"], record["served"]) == (
        "rehearsal", "v2", "failed", False)  # fmt: skip
    sites = {s["site"]: s for s in record["sites"]}
    assert (sites["a.local"]["failure"], sites["a.local"]["failed_patch"]) == ("patch", FAILING)
    assert sites["b.local"]["status"] == "ok" and sites["b.local"]["backup"].endswith("-database.sql.gz")
    assert Path(sites["a.local"]["backup"]).is_file()  # the fresh backup, kept in the state folder
    assert {"backup", "sandbox", "migrate", "remove", "total"} <= set(record["timings"])

    refused = invoke("deploy", *stack.where(), "--version", "v2", "--up-timeout", "30", "--no-health-check")
    assert refused.exit_code == 2, refused.stdout + refused.stderr
    assert "the last rehearsal of v2" in refused.stderr and "--force" in refused.stderr
    assert production(stack)["ids"] == before["ids"]

    (again,) = [
        line.strip() for line in done.stdout.splitlines() if line.strip().startswith("imagekit rehearse")
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    pasted = subprocess.run(again, shell=True, env=env, capture_output=True, text=True, timeout=300)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr  # pasted as printed: rehearses v2 again
    assert "rehearsal of v2 on" in pasted.stdout and ": succeeded" in pasted.stdout


def deploy_meanwhile(stack: Stack) -> tuple[int, str]:
    """``imagekit deploy`` of v2 in another process, as a second operator would start it."""
    argv = [sys.executable, "-m", "frappe_imagekit", "deploy", *stack.where(), "--version", "v2",
            "--up-timeout", "30", "--no-health-check"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    return done.returncode, " ".join(done.stderr.split())


def test_a_rehearsal_does_not_start_while_a_deploy_holds_the_lock(stack: Stack) -> None:
    stack.deploy("v1")
    held = stack.state / "projects" / stack.name / "lock"
    held.mkdir(mode=0o700)  # a deploy of v3 running in another process of this machine
    details = {"who": "ops", "when": "2026-12-07T16:00:00+00:00", "host": "local", "version": "v3",
               "pid": os.getppid(), "hostname": this_host()}  # fmt: skip
    (held / "details.json").write_text(json.dumps(details))
    done = rehearse(stack)
    assert done.exit_code == 8, done.stdout + done.stderr
    assert "is locked by ops on" in done.stderr and "deploying v3" in done.stderr
    assert not list((stack.ws / "deploys").glob("*-rehearsal.json"))  # not a failed rehearsal of v2
    assert not (stack.state / "projects" / stack.name / "rehearsals").exists()  # no backup taken
    assert json.loads((held / "details.json").read_text()) == details  # the deploy's lock left alone


def test_a_passing_rehearsal_then_deploy_rehearse(stack: Stack) -> None:
    two_sites(stack)
    refused = invoke("deploy", *stack.where(), "--version", "v2", "--rehearse", "--up-timeout", "30",
                     "--no-health-check")  # fmt: skip
    assert refused.exit_code == 2 and "v2 was never rehearsed" in refused.stderr, refused.stderr
    before = production(stack)
    done = rehearse(stack)
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "rehearsal of v2 on" in done.stdout and ": succeeded" in done.stdout
    assert "a.local: ok, health ok" in done.stdout and "b.local: ok, health ok" in done.stdout
    for site in ("a.local", "b.local"):  # progress (issue 24 item 4), plain lines: no terminal here
        assert re.search(rf"^progress: backup {site} done in \d+\.\d s$", done.stderr, re.M), done.stderr
        assert re.search(rf"^progress: migrate {site} done in \d+\.\d s$", done.stderr, re.M), done.stderr
    assert production(stack) == before
    (path,) = (stack.ws / "deploys").glob("*-rehearsal.json")
    assert json.loads(path.read_text())["result"] == "succeeded"
    deployed = invoke("deploy", *stack.where(), "--version", "v2", "--rehearse", "--up-timeout", "30",
                      "--no-health-check")  # fmt: skip
    assert deployed.exit_code == 0, deployed.stdout + deployed.stderr
    assert backend_id(stack.name) not in before["ids"]  # deployed for real this time


def test_sigterm_during_a_rehearsal_leaves_no_sandbox(stack: Stack) -> None:
    two_sites(stack)
    before = production(stack)
    argv = [sys.executable, "-m", "frappe_imagekit", "rehearse", "v2", *stack.where(),
            "--port", str(free_port()), "--up-timeout", "30", "--keep"]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2]
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for raw in proc.stderr:  # the sandbox is up with a.local; b.local is being restored into it
        if b"creating b.local from" in raw or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert b"removing the rehearsal's sandbox" in err or b"removing the unfinished sandbox" in err
    sandbox = f"{stack.name}-rehearsal-v2"
    assert {kind: labelled(kind, sandbox) for kind in ("ps", "volume", "network")} == {
        "ps": [],
        "volume": [],
        "network": [],
    }  # fmt: skip  (--keep keeps nothing an interrupt left)
    assert not (stack.state / "sandboxes" / sandbox).exists()
    (path,) = (stack.ws / "deploys").glob("*-rehearsal.json")
    assert json.loads(path.read_text())["result"] == "interrupted"
    assert production(stack) == before
