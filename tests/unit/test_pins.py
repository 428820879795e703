"""Pure parts of pin resolution: ref classification, closest refs, ls-remote parsing, URLs."""

from __future__ import annotations

import base64

import pytest

from frappe_imagekit import gitremote
from frappe_imagekit.appsjson import public_url as display_url
from frappe_imagekit.pins import (
    Pin,
    RefKind,
    _Listing,
    _resolve_one,
    classify_ref,
    closest_refs,
    find_ref,
)
from frappe_imagekit.redact import Redactor

ERPNEXT_TAGS = [
    "refs/tags/v14.65.1",
    "refs/tags/v15.15.0",
    "refs/tags/v15.16.0",
    "refs/tags/v15.16.2",
    "refs/tags/v15.17.0",
    "refs/tags/v15.17.0^{}",
    "refs/tags/v16.0.0-beta.1",
]


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        ("v15.17.0", RefKind.RELEASE_TAG),
        ("15.17.0", RefKind.RELEASE_TAG),
        ("v15.17.0-beta.1", RefKind.RELEASE_TAG),
        ("v14.0.0-rc.2", RefKind.RELEASE_TAG),
        ("v1.2", RefKind.RELEASE_TAG),
        ("version-15", RefKind.RELEASE_LINE),
        ("version-14", RefKind.RELEASE_LINE),
        ("version-15-hotfix", RefKind.RELEASE_LINE),
        ("develop", RefKind.MOVING),
        ("main", RefKind.MOVING),
        ("master", RefKind.MOVING),
        ("feature/v15.17.0", RefKind.MOVING),
        ("v15", RefKind.MOVING),
        ("version15", RefKind.MOVING),
        ("release-v15.17.0", RefKind.MOVING),
    ],
)
def test_classify_ref(ref: str, kind: RefKind) -> None:
    assert classify_ref(ref) is kind


def test_ref_kind_values_are_the_manifest_strings() -> None:
    assert [str(k) for k in RefKind] == ["release-tag", "release-line", "moving-branch"]


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("v15.99.0", ["v15.17.0", "v15.16.2", "v15.16.0"]),
        ("v15.16.1", ["v15.16.2", "v15.16.0", "v15.17.0"]),
        ("15.17.1", ["v15.17.0", "v15.16.2", "v15.16.0"]),
        ("v14.60.0", ["v14.65.1", "v15.15.0", "v15.16.0"]),
        ("v16.0.0", ["v16.0.0-beta.1", "v15.17.0", "v15.16.2"]),
    ],
)
def test_closest_refs_by_version_distance(wanted: str, expected: list[str]) -> None:
    assert closest_refs(wanted, ERPNEXT_TAGS) == expected


def test_closest_refs_prefers_stable_releases() -> None:
    tags = ["v15.1.0", "v15.3.0", "v15.3.0-beta.1"]
    assert closest_refs("v15.2.0", tags, n=3) == ["v15.1.0", "v15.3.0", "v15.3.0-beta.1"]


def test_closest_refs_release_lines_by_major() -> None:
    heads = [
        "refs/heads/develop",
        "refs/heads/version-13",
        "refs/heads/version-14",
        "refs/heads/version-15",
    ]
    assert closest_refs("version-16", heads, n=2) == ["version-15", "version-14"]


def test_closest_refs_spelling_fallback() -> None:
    heads = ["refs/heads/develop", "refs/heads/main", "refs/heads/version-15"]
    assert closest_refs("devlop", heads) == ["develop"]
    assert closest_refs("mian", heads) == ["main"]
    assert closest_refs("zzzzzz", heads) == []


def test_closest_refs_version_without_version_tags_falls_back_to_spelling() -> None:
    assert closest_refs("v1.2.3", ["refs/heads/v1.2.x", "refs/heads/main"]) == ["v1.2.x"]


def test_closest_refs_respects_n() -> None:
    assert closest_refs("v15.17.1", ERPNEXT_TAGS, n=1) == ["v15.17.0"]


def test_parse_ls_remote_prefers_peeled_sha() -> None:
    output = (
        "1111111111111111111111111111111111111111\tHEAD\n"
        "2222222222222222222222222222222222222222\trefs/heads/version-15\n"
        "3333333333333333333333333333333333333333\trefs/tags/v15.17.0\n"
        "4444444444444444444444444444444444444444\trefs/tags/v15.17.0^{}\n"
    )
    refs = gitremote.parse_ls_remote(output)
    assert refs == {
        "HEAD": "1" * 40,
        "refs/heads/version-15": "2" * 40,
        "refs/tags/v15.17.0": "4" * 40,
    }


