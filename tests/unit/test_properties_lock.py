"""Property (issue 18 item 7, issue 19 item 15): for any apps.json that ``check`` accepts, the
lock ``imagekit lock`` writes reads back and is accepted by ``build --frozen`` (every commit
from the lock, imagekit's generated Containerfile made from it). The remotes are faked at the
git boundary (``gitremote.ls_remote`` and ``gitremote.read_app_files``): repository names with
hyphens, dots and capitals, packages declared in pyproject.toml or setup.py, by a folder holding
hooks.py, by nothing, or badly."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frappe_imagekit import appslock, gitremote
from frappe_imagekit.appsjson import repo_identity
from frappe_imagekit.build import exact as exactbuild
from frappe_imagekit.build.plan import load_containerfile
from frappe_imagekit.check import run_check
from frappe_imagekit.errors import ConfigError
from frappe_imagekit.workspace import Workspace
from tests.support.workspace import make_workspace

REFS = ("v1.0.0", "v15.17.0", "develop", "version-15")
TAGS = ("v1.0.0", "v15.17.0")

repo_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,14}", fullmatch=True).filter(
    lambda n: not n.endswith((".", ".git")) and ".." not in n
)
package_names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
    st.text(alphabet="abcXYZ-_ .;/\n0", max_size=10),
)
declarations = st.one_of(
    st.just(("none", "")),
    st.tuples(st.sampled_from(["pyproject", "setup.py", "hooks"]), package_names),
)
entries = st.tuples(repo_names, st.sampled_from(REFS), declarations, st.booleans())


def _sha(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def _files(declaration: tuple[str, str]) -> gitremote.AppFiles:
    kind, name = declaration
    if kind == "pyproject":
        text = json.dumps(name)  # a TOML basic string
        return gitremote.AppFiles({"pyproject.toml": f"[project]\nname = {text}\n"}, ())
    if kind == "setup.py":
        return gitremote.AppFiles({"setup.py": f'setup(\n    name="{name}",\n)'}, ())
    if kind == "hooks":
        return gitremote.AppFiles({}, (name,) if name else ())
    return gitremote.AppFiles({}, ())


def _fake_git(apps: list[tuple[str, str, tuple[str, str], bool]]) -> pytest.MonkeyPatch:
    files = {repo_identity(_url(repo, private)): _files(decl) for repo, _, decl, private in apps}
    patch = pytest.MonkeyPatch()

    def ls_remote(url: str, env: Any, token_var: Any, timeout: float) -> dict[str, str]:
        heads = {f"refs/heads/{r}": _sha(url, r) for r in REFS if r not in TAGS}
        return heads | {f"refs/tags/{r}": _sha(url, r) for r in TAGS}

    def read(url: str, env: Any, token_var: Any, sha: str, ref: str, timeout: float) -> gitremote.AppFiles:
        return files[repo_identity(url)]

    patch.setattr(gitremote, "ls_remote", ls_remote)
    patch.setattr(gitremote, "read_app_files", read)
    return patch


def _url(repo: str, private: bool) -> str:
    user = "${DE_MACRS_PAT}@" if private else ""
    return f"https://{user}git.example.test/org/{repo}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(apps=st.lists(entries, max_size=4))
def test_any_apps_json_check_accepts_locks_and_the_lock_builds_frozen(apps) -> None:
    patch = _fake_git(apps)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = make_workspace(
                Path(tmp) / "ws", apps=[{"url": _url(r, p), "branch": ref} for r, ref, _, p in apps]
            )
            _round_trip(Workspace.at(root))
    finally:
        patch.undo()


def _round_trip(ws: Workspace) -> None:
    accepted = not run_check(ws, offline=False, check_version_is_new=False).has_errors
    try:
        path, written = appslock.lock_workspace(ws)
    except ConfigError:
        assert not accepted  # lock refuses only what check refuses
        return
    assert accepted
    lock = appslock.read_lock(path)  # reads back
    assert lock is not None and list(lock) == [
        written["frappe"]["name"],
        *(a["name"] for a in written["apps"]),
    ]
    # what build does: check again, then the lock, frozen, then the generated Containerfile
    config = run_check(ws, offline=False, check_version_is_new=False).config
    assert config.frappe is not None and config.secrets.injected is not None
    frappe, apps = config.frappe.record(), [p.record() for p in config.apps]
    tags = {p.name for p in config.all_pins if p.is_tag}
    use = appslock.use_lock(ws, frappe, apps, exact=True, frozen=True, dry_run=True, tags=tags)
    assert use.changed == [] and use.note == "apps.lock.json: every commit taken from the lock"
    containerfile = load_containerfile(ws, None, config.values)
    exact = exactbuild.prepare(containerfile, use.frappe, use.apps, config.secrets.injected, config.values)
    assert exact is not None
    for app in written["apps"]:
        assert f"imagekit-git fetch {app['name']} " in exact.containerfile.text
        assert exact.build_args[f"IMAGEKIT_SHA_{app['name'].upper()}"] == app["sha"]
        assert f"url.{app['name']}=" in exact.secret.text
