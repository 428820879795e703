# ruff: noqa: E501 - transcripts keep their real line lengths
"""Failure classes of frappe v15's migrate that the shared transcripts do not show.

Each transcript is built from what frappe's source prints for that failure (frappe/migrate.py,
modules/patch_handler.py, model/sync.py, modules/import_file.py, commands/site.py) in the
shape of the real transcripts (frames, code lines, ``Queued rebuilding`` before the traceback).
"""

from __future__ import annotations

import pytest

from frappe_imagekit.deploy.migrate_parse import parse_migrate_output

B = "/home/frappe/frappe-bench/apps"
HEAD = f"""Traceback (most recent call last):
  File "{B}/frappe/frappe/commands/site.py", line 695, in migrate
    ).run(site=site)
      ^^^^^^^^^^^^^^
"""
SCHEMA = f"""  File "{B}/frappe/frappe/migrate.py", line 186, in run
    self.run_schema_updates()
  File "{B}/frappe/frappe/migrate.py", line 44, in wrapper
    ret = method(*args, **kwargs)
          ^^^^^^^^^^^^^^^^^^^^^^^
"""
START = "Migrating s1.lab\nUpdating DocTypes for frappe        : [========================================] 100%\n"
QUEUED = "Queued rebuilding of search index for s1.lab\n\n"

BAD_JSON = (
    START
    + f"bad json: {B}/de_macrs/de_macrs/macrs/doctype/macrs_asset/macrs_asset.json\n"
    + QUEUED
    + HEAD
    + SCHEMA
    + f"""  File "{B}/frappe/frappe/migrate.py", line 120, in run_schema_updates
    frappe.model.sync.sync_all()
  File "{B}/frappe/frappe/model/sync.py", line 43, in sync_all
    sync_for(app, force, reset_permissions=reset_permissions)
  File "{B}/frappe/frappe/model/sync.py", line 111, in sync_for
    import_file_by_path(
  File "{B}/frappe/frappe/modules/import_file.py", line 120, in import_file_by_path
    docs = read_doc_from_file(path)
           ^^^^^^^^^^^^^^^^^^^^^^^^
  File "{B}/frappe/frappe/modules/import_file.py", line 201, in read_doc_from_file
    doc = orjson.loads(f.read())
          ^^^^^^^^^^^^^^^^^^^^^^
orjson.JSONDecodeError: unexpected character: line 12 column 5 (char 311)
"""
)

PATCHES_TXT_DUPLICATE = (
    START
    + QUEUED
    + HEAD
    + SCHEMA
    + f"""  File "{B}/frappe/frappe/migrate.py", line 121, in run_schema_updates
    frappe.modules.patch_handler.run_all(
  File "{B}/frappe/frappe/modules/patch_handler.py", line 70, in run_all
    patches = get_all_patches(patch_type=patch_type)
  File "{B}/frappe/frappe/modules/patch_handler.py", line 93, in get_all_patches
    patches.extend(get_patches_from_app(app, patch_type=patch_type))
  File "{B}/frappe/frappe/modules/patch_handler.py", line 106, in get_patches_from_app
    return parse_as_configfile(patches_file, patch_type)
  File "{B}/frappe/frappe/modules/patch_handler.py", line 123, in parse_as_configfile
    parser.read(patches_file)
  File "/usr/lib/python3.11/configparser.py", line 713, in read
    self._read(fp, filename)
configparser.DuplicateOptionError: While reading from '{B}/de_macrs/de_macrs/patches.txt' [line  9]: option 'de_macrs.patches.lab.rate_lookup' in section 'post_model_sync' already exists
"""
)

PATCH_IMPORT = f"""  File "{B}/frappe/frappe/migrate.py", line 121, in run_schema_updates
    frappe.modules.patch_handler.run_all(
  File "{B}/frappe/frappe/modules/patch_handler.py", line 76, in run_all
    run_patch(patch)
  File "{B}/frappe/frappe/modules/patch_handler.py", line 152, in run_single
    return execute_patch(patchmodule, method, methodargs)
  File "{B}/frappe/frappe/modules/patch_handler.py", line 168, in execute_patch
    _patch = frappe.get_attr(patch)
  File "{B}/frappe/frappe/__init__.py", line 1434, in get_module
    return importlib.import_module(modulename)
  File "<frozen importlib._bootstrap_external>", line 1074, in get_code
  File "<frozen importlib._bootstrap_external>", line 1004, in source_to_code
  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed
"""

