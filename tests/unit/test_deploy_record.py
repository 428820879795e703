"""deploy/record.py: the typed deploy record, its schema versions and its checks (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from frappe_imagekit.deploy.record import SCHEMA_VERSION, DeployRecord, read_records, rolled_back_versions

SHA = "ab" * 32
FOLDER = "/root/.local/state/imagekit/projects/erp/backups/20261201T165500Z/a.local"

# a record as imagekit wrote it before rollback existed (schema 1)
OLD = {
    "schema_version": 1, "version": "v2", "image": "de/erp:v2", "project": "erp", "host": "local",
    "user": "deploy", "started": "2026-12-01T16:55:00+00:00", "finished": "2026-12-01T16:57:00+00:00",
    "result": "patch-failed", "error": None, "notes": ["a note"], "timings": {"down": 1.5},
    "sites": [{"site": "a.local", "status": "failed", "failed_patch": "p.q #1",
               "backup": "sites/a.local/x.sql.gz", "health": None,
               "backup_files": [{"path": f"{FOLDER}/x-database.sql.gz", "size": 40, "sha256": SHA}]}],
    "failed_patches": ["p.q #1"], "backups": ["sites/a.local/x.sql.gz"],
}  # fmt: skip


def test_a_schema_1_record_reads_as_a_deploy_that_served():
    record = DeployRecord.from_dict(OLD)
    assert (record.kind, record.served, record.previous_version) == ("deploy", True, None)
    assert record.deploy_id == "20261201T165500Z" and record.where == "erp@local"
    copy_ = record.sites[0].database_copy()
    assert copy_ is not None and (copy_.size, copy_.sha256) == (40, SHA)
    assert record.extra["notes"] == ["a note"] and record.sites[0].extra == {"health": None}


@pytest.mark.parametrize(("result", "served"), [("succeeded", True), ("migrate-failed", True),
                                                 ("failed", False), ("interrupted", False)])  # fmt: skip
def test_served_is_inferred_from_the_result_of_old_records(result: str, served: bool):
    assert DeployRecord.from_dict({**OLD, "result": result}).served is served


@pytest.mark.parametrize(("timings", "changed"), [({"down": 1.5}, True), ({"up": 9.0}, True),
                                                  ({"preflight": 0.2, "backup": 3.0}, False)])  # fmt: skip
def test_stack_changed_of_records_before_the_field_comes_from_down_or_up(timings: dict, changed: bool):
    """A deploy that failed in up or its crash-loop wait never served but replaced the containers."""
    record = DeployRecord.from_dict({**OLD, "result": "failed", "timings": timings})
    assert (record.served, record.stack_changed) == (False, changed)
    assert DeployRecord.from_dict({**OLD, "result": "failed", "stack_changed": True}).stack_changed is True
    with pytest.raises(ValueError, match="stack_changed must be true or false"):
        DeployRecord.from_dict({**OLD, "stack_changed": "yes"})


def test_written_as_schema_2_and_read_back_the_same():
    data = DeployRecord.from_dict(OLD).to_dict()
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert data["kind"] == "deploy" and data["served"] is True
    assert data["failed_patches"] == ["p.q #1"] and data["timings"] == {"down": 1.5}
    assert DeployRecord.from_dict(data).to_dict() == data


def _edited(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(OLD)
    target: Any = data
    *parents, last = path.split(".")
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("kind", "undo", "kind must be one of deploy, rollback"),
        ("previous_version", "--help", "previous_version"),
        ("rollback_of", "../../etc", "rollback_of"),
        ("served", "yes", "served must be true or false"),
        ("progress", "down", "progress must be a list"),
        ("sites.0.site", "a.local; rm -rf /", "sites[0].site"),
        ("sites.0.backup_files", [{"path": "-rf", "size": 1, "sha256": SHA}], "backup_files[0].path"),
        ("sites.0.backup_files", [{"path": "/x", "size": -1, "sha256": SHA}], "size must be a number"),
        ("sites.0.backup_files", [{"path": "/x", "size": 1, "sha256": "00"}], "sha256"),
        ("schema_version", 3, "newer imagekit"),
    ],
)
def test_values_that_could_reach_a_tool_are_refused_by_name(path: str, value: Any, reason: str):
    with pytest.raises(ValueError) as caught:
        DeployRecord.from_dict(_edited(path, value))
    assert reason in str(caught.value)


def _record(kind: str, version: str, started: str, **extra: Any) -> DeployRecord:
    return DeployRecord(version=version, project="erp", kind=kind, started=started, served=True, **extra)


def test_a_version_a_rollback_left_stays_left_until_deployed_again():
    records = [
        _record("deploy", "v1", "2026-12-01T10:00:00+00:00"),
        _record("deploy", "v2", "2026-12-01T11:00:00+00:00"),
        _record("rollback", "v1", "2026-12-01T12:00:00+00:00", rolled_back_from="v2"),
    ]
    assert rolled_back_versions(records, "erp") == {"v2": "erp@local"}
    assert rolled_back_versions(records, "other") == {}
    again = [*records, _record("deploy", "v2", "2026-12-01T13:00:00+00:00")]
    assert rolled_back_versions(again, "erp") == {}
    stopped_early = DeployRecord(version="v1", project="erp", kind="rollback", rolled_back_from="v2",
                                 started="2026-12-01T12:00:00+00:00", progress=["locked"])  # fmt: skip
    assert rolled_back_versions([*records[:2], stopped_early], "erp") == {}


def test_history_shows_a_version_that_failed_in_migrate_but_ran_and_its_rollback():
    from frappe_imagekit.history import HistoryRow, _join_deploys

    def row(version: str) -> HistoryRow:
        return HistoryRow(version, "build", "succeeded", "", f"{version}.json", None, None, None, [])

    v1 = {**OLD, "version": "v1", "image": "de/erp:v1", "result": "succeeded",
          "started": "2026-12-01T10:00:00+00:00", "finished": "2026-12-01T10:01:00+00:00"}  # fmt: skip
    v2 = OLD  # patch-failed, schema 1: it came up, so it ran
    back = {"schema_version": 2, "kind": "rollback", "version": "v1", "project": "erp", "host": "local",
            "result": "succeeded", "served": True, "rolled_back_from": "v2",
            "rollback_of": "20261201T165500Z", "started": "2026-12-01T17:10:00+00:00",
            "finished": "2026-12-01T17:11:00+00:00"}  # fmt: skip
    rows = [row("v1"), row("v2")]
    _join_deploys(rows, read_records([v1, v2, back]))
    assert rows[0].deployed_to == ["erp@local"] and rows[1].deployed_to == []
    assert [(d["kind"], d["result"], d["rolled_back_from"]) for d in rows[0].deploys] == [
        ("deploy", "succeeded", None), ("rollback", "succeeded", "v2"),
    ]  # fmt: skip
    assert [(d["result"], d["rolled_back_to"]) for d in rows[1].deploys] == [("patch-failed", "v1")]


# -- issue 20 item 3: the record holds the registry digest -----------------------------------------

DIGEST = "sha256:d5bf716684bc731c3bce353b3e3e7ade1bf66ad6fbf4f87ec218199b4e686358"


def test_the_image_digest_survives_a_round_trip_and_is_checked():
    from frappe_imagekit.deploy.record import recorded_digest

    record = DeployRecord(version="v1", project="erp", image_digest=DIGEST)
    again = DeployRecord.from_dict(record.to_dict())
    assert again.image_digest == DIGEST and "image_digest" not in again.extra
    older = DeployRecord(version="v1", project="erp", image_digest="sha256:" + "0" * 64)
    assert recorded_digest([older, again, DeployRecord(version="v2", project="erp")], "v1") == DIGEST
    assert recorded_digest([again], "v2") is None
    with pytest.raises(ValueError, match="image_digest"):
        DeployRecord.from_dict({**record.to_dict(), "image_digest": DIGEST + " --all"})
