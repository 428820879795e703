"""A site's real maintenance state (read from its configuration, as frappe merges it) and what
a deploy that did not open a site's window may do to it: leave it as found (issue 18 item 4);
since which deploy it is in maintenance, from the records (pure, plus the read script run by sh)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from frappe_imagekit.deploy.maintenance import SiteState, parse_states, read_states_argv, window
from frappe_imagekit.deploy.migrate_parse import parse_migrate_output, running_patch
from frappe_imagekit.deploy.record import DeployRecord, describe_since, maintenance_since
from frappe_imagekit.errors import DeployError
from tests.support.benchimage.transcripts import reference_dir
from tests.unit.test_deploy_maintenance import _Bench


def _config(folder: Path, name: str, data: dict[str, object]) -> None:
    """A config file as frappe writes it (update_site_config: json.dumps(indent=1, sort_keys))."""
    path = folder / "sites" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def test_the_read_script_takes_the_two_keys_with_the_sites_config_over_the_common_one(tmp_path: Path):
    secret = "Db-Password-Canary-41"
    _config(tmp_path, "common_site_config.json", {"maintenance_mode": 1, "redis_cache": "redis://x"})
    _config(tmp_path, "a.local/site_config.json", {"db_password": secret, "maintenance_mode": 0,
                                                   "pause_scheduler": True})  # fmt: skip
    _config(tmp_path, "b.local/site_config.json", {"db_name": "_b", "db_password": secret})
    _config(tmp_path, "c.local/site_config.json", {"maintenance_mode": 1, "pause_scheduler": False})
    argv = read_states_argv("c0ffee", ["a.local", "b.local", "c.local", "gone.local"])
    assert argv[:5] == ["docker", "exec", "c0ffee", "sh", "-c"]
    done = subprocess.run(["sh", "-c", *argv[5:]], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert secret not in done.stdout  # the password stays in the container
    assert done.stdout.splitlines() == [
        "a.local 0 true",  # its own 0 wins over the common 1
        "b.local 1 0",  # nothing of its own: the common file's
        "c.local 1 false",
        "gone.local missing missing",
    ]
    states = parse_states(done.stdout, ["a.local", "b.local", "c.local", "gone.local"])
    assert states == {
        "a.local": SiteState(False, True),
        "b.local": SiteState(True, False),
        "c.local": SiteState(True, False),
    }  # gone.local: unknown


def test_output_that_is_not_asked_for_or_not_frappes_is_left_out():
    text = "a.local 1 true\nevil.local 1 1\na.local 0 0\nb.local yes 1\nc.local 1\n"
    assert parse_states(text, ["a.local", "b.local", "c.local"]) == {"a.local": SiteState(True, True)}
    assert SiteState(True, False).word == "on" and SiteState(False, True).word == "off"


@pytest.mark.parametrize("error", [KeyboardInterrupt(), DeployError("backup of a.local failed")])
def test_a_site_found_in_maintenance_is_left_as_found_when_the_deploy_stops_early(error: BaseException):
    bench = _Bench()
    found = {"a.local": SiteState(True, True), "b.local": SiteState(False, False)}
    with pytest.raises(type(error)), window(bench, lambda: "c1") as win:  # type: ignore[arg-type]
        win.found(found, {"a.local": "since deploy 20261207T121639Z of v2, patch-failed"})
        win.open("c1", ["a.local", "b.local"])
        raise error
    a, b = win.sites["a.local"], win.sites["b.local"]
    assert (a.state, a.found, b.state, b.found) == ("on", "on", "off", "off")
    assert a.left_on == (
        "it was in maintenance before this deploy (since deploy 20261207T121639Z of v2, patch-failed): "
        "left as found"
    )
    assert not any("--site a.local set-maintenance-mode off" in call for call in bench.bench())
    assert not any("--site a.local scheduler resume" in call for call in bench.bench())
    assert bench.bench()[-2:] == [  # the window this deploy opened ends
        "bench --site b.local set-maintenance-mode off @c1",
        "bench --site b.local scheduler resume @c1",
    ]


def test_a_site_found_in_maintenance_with_its_scheduler_running_gets_it_back_when_the_deploy_stops_early():
    bench = _Bench()
    found = {"a.local": SiteState(True, False), "b.local": SiteState(True, True)}
    with pytest.raises(DeployError), window(bench, lambda: "c1") as win:  # type: ignore[arg-type]
        win.found(found)
        win.open("c1", ["a.local", "b.local"])
        raise DeployError("backup of a.local failed")
    assert (win.sites["a.local"].state, win.sites["b.local"].state) == ("on", "on")  # as found
    assert bench.bench()[-1] == "bench --site a.local scheduler resume @c1"  # it ran before the deploy
    assert "bench --site b.local scheduler resume @c1" not in bench.bench()  # it was paused: stays so
    assert not any("set-maintenance-mode off" in call for call in bench.bench())
    assert "scheduler running as found" in str(win.sites["a.local"].left_on)


def test_a_deploy_that_migrated_a_site_found_in_maintenance_ends_it_but_not_a_pause_it_did_not_make():
    bench = _Bench()
    found = {"a.local": SiteState(True, True), "b.local": SiteState(False, True)}
    with window(bench, lambda: "c1") as win:  # type: ignore[arg-type]
        win.found(found)
        win.open("c1", ["a.local", "b.local"])
        win.stack_changed()
    assert (win.sites["a.local"].state, win.sites["b.local"].state) == ("off", "off")
    assert "bench --site a.local scheduler resume @c1" in bench.bench()
    assert "bench --site b.local set-maintenance-mode off @c1" in bench.bench()
    assert "bench --site b.local scheduler resume @c1" not in bench.bench()  # paused by someone else


def _record(started: str, state: str | None, found: str | None = None, **top: object) -> DeployRecord:
    window = {"site": "a.local", "state": state, "found": found} if state else None
    return DeployRecord.from_dict({
        "schema_version": 2, "version": top.pop("version", "v2"), "project": top.pop("project", "erp"),
        "started": started, "result": top.pop("result", "patch-failed"), **top,
        "sites": [{"site": "a.local", "maintenance": window}],
    })  # fmt: skip


def test_since_which_deploy_a_site_is_in_maintenance():
    failed = _record("2026-12-07T12:09:35+00:00", "on", "off")
    stopped = _record("2026-12-07T12:25:20+00:00", "on", "on", version="v3", result="failed")
    other_host = _record("2026-12-07T12:30:00+00:00", "off", host="root@10.0.0.2")
    other_project = _record("2026-12-07T12:31:00+00:00", "off", project="shop")
    records = [stopped, other_host, failed, other_project]
    assert maintenance_since(records, "erp", "local", "a.local") is failed  # stopped found it on
    assert describe_since(failed) == "since deploy 20261207T120935Z of v2, patch-failed"
    ended = _record("2026-12-07T12:40:00+00:00", "off", "on", version="v3", result="succeeded")
    assert maintenance_since([*records, ended], "erp", "local", "a.local") is None
    read_back = _record("2026-12-07T12:50:00+00:00", None, version="v3")
    read_back.sites[0].extra["maintenance_now"] = "on"  # --no-maintenance: no window, read back on
    assert maintenance_since([*records, ended, read_back], "erp", "local", "a.local") is read_back
    assert describe_since(None) == "no deploy in deploys/ left it so"


def test_since_which_deploy_is_keyed_by_the_daemon_a_local_and_an_ssh_target_share():
    daemon = "ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP"
    over_ssh = _record("2026-12-07T12:09:35+00:00", "on", "off", host="root@127.0.0.1:2322", daemon_id=daemon)
    elsewhere = _record(
        "2026-12-07T12:20:00+00:00", "off", host="ops@other:22", daemon_id="OTHER:" + "A" * 20
    )
    assert maintenance_since([over_ssh, elsewhere], "erp", "local", "a.local", daemon) is over_ssh
    assert maintenance_since([over_ssh, elsewhere], "erp", "local", "a.local") is None  # not known here


def test_an_interrupted_real_migrate_names_the_patches_that_ran_and_the_one_it_was_in():
    """The output deploy saw of the real migrate SIGTERM stopped in lab run 08 (frappe 15.55.1):
    two patches committed (in s1.lab's Patch Log afterwards), slow_reindex not."""
    folder = reference_dir()
    assert folder is not None
    run = (
        folder.parent
        / "real-lab-2026-12-07"
        / "deploy-runs"
        / "08-deploy-v1.3.0-sigterm-during-slow-patch.txt"
    )
    text = run.read_text().split("# 12:17:40 sending SIGTERM")[0]
    seen = text.split("migrating s1.lab\n", 1)[1]  # what the migrate printed (deploy's own lines before)
    (result,) = parse_migrate_output(seen, sites=["s1.lab"])
    assert result.patches_run == [
        "de_macrs.patches.v1_2.create_audit_table",
        "de_macrs.patches.v1_2.recompute_basis",
    ]
    assert running_patch(seen, "s1.lab") == "de_macrs.patches.v1_3.slow_reindex"
    assert running_patch(seen.split("Executing de_macrs.patches.v1_3")[0], "s1.lab") is None  # between two