def test_find_ref_prefers_branch_like_git_clone_branch() -> None:
    refs = {"refs/heads/v1.0.0": "a" * 40, "refs/tags/v1.0.0": "b" * 40, "refs/tags/v2": "c" * 40}
    assert find_ref(refs, "v1.0.0") == "a" * 40
    assert find_ref(refs, "v2") == "c" * 40
    assert find_ref(refs, "v3") is None


def test_missing_ref_message_names_closest_tags() -> None:
    request = Pin.at("erpnext", "https://github.com/frappe/erpnext", "v15.99.0")
    listing = _Listing(refs={name: "a" * 40 for name in ERPNEXT_TAGS})
    result = _resolve_one(request, listing, Redactor())
    assert result.error == (
        "branch or tag 'v15.99.0' does not exist in https://github.com/frappe/erpnext; "
        "closest tags: v15.17.0, v15.16.2, v15.16.0"
    )
    assert result.error_kind == "missing-ref"
    assert result.suggestions == ["v15.17.0", "v15.16.2", "v15.16.0"]
    assert result.ref_kind is RefKind.RELEASE_TAG


def test_commit_sha_as_ref_explains_bench_limit() -> None:
    request = Pin.at("erpnext", "https://github.com/frappe/erpnext", "3" * 40)
    result = _resolve_one(request, _Listing(refs={}), Redactor())
    assert result.error_kind == "missing-ref"
    assert "git clone --branch" in (result.error or "")


def test_listing_error_is_prefixed_and_redacted() -> None:
    request = Pin.at("de_macrs", "https://${DE_MACRS_PAT}@github.com/d/m", "v1.0.0")
    listing = _Listing(error="server said ghp_CANARYCANARY", error_kind="failed")
    result = _resolve_one(request, listing, Redactor(["ghp_CANARYCANARY"]))
    assert result.error == "git ls-remote failed for de_macrs: server said ***"
    assert result.sha is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://${DE_MACRS_PAT}@github.com/d/m.git", "https://github.com/d/m.git"),
        ("https://oauth2:${T}@gitlab.com/d/m", "https://gitlab.com/d/m"),
        ("https://github.com/frappe/erpnext", "https://github.com/frappe/erpnext"),
        ("file:///srv/git/app.git", "file:///srv/git/app.git"),
    ],
)
def test_display_url_drops_user_part(url: str, shown: str) -> None:
    assert display_url(url) == shown


def _header(access: gitremote.RemoteAccess) -> str:
    keys = [k for k, v in access.env.items() if k.startswith("GIT_CONFIG_KEY_") and "extraHeader" in v]
    assert len(keys) == 1
    return access.env[keys[0].replace("KEY", "VALUE")]


def test_prepare_access_moves_token_from_url_to_header() -> None:
    access = gitremote.prepare_access(
        "https://${DE_MACRS_PAT}@github.com/d/m.git", {"DE_MACRS_PAT": "ghp_CANARY"}, "DE_MACRS_PAT"
    )
    assert access.url == "https://github.com/d/m.git"
    assert _header(access) == "Authorization: Basic " + base64.b64encode(b"ghp_CANARY:").decode()
    assert access.env["GIT_TERMINAL_PROMPT"] == "0"
    key = next(k for k, v in access.env.items() if v.startswith("http.") and "extraHeader" in v)
    assert access.env[key] == "http.https://github.com/.extraHeader"
    assert "ghp_CANARY" in access.secrets


def test_prepare_access_user_and_password_and_pasted_token() -> None:
    access = gitremote.prepare_access("https://oauth2:${T}@gitlab.com/d/m", {"T": "glpat-SECRET"}, "T")
    assert _header(access).endswith(base64.b64encode(b"oauth2:glpat-SECRET").decode())
    pasted = gitremote.prepare_access("https://ghp_PASTED@github.com/d/m", {}, None)
    assert pasted.url == "https://github.com/d/m"
    assert "ghp_PASTED" in pasted.secrets


def test_prepare_access_token_var_without_placeholder() -> None:
    access = gitremote.prepare_access("https://github.com/d/m", {"T": "ghp_X123"}, "T")
    assert _header(access).endswith(base64.b64encode(b"ghp_X123:").decode())


