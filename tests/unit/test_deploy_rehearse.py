"""deploy/rehearse.py and deploy/rehearsal_gate.py, the pure parts (the run: test_rehearse.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit.deploy import migrate_parse as mp
from frappe_imagekit.deploy import rehearsal_backups
from frappe_imagekit.deploy.migrate_report import StepContext, step_commands
from frappe_imagekit.deploy.rehearsal_gate import check_last_rehearsal, last_rehearsal
from frappe_imagekit.deploy.rehearse import RehearsedSite, fill_site, rehearsal_name
from frappe_imagekit.errors import ExitCode, ImagekitError
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace


def record(ws: Path, started: str, result: str, version: str = "v2", kind: str = "rehearsal") -> None:
    folder = ws / "deploys"
    folder.mkdir(exist_ok=True)
    data = {"schema_version": 2, "version": version, "project": "erp", "kind": kind, "started": started,
            "result": result, "served": False, "sites": []}  # fmt: skip
    (folder / f"{started[:10]}-{started[11:13]}{result}-erp-rehearsal.json").write_text(json.dumps(data))


def test_the_newest_rehearsal_of_the_version_is_the_one_that_counts(tmp_path: Path) -> None:
    record(tmp_path, "2026-12-07T10:00:00+00:00", "succeeded")
    record(tmp_path, "2026-12-07T11:00:00+00:00", "failed")
    record(tmp_path, "2026-12-07T12:00:00+00:00", "succeeded", version="v3")
    record(tmp_path, "2026-12-07T13:00:00+00:00", "succeeded", kind="deploy")
    last = last_rehearsal(Workspace.at(tmp_path), "erp", "v2")
    assert last is not None and (last.result, last.deploy_id) == ("failed", "20261207T110000Z")
    assert last_rehearsal(Workspace.at(tmp_path), "other", "v2") is None


def test_a_deploy_after_a_failed_rehearsal_asks_for_force(tmp_path: Path) -> None:
    record(tmp_path, "2026-12-07T11:00:00+00:00", "failed")
    ws = Workspace.at(tmp_path)
    with pytest.raises(ImagekitError) as refused:
        check_last_rehearsal(ws, "erp", "v2", force=False, required=False)
    assert refused.value.exit_code == ExitCode.USAGE
    assert "the last rehearsal of v2 on erp (20261207T110000Z) failed" in refused.value.message
    assert "pass --force to deploy anyway" in refused.value.message
    check_last_rehearsal(ws, "erp", "v2", force=True, required=False)  # --force: deploys
    check_last_rehearsal(ws, "erp", "v3", force=False, required=False)  # never rehearsed: no opinion
    with pytest.raises(ImagekitError, match="--rehearse: v3 was never rehearsed on erp"):
        check_last_rehearsal(ws, "erp", "v3", force=False, required=True)
    with pytest.raises(ImagekitError, match="did not pass its last rehearsal"):
        check_last_rehearsal(ws, "erp", "v2", force=True, required=True)
    record(tmp_path, "2026-12-07T12:00:00+00:00", "succeeded")
    check_last_rehearsal(ws, "erp", "v2", force=False, required=True)


def test_rehearsal_name_is_a_project_name() -> None:
    assert rehearsal_name("erp", "v15.2.1") == "erp-rehearsal-v15-2-1"
    assert len(rehearsal_name("p" * 60, "v2")) <= 63


def test_next_steps_of_a_failed_rehearsal_name_the_rehearsal_not_production() -> None:
    result = mp.SiteResult(site="a.local", status=mp.FAILED, result=mp.PATCH_FAILED,
                           failed_patch="myapp.patches.v1_0.fix_invoices", exception="OperationalError: x",
                           exception_type="pymysql.err.OperationalError")  # fmt: skip
    site = RehearsedSite("a.local")
    fill_site(
        site, result, StepContext(again="imagekit rehearse v2 lab", go_back="production was not touched")
    )
    assert (site.status, site.failure, site.failed_patch) == (
        "failed",
        "patch",
        "myapp.patches.v1_0.fix_invoices",
    )
    assert site.next_steps[-1] == "production was not touched"
    commands = [c for s in site.next_steps for c in step_commands(s)]
    assert not [c for c in commands if "rollback" in c or "deploy" in c]
    assert site.migrate is not None and site.migrate["failed_patch"] == site.failed_patch


def test_rehearsal_backups_are_pruned_like_deploy_backups(tmp_path: Path) -> None:
    """All but the newest KEEP rehearsals' backup folders go, except a rehearsal that did not pass
    and the newest of each version rehearsed; the rehearsal running now always stays."""
    ws, root = tmp_path / "ws", tmp_path / "state" / "projects" / "erp"
    ws.mkdir()
    runs = [("08", "succeeded", "v2"), ("09", "failed", "v2"), ("10", "succeeded", "v2"),
            ("11", "succeeded", "v3"), ("12", "interrupted", "v3"), ("13", "succeeded", "v3"),
            ("14", "succeeded", "v3")]  # fmt: skip
    for hour, result, version in runs:
        record(ws, f"2026-12-07T{hour}:00:00+00:00", result, version=version)
        (root / "rehearsals" / f"20261207T{hour}0000Z" / "a.local").mkdir(parents=True)
    (root / "rehearsals" / "20261207T150000Z").mkdir()  # the rehearsal running now (not recorded yet)
    notes = rehearsal_backups.prune(
        LocalRunner(), Workspace.at(ws), str(root), "erp", "20261207T150000Z", keep=2
    )
    left = sorted(p.name for p in (root / "rehearsals").iterdir())
    assert left == ["20261207T090000Z", "20261207T100000Z", "20261207T120000Z", "20261207T140000Z",
                    "20261207T150000Z"]  # fmt: skip
    assert notes == [
        "removed the backups of older rehearsals: 20261207T080000Z (of v2), 20261207T110000Z (of v3), "
        "20261207T130000Z (of v3)",
        "kept beyond the newest 2 rehearsals: 20261207T090000Z (a failed rehearsal's), "
        "20261207T100000Z (the newest copy of v2's data), 20261207T120000Z (a failed rehearsal's)",
    ]
