# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""--keep-backups never takes the only copy of a version's data (issue 18 item 4): real dockerd
and docker-compose, the fake bench's `backup`, the copies in the state folder."""

from __future__ import annotations

import time

from frappe_imagekit.deploy.sequence import deploy
from frappe_imagekit.runner import LocalRunner
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    options,
    project,
    workspace,
)


def test_the_newest_backup_of_each_versions_data_survives_keep_backups(project: Project):
    def run(version: str, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(1)  # one deploy id (a second's stamp) each
        report = deploy(LocalRunner(), workspace(project), options(project, version, **kwargs))
        assert report.result == "succeeded", report.error
        return report

    run("v1")  # nothing ran before: no backup
    first = run("v2")  # its backups hold v1's data, the only copy of it
    last = run("v2", keep_backups=1)  # its backups hold v2's data
    root = project.state / "projects" / project.name / "backups"
    first_id, last_id = (p.name for p in sorted(root.iterdir()))
    assert first.site("a.local").backup_files[0]["path"].startswith(f"{root}/{first_id}/a.local/")
    assert [r["previous_version"] for r in project.records()] == [None, "v1", "v2"]
    assert f"kept beyond --keep-backups 1: {first_id} (the newest copy of v1's data)" in last.notes
    assert last.site("a.local").backup_files[0]["path"].startswith(f"{root}/{last_id}/a.local/")

    # a failed deploy's backups stay, even when its record is not in this workspace (made from
    # another one): the target's audit log says it failed
    project.site_file("a.local", "fail_patch").write_text("myapp.patches.v1_0.fix_invoices #2024-05-01\n")
    time.sleep(1)
    failed = deploy(LocalRunner(), workspace(project), options(project, "v1", keep_backups=1))
    assert failed.result == "patch-failed"
    project.site_file("a.local", "fail_patch").unlink()
    failed_record = sorted((project.ws / "deploys").glob("*.json"))[-1]
    failed_record.unlink()
    failed_id = failed_record.name.split("-", 1)[0]
    assert f"removed the backups of older deploys: {last_id} (data of v2)" in failed.notes  # a newer v2 copy
    after = run("v1", keep_backups=1)
    after_id = sorted(p.name for p in root.iterdir())[-1]
    assert sorted(p.name for p in root.iterdir()) == [failed_id, after_id]  # v1's data: a newer copy
    assert f"removed the backups of older deploys: {first_id} (data of v1)" in after.notes
    assert f"kept beyond --keep-backups 1: {failed_id} (a failed deploy's)" in after.notes