def test_prepare_access_missing_token_is_an_auth_error() -> None:
    with pytest.raises(gitremote.GitAuthError, match="DE_MACRS_PAT is empty or not set in .env"):
        gitremote.prepare_access("https://${DE_MACRS_PAT}@github.com/d/m", {}, "DE_MACRS_PAT")


def test_prepare_access_without_credentials_adds_no_header() -> None:
    access = gitremote.prepare_access("file:///srv/app.git", {}, None)
    assert access.url == "file:///srv/app.git"
    assert not any("extraHeader" in v for v in access.env.values())
    assert access.secrets == ()


@pytest.mark.parametrize(
    ("stderr", "kind", "needle"),
    [
        (
            "remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/d/m/'",
            "auth",
            "is DE_MACRS_PAT expired or missing access to this repository?",
        ),
        (
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
            "auth",
            "is DE_MACRS_PAT expired",
        ),
        (
            "fatal: unable to access 'https://nohost.invalid/d/m/': Could not resolve host: nohost.invalid",
            "unreachable",
            "(Could not resolve host: nohost.invalid)",
        ),
        (
            "remote: Repository not found.\nfatal: repository 'https://github.com/d/m/' not found",
            "missing-repo",
            "DE_MACRS_PAT has access",
        ),
        (
            'Timeout: the command "git ls-remote x" did not complete in 20 secs.',
            "timeout",
            "within 20 s",
        ),
        ("fatal: something odd", "failed", "something odd"),
    ],
)
def test_classify_failure(stderr: str, kind: str, needle: str) -> None:
    access = gitremote.prepare_access(
        "https://github.com/d/m", {"DE_MACRS_PAT": "ghp_CANARY"}, "DE_MACRS_PAT"
    )
    error = gitremote.classify_failure("remote: ghp_CANARY\n" + stderr, access, 20.0, "DE_MACRS_PAT")
    assert error.kind == kind  # type: ignore[attr-defined]
    assert needle in error.message
    assert "ghp_CANARY" not in error.message


def test_classify_failure_redacts_git_echo_of_the_token() -> None:
    access = gitremote.prepare_access("https://${T}@example.com/d/m", {"T": "ghp_CANARY"}, "T")
    error = gitremote.classify_failure(
        "fatal: unable to access 'https://ghp_CANARY@example.com/d/m/': weird", access, 5.0, "T"
    )
    assert error.message == "git failed for https://example.com/d/m: weird."


# -- issue 8: nothing from a URL reaches git as an option, no token outside the user part ------


@pytest.mark.parametrize(
    "url",
    [
        "--upload-pack=touch /tmp/x;git-upload-pack",
        "http://127.0.0.1/${DE_MACRS_PAT}/app.git",
        "https://github.com/org/app.git?x=${DE_MACRS_PAT}",
        "ext::sh -c touch% /tmp/x",
        "git@github.com:org/app.git",
    ],
)
def test_prepare_access_refuses_urls_that_break_the_rules(url: str) -> None:
    with pytest.raises(gitremote.GitURLRefused) as caught:
        gitremote.prepare_access(url, {"DE_MACRS_PAT": "ghp_CANARY"}, "DE_MACRS_PAT")
    assert caught.value.exit_code == 1 and caught.value.kind == "bad-url"
    assert "ghp_CANARY" not in caught.value.message


def test_count_commits_refuses_a_crafted_sha_before_running_git() -> None:
    with pytest.raises(gitremote.GitURLRefused, match="is not a commit SHA"):
        gitremote.count_commits_between(
            "file:///nowhere.git", {}, None, "--upload-pack=touch /tmp/x;git-upload-pack", "a" * 40, 5.0
        )


def test_every_git_call_puts_an_end_of_options_marker_before_positional_arguments(monkeypatch) -> None:
    calls: list[list[str]] = []

    def fake_git(args, access, timeout, token_var, cwd=None):
        calls.append(args)
        if args[0] == "rev-list":
            return "2"
        return ""

    monkeypatch.setattr(gitremote, "_git", fake_git)
    gitremote.ls_remote("file:///srv/app.git", {}, None, 5.0)
    assert gitremote.count_commits_between("file:///srv/app.git", {}, None, "a" * 40, "b" * 40, 5.0) == 2
    for args in calls:
        marker = "--" if args[0] in {"ls-remote", "init", "fetch"} else "--end-of-options"
        assert marker in args, args
        after = args[args.index(marker) + 1 :]
        assert after and not any(a.startswith("-") for a in after), args
