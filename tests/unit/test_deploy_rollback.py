"""deploy/rollback.py: choosing what to undo and refusing what cannot work, before anything
runs on the target; the commands it builds; the CLI's refusal without a terminal (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from frappe_imagekit.deploy import benchsite, compose, restorewait, rollback
from frappe_imagekit.deploy.lastup import DownFiles
from frappe_imagekit.deploy.migrate_report import BenchPlace, ssh_prefix
from frappe_imagekit.deploy.record import DeployRecord, read_deploys
from frappe_imagekit.deploy.rollback import RollbackOptions, plan_rollback
from frappe_imagekit.deploy.sandbox import SandboxOptions
from frappe_imagekit.deploy.sequence import DeployOptions, choose_image
from frappe_imagekit.errors import ExitCode, NotFoundError, UsageError
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke

STATE = "/srv/state"
LAB = Path(__file__).resolve().parents[1] / "fixtures" / "frappe-v15-lab"  # transcripts from a real bench
SHA = "cd" * 32


class NoTarget:
    """A runner that must not be used: the refusals come before the target is asked."""

    host = "local"

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the target was asked: {args}")

    def state_home(self) -> str:
        raise AssertionError("the target was asked for its state folder")


def copy_of(deploy_id: str, site: str) -> dict[str, Any]:
    folder = f"{STATE}/projects/erp/backups/{deploy_id}/{site}"
    return {
        "path": f"{folder}/20261201_1655-{site.replace('.', '_')}-database.sql.gz",
        "size": 40,
        "sha256": SHA,
    }


def write_record(ws: Path, version: str, started: str, *, backups: bool = True, **extra: Any) -> str:
    deploy_id = started[:19].replace("-", "").replace(":", "") + "Z"
    sites = [
        {"site": s, "backup_files": [copy_of(deploy_id, s)] if backups else []}
        for s in ("a.local", "b.local")
    ]
    data = {"schema_version": 2, "version": version, "image": f"de/erp:{version}", "project": "erp",
            "host": "local", "started": started, "result": "succeeded", "served": True, "sites": sites,
            **extra}  # fmt: skip
    (ws / "deploys").mkdir(exist_ok=True)
    (ws / "deploys" / f"{deploy_id}-erp.json").write_text(json.dumps(data))
    return deploy_id


def plan(ws: Path, **options: Any) -> Any:
    return plan_rollback(NoTarget(), Workspace.at(ws), RollbackOptions.of("erp", state_dir=STATE, **options))  # type: ignore[arg-type]


def test_a_site_without_a_backup_from_that_deploy_is_refused_unless_no_restore(tmp_path: Path):
    write_record(tmp_path, "v1", "2026-12-01T10:00:00+00:00")
    deploy_id = write_record(tmp_path, "v2", "2026-12-01T16:55:00+00:00", backups=False,
                             result="patch-failed", previous_version="v1")  # fmt: skip
    with pytest.raises(NotFoundError) as caught:
        plan(tmp_path)
    assert caught.value.exit_code == ExitCode.NOT_FOUND == 12
    assert f"no backup from deploy {deploy_id} for a.local, b.local" in caught.value.message
    assert "--no-restore" in caught.value.message
    undo = DeployRecord.from_dict(json.loads((tmp_path / "deploys" / f"{deploy_id}-erp.json").read_text()))
    no_restore = RollbackOptions.of("erp", no_restore=True)
    restores = rollback.site_restores(undo, no_restore, f"{STATE}/projects/erp")
    assert [(r.site, r.backup) for r in restores] == [("a.local", None), ("b.local", None)]


def test_a_record_pointing_at_another_file_is_refused(tmp_path: Path):
    deploy_id = write_record(tmp_path, "v2", "2026-12-01T16:55:00+00:00", previous_version="v1")
    path = tmp_path / "deploys" / f"{deploy_id}-erp.json"
    data = json.loads(path.read_text())
    data["sites"][0]["backup_files"][0]["path"] = "/etc/passwd-database.sql.gz"
    path.write_text(json.dumps(data))
    with pytest.raises(NotFoundError, match="is not a backup file in .*/backups/20261201T165500Z/a.local"):
        plan(tmp_path)


def test_what_to_undo_and_what_to_go_back_to(tmp_path: Path):
    write_record(tmp_path, "v1", "2026-12-01T10:00:00+00:00")
    write_record(tmp_path, "v2", "2026-12-01T16:55:00+00:00")  # no previous_version: an older record
    records = rollback._records(read_deploys(Workspace.at(tmp_path)).records, "erp", "local")
    undo = rollback._deploy_to_undo(records, RollbackOptions.of("erp"), "local")
    assert undo.version == "v2"
    assert rollback._to_version(records, undo, RollbackOptions.of("erp")) == "v1"  # the one that ran before
    assert rollback._to_version(records, undo, RollbackOptions.of("erp", to_version="v0")) == "v0"
    with pytest.raises(UsageError, match="is the version of the deploy being undone"):
        rollback._to_version(records, undo, RollbackOptions.of("erp", to_version="v2"))
    with pytest.raises(NotFoundError, match="no deploy 20261130T000000Z of erp on local"):
        rollback._deploy_to_undo(records, RollbackOptions.of("erp", deploy="20261130T000000Z"), "local")
    with pytest.raises(NotFoundError, match="no deploy of erp on other"):
        others = rollback._records(read_deploys(Workspace.at(tmp_path)).records, "erp", "other")
        rollback._deploy_to_undo(others, RollbackOptions.of("erp"), "other")


def test_a_finished_rollback_is_not_undone_again_by_default(tmp_path: Path):
    write_record(tmp_path, "v1", "2026-12-01T10:00:00+00:00")
    v2 = write_record(tmp_path, "v2", "2026-12-01T16:55:00+00:00", previous_version="v1")
    write_record(tmp_path, "v1", "2026-12-01T17:10:00+00:00", kind="rollback", rolled_back_from="v2",
                 rollback_of=v2, backups=False)  # fmt: skip
    with pytest.raises(UsageError, match="already a rollback .* pass --deploy ID"):
        plan(tmp_path)
    with pytest.raises(UsageError, match="is a rollback"):
        plan(tmp_path, deploy="20261201T171000Z-erp.json")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deploy": "yesterday"}, "--deploy"),
        ({"to_version": "-v1"}, "--to"),
        ({"sites": ["a.local;x"]}, "--sites"),
        ({"db_password_var": "DB PASSWORD"}, "--db-password-var"),
    ],
)
def test_options_are_checked_first(tmp_path: Path, options: dict[str, Any], message: str):
    with pytest.raises(UsageError, match=message):
        plan(tmp_path, **options)


def test_the_password_never_reaches_argv_and_next_steps_can_be_pasted():
    argv = rollback.restore_argv("c0ffee", "a.local", "/tmp/imagekit-restore-x.sql.gz")
    assert argv[:6] == ["docker", "exec", "-i", "c0ffee", "sh", "-c"]
    assert argv[7:] == ["sh", "bench", "--site", "a.local", "restore", "/tmp/imagekit-restore-x.sql.gz"]
    assert f"echo $$ > {benchsite.RESTORE_PID}" in argv[6] and f"> {benchsite.RESTORE_STATUS}" in argv[6]
    undo = DeployRecord(version="v2", project="erp", started="2026-12-01T16:55:00+00:00")
    made = rollback.RollbackPlan(RollbackOptions.of("erp", state_dir="/s t"), "deploy@erp:2222", undo, "v1",
                                 "de/erp", [], True, {})  # fmt: skip
    assert rollback.next_step(made, []).startswith("nothing was stopped")
    step = rollback.next_step(made, ["locked", "down"])
    assert "the project is down" in step
    assert ("`imagekit rollback --project erp --host deploy@erp:2222 --deploy 20261201T165500Z --to v1 "
            "--yes --state-dir '/s t'`") in step  # fmt: skip


def test_without_a_terminal_and_without_yes_nothing_is_asked_or_run(tmp_path: Path):
    result = invoke("rollback", "--project", "erp", "--host", "nobody@127.0.0.1:1", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE == 2
    assert (
        "no terminal to ask on" in result.output and "--dry-run" in result.output and "--yes" in result.output
    )


def test_deploy_without_version_does_not_pick_the_version_rolled_back_from(tmp_path: Path):
    (tmp_path / "builds").mkdir()
    for number, version in enumerate(("v1", "v2")):
        (tmp_path / "builds" / f"{version}.json").write_text(json.dumps({
            "schema_version": 1, "version": version, "status": "succeeded",
            "created": f"2026-12-0{number + 1}",
            "image": {"name": "de/erp", "tag": version, "ref": f"de/erp:{version}"}}))  # fmt: skip
    v2 = write_record(tmp_path, "v2", "2026-12-01T16:55:00+00:00", previous_version="v1")
    ws = Workspace.at(tmp_path)
    assert choose_image(ws, None, "erp") == ("de/erp", "v2")
    write_record(tmp_path, "v1", "2026-12-01T17:10:00+00:00", kind="rollback", rolled_back_from="v2",
                 rollback_of=v2)  # fmt: skip
    with pytest.raises(UsageError) as caught:
        choose_image(ws, None, "erp")
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("v2, the newest build, was rolled back on erp@local")
    assert "--version v2" in caught.value.message
    assert choose_image(ws, "v2", "erp") == ("de/erp", "v2")  # asked for by name
    assert choose_image(ws, None, "other") == ("de/erp", "v2")  # another project


def test_what_will_be_lost_and_the_warnings_are_said_before_anything():
    undo = DeployRecord.from_dict(
        {"version": "v2", "project": "erp", "started": "2026-12-01T16:55:00+00:00", "previous_version": "v1",
         "sites": [{"site": "a.local", "backup_files": [copy_of("20261201T165500Z", "a.local")]},
                   {"site": "b.local"}, {"site": "c.local"}]}
    )  # fmt: skip
    restores = [
        rollback.SiteRestore("a.local", undo.sites[0].database_copy()),
        rollback.SiteRestore("b.local", None),
    ]
    opts = RollbackOptions.of("erp", sites=["a.local", "b.local"], to_version="v0")
    made = rollback.RollbackPlan(
        opts, "local", undo, "v0", "de/erp", restores, False, DownFiles(["/s/c.yaml"], None, None, {}, [], "")
    )
    rollback._describe(made)
    assert made.lost[0].startswith("a.local: every change to its database since 2026-12-01T16:55:00+00:00")
    assert "including what v2 did to it" in made.lost[0]
    assert [w.split(" ", 1)[0] for w in made.warnings] == ["b.local", "c.local", "the"]
    assert "schema may be newer than v0's code" in made.warnings[0]
    assert "not in --sites" in made.warnings[1] and "--to v0 may not match" in made.warnings[2]
    assert made.steps[1] == "send de/erp:v0 to local (docker save | docker load)"
    assert any(
        step.startswith("restore a.local from /srv/state/projects/erp/backups/") for step in made.steps
    )
    assert not any(step.startswith("restore b.local") for step in made.steps)


def test_an_old_image_that_is_nowhere_is_rebuilt_first():
    from frappe_imagekit.runner import LocalRunner

    undo = DeployRecord(version="v2", project="erp", started="2026-12-01T16:55:00+00:00")
    made = rollback.RollbackPlan(RollbackOptions.of("erp"), "local", undo, "v1", "de/erp", [], False, {})
    with pytest.raises(NotFoundError) as caught:
        rollback._require_sendable(LocalRunner(), made)
    assert caught.value.message == (
        "image de/erp:v1 is not on this machine: run `imagekit rebuild v1` first (it rebuilds the image "
        "from its manifest), then roll back again."
    )


def test_the_files_archives_the_deploy_took_are_restored_with_the_database(tmp_path: Path):
    """Issue 18 item 1: a deploy with --backup-files copied both archives (31-backup-with-files);
    rollback checks them, names them in its steps and passes them to bench restore."""
    deploy_id = write_record(tmp_path, "v1", "2026-12-01T10:00:00+00:00")
    folder = f"{STATE}/projects/erp/backups/{deploy_id}/a.local"
    record = tmp_path / "deploys" / f"{deploy_id}-erp.json"
    data = json.loads(record.read_text())
    data["sites"][0]["backup_files"] += [
        {"path": f"{folder}/20261201_1655-a_local-files.tar", "size": 10240, "sha256": SHA},
        {"path": f"{folder}/20261201_1655-a_local-private-files.tar", "size": 10240, "sha256": SHA},
    ]
    record.write_text(json.dumps(data))
    restores = rollback.site_restores(
        DeployRecord.from_dict(data), RollbackOptions.of("erp"), f"{STATE}/projects/erp"
    )
    a, b = restores
    assert a.public_files and a.public_files.name == "20261201_1655-a_local-files.tar"
    assert a.private_files and a.private_files.name == "20261201_1655-a_local-private-files.tar"
    assert [c.name for c in a.copies][1:] == [a.public_files.name, a.private_files.name]
    assert (b.public_files, b.private_files, len(b.copies)) == (None, None, 1)
    argv = rollback.restore_argv("c0ffee", "a.local", "/tmp/db.sql.gz", "/tmp/pub.tar", "/tmp/priv.tar")
    assert argv[-5:] == [
        "/tmp/db.sql.gz", "--with-public-files", "/tmp/pub.tar", "--with-private-files", "/tmp/priv.tar",
    ]  # fmt: skip
    real = json.loads((LAB / "54-restore-existing-with-files.json").read_text())  # real bench took these
    words = real["command"].split()
    assert argv[-6:] == [
        "restore",
        "/tmp/db.sql.gz",
        *words[-4:-3],
        "/tmp/pub.tar",
        *words[-2:-1],
        "/tmp/priv.tar",
    ]
    assert words[3:5] == ["restore", words[4]] and real["exit_code"] == 0
    data["sites"][0]["backup_files"][-1]["path"] = "/etc/shadow-private-files.tar"
    with pytest.raises(NotFoundError, match="is not a backup file in"):
        opts = RollbackOptions.of("erp")
        rollback.site_restores(DeployRecord.from_dict(data), opts, f"{STATE}/projects/erp")


WAITED = "imagekit waited for it to end in the backend"


class _Waits:
    host = "local"

    def __init__(self, stdout: str = "", interrupt: bool = False) -> None:
        self.stdout, self.interrupt, self.calls = stdout, interrupt, []  # type: ignore[var-annotated]

    def run(self, argv: list[str], **_kwargs: Any) -> Any:
        from frappe_imagekit.process import Completed

        self.calls.append(argv)
        if self.interrupt:
            raise KeyboardInterrupt
        return Completed(tuple(argv), 0, self.stdout, "")


@pytest.mark.parametrize(
    ("runner", "how", "said"),
    [
        (_Waits("0\n"), "0", f"{WAITED}: it finished, the site holds the backup's data"),
        (_Waits("1\n"), "1", f"{WAITED}: it failed (exit 1); restore it again"),
        (_Waits("none\n"), "none", "it had not started in the backend"),
        (_Waits("unknown\n"), "unknown", "it ended in the backend without an exit status (killed?): "
         "restore it again"),
        (_Waits(interrupt=True), "waiting stopped", "imagekit stopped waiting for it (waiting stopped): it "
         "may still run in the backend, look with `docker top c0ffee` before anything else"),
    ],
)  # fmt: skip
def test_an_interrupted_restore_is_waited_for_in_the_backend_and_said(runner: _Waits, how: str, said: str):
    """Issue 19 item 6: Ctrl-C during bench restore; the restore is waited for, not left unseen."""
    assert rollback.wait_restore(runner, "c0ffee") == how  # type: ignore[arg-type]
    assert runner.calls[0][:5] == ["docker", "exec", "c0ffee", "sh", "-c"]
    assert runner.calls[0][6:] == ["wait", benchsite.RESTORE_PID, benchsite.RESTORE_STATUS]
    note = rollback.interrupted_restore_note("a.local", how, "docker top c0ffee")
    assert note == f"rollback was interrupted during the restore of a.local: {said}."


def test_the_printed_docker_top_of_a_remote_target_runs_there():
    """The `docker top` line of an interrupted restore, built like every printed command."""
    remote = BenchPlace(project="erp", ssh=ssh_prefix("deploy@erp.example.com:2222"))
    daemon = BenchPlace(project="erp", env=(("DOCKER_HOST", "tcp://10.0.0.5:2376"),))
    for place, line in [(remote, "ssh -p 2222 deploy@erp.example.com 'docker top c0ffee'"),
                        (daemon, "env DOCKER_HOST=tcp://10.0.0.5:2376 docker top c0ffee")]:  # fmt: skip
        top = place.on_host(["docker", "top", "c0ffee"])
        assert top == line
        assert f"look with `{line}` before" in rollback.interrupted_restore_note(
            "a.local", "waiting stopped", top
        )


def test_the_wait_script_returns_the_status_the_restore_left(tmp_path: Path):
    import subprocess

    script = restorewait.wait_restore_argv("c0ffee")[5]
    status = tmp_path / "status"
    status.write_text("0\n")
    done = subprocess.run(["sh", "-c", script, "wait", str(tmp_path / "no-pid"), str(status)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.stdout.split() == ["none"]
    (tmp_path / "pid").write_text("999999999\n")  # no such process: ended
    done = subprocess.run(["sh", "-c", script, "wait", str(tmp_path / "pid"), str(status)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.stdout.split() == ["0"]


def test_rollback_and_sandbox_settle_as_deploy_does(monkeypatch: pytest.MonkeyPatch):
    """Each long-running service runs `settle` s unrestarted after up (3 s, compose.SETTLE); rollback
    and sandbox take the same option as deploy, and its default is read when the options are made."""

    def settles(**settle: float) -> list[float]:
        return [
            DeployOptions.of("erp", "compose.yaml", "de/erp", "v2", **settle).settle,
            RollbackOptions.of("erp", **settle).settle,
            SandboxOptions.of("v2", "a.local@20261201T165500Z", "de/erp", **settle).settle,
        ]

    assert settles() == [3.0, 3.0, 3.0]
    assert settles(settle=0.5) == [0.5, 0.5, 0.5]
    monkeypatch.setattr(compose, "SETTLE", 1.0)  # as tests/conftest.py does for in-process runs
    assert settles() == [1.0, 1.0, 1.0]
