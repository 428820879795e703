"""`imagekit backups --verify` against the real Docker daemon, on test_sandbox's stack: a kept
backup restored in a throw-away sandbox on the version whose data it holds; a truncated dump and a
corrupt files archive are failures naming the file (exit 12)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_sandbox import Stack, bench_sh, free_port, labelled
from tests.support.benchimage.fixtures import bench_image, docker, remove_project  # noqa: F401
from tests.support.cli import invoke


@pytest.fixture
def stack(tmp_path: Path, unique_name: Callable[[str], str], bench_image: str) -> Iterator[Stack]:  # noqa: F811
    made = Stack(tmp_path, unique_name("ver"), bench_image)
    yield made
    for project in (made.name, f"{made.name}-verify-v1"):
        remove_project(project)
        for kind, rm in (("volume", ("volume", "rm", "-f")), ("network", ("network", "rm"))):
            ids = labelled(kind, project)
            if ids:
                docker(*rm, *ids, check=False)
    docker("rmi", f"{made.repo}:v1", f"{made.repo}:v2", check=False)


def test_verify_a_good_a_truncated_and_a_corrupt_backup(stack: Stack) -> None:
    stack.deploy("v1")
    bench_sh(
        stack.name,
        "bench new-site a.local --admin-password=admin --db-root-password=x >/dev/null"
        " && mkdir -p sites/a.local/db sites/a.local/public/files sites/a.local/private/files"
        " && printf 'Administrator\\nGuest\\n' > sites/a.local/db/tabUser"
        " && echo User > sites/a.local/db/tabDocType"
        " && echo logo > sites/a.local/public/files/logo.txt"
        # b.local: a site whose User table has no rows (only the restored database shows it)
        " && bench new-site b.local --admin-password=admin --db-root-password=x >/dev/null"
        " && mkdir -p sites/b.local/db && : > sites/b.local/db/tabUser"
        " && echo User > sites/b.local/db/tabDocType",
    )
    stack.deploy("v2", "--backup-files")  # its backup holds v1's data
    where = ["--project", stack.name, "--compose", str(stack.compose), "--env-file", str(stack.env_file),
             "--state-dir", str(stack.state), "-w", str(stack.ws), "--port", str(free_port())]  # fmt: skip
    latest = invoke("backups", "--verify", "latest", *where)
    assert latest.exit_code == 12, latest.stdout + latest.stderr
    listed = json.loads(invoke("backups", *where[:-2], "--json").stdout)
    backup, empty = sorted(listed["backups"], key=lambda b: b["site"])
    good = blocks(latest.stdout)[backup["name"]]
    assert good.startswith(f"{backup['name']}: ok")
    assert "ok: restored on v1: a.local answers ping" in good
    # counted in the restored database by bench (2 users, 1 doctype), no longer in the dump's text
    assert "ok: restored database has rows in tabUser (2), tabDocType (1)" in good
    assert blocks(latest.stdout)[empty["name"]].startswith(f"{empty['name']}: failed")
    assert f"the database restored from {empty['database']} has no rows in tabUser (b.local)" in latest.stderr
    sandbox = f"{stack.name}-verify-v1"
    assert {kind: labelled(kind, sandbox) for kind in ("ps", "volume", "network")} == {
        "ps": [], "volume": [], "network": []
    }  # fmt: skip

    dump = Path(backup["database"])
    whole = dump.read_bytes()
    dump.write_bytes(whole[:12])  # cut short, as a dump written to a full disk
    cut = invoke("backups", "--verify", backup["name"], *where)
    assert cut.exit_code == 12, cut.stdout + cut.stderr
    assert f"the database dump {dump} is truncated or not a gzip file" in cut.stderr
    dump.write_bytes(whole)

    archive = Path(backup["public_files"])
    archive.write_bytes(b"not a tar archive" * 64)
    corrupt = invoke("backups", "--all", *where)
    assert corrupt.exit_code == 12, corrupt.stdout + corrupt.stderr
    assert f"failed: the files archive {archive} is corrupt" in blocks(corrupt.stdout)[backup["name"]]
    assert "2 of 2 backups failed" in corrupt.stderr
    log = (stack.state / "projects" / stack.name / "backup-checks.jsonl").read_text().splitlines()
    results = [(json.loads(line)["site"], json.loads(line)["result"]) for line in log]
    assert sorted(results) == [("a.local", "failed"), ("a.local", "failed"), ("a.local", "ok"),
                               ("b.local", "failed"), ("b.local", "failed")]  # fmt: skip
    assert invoke("backups", "--verify", "latest", "--all", *where).exit_code == 2


def blocks(stdout: str) -> dict[str, str]:
    """Each backup's lines of the text report (``NAME: result (Ns)`` and its indented lines)."""
    found: dict[str, str] = {}
    name = ""
    for line in stdout.splitlines():
        if line and not line.startswith(" ") and ": " in line:
            name = line.split(": ", 1)[0]
        if name:
            found[name] = found.get(name, "") + line + "\n"
    return found