SYNTAX_ERROR = (
    START
    + QUEUED
    + HEAD
    + SCHEMA
    + PATCH_IMPORT
    + f"""  File "{B}/de_macrs/de_macrs/patches/v1_3/fix_asset_names.py", line 4
    for asset in frappe.get_all("MACRS Asset"
                               ^
SyntaxError: '(' was never closed
"""
)

HOOK = (
    START
    + QUEUED
    + HEAD
    + f"""  File "{B}/frappe/frappe/migrate.py", line 185, in run
    self.pre_schema_updates()
  File "{B}/frappe/frappe/migrate.py", line 44, in wrapper
    ret = method(*args, **kwargs)
  File "{B}/frappe/frappe/migrate.py", line 109, in pre_schema_updates
    frappe.get_attr(fn)()
  File "{B}/de_macrs/de_macrs/setup/migrate.py", line 5, in before_migrate
    raise RuntimeError("archive the old rates first")
RuntimeError: archive the old rates first
"""
)

AFTER_HOOK = HOOK.replace(
    "185, in run\n    self.pre_schema_updates()", "187, in run\n    self.post_schema_updates()"
).replace("109, in pre_schema_updates", "156, in post_schema_updates")

FIXTURES = (
    START
    + QUEUED
    + HEAD
    + f"""  File "{B}/frappe/frappe/migrate.py", line 187, in run
    self.post_schema_updates()
  File "{B}/frappe/frappe/migrate.py", line 142, in post_schema_updates
    sync_fixtures()
  File "{B}/frappe/frappe/utils/fixtures.py", line 20, in sync_fixtures
    import_doc(frappe.get_app_path(app, "fixtures", fname))
frappe.exceptions.LinkValidationError: Could not find Role: MACRS Manager
"""
)

REDIS_DOWN = """Migrating s1.lab
Service redis_cache is not running.

Cannot run bench migrate without the services running.
If you are running bench in development mode, make sure that bench is running:

$ bench start

Otherwise, check the server logs and ensure that all the required services are running.


"""

CONNECTION_LOST = (
    START
    + "Executing de_macrs.patches.lab.big_update in s1.lab (_5116005a7a161418)\n"
    + QUEUED
    + HEAD
    + f"""  File "{B}/de_macrs/de_macrs/patches/lab/big_update.py", line 6, in execute
    frappe.db.sql("update `tabMACRS Asset` set cost = cost * 1")
pymysql.err.OperationalError: (2013, 'Lost connection to MySQL server during query')
"""
)

SITE_MISSING = """Migrating nope.lab

Traceback (most recent call last):
  File "/home/frappe/frappe-bench/apps/frappe/frappe/commands/site.py", line 690, in migrate
    frappe.init(site=site)
  File "/home/frappe/frappe-bench/apps/frappe/frappe/__init__.py", line 330, in get_site_config
    raise IncorrectSitePath(f"{local.site} does not exist")
frappe.exceptions.IncorrectSitePath: 404 Not Found: nope.lab does not exist
"""

OTHER_SITE_EXECUTING = (
    START
    + "Executing de_macrs.patches.lab.copy_rates in s1.lab (_5116005a7a161418)\n"
    + "Executing rate copy in s2.lab (_other)\n"
    + QUEUED
    + HEAD
    + f"""  File "{B}/de_macrs/de_macrs/patches/lab/copy_rates.py", line 9, in execute
    raise KeyError(site)
KeyError: 's2.lab'
"""
)

SKIP_FAILING = (
    START
    + "Executing de_macrs.patches.lab.rate_lookup in s1.lab (_5116005a7a161418)\n"
    + f"""Traceback (most recent call last):
  File "{B}/frappe/frappe/modules/patch_handler.py", line 62, in run_patch
    if not run_single(patchmodule=patch):
  File "{B}/de_macrs/de_macrs/patches/lab/rate_lookup.py", line 8, in execute
    rate = FIRST_YEAR_RATE[asset.recovery_period]
KeyError: '5'

Failed to execute patch
Executing de_macrs.patches.lab.validate_costs in s1.lab (_5116005a7a161418)
Success: Done in 0.010s
Updating Dashboard for de_macrs
Queued rebuilding of search index for s1.lab
"""
)


