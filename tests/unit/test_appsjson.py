import base64
import json

import pytest

from frappe_imagekit import appsjson
from frappe_imagekit.appsjson import AppEntry


def parse(text):
    return appsjson.parse_apps_text(text)


def test_valid_apps_parse_with_names_and_lines():
    text = (
        '[\n  {"url": "https://github.com/frappe/erpnext", "branch": "v15.17.0"},\n'
        '  {"url": "https://${PAT}@github.com/org/de_macrs.git", "branch": "v0.0.4"}\n]\n'
    )
    entries, issues = parse(text)
    assert issues == []
    assert [(e.name, e.branch, e.line) for e in entries] == [
        ("erpnext", "v15.17.0", 2),
        ("de_macrs", "v0.0.4", 3),
    ]


def test_broken_json_names_line_and_column():
    entries, issues = parse('[\n {"url": "x", "branch": "y"},\n {"url": "z" "branch": 1}\n]')
    assert entries == []
    assert issues[0].code == "apps-json"
    assert "line 3, column 14" in issues[0].message


def test_unknown_key_suggests_intent_with_path_and_line():
    text = (
        '[\n {"url": "https://github.com/frappe/erpnext", "branch": "v15.1.0"},\n'
        ' {"url": "https://github.com/frappe/hrms",\n  "version": "v15.13.1"}\n]'
    )
    _, issues = parse(text)
    messages = " | ".join(i.message for i in issues)
    assert '[1] (line 4) has unknown key "version" (did you mean "branch"?)' in messages
    assert '[1] (line 3) has no "branch"' in messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"url": "x"}', "must be a list of apps"),
        ('[{"url": "https://x/y", "branch": 15}]', "[0].branch (line 1) must be a string, not int"),
        ('[{"url": "", "branch": "main"}]', "[0].url (line 1) is empty"),
        ('["https://x/y"]', "[0] (line 1) must be an object, not str"),
        ('[{"repo": "https://x/y", "branch": "main"}]', '"repo" (did you mean "url"?)'),
    ],
)
def test_schema_errors_are_readable(text, expected):
    _, issues = parse(text)
    assert any(expected in i.message for i in issues), [i.message for i in issues]


def entry(url, index=0):
    return AppEntry(index, appsjson.app_name(url), url, "main", 2)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("git@github.com:org/app.git", "apps-ssh"),
        ("ssh://git@github.com/org/app.git", "apps-ssh"),
        ("http://github.com/org/app", "apps-http"),
        ("ftp://host/app", "apps-scheme"),
        ("https://ghp_abcdefghijklmnop12345@github.com/org/app", "apps-raw-token"),
        ("https://user:pass@github.com/org/app", "apps-raw-token"),
        ("https://${MISSING}@github.com/org/app", "apps-placeholder"),
    ],
)
def test_unsafe_urls_are_errors(url, code):
    issues = appsjson.url_issues(entry(url), {"PAT"}, {"PAT"})
    assert [i.code for i in issues] == [code]
    assert "apps.json [0].url (line 2)" in issues[0].message


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/frappe/erpnext",
        "https://${PAT}@github.com/org/app.git",
        "http://127.0.0.1:8080/app.git",
        "http://localhost/app.git",
        "file:///srv/mirror/app.git",
    ],
)
def test_safe_urls_pass(url):
    assert appsjson.url_issues(entry(url), {"PAT"}, {"PAT"}) == []


def test_raw_token_message_never_contains_the_token():
    url = "https://ghp_abcdefghijklmnop12345@github.com/org/app"
    issue = appsjson.url_issues(entry(url), set(), set())[0]
    assert "ghp_abcdefghijklmnop12345" not in issue.message


def test_placeholder_not_marked_secret_warns():
    issues = appsjson.url_issues(entry("https://${PAT}@github.com/o/a"), {"PAT"}, {"OTHER"})
    assert [(i.level, i.code) for i in issues] == [("warning", "apps-placeholder-secret")]


