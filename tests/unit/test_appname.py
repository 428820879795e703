"""An app is named by its package, read from its repository as bench reads it (issue 18 item 7,
issue 19 item 15): the name rules, the pin resolution that reads them, and the lock's tag rule
(issue 19 item 8) as pure functions. Real git remotes: tests/integration/test_gitremote.py and
tests/integration/test_exact_build.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from frappe_imagekit import appslock, gitremote, pins
from frappe_imagekit.appname import NameSource, app_name_from, declared_name, repo_name
from frappe_imagekit.appsjson import AppEntry, duplicate_and_dependency_issues
from frappe_imagekit.errors import ConfigError, DriftError, ExitCode
from frappe_imagekit.pins import Pin

URL = "https://git.example.test/resilient-tech/india-compliance.git"
SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://git.example.test/resilient-tech/india-compliance", "india-compliance"),
        ("https://${PAT}@git.example.test/org/private-de_macrs.git", "private-de_macrs"),
        ("file:///srv/mirrors/my-app.git/", "my-app"),
    ],
)
def test_repo_name_is_the_urls_last_part_for_display(url: str, name: str) -> None:
    assert repo_name(url) == name


def test_bench_order_pyproject_then_setup_cfg_then_setup_py() -> None:
    files = {
        "pyproject.toml": '[project]\nname = "india_compliance"\n',
        "setup.cfg": "[metadata]\nname = from_cfg\n",
        "setup.py": 'setup(name="from_setup_py")',
    }
    assert declared_name(files) == NameSource("india_compliance", "pyproject.toml [project] name")
    # a pyproject.toml without [project] name (build-system only) falls through, as in bench
    files["pyproject.toml"] = '[build-system]\nrequires = ["flit_core"]\n'
    assert declared_name(files) == NameSource("from_cfg", "setup.cfg [metadata] name")
    del files["setup.cfg"]
    assert declared_name(files) == NameSource("from_setup_py", "setup.py name=")
    assert declared_name({}) is None


def test_setup_py_uses_benchs_own_pattern_first_match_greedy_to_the_last_quote() -> None:
    text = '# get version\nfrom my_app import __version__\nsetup(\n\tname="my_app",\n\tversion=version,\n)'
    assert declared_name({"setup.py": text}) == NameSource("my_app", "setup.py name=")
    # bench's regex is greedy: a one-line setup() gives a name no import works with; refused below
    one_line = 'setup(name="my_app", version="1.0")'
    source = declared_name({"setup.py": one_line})
    assert source is not None and source.name == 'my_app", version="1.0'
    with pytest.raises(ConfigError, match="is not a Python package name"):
        app_name_from({"setup.py": one_line}, (), URL, "v15.0.0")


def test_the_name_comes_from_the_package_not_the_url() -> None:
    files = {"pyproject.toml": '[project]\nname = "india_compliance"\n'}
    source = app_name_from(files, ("india_compliance",), URL, "v15.0.0")
    assert source.name == "india_compliance"


def test_without_metadata_the_folder_holding_hooks_py_then_the_url_name() -> None:
    assert app_name_from({}, ("my_app",), "file:///srv/my-app.git", "main").name == "my_app"
    assert app_name_from({}, (), "file:///srv/alpha.git", "main").name == "alpha"
    # two folders with hooks.py: ambiguous, so the URL name is the last resort
    assert app_name_from({}, ("one", "two"), "file:///srv/alpha.git", "main").name == "alpha"


def test_a_repository_that_names_no_valid_package_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as refused:
        app_name_from({}, (), "file:///srv/my-app.git", "v1.0.0")
    message = refused.value.message
    assert message.startswith("the app name of my-app at v1.0.0 (its URL (no pyproject.toml")
    assert "'my-app' is not a Python package name" in message
    assert '[project] name = "my_app"' in message and message.endswith(".")
    assert refused.value.exit_code == ExitCode.VALIDATION


@pytest.mark.parametrize(
    "name",
    [
        "india-compliance",  # what bench would keep, and Frappe could not import
        "MyApp",
        "1app",
        "a" * 65,
        "my_app; touch /tmp/x",
        "../../etc",
        "my_app\nRUN id",
        "--upload-pack=x",
    ],
)
def test_remote_names_that_would_reach_a_containerfile_path_or_shell_are_refused(name: str) -> None:
    files = {"setup.cfg": "[metadata]\nname = x\n", "pyproject.toml": _toml_name(name)}
    with pytest.raises(ConfigError) as refused:
        app_name_from(files, (), URL, "v15.0.0")
    assert "\n" not in refused.value.message
    assert "Traceback" not in refused.value.message


def _toml_name(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'[project]\nname = "{escaped}"\n'


def test_the_longest_name_allowed_is_64_characters() -> None:
    assert app_name_from({"pyproject.toml": _toml_name("a" * 64)}, (), URL, "v1").name == "a" * 64


@pytest.mark.parametrize(
    ("files", "phrase"),
    [
        ({"pyproject.toml": "[project\nname="}, "pyproject.toml is not valid TOML"),
        (
            {"pyproject.toml": "[project]\nname = 5\n"},
            "the [project] name of its pyproject.toml is not a string",
        ),
        ({"setup.cfg": "name = x\n[metadata"}, "setup.cfg is not a valid INI file"),
    ],
)
def test_a_file_bench_would_fail_on_is_one_sentence(files: dict[str, str], phrase: str) -> None:
    with pytest.raises(ConfigError) as refused:
        app_name_from(files, (), URL, "v15.0.0")
    assert refused.value.message == (
        f"india-compliance at v15.0.0: {phrase}, so bench cannot install it: fix the file in the app."
    )


def test_a_token_shaped_name_is_never_echoed() -> None:
    token = "ghp_" + "Z" * 36
    with pytest.raises(ConfigError) as refused:
        app_name_from({"pyproject.toml": _toml_name(token)}, (), URL, "v1")
    assert token not in refused.value.message and "looks like a token" in refused.value.message


# ---------------------------------------------------------------- resolution reads the name


def _fake_remote(
    monkeypatch: pytest.MonkeyPatch, refs: Mapping[str, str], files: Mapping[str, gitremote.AppFiles]
) -> list[tuple[str, str]]:
    """Fake ``ls_remote`` (``refs`` for every URL) and ``read_app_files`` (by repo name)."""
    reads: list[tuple[str, str]] = []

    def read(url: str, env, token_var, sha: str, ref: str, timeout: float) -> gitremote.AppFiles:
        reads.append((repo_name(url), sha))
        found = files[repo_name(url)]
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(gitremote, "ls_remote", lambda url, env, token_var, timeout: dict(refs))
    monkeypatch.setattr(gitremote, "read_app_files", read)
    return reads


def test_resolution_names_each_app_by_its_package_at_the_resolved_commit(monkeypatch) -> None:
    refs = {"refs/tags/v15.0.0": SHA_A, "refs/heads/version-15": SHA_B}
    reads = _fake_remote(
        monkeypatch,
        refs,
        {
            "india-compliance": gitremote.AppFiles({"pyproject.toml": _toml_name("india_compliance")}, ()),
            "erpnext": gitremote.AppFiles({}, ("erpnext",)),
        },
    )
    requests = [
        Pin.at("frappe", "https://git.example.test/frappe/frappe", "version-15"),
        Pin.at("erpnext", "https://git.example.test/frappe/erpnext", "version-15", read_name=True),
        Pin.at("india-compliance", URL, "v15.0.0", read_name=True),
    ]
    frappe, erpnext, india = pins.resolve_pins(requests, {})
    assert (frappe.name, erpnext.name, india.name) == ("frappe", "erpnext", "india_compliance")
    assert sorted(reads) == [("erpnext", SHA_B), ("india-compliance", SHA_A)]  # frappe is not read
    assert (india.is_tag, erpnext.is_tag) == (True, False)
    assert india.shown_name == "india_compliance (india-compliance)" and erpnext.shown_name == "erpnext"
    assert india.record()["name"] == "india_compliance"


def test_a_bad_name_or_a_failed_read_is_the_pins_error_and_the_others_resolve(monkeypatch) -> None:
    _fake_remote(
        monkeypatch,
        {"refs/heads/develop": SHA_C},
        {
            "my-app": gitremote.AppFiles({}, ()),
            "gone": gitremote.GitCommandFailed("git failed for x: boom."),
            "ok_app": gitremote.AppFiles({}, ()),
        },
    )
    requests = [
        Pin.at("my-app", "https://git.example.test/o/my-app", "develop", read_name=True),
        Pin.at("gone", "https://git.example.test/o/gone", "develop", read_name=True),
        Pin.at("ok_app", "https://git.example.test/o/ok_app", "develop", read_name=True),
    ]
    bad, gone, ok = pins.resolve_pins(requests, {})
    assert bad.error_kind == "app-name" and "'my-app' is not a Python package name" in str(bad.error)
    assert not bad.ok and not gone.ok and ok.ok and ok.name == "ok_app"
    assert gone.error == "cannot read the app name of gone at develop: git failed for x: boom."


def test_two_repositories_of_one_package_or_a_frappe_fork_are_refused_after_reading() -> None:
    def pin(repo: str, name: str) -> Pin:
        return Pin(name, f"https://git.example.test/o/{repo}", "develop", sha=SHA_A, read_name=True)

    issues = pins.name_issues([pin("my-app", "my_app"), pin("my_app_fork", "my_app"), pin("fork", "frappe")])
    assert [(i.code, i.message) for i in issues] == [
        (
            "apps-duplicate-name",
            "apps.json lists my-app and my_app_fork, which are both the app my_app: bench installs an "
            "app once; keep one of them.",
        ),
        (
            "apps-frappe",
            "apps.json lists fork, whose package is frappe: frappe comes from FRAPPE_PATH and "
            "FRAPPE_BRANCH in .env; remove it from apps.json.",
        ),
    ]


# ---------------------------------------------------------------- the lock's tag rule (19.8)


def _lock(tmp_path: Path, sha: str, ref: str) -> dict[str, dict[str, str]]:
    frappe = {
        "name": "frappe",
        "url": "https://git.example.test/frappe/frappe",
        "ref": "v15.0.0",
        "sha": SHA_A,
    }
    app = {"name": "my_app", "url": "https://git.example.test/o/my-app", "ref": ref, "sha": sha}
    path = tmp_path / "apps.lock.json"
    path.write_text(appslock.lock_text(frappe, [app]))
    lock = appslock.read_lock(path)
    assert lock is not None
    return lock


def test_a_lock_entry_for_a_tag_must_name_the_tags_commit(tmp_path: Path) -> None:
    lock = _lock(tmp_path, SHA_C, "v1.0.0")  # crafted: the tag's commit is SHA_B
    frappe = {**lock["frappe"]}
    app = {**lock["my_app"], "sha": SHA_B}
    with pytest.raises(DriftError) as refused:
        appslock.apply_lock(lock, frappe, [app], tags={"frappe", "my_app"})
    assert refused.value.exit_code == ExitCode.DRIFT
    assert refused.value.message == (
        f"apps.lock.json pins my_app at {SHA_C} for tag v1.0.0, but the remote's tag v1.0.0 is commit "
        f"{SHA_B}: restore apps.lock.json from review, or run `imagekit lock` again if the tag was "
        "moved on purpose."
    )
    # the tag's own commit is accepted, and taken
    assert appslock.apply_lock(lock, frappe, [{**app, "sha": SHA_C}], tags={"my_app"}).apps[0]["sha"] == SHA_C


def test_a_branch_entry_is_a_pin_by_design(tmp_path: Path) -> None:
    lock = _lock(tmp_path, SHA_C, "develop")  # the branch has moved on to SHA_B since
    use = appslock.apply_lock(lock, {**lock["frappe"]}, [{**lock["my_app"], "sha": SHA_B}], tags={"frappe"})
    assert use.apps[0]["sha"] == SHA_C and use.changed == []


def test_reading_the_name_puts_every_remote_value_after_an_end_of_options_marker(monkeypatch) -> None:
    calls: list[list[str]] = []
    tree = f"100644 blob {SHA_B}\tpyproject.toml\x00040000 tree {SHA_C}\t-rf\x00"

    def fake_git(args, access, timeout, token_var, cwd=None):
        calls.append(args)
        if args[0] == "ls-tree":
            return tree if "--" not in args else f"100644 blob {SHA_A}\t-rf/hooks.py\x00"
        return {"-s": "20", "blob": _toml_name("my_app")}.get(args[1], "") if args[0] == "cat-file" else ""

    monkeypatch.setattr(gitremote, "_git", fake_git)
    found = gitremote.read_app_files("file:///srv/my-app.git", {}, None, SHA_A, "v1.0.0", 5.0)
    assert found == gitremote.AppFiles({"pyproject.toml": _toml_name("my_app")}, ("-rf",))
    for args in calls:
        marker = "--" if args[0] in {"init", "fetch"} else "--end-of-options"
        after = args[args.index(marker) + 1 :]
        assert after and not any(a.startswith("-") and a != "--" for a in after[:1]), args
    # the folder name "-rf" reached git only after "--" (as a literal pathspec)
    (listing,) = [a for a in calls if a[0] == "ls-tree" and "--" in a]
    assert listing[listing.index("--") + 1 :] == ["-rf/hooks.py"]
    with pytest.raises(gitremote.GitURLRefused, match="is not a commit SHA"):
        gitremote.read_app_files("file:///srv/my-app.git", {}, None, "--upload-pack=x", "v1.0.0", 5.0)
    with pytest.raises(gitremote.GitURLRefused, match="is not a valid git branch or tag name"):
        gitremote.read_app_files("file:///srv/my-app.git", {}, None, SHA_A, "--upload-pack=x", 5.0)


def test_a_renamed_repository_still_needs_the_apps_its_package_requires() -> None:
    def pin(repo: str, name: str) -> Pin:
        return Pin(name, f"https://git.example.test/o/{repo}", "version-15", sha=SHA_A, read_name=True)

    (issue,) = pins.name_issues([pin("ic", "india_compliance")])
    assert issue.message == (
        "apps.json lists india_compliance (ic) but not erpnext, which it requires: bench does not "
        "resolve dependencies, add erpnext before ic."
    )
    assert pins.name_issues([pin("erp", "erpnext"), pin("ic", "india_compliance")]) == []
    # a URL name that tells the package is apps.json's own rule (no second finding here)
    assert pins.name_issues([pin("india-compliance", "india_compliance")]) == []


def test_a_hyphenated_url_name_is_read_as_its_package_for_the_dependency_rule() -> None:
    entry = AppEntry(0, "india-compliance", URL, "version-15", 2)
    (issue,) = duplicate_and_dependency_issues([entry])
    assert issue.code == "apps-dependency" and "but not erpnext, which it requires" in issue.message
