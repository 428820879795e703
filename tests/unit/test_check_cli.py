"""`imagekit check` through the CLI: every error path ends in one sentence and exit code 1."""

import json

import pytest

from tests.support.cli import invoke
from tests.support.workspace import CANARY, DEFAULT_ENV, REPO_ROOT, make_workspace

REPO_EXAMPLE = REPO_ROOT / "de-example.env"


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
    assert f".env line {len(DEFAULT_ENV) + 1} is not KEY=VALUE" in result.stderr


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


# -- issue 8: leaks and crashes through bad files ------------------------------------------------


def _assert_nothing_leaked(result):
    assert_no_canary(result)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("extra", [(), ("--json",)])
def test_unclosed_quote_on_the_secret_line_names_line_and_key_only(tmp_path, extra):
    ws = make_workspace(tmp_path, env={"DE_MACRS_PAT": '"' + CANARY})
    result = check(ws, *extra)
    assert result.exit_code == 1
    text = result.stdout + result.stderr
    assert ".env line 7 (DE_MACRS_PAT) is not KEY=VALUE" in text
    _assert_nothing_leaked(result)
    assert CANARY[4:16] not in text


def test_unclosed_quote_in_build_dry_run_names_line_and_key_only(tmp_path):
    missing = (tmp_path / "missing.git").as_uri()  # file:// only: no network
    ws = make_workspace(
        tmp_path / "ws",
        env={"DE_MACRS_PAT": '"' + CANARY, "FRAPPE_PATH": missing},
        apps=[{"url": missing, "branch": "v1.0.0"}],
    )
    result = invoke("build", "-w", str(ws), "--dry-run")
    assert result.exit_code == 1
    assert "first: .env line 7 (DE_MACRS_PAT) is not KEY=VALUE" in result.stderr
    _assert_nothing_leaked(result)


def test_env_symlinked_to_a_private_key_is_refused_without_echoing_it(tmp_path):
    key = tmp_path / "ssh" / "id_ed25519"
    key.parent.mkdir()
    key.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    ws = make_workspace(tmp_path / "ws")
    (ws / ".env").unlink()
    (ws / ".env").symlink_to(key)
    for extra in ((), ("--json",)):
        result = check(ws, *extra)
        assert result.exit_code == 1
        assert "is a symbolic link to a file outside the workspace" in result.stderr
        assert "b3BlbnNzaC1" not in result.stdout + result.stderr and "PRIVATE" not in result.stderr
        _assert_nothing_leaked(result)


def test_a_private_key_pasted_as_env_is_never_echoed(tmp_path):
    ws = make_workspace(tmp_path)
    lines = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n"
    (ws / ".env").write_text((ws / ".env").read_text() + lines)
    for extra in ((), ("--json",)):
        result = check(ws, *extra)
        assert result.exit_code == 1, result.stderr
        assert "b3BlbnNzaC1" not in result.stdout + result.stderr
        assert "BEGIN OPENSSH" not in result.stdout + result.stderr
        _assert_nothing_leaked(result)


def _with_pattern(tmp_path, pattern, value):
    example = (REPO_EXAMPLE.read_text()).replace(
        "# @pattern \\d+\\.\\d+\\.\\d+\nPYTHON_VERSION", f"# @pattern {pattern}\nPYTHON_VERSION", 1
    )
    assert pattern in example
    return make_workspace(tmp_path, env={"PYTHON_VERSION": value}, example=example)


def test_an_invalid_pattern_is_one_error_not_a_crash(tmp_path):
    result = check(_with_pattern(tmp_path, "^(3\\.11", "3.11.6"))
    assert result.exit_code == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "@pattern is not a valid RE2 regular expression" in errors[0]
    _assert_nothing_leaked(result)


def test_a_catastrophic_pattern_does_not_hang_check(tmp_path):
    result = check(_with_pattern(tmp_path, "^(\\w+)+!$", "a" * 50_000))
    assert result.exit_code == 1
    assert (
        ".env PYTHON_VERSION is 'aaaa" in result.stderr and "which does not match ^(\\w+)+!$" in result.stderr
    )
    _assert_nothing_leaked(result)


def test_a_placeholder_in_the_url_path_is_an_error(tmp_path):
    apps = [{"url": "https://github.com/${DE_MACRS_PAT}/app.git", "branch": "v1.0.0"}]
    result = check(make_workspace(tmp_path, apps=apps), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [f["code"] for f in data["findings"] if f["level"] == "error"] == ["url-placeholder-place"]
    assert data["apps"][0]["status"] == "skipped"
    _assert_nothing_leaked(result)


@pytest.mark.parametrize(
    "example",
    [
        REPO_EXAMPLE.read_text() + "\nDE_MACRS_PAT=redeclared without @secret\n",  # declared twice
        REPO_EXAMPLE.read_text().replace("# @secret\n", ""),  # @secret dropped by a pull request
    ],
    ids=["redeclared", "unmarked"],
)
def test_a_token_stays_hidden_whatever_de_example_env_says(tmp_path, example):
    result = check(make_workspace(tmp_path, example=example), "--json")
    data = json.loads(result.stdout)
    assert "DE_MACRS_PAT" not in data["env"] and data["env"]["IMAGE_NAME"]
    _assert_nothing_leaked(result)
