# ruff: noqa: E501 - transcripts keep their real line lengths
"""The migrate output parser over realistic transcripts (shapes from FACTS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from frappe_imagekit.deploy.migrate_parse import clean_lines, parse_migrate_output, progress_detail

HAPPY = """Migrating a.local
Executing erpnext.patches.v15_0.set_default_currency in a.local (_1a2b3c)
Success: Done in 0.027s
Executing execute:frappe.delete_doc('Page', 'x') in a.local (_1a2b3c)
Success: Done in 0.004s
Updating DocTypes for frappe        : [                    ] 0%\r\
Updating DocTypes for frappe        : [==========          ] 50%\r\
Updating DocTypes for frappe        : [====================] 100%
Updating DocTypes for erpnext       : [====================] 100%
Queued rebuilding of search index for a.local
"""

PATCH_FAILED_V15 = """Migrating a.local
Executing erpnext.patches.v15_0.set_default_currency in a.local (_1a2b3c)
Success: Done in 0.027s
Executing myapp.patches.v1_0.fix_invoices #2024-05-01 in a.local (_1a2b3c)
\tRecompute totals on every Sales Invoice.
updating 1200 invoices
Queued rebuilding of search index for a.local

Traceback (most recent call last):
  File "/home/frappe/frappe-bench/apps/frappe/frappe/commands/site.py", line 592, in migrate
    SiteMigration(
  File "/home/frappe/frappe-bench/apps/frappe/frappe/modules/patch_handler.py", line 154, in run_single
    return execute_patch(patchmodule, method, methodargs)
  File "/home/frappe/frappe-bench/apps/myapp/myapp/patches/v1_0/fix_invoices.py", line 12, in execute
    frappe.db.sql("update `tabSales Invoice` set total_x = 1")
pymysql.err.OperationalError: (1054, "Unknown column 'total_x' in 'field list'")
"""

PATCH_FAILED_WITH_VARIABLES = """Migrating b.local
Executing myapp.patches.v1_0.rename_field in b.local (_ffee)
Queued rebuilding of search index for b.local

Traceback with variables (most recent call last):
  File "apps/frappe/frappe/commands/site.py", line 564, in migrate
    SiteMigration(skip_failing=skip_failing, skip_search_index=skip_search_index).run(site=site)
      context = {'sites': ['b.local'], 'force': False}
      skip_failing = False
  File "apps/myapp/myapp/patches/v1_0/rename_field.py", line 5, in execute
    rename_field("Customer", "old", "new")
      doc = None
frappe.exceptions.ValidationError: Field old does not exist on Customer
"""

CHAINED = """Migrating a.local
Executing myapp.patches.v2_0.chain in a.local (_aa)
Queued rebuilding of search index for a.local

Traceback (most recent call last):
  File "apps/myapp/myapp/patches/v2_0/chain.py", line 4, in execute
    int("x")
ValueError: invalid literal for int() with base 10: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "apps/myapp/myapp/patches/v2_0/chain.py", line 6, in execute
    raise frappe.ValidationError("bad data in tabItem")
frappe.exceptions.ValidationError: bad data in tabItem
"""

IMPORT_FAILED = """Migrating a.local
Executing erpnext.patches.v15_0.ok_patch in a.local (_aa)
Success: Done in 0.010s
Queued rebuilding of search index for a.local

Traceback (most recent call last):
  File "apps/frappe/frappe/modules/patch_handler.py", line 148, in run_single
    return execute_patch(patchmodule, method, methodargs)
  File "apps/frappe/frappe/modules/patch_handler.py", line 180, in execute_patch
    _patch = frappe.get_attr(patchmodule.split(maxsplit=1)[0] + ".execute")
  File "/usr/lib/python3.11/importlib/__init__.py", line 126, in import_module
    return _bootstrap._gcd_import(name[level:], package, level)
ModuleNotFoundError: No module named 'myapp.patches.v1_0.gone'
"""

DOCTYPE_FAILED = """Migrating a.local
Executing erpnext.patches.v15_0.ok_patch in a.local (_aa)
Success: Done in 0.010s
Updating DocTypes for frappe        : [====================] 100%
Updating DocTypes for myapp         : [=====               ] 25%
There was an issue while migrating the DocType: Shipment Tracker
Queued rebuilding of search index for a.local

Traceback (most recent call last):
  File "apps/frappe/frappe/model/sync.py", line 44, in sync_for
    import_file_by_path(path, force=force)
pymysql.err.OperationalError: (1060, "Duplicate column name 'tracking_no'")
"""

LOCK_HELD = """Migrating a.local

Traceback (most recent call last):
  File "apps/frappe/frappe/utils/synchronization.py", line 48, in filelock
    raise LockTimeoutError(f"Failed to aquire lock: {lock_name}. Lock may be held by another process.")
frappe.exceptions.LockTimeoutError: Failed to aquire lock: bench_migrate. Lock may be held by another process.
"""

TWO_SITES_SECOND_FAILS = (
    HAPPY
    + """Migrating b.local
Executing myapp.patches.v1_0.only_b in b.local (_bb)
Queued rebuilding of search index for b.local

Traceback (most recent call last):
  File "apps/myapp/myapp/patches/v1_0/only_b.py", line 2, in execute
    1 / 0
ZeroDivisionError: division by zero
"""
)

PATCH_WITH_IN = """Migrating a.local
Executing execute:frappe.db.sql("delete from tabX where name in ('a')") in a.local (_aa)
Queued rebuilding of search index for a.local

Traceback (most recent call last):
  File "<string>", line 1, in <module>
pymysql.err.ProgrammingError: (1146, "Table '_aa.tabX' doesn't exist")
"""


CASES = [
    # name, text, exit_code, expected per site: (site, status, failure, failed_patch, exception)
    ("happy", HAPPY, 0, [("a.local", "ok", None, None, None)]),
    (
        "patch v15 header",
        PATCH_FAILED_V15,
        1,
        [
            (
                "a.local",
                "failed",
                "patch",
                "myapp.patches.v1_0.fix_invoices #2024-05-01",
                "pymysql.err.OperationalError: (1054, \"Unknown column 'total_x' in 'field list'\")",
            )
        ],
    ),
    (
        "patch with-variables header",
        PATCH_FAILED_WITH_VARIABLES,
        1,
        [
            (
                "b.local",
                "failed",
                "patch",
                "myapp.patches.v1_0.rename_field",
                "frappe.exceptions.ValidationError: Field old does not exist on Customer",
            )
        ],
    ),
    (
        "chained exceptions keep the last",
        CHAINED,
        1,
        [
            (
                "a.local",
                "failed",
                "patch",
                "myapp.patches.v2_0.chain",
                "frappe.exceptions.ValidationError: bad data in tabItem",
            )
        ],
    ),
    (
        "import of a patch module",
        IMPORT_FAILED,
        1,
        [
            (
                "a.local",
                "failed",
                "import",
                None,
                "ModuleNotFoundError: No module named 'myapp.patches.v1_0.gone'",
            )
        ],
    ),
    (
        "doctype sync",
        DOCTYPE_FAILED,
        1,
        [
            (
                "a.local",
                "failed",
                "doctype",
                None,
                "pymysql.err.OperationalError: (1060, \"Duplicate column name 'tracking_no'\")",
            )
        ],
    ),
    (
        "lock held",
        LOCK_HELD,
        1,
        [
            (
                "a.local",
                "failed",
                "lock",
                None,
                "frappe.exceptions.LockTimeoutError: Failed to aquire lock: bench_migrate. "
                "Lock may be held by another process.",
            )
        ],
    ),
    (
        "two sites, second fails",
        TWO_SITES_SECOND_FAILS,
        1,
        [
            ("a.local", "ok", None, None, None),
            (
                "b.local",
                "failed",
                "patch",
                "myapp.patches.v1_0.only_b",
                "ZeroDivisionError: division by zero",
            ),
        ],
    ),
    (
        "patch line containing ' in '",
        PATCH_WITH_IN,
        1,
        [
            (
                "a.local",
                "failed",
                "patch",
                "execute:frappe.db.sql(\"delete from tabX where name in ('a')\")",
                "pymysql.err.ProgrammingError: (1146, \"Table '_aa.tabX' doesn't exist\")",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("text", "exit_code", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_parse_table(text, exit_code, expected):
    results = parse_migrate_output(text, exit_code=exit_code)
    got = [(r.site, r.status, r.failure, r.failed_patch, r.exception) for r in results]
    assert got == expected


def test_crlf_progress_redraws_are_reduced_to_last_state():
    lines = clean_lines(
        "Updating DocTypes for frappe : [    ] 0%\rUpdating DocTypes for frappe : [====] 100%\n"
    )
    assert lines[0] == "Updating DocTypes for frappe : [====] 100%"


def test_ansi_colours_are_stripped():
    text = "Migrating a.local\n\x1b[92mExecuting p.q in a.local (_x)\x1b[0m\nSuccess: Done in 0.1s\n"
    (result,) = parse_migrate_output(text)
    assert result.patches_run == ["p.q"]
    assert result.status == "ok"


def test_patch_docstring_and_output_are_kept_for_the_report():
    (result,) = parse_migrate_output(PATCH_FAILED_V15, exit_code=1)
    assert result.patch_output == [
        "\tRecompute totals on every Sales Invoice.",
        "updating 1200 invoices",
    ]
    assert result.patches_run == ["erpnext.patches.v15_0.set_default_currency"]


def test_import_failure_names_the_module():
    (result,) = parse_migrate_output(IMPORT_FAILED, exit_code=1)
    assert result.failed_module == "myapp.patches.v1_0.gone"


def test_doctype_failure_names_the_doctype():
    (result,) = parse_migrate_output(DOCTYPE_FAILED, exit_code=1)
    assert result.doctype == "Shipment Tracker"


def test_traceback_excerpt_drops_variable_dumps_and_ends_with_exception():
    (result,) = parse_migrate_output(PATCH_FAILED_WITH_VARIABLES, exit_code=1)
    assert result.traceback[-1] == result.exception
    assert not any("skip_failing = False" in line for line in result.traceback)
    assert any(line.startswith('  File "apps/myapp') for line in result.traceback)


def test_stderr_before_stdout_interleaving_still_finds_patch():
    # Without PYTHONUNBUFFERED the traceback (stderr) can come before the Executing line.
    text = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in execute\n'
        "KeyError: 'a'\nMigrating a.local\nExecuting app.patches.p in a.local (_x)\n"
    )
    (result,) = parse_migrate_output(text, exit_code=1)
    assert result.status == "failed"
    assert result.failed_patch == "app.patches.p"


def test_nonzero_exit_without_traceback_is_a_failure():
    (result,) = parse_migrate_output("Migrating a.local\nkilled\n", exit_code=137)
    assert (result.status, result.failure) == ("failed", "error")


def test_no_migrating_line_uses_the_given_site():
    (result,) = parse_migrate_output("Failed to aquire lock: bench_migrate\n", sites=["s1"], exit_code=1)
    assert (result.site, result.failure) == ("s1", "lock")


def test_empty_successful_output():
    (result,) = parse_migrate_output("", sites=["s1"], exit_code=0)
    assert (result.site, result.status) == ("s1", "ok")


def test_progress_detail_names_the_patch_and_the_doctypes_being_updated() -> None:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "frappe-v15-lab"
    text = (fixture / "67-migrate-v1.2.0-patch-keyerror.txt").read_bytes().decode()  # \r kept
    details = [progress_detail(line) for line in text.split("\n")]  # the runner's lines end at \n
    assert [d for d in details if d] == [
        "Updating DocTypes for frappe",
        "Updating DocTypes for lab_app",
        "patch lab_app.patches.v1_2.recompute_cost",
    ]
    assert progress_detail("Migrating sb.lab") is None
