"""`imagekit check` through the CLI: every error path ends in one sentence and exit code 1."""

import json

import pytest

from tests.support.cli import invoke
from tests.support.workspace import CANARY, make_workspace


def check(ws, *extra):
    return invoke("check", "-w", str(ws), "--offline", *extra)


def assert_no_canary(result):
    assert CANARY not in result.stdout and CANARY not in result.stderr


def test_clean_workspace_exits_0(tmp_path):
    result = check(make_workspace(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert "0 error(s)" in result.stdout
    assert "de_macrs" in result.stdout and "release-tag" in result.stdout
    assert_no_canary(result)


def test_json_report_has_no_secret(tmp_path):
    result = check(make_workspace(tmp_path), "--json")
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["errors"] == 0
    assert "DE_MACRS_PAT" not in data["env"]
    assert [a["name"] for a in data["apps"]] == ["erpnext", "de_macrs"]
    assert data["apps"][1]["url"] == "https://github.com/desiredeffect/de_macrs.git"
    assert_no_canary(result)


@pytest.mark.parametrize(
    ("env", "apps", "expected"),
    [
        ({"IMAGE_NAME": None}, None, ".env has no IMAGE_NAME (de-example.env line"),
        ({"DE_MACRS_PAT": "ghp_your_token_here"}, None, "still the example's placeholder"),
        ({"DE_MACRS_PAT": ""}, None, ".env DE_MACRS_PAT is empty"),
        ({"DE_SITE_VERSION": "1.1.5"}, None, "does not match"),
        (
            {"FRAPPE_PATH": "https://${DE_MACRS_PAT}@github.com/frappe/frappe"},
            None,
            "FRAPPE_PATH contains a credential",
        ),
        ({"IMAGE_NAME": "Bad Name"}, None, "is not a valid image name"),
        (
            None,
            '[{"url": "https://github.com/frappe/erpnext", "branch": "v15.1.0",}]',
            # column 67 (the brace) on Python 3.11, 66 (the comma) on 3.13 (Debian 13)
            "apps.json is not valid JSON at line 1, column 6",
        ),
        (
            None,
            [{"url": "https://github.com/frappe/erpnext", "version": "v15.1.0"}],
            '"version" (did you mean "branch"?)',
        ),
        (None, [{"url": "git@github.com:org/app.git", "branch": "v1.0.0"}], "is an SSH URL"),
        (
            None,
            [{"url": "https://github.com/frappe/hrms", "branch": "v15.13.1"}],
            "lists hrms but not erpnext",
        ),
        (
            None,
            [{"url": "https://github.com/frappe/frappe", "branch": "version-15"}],
            "frappe comes from FRAPPE_PATH",
        ),
        (
            None,
            [{"url": "https://${NOPE}@github.com/o/a", "branch": "v1.0.0"}],
            "uses ${NOPE} but .env has no NOPE",
        ),
        (
            None,
            [{"url": f"https://{CANARY}@github.com/o/a", "branch": "v1.0.0"}],
            "has a credential written into it",
        ),
    ],
)
def test_error_paths(tmp_path, env, apps, expected):
    result = check(make_workspace(tmp_path, env=env, apps=apps))
    assert result.exit_code == 1
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert_no_canary(result)


def test_warnings_do_not_fail(tmp_path):
    ws = make_workspace(tmp_path, env={"NODE_VERSION": "24.12.0", "EXTRA_KEY": "x"})
    result = check(ws)
    assert result.exit_code == 0
    assert "schema drift" in result.stderr
    assert "Frappe 15 (version-15) is built with Python 3.11.6 and Node 20.19.2" in result.stderr


def test_missing_files_are_config_errors(tmp_path):
    ws = make_workspace(tmp_path)
    (ws / ".env").unlink()
    result = check(ws)
    assert result.exit_code == 1
    assert "copy de-example.env to .env" in result.stderr
    ws = make_workspace(tmp_path / "b")
    (ws / "apps.json").unlink()
    assert "copy apps.example.json to apps.json" in check(ws).stderr


def test_malformed_env_line_is_named(tmp_path):
    ws = make_workspace(tmp_path)
    with (ws / ".env").open("a") as handle:
        handle.write("this is not an assignment\n")
    result = check(ws)
    assert result.exit_code == 1
    assert ".env line 8 is not KEY=VALUE" in result.stderr


def test_version_already_built_suggests_next(tmp_path):
    ws = make_workspace(tmp_path, env={"DE_SITE_VERSION": "v1.1.5"})
    (ws / "builds").mkdir()
    (ws / "builds" / "v1.1.5.json").write_text(
        json.dumps({"schema_version": 1, "version": "v1.1.5", "status": "succeeded"})
    )
    result = check(ws)
    assert result.exit_code == 1
    assert "DE_SITE_VERSION=v1.1.5 was already built" in result.stderr
    assert "DE_SITE_VERSION=v1.1.6" in result.stderr


def test_failed_build_does_not_reserve_version(tmp_path):
    ws = make_workspace(tmp_path, env={"DE_SITE_VERSION": "v1.1.5"})
    (ws / "builds").mkdir()
    (ws / "builds" / "v1.1.5.failed-20261121T000000Z.json").write_text(
        json.dumps({"schema_version": 1, "version": "v1.1.5", "status": "failed"})
    )
    assert check(ws).exit_code == 0
