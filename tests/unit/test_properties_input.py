"""Property-based tests for every parser of outside input this module owns (issue 8).

Arbitrary text, bytes or JSON of any shape fed to the .env and de-example.env parsers (with
annotations), apps.json parsing and validation, the URL validator, git access preparation and
``check`` as a whole end in a result or an ``ImagekitError`` with a documented exit code: never
another exception, and never the secret in a message.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frappe_imagekit import appsjson, envfile, gitremote, validate
from frappe_imagekit.errors import ExitCode, ImagekitError

SECRET = "ghp_PROPcanary0123456789abcdefPROP"
SECRET_FORMS = (SECRET, base64.b64encode(SECRET.encode()).decode()[:20], SECRET[4:20])
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lines that look like what these files hold, mixed with noise, so the parsers' branches are hit.
env_lines = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
        st.text(max_size=30),
    ),
    st.sampled_from(
        [
            f'DE_MACRS_PAT="{SECRET}',
            f"DE_MACRS_PAT='{SECRET}",
            f"DE_MACRS_PAT={SECRET}",
            f'export DE_MACRS_PAT="{SECRET}" # x',
            "# @secret",
            "# @required",
            "# @pattern ^(\\w+)+!$",
            "# @pattern (",
            "# @pattern [z-a]",
            "# @choices a|b|" + SECRET,
            "# @unknown x",
            "# @description some text",
            "",
            "=value",
            "KEY",
            '"KEY"=1',
        ]
    ),
)
env_texts = st.lists(env_lines, max_size=12).map("\n".join)


def assert_no_secret(messages) -> None:
    for message in messages:
        assert isinstance(message, str)
        for form in SECRET_FORMS:
            assert form not in message, message


def assert_documented(exc: ImagekitError) -> None:
    assert exc.exit_code in set(ExitCode) and exc.exit_code not in (ExitCode.OK, ExitCode.INTERNAL)
    assert exc.message and exc.message == str(exc)


@FAST
@given(env_texts, env_texts)
def test_env_and_example_parsers_never_raise_nor_echo_the_secret(env_text: str, example_text: str) -> None:
    example_text = "# @secret\nDE_MACRS_PAT=ghp_your_token_here\n" + example_text
    parsed = envfile.parse_env_text(env_text)
    specs = envfile.parse_example_text(example_text)
    issues = (
        parsed.issues + envfile.example_annotation_issues(example_text) + envfile.validate_env(parsed, specs)
    )
    assert all(i.level in ("error", "warning") for i in issues)
    assert_no_secret(i.message for i in issues)


@FAST
@given(st.binary(max_size=300))
def test_read_text_takes_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".env"
        path.write_bytes(data)
        try:
            text = envfile.read_text(path, ".env")
        except ImagekitError as exc:
            assert_documented(exc)
            assert "UTF-8" in exc.message
        else:
            envfile.parse_env_text(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
url_texts = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, user, host, path: f"{scheme}{user}{host}{path}",
        st.sampled_from(["https://", "http://", "file://", "ssh://", "", "-", "git@", "ftp://"]),
        st.sampled_from(["", "${DE_MACRS_PAT}@", f"{SECRET}@", "user:pass@", "${A}${B}@"]),
        st.sampled_from(["github.com", "127.0.0.1:8080", "[::1", "[::1]:99999", "", "host name"]),
        st.sampled_from(["/org/app.git", "/${DE_MACRS_PAT}/x.git", f"/{SECRET}/x", "", "?x=${X}"]),
    ),
)
apps_entries = st.fixed_dictionaries(
    {"url": url_texts, "branch": st.one_of(st.text(max_size=20), st.sampled_from(["v1.0.0", "-x", "a..b"]))}
)


def _apps_issues(text: str) -> list[str]:
    entries, issues = appsjson.parse_apps_text(text)
    for entry in entries:
        issues += appsjson.url_issues(entry, {"DE_MACRS_PAT"}, {"DE_MACRS_PAT"}) + appsjson.ref_issues(entry)
    issues += appsjson.duplicate_and_dependency_issues(entries)
    for entry in entries:
        appsjson.public_url(entry.url), appsjson.manifest_url(entry.url), appsjson.repo_identity(entry.url)
    return [i.message for i in issues]


@FAST
@given(
    st.one_of(
        json_values.map(json.dumps), st.lists(apps_entries, max_size=4).map(json.dumps), st.text(max_size=80)
    )
)
def test_apps_json_of_any_shape_ends_in_issues_never_an_exception(text: str) -> None:
    # a pasted token is named as a problem, never repeated
    assert_no_secret(_apps_issues(text))


@FAST
@given(st.one_of(url_texts, json_values))
def test_repo_url_returns_the_url_or_raises_one_config_error(value: object) -> None:
    try:
        assert validate.repo_url(value, "url") == value
    except ImagekitError as exc:
        assert_documented(exc)
        assert_no_secret([exc.message])


@FAST
@given(url_texts, st.sampled_from([None, "DE_MACRS_PAT", "-x", "A B"]))
def test_prepare_access_never_puts_the_token_in_the_url(url: str, token_var: str | None) -> None:
    try:
        access = gitremote.prepare_access(url, {"DE_MACRS_PAT": SECRET}, token_var)
    except ImagekitError as exc:
        assert_documented(exc)
        assert_no_secret([exc.message])
    else:
        assert SECRET not in access.url and not access.url.startswith("-")


files = st.one_of(env_texts, st.binary(max_size=120).map(lambda b: b.decode("latin-1")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files,
    files,
    st.one_of(
        json_values.map(json.dumps), st.lists(apps_entries, max_size=3).map(json.dumps), st.text(max_size=40)
    ),
    st.booleans(),
)
def test_check_on_arbitrary_files_ends_in_a_report_or_a_documented_error(env, example, apps, raw) -> None:
    from frappe_imagekit.check import run_check
    from frappe_imagekit.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".env").write_bytes(
            env.encode("utf-8", "surrogatepass") if not raw else env.encode("latin-1", "replace")
        )
        (root / "de-example.env").write_text("# @secret\nDE_MACRS_PAT=ghp_your_token_here\n" + example)
        (root / "apps.json").write_text(apps)
        try:
            report = run_check(Workspace.at(root), offline=True)
        except ImagekitError as exc:
            assert_documented(exc)
            assert_no_secret([exc.message])
            return
        data = report.to_dict()
        json.dumps(data)
        assert_no_secret(f.message for f in report.findings)
        assert_no_secret([json.dumps(data)])