CASES = [
    # name, text, exit code, (result, failure kind), extra attributes
    ("doctype JSON that does not parse", BAD_JSON, 1, ("doctype-failed", "doctype"),
     {"doctype_file": f"{B}/de_macrs/de_macrs/macrs/doctype/macrs_asset/macrs_asset.json",
      "exception_type": "orjson.JSONDecodeError"}),
    ("patches.txt with a duplicate line", PATCHES_TXT_DUPLICATE, 1, ("patches-txt-invalid", "patches-txt"),
     {"exception_type": "configparser.DuplicateOptionError", "failed_patch": None}),
    ("syntax error in a patch module", SYNTAX_ERROR, 1, ("import-failed", "import"),
     {"failed_module": "de_macrs.patches.v1_3.fix_asset_names",
      "failed_file": f"{B}/de_macrs/de_macrs/patches/v1_3/fix_asset_names.py",
      "exception": "SyntaxError: '(' was never closed", "section": "post_model_sync"}),
    ("before_migrate hook", HOOK, 1, ("hook-failed", "hook"), {"step": "before_migrate hook"}),
    ("after_migrate hook", AFTER_HOOK, 1, ("hook-failed", "hook"), {"step": "after_migrate hook"}),
    ("fixtures sync", FIXTURES, 1, ("sync-failed", "sync"), {"step": "sync_fixtures"}),
    ("redis down", REDIS_DOWN, 1, ("services-down", "services"),
     {"services": ["redis_cache"], "exception": "Service redis_cache is not running."}),
    ("database lost during a patch", CONNECTION_LOST, 1, ("services-down", "services"),
     {"services": ["mariadb"], "failed_patch": None}),
    ("site does not exist", SITE_MISSING, 1, ("site-not-found", "site"),
     {"site": "nope.lab", "exception": "frappe.exceptions.IncorrectSitePath: 404 Not Found: nope.lab does not exist"}),
    ("a patch prints Executing for another site", OTHER_SITE_EXECUTING, 1, ("patch-failed", "patch"),
     {"failed_patch": "de_macrs.patches.lab.copy_rates"}),
]  # fmt: skip


@pytest.mark.parametrize("exit_known", [True, False], ids=["exit-code", "no-exit-code"])
@pytest.mark.parametrize(("text", "code", "kind", "extra"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_failure_class(text: str, code: int, kind: tuple[str, str], extra: dict, exit_known: bool):
    (result,) = parse_migrate_output(text, exit_code=code if exit_known else None)
    assert (result.status, result.result, result.failure) == ("failed", *kind)
    for name, value in extra.items():
        assert getattr(result, name) == value, name


def test_syntax_error_excerpt_shows_the_broken_line():
    (result,) = parse_migrate_output(SYNTAX_ERROR, exit_code=1)
    assert result.traceback == [
        f'  File "{B}/de_macrs/de_macrs/patches/v1_3/fix_asset_names.py", line 4',
        '    for asset in frappe.get_all("MACRS Asset"',
        "SyntaxError: '(' was never closed",
    ]


def test_skip_failing_run_that_succeeded_has_the_skipped_patch_as_warning():
    for code in (0, None):
        (result,) = parse_migrate_output(SKIP_FAILING, exit_code=code)
        assert (result.status, result.result) == ("ok", "ok")
        assert result.patches_run == ["de_macrs.patches.lab.validate_costs"]
        assert any("KeyError: '5'" in w and "rate_lookup.py" in w for w in result.warnings)
        assert any("skipped" in w for w in result.warnings)


def test_given_site_decides_which_executing_lines_count():
    text = "Executing a.patch in s2.lab (_y)\nExecuting b.patch in s1.lab (_x)\nKeyError: 'x'\n"
    (result,) = parse_migrate_output(text, sites=["s1.lab"], exit_code=1)
    assert result.site == "s1.lab"
    (result,) = parse_migrate_output(
        text.replace("KeyError: 'x'\n", "") + HEAD + "KeyError: 'x'\n", sites=["s1.lab"], exit_code=1
    )
    assert (result.result, result.failed_patch) == ("patch-failed", "b.patch")
