# ruff: noqa: E501 - transcripts keep their real line lengths
"""The migrate parser against real Frappe v15 transcripts (shared/reference/frappe-v15).

Each transcript's sidecar JSON holds the truth read by hand; the parser must find it with the
exit code (as deploy knows it) and without it (a transcript pasted into migrate-report).
"""

from __future__ import annotations

import pytest

from frappe_imagekit.deploy.migrate_parse import parse_migrate_output
from tests.support.benchimage.transcripts import load, migrate_transcripts, reference_dir

NAMES = migrate_transcripts()
# the sidecars name the service that is down; migrate-report's class for both is services-down
TRUTH_RESULT = {"db-down": "services-down", "redis-down": "services-down"}


def test_the_real_transcripts_are_there():
    assert reference_dir() is not None, "shared/reference/frappe-v15 is missing beside the repository"
    assert len(NAMES) >= 16, NAMES


def _failed_or_only(results):
    failed = [r for r in results if r.status == "failed"]
    return (failed or results)[-1]


@pytest.mark.parametrize("exit_known", [True, False], ids=["exit-code", "no-exit-code"])
@pytest.mark.parametrize("name", NAMES)
def test_transcript_matches_its_truth(name: str, exit_known: bool):
    transcript = load(name)
    truth = transcript.truth
    results = parse_migrate_output(transcript.text, exit_code=transcript.exit_code if exit_known else None)
    result = _failed_or_only(results)
    assert result.result == TRUTH_RESULT.get(truth["result"], truth["result"])
    assert result.site == truth["site"]
    assert result.exception == truth["exception"]
    assert (result.status == "ok") == (transcript.exit_code == 0)
    if truth["result"] == "patch-failed":
        assert result.failed_patch == truth["failed_patch"]
    elif truth["result"] == "import-failed":
        # no Executing line: the module is named, the exact line cannot be told from the output
        assert result.failed_patch is None
        assert truth["failed_patch"].startswith(result.failed_module + ".")
        assert "cannot be told from the output" in result.notes[0]
    else:
        assert result.failed_patch is None
    if truth.get("section"):
        assert result.section == truth["section"]
    if truth.get("doctype"):
        assert result.doctype == truth["doctype"]
    if truth["result"] not in ("ok", "db-down", "redis-down"):  # those print no traceback
        head, _, message = result.exception.partition(": ")
        assert (result.exception_type, result.exception_message) == (head, message)
        assert result.traceback[-len(result.exception.split("\n")) :] == result.exception.split("\n")


def test_multiline_message_keeps_type_and_every_line():
    (result,) = parse_migrate_output(load("25-patch-multiline-exception-message").text, exit_code=1)
    assert result.exception_type == "frappe.exceptions.ValidationError"
    assert result.exception_message == (
        "Cannot recompute depreciation:\nLaptop: no placed-in-service date\nForklift: no placed-in-service date"
    )


def test_excerpt_shows_the_app_frame_with_its_code_not_frappes_relay_frames():
    (result,) = parse_migrate_output(load("04-patch-validationerror-post").text, exit_code=1)
    assert result.traceback[:2] == [
        '  File "/home/frappe/frappe-bench/apps/de_macrs/de_macrs/patches/lab/validate_costs.py", '
        "line 8, in execute",
        '    frappe.throw(f"MACRS Asset {asset.asset_name} costs {asset.cost}, below the capitalisation limit")',
    ]
    assert not any("_raise_exception" in line or "msgprint" in line for line in result.traceback)
    assert result.failed_file.endswith("/apps/de_macrs/de_macrs/patches/lab/validate_costs.py")


def test_doctype_excerpt_has_the_failed_alter_table():
    (result,) = parse_migrate_output(load("09-doctype-unique-duplicates").text, exit_code=1)
    assert (
        "Failed to alter schema using query: ALTER TABLE `tabMACRS Asset` MODIFY `cost` decimal(21,9) "
        "not null default 0, ADD UNIQUE INDEX IF NOT EXISTS recovery_period (`recovery_period`)"
    ) in result.traceback


def test_commands_import_traceback_in_a_successful_run_is_a_warning():
    (result,) = parse_migrate_output(load("23-app-commands-import-traceback-migrate-ok").text, exit_code=0)
    assert (result.status, result.result, result.exception) == ("ok", "ok", None)
    (warning,) = result.warnings
    assert "No module named 'macrs_tables'" in warning
    assert "apps/de_macrs/de_macrs/commands.py" in warning


def test_services_down_names_the_service():
    (result,) = parse_migrate_output(load("17-migrate-db-down").text, exit_code=1)
    assert (result.result, result.services, result.failure) == ("services-down", ["mariadb"], "services")


def test_lock_names_the_lock_file():
    (result,) = parse_migrate_output(load("19-migrate-lock-held").text, exit_code=1)
    assert result.lock_path == "/home/frappe/frappe-bench/sites/s1.lab/locks/bench_migrate.lock"


def test_site_all_stops_at_the_first_failing_site():
    results = parse_migrate_output(load("34-migrate-site-all-first-fails").text, exit_code=1)
    assert [(r.site, r.result) for r in results] == [("s1.lab", "patch-failed")]


def test_upgrade_lists_the_patches_that_ran():
    (result,) = parse_migrate_output(load("40-upgrade-v15.17.3-to-v15.55.1").text, exit_code=0)
    assert len(result.patches_run) == 5
    assert result.patches_run[0] == (
        "frappe.integrations.doctype.oauth_client.patches.set_default_allowed_role_in_oauth_client"
    )
