"""Issue 23 item 4: every reader of ``deploys/`` goes through ``DeployRecord`` (``read_deploys``),
and a record that is not what imagekit wrote (repository content others edit) gives one
sentence and a documented exit code in each of them, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_deploy_rollback import NoTarget  # the refusals here come before the target is asked

from frappe_imagekit import prune
from frappe_imagekit.deploy import backuplist, lock, rehearsal_gate, sequence
from frappe_imagekit.deploy.record import DeployRecord, iter_deploy_records, read_deploys, recorded_digest
from frappe_imagekit.deploy.rollback import RollbackOptions, plan_rollback
from frappe_imagekit.errors import ConfigError, ExitCode, ImagekitError, NotFoundError
from frappe_imagekit.manifest import BrokenManifest
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke

DIGEST = "sha256:" + "ab" * 32
GOOD = {"schema_version": 2, "version": "v1", "image": "de/erp:v1", "project": "erp", "host": "local",
        "started": "2026-12-01T10:00:00+00:00", "finished": "2026-12-01T10:05:00+00:00",
        "result": "succeeded", "served": True, "image_digest": DIGEST,
        "sites": [{"site": "a.local", "backup_files": []}]}  # fmt: skip
NEWER = "20261202T100000Z-erp.json"  # a later deploy's file name


def _edited(**fields: Any) -> str:
    return json.dumps({**GOOD, "version": "v2", "started": "2026-12-02T10:00:00+00:00", **fields})


# a record edited by hand, cut short, or not a record at all: each with what the reader says
BROKEN = {
    "cut short": ('{"version": "v2", "project": ', "not valid JSON (line 1)"),
    "an array": ("[]", "not an imagekit deploy record"),
    "project a list": (_edited(project=["erp"]), "project"),
    "sites a string": (_edited(sites="a.local"), "sites must be a list, not str"),
    "size a string": (
        _edited(
            sites=[
                {
                    "site": "a.local",
                    "backup_files": [{"path": "/s/x-database.sql.gz", "size": "big", "sha256": "ab" * 32}],
                }
            ]
        ),  # fmt: skip
        "sites[0].backup_files[0].size must be a number of bytes",
    ),
    "an option as version": (_edited(version="--rm"), "version"),
    "served a string": (_edited(served="yes"), "served must be true or false"),
}
CASES = pytest.mark.parametrize("text,reason", list(BROKEN.values()), ids=list(BROKEN))


def _workspace(tmp_path: Path, text: str) -> Workspace:
    (tmp_path / "deploys").mkdir()
    (tmp_path / "deploys" / "20261201T100000Z-erp.json").write_text(json.dumps(GOOD))
    (tmp_path / "deploys" / NEWER).write_text(text)
    return Workspace.at(tmp_path)


@CASES
def test_the_one_reader_types_the_good_record_and_names_why_not_the_broken_one(
    tmp_path: Path, text: str, reason: str
) -> None:
    ws = _workspace(tmp_path, text)
    [(_, good), (_, broken)] = list(iter_deploy_records(ws))
    assert isinstance(good, DeployRecord) and good.version == "v1" and good.image_digest == DIGEST
    assert isinstance(broken, BrokenManifest) and reason in broken.reason
    read = read_deploys(ws)
    assert [r.version for r in read.records] == ["v1"] and read.broken == [broken]
    assert read.broken_of("erp") == [broken] and read.broken_of("shop") == []
    assert DeployRecord.read(tmp_path / "deploys" / "20261201T100000Z-erp.json") == good


@CASES
def test_history_warns_once_and_lists_the_rest(tmp_path: Path, text: str, reason: str) -> None:
    result = invoke("history", "--json", "-w", str(_workspace(tmp_path, text).root))
    assert result.exit_code == 0 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "deploys/" in line] == [
        f"warning: skipped deploys/{NEWER}: {read_deploys(Workspace.at(tmp_path)).broken[0].reason}"
    ]
    assert json.loads(result.stdout)["broken_deploys"][0]["file"] == NEWER


@CASES
def test_rollback_will_not_undo_an_older_deploy_past_a_broken_record(
    tmp_path: Path, text: str, reason: str
) -> None:
    ws = _workspace(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        plan_rollback(NoTarget(), ws, RollbackOptions.of("erp", state_dir="/srv/state"))  # type: ignore[arg-type]
    assert caught.value.exit_code == ExitCode.VALIDATION
    message = caught.value.message
    assert message.startswith(f"deploys/{NEWER} cannot be used (") and reason in message
    assert "the last usable one is 20261201T100000Z" in message
    assert f"git checkout -- deploys/{NEWER}" in message and "--deploy ID" in message


@CASES
def test_rollback_deploy_naming_a_broken_record_says_so(tmp_path: Path, text: str, reason: str) -> None:
    ws = _workspace(tmp_path, text)
    opts = RollbackOptions.of("erp", state_dir="/srv/state", deploy="20261202T100000Z")
    with pytest.raises(NotFoundError) as caught:
        plan_rollback(NoTarget(), ws, opts)  # type: ignore[arg-type]
    assert caught.value.exit_code == ExitCode.NOT_FOUND
    assert (
        caught.value.message.startswith(f"deploys/{NEWER} cannot be used (")
        and reason in caught.value.message
    )
    assert caught.value.message.endswith(f"(git checkout -- deploys/{NEWER}), then roll back again.")


def test_rollback_with_only_broken_records_names_them(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, "[]")
    (tmp_path / "deploys" / "20261201T100000Z-erp.json").unlink()
    with pytest.raises(
        ConfigError, match=rf"^deploys/{NEWER} cannot be used \(not an imagekit deploy record"
    ):
        plan_rollback(NoTarget(), ws, RollbackOptions.of("erp", state_dir="/srv/state"))  # type: ignore[arg-type]


def test_a_broken_record_of_another_project_does_not_stop_a_rollback(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, "[]")
    (tmp_path / "deploys" / NEWER).rename(tmp_path / "deploys" / "20261202T100000Z-shop.json")
    with pytest.raises(ImagekitError) as caught:  # it goes on to what the record itself lacks
        plan_rollback(NoTarget(), ws, RollbackOptions.of("erp", state_dir="/srv/state"))  # type: ignore[arg-type]
    assert (
        "cannot be used" not in caught.value.message
        and "does not say what ran before it" in caught.value.message
    )


@CASES
def test_prune_stops_naming_the_record_and_why(tmp_path: Path, text: str, reason: str) -> None:
    ws = _workspace(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        prune.needed(ws, keep_deploys=3)
    assert (
        caught.value.message.startswith(f"deploys/{NEWER} cannot be read (")
        and reason in caught.value.message
    )
    assert caught.value.message.endswith("fix or move it, then prune again.")


@CASES
def test_backups_rehearsals_sandbox_and_deploy_leave_it_out(tmp_path: Path, text: str, reason: str) -> None:
    ws = _workspace(tmp_path, text)
    assert list(backuplist.deploy_records(ws, "erp")) == ["20261201T100000Z"]  # imagekit backups
    assert rehearsal_gate.last_rehearsal(ws, "erp", "v2") is None  # deploy's rehearsal gate
    assert recorded_digest(read_deploys(ws).records, "v1") == DIGEST  # sandbox and rollback pull by it
    sequence._refuse_rolled_back(ws, "v2", "erp")  # deploy's preflight: nothing said v2 was rolled back


def test_lock_details_are_typed_and_a_broken_file_names_no_holder() -> None:
    details = lock.lock_details("v1", "local")
    assert set(details) == set(lock.LockDetails.__annotations__)
    assert lock.parse_details(json.dumps(details)) == details
    for text in ("[]", '{"pid": "1"}', "{", '{"who": 5}'):
        assert lock.parse_details(text) is None
        assert "no usable details" in lock.held_message("erp", lock.parse_details(text), "local")