def test_duplicates_frappe_and_dependencies():
    entries = [
        entry("https://github.com/frappe/frappe", 0),
        entry("https://github.com/frappe/hrms", 1),
        entry("https://${PAT}@github.com/Frappe/HRMS.git", 2),
    ]
    issues = appsjson.duplicate_and_dependency_issues(entries)
    assert sorted(i.code for i in issues) == [
        "apps-dependency",
        "apps-dependency",
        "apps-duplicate",
        "apps-frappe",
    ]
    dep = next(i for i in issues if i.code == "apps-dependency")
    assert "hrms" in dep.message and "erpnext" in dep.message


def test_inject_substitutes_and_encodes_without_newlines():
    apps = [{"url": "https://${PAT}@github.com/o/a.git", "branch": "v1.0.0"}]
    injected = appsjson.inject(apps, {"PAT": "ghp_TOKEN"})
    assert injected.text == '[{"url":"https://ghp_TOKEN@github.com/o/a.git","branch":"v1.0.0"}]'
    assert "\n" not in injected.base64
    assert json.loads(base64.b64decode(injected.base64)) == json.loads(injected.text)


def test_public_url_and_identity():
    assert appsjson.public_url("https://${PAT}@github.com/o/a.git") == "https://github.com/o/a.git"
    assert appsjson.public_url("https://github.com/o/a") == "https://github.com/o/a"
    assert appsjson.repo_identity("https://x@GitHub.com/o/A.git/") == "https://github.com/o/a"
    assert appsjson.token_vars("https://${A}@h/${B}") == ["A", "B"]


def test_json_path_lines_nested():
    text = '[\n {\n  "url": "u",\n  "branch": "b"\n },\n {"url": "v", "branch": "c"}\n]'
    lines = appsjson.json_path_lines(text)
    assert lines["[0]"] == 2 and lines["[0].url"] == 3 and lines["[0].branch"] == 4
    assert lines["[1]"] == 6 and lines["[1].branch"] == 6


# -- issue 8: URL rules shared with validate.repo_url, refs validated --------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("--upload-pack=touch /tmp/x;git-upload-pack", "url-option"),
        ("-oProxyCommand=x", "url-option"),
        ("http://127.0.0.1/${PAT}/app.git", "url-placeholder-place"),
        ("https://github.com/${PAT}/app.git", "url-placeholder-place"),
        ("https://[::1/app.git", "url-invalid"),
    ],
)
def test_option_like_and_misplaced_placeholder_urls_are_errors(url, code):
    issues = appsjson.url_issues(entry(url), {"PAT"}, {"PAT"})
    assert issues[0].code == code and issues[0].level == "error"
    assert "apps.json [0].url (line 2)" in issues[0].message


@pytest.mark.parametrize("branch", ["--upload-pack=x", "-b", "a..b", "main:x", "v1 x", "refs/heads/x.lock"])
def test_refs_that_are_not_git_refs_are_errors(branch):
    bad = AppEntry(0, "app", "https://github.com/org/app", branch, 3)
    (issue,) = appsjson.ref_issues(bad)
    assert issue.code == "apps-ref" and issue.level == "error"
    assert issue.message.startswith("apps.json [0].branch (line 3) ")
    assert appsjson.ref_issues(AppEntry(0, "app", "https://github.com/org/app", "version-15", 3)) == []


def test_an_unparseable_url_does_not_crash_parsing():
    entries, issues = parse('[{"url": "https://[::1/app.git", "branch": "v1"}]')
    assert issues == [] and entries[0].name == "app.git"[:-4]
    assert appsjson.public_url("https://[::1/app.git") == "(invalid URL)"


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_json_is_one_error_not_a_crash(depth):
    entries, issues = parse("[" * depth + "]" * depth)
    assert entries == [] and [i.code for i in issues] == ["apps-json"]
    assert "nested too deeply" in issues[0].message
