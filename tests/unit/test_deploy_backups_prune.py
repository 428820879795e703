"""Which deploys' backups a deploy prunes (issue 18 item 4): the newest --keep-backups, never a
failed deploy's, never the newest copy of a version's data (pure; the real folders are pruned
in tests/integration/test_deploy_prune_backups.py)."""

from __future__ import annotations

import json

from frappe_imagekit.deploy.backups import DeployFacts, Pruned, deploy_facts, describe, plan_prune, prune
from frappe_imagekit.deploy.record import audit_records
from frappe_imagekit.process import Completed

A, B, C, D, E = (f"20261207T12{n:02d}00Z" for n in range(5))


def test_the_count_alone_when_every_old_deploy_succeeded_and_its_data_has_a_newer_copy():
    facts = {A: DeployFacts(False, "v1"), B: DeployFacts(False, "v2"), C: DeployFacts(False, "v1"),
             D: DeployFacts(False, "v2")}  # fmt: skip
    plan = plan_prune([D, B, A, C], 2, facts, current=D)
    assert (plan.removed, plan.data_of, plan.kept) == ([A, B], {A: "v1", B: "v2"}, {})


def test_the_only_copy_of_a_versions_data_stays_whatever_keep_says():
    # the real stack: v1.0.0's data was only in the first upgrade's backups, pruned by --keep-backups 5
    versions = {A: "v1.0.0", B: "v1.1.0", C: "v1.1.0", D: "v1.3.0", E: "v1.3.0"}
    facts = {deploy_id: DeployFacts(False, version) for deploy_id, version in versions.items()}
    plan = plan_prune([A, B, C, D, E], 1, facts, current=E)
    assert plan.removed == [B, D]
    assert plan.kept == {A: "the newest copy of v1.0.0's data", C: "the newest copy of v1.1.0's data"}


def test_a_failed_deploys_backups_are_never_pruned_and_this_deploys_stay():
    facts = {A: DeployFacts(True, "v1"), B: DeployFacts(False, "v1"), C: DeployFacts(True, None)}
    plan = plan_prune([A, B, C, D], 1, facts, current=C)
    assert plan.removed == [] and plan.kept == {A: "a failed deploy's", B: "the newest copy of v1's data",
                                                C: "this deploy's"}  # fmt: skip


def test_a_folder_no_record_describes_goes_by_the_count():
    plan = plan_prune([A, B, C], 1, {C: DeployFacts(False, "v1")}, current=C)
    assert (plan.removed, plan.data_of, plan.kept) == ([A, B], {}, {})
    assert plan_prune([A], 0, {}, current=A).removed == []  # this deploy's own, even with keep 0


def test_the_notes_name_the_versions_whose_data_went_and_why_others_stayed():
    plan = Pruned(removed=[A, B], data_of={A: "v1"}, kept={C: "a failed deploy's"})
    assert describe(plan, 2) == [
        f"removed the backups of older deploys: {A} (data of v1), {B}",
        f"kept beyond --keep-backups 2: {C} (a failed deploy's)",
    ]
    assert describe(Pruned(), 5) == []


class _Folder:
    host = "local"

    def __init__(self, names: str) -> None:
        self.names = names
        self.calls: list[list[str]] = []

    def run(self, argv, **_kwargs):  # type: ignore[no-untyped-def]
        self.calls.append(list(argv))
        return Completed(tuple(argv), 0, self.names if argv[0] == "ls" else "", "")


def test_prune_removes_only_what_was_planned_and_ignores_other_names():
    folder = _Folder(f"{A}\n{B}\n../etc\n{C}\nnotes.txt\n")
    plan = prune(folder, "/s/backups", 1, {A: DeployFacts(True, "v1")}, current=C)  # type: ignore[arg-type]
    assert plan.removed == [B]
    assert folder.calls[-1] == ["rm", "-rf", "--", f"/s/backups/{B}"]


def test_the_facts_come_from_deploy_records_and_the_targets_audit_log():
    lines = [
        {"schema_version": 2, "version": "v2", "project": "erp", "started": "2026-12-07T12:00:00+00:00",
         "result": "patch-failed", "previous_version": "v1", "kind": "deploy"},
        {"schema_version": 2, "version": "v1", "project": "erp", "started": "2026-12-07T12:01:00+00:00",
         "result": "succeeded", "kind": "rollback"},
        {"schema_version": 2, "version": "v3", "project": "erp", "started": "2026-12-07T12:02:00+00:00",
         "result": "succeeded", "previous_version": "v1"},
    ]  # fmt: skip
    text = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n" + "[" * 100_000 + "\n{}\n"
    records = audit_records(text)
    assert [r.version for r in records] == ["v2", "v1", "v3"]  # the broken lines left out
    assert deploy_facts(records) == {A: DeployFacts(True, "v1"), C: DeployFacts(False, "v1")}
