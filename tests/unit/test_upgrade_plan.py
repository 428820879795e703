"""`imagekit upgrade-plan MAJOR`: refs of the next major on real (local) git remotes, what is
missing, what each app declares, the proposed files beside the current ones, and the commands it
prints (pasted into a shell)."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from frappe_imagekit import upgradeplan
from frappe_imagekit.envfile import parse_env_text
from frappe_imagekit.errors import UsageError
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke
from tests.support.githttp import CANARY_TOKEN, GitHTTPServer, make_remote
from tests.support.workspace import make_workspace

ERPNEXT_PYPROJECT = """[project]
name = "erpnext"
[tool.bench.frappe-dependencies]
frappe = ">=16.0.0-dev,<17.0.0"
"""
PRIVATE_PYPROJECT = """[project]
name = "de_macrs"
[tool.bench.frappe-dependencies]
frappe = ">=15.0.0,<16.0.0"
erpnext = ">=16.0.0,<17.0.0"
"""
PRIVATE_HOOKS = 'app_name = "de_macrs"\nrequired_apps = ["erpnext", "frappe/hrms"]\n'


@dataclass
class Remotes:
    root: Path
    server: GitHTTPServer
    ws: Path


@pytest.fixture
def remotes(tmp_path: Path) -> Iterator[Remotes]:
    """frappe and erpnext with v16 tags and a version-16 branch; payments with v15 releases only;
    de_macrs, private (behind a token), with a version-16 branch and no v16 tag."""
    public, private = tmp_path / "public", tmp_path / "private"
    public.mkdir()
    private.mkdir()
    make_remote(public, "frappe", tags=("v15.10.0", "v16.0.0", "v16.2.1", "v17.0.0-beta"),
                branches=("version-15", "version-16"))  # fmt: skip
    erpnext = make_remote(public, "erpnext", tags=("v15.17.3",), branches=("version-15",))
    erpnext.commit_files(
        "v16", {"pyproject.toml": ERPNEXT_PYPROJECT, "erpnext/hooks.py": 'app_name = "erpnext"\n'}
    )
    erpnext.tag("v16.1.2")
    erpnext.tag("v16.0.0", branch="main")  # an older v16 tag on the same commit: v16.1.2 wins
    make_remote(public, "payments", tags=("v15.3.0",), branches=("version-15", "develop"))
    macrs = make_remote(private, "de_macrs", tags=("v0.0.4",), branches=("version-15",))
    macrs.branch("version-16")
    macrs.commit_files("v16 work", {"pyproject.toml": PRIVATE_PYPROJECT, "de_macrs/hooks.py": PRIVATE_HOOKS},
                       branch="version-16")  # fmt: skip
    with GitHTTPServer(private, tokens=[CANARY_TOKEN]) as server:
        apps = [
            {"url": f"file://{public}/erpnext.git", "branch": "v15.17.3"},
            {"url": server.url("de_macrs.git", "${DE_MACRS_PAT}"), "branch": "v0.0.4"},
            {"url": f"file://{public}/payments.git", "branch": "v15.3.0"},
        ]
        env = {"FRAPPE_PATH": f"file://{public}/frappe.git", "FRAPPE_BRANCH": "v15.10.0",
               "DE_MACRS_PAT": CANARY_TOKEN, "DE_SITE_VERSION": "v1.2.0"}  # fmt: skip
        ws = make_workspace(tmp_path / "ws", env=env, apps=apps)
        yield Remotes(public, server, ws)


def test_upgrade_plan_16_proposes_refs_files_and_commands_that_work_pasted(remotes: Remotes) -> None:
    ws, public = remotes.ws, remotes.root
    before = {name: (ws / name).read_bytes() for name in (".env", "apps.json")}
    result = invoke("upgrade-plan", "16", "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert {name: (ws / name).read_bytes() for name in (".env", "apps.json")} == before
    assert json.loads((ws / "apps.v16.json").read_text()) == [
        {"url": f"file://{public}/erpnext.git", "branch": "v16.1.2"},
        {"url": remotes.server.url("de_macrs.git", "${DE_MACRS_PAT}"), "branch": "version-16"},
    ]  # payments has no v16 release: left out, and said so
    env = parse_env_text((ws / ".env.v16").read_text()).values
    assert (env["FRAPPE_BRANCH"], env["PYTHON_VERSION"], env["NODE_VERSION"]) == (
        "v16.2.1",
        "3.14.2",
        "24.12.0",
    )
    assert env["DE_SITE_VERSION"] == "v1.2.1"  # the next free version after .env's v1.2.0
    assert env["DE_MACRS_PAT"] == CANARY_TOKEN and env["IMAGE_NAME"] == "desiredeffect/erpnext-custom"
    assert stat.S_IMODE((ws / ".env.v16").stat().st_mode) == 0o600
    out = result.stdout
    assert "Frappe 15 -> 16" in out
    assert "  frappe: v15.10.0 -> v16.2.1 (tag)\n" in out
    assert (
        "  erpnext: v15.17.3 -> v16.1.2 (tag)\n    frappe-dependencies: frappe >=16.0.0-dev,<17.0.0\n" in out
    )
    assert "  de_macrs: v0.0.4 -> version-16 (branch)\n" in out
    assert "    required_apps: erpnext, hrms\n" in out
    assert "  payments: v15.3.0 -> MISSING\n" in out
    assert "  Python 3.14.2, Node 24.12.0 (Frappe 16's pair)\n" in out
    err = " ".join(result.stderr.split())
    assert (
        f"payments: file://{public}/payments.git has no v16.x.y release tag and no version-16 branch" in err
    )
    assert "de_macrs at version-16 declares frappe >=15.0.0,<16.0.0: not Frappe 16" in err
    assert "de_macrs at version-16 requires hrms (hooks.py), which the plan has not" in err
    assert CANARY_TOKEN not in result.stdout + result.stderr + (ws / "apps.v16.json").read_text()
    # the workspace has no .gitignore/.dockerignore that would leave the secrets' copy out
    assert (
        ".env.v16 holds .env's tokens and passwords, and .gitignore and .dockerignore would not leave it out"
        in err
    )

    commands = [
        line.strip() for line in out.split("next:\n", 1)[1].splitlines() if line.startswith("  imagekit")
    ]
    check = commands[0]
    assert check == f"imagekit check -w {shlex.quote(str(ws))} --env-file .env.v16 --apps-file apps.v16.json"
    pasted = subprocess.run(
        ["sh", "-c", check], capture_output=True, text=True, env=_shell_env(), timeout=120
    )
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert "v16.1.2" in pasted.stdout and "version-16" in pasted.stdout and "v16.2.1" in pasted.stdout
    assert CANARY_TOKEN not in pasted.stdout + pasted.stderr
    assert commands[1].startswith("imagekit build -w ") and commands[1].endswith(
        "--env-file .env.v16 --apps-file apps.v16.json"
    )
    planned = subprocess.run(["sh", "-c", commands[1] + " --dry-run --json"], capture_output=True, text=True,
                             env=_shell_env(), timeout=120)  # fmt: skip
    assert planned.returncode == 0, planned.stdout + planned.stderr  # the printed build, as a dry run
    build = json.loads(planned.stdout)
    assert (build["version"], build["frappe"]["ref"]) == ("v1.2.1", "v16.2.1")
    assert [(a["name"], a["ref"]) for a in build["apps"]] == [
        ("erpnext", "v16.1.2"),
        ("de_macrs", "version-16"),
    ]
    assert CANARY_TOKEN not in planned.stdout + planned.stderr


def _shell_env() -> dict[str, str]:
    """The shell a user pastes into: the venv's ``imagekit`` first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def test_existing_proposed_files_are_kept_unless_forced(remotes: Remotes) -> None:
    ws = remotes.ws
    (ws / "apps.v16.json").write_text("mine\n")
    refused = invoke("upgrade-plan", "16", "-w", str(ws))
    assert refused.exit_code == 6
    assert "already has apps.v16.json: nothing was written" in refused.stderr
    assert (ws / "apps.v16.json").read_text() == "mine\n" and not (ws / ".env.v16").exists()
    forced = invoke("upgrade-plan", "16", "-w", str(ws), "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads((ws / "apps.v16.json").read_text())[0]["branch"] == "v16.1.2"


def test_a_jump_over_a_major_is_refused_unless_allowed(remotes: Remotes) -> None:
    ws = remotes.ws
    refused = invoke("upgrade-plan", "17", "-w", str(ws))
    assert refused.exit_code == 2
    assert "Frappe 15 -> 17 skips 16: each major's patches are written for a database of the one before" in (
        " ".join(refused.stderr.split())
    )
    assert not (ws / "apps.v17.json").exists() and not (ws / ".env.v17").exists()
    allowed = invoke("upgrade-plan", "17", "-w", str(ws), "--allow-skip")
    # frappe has only a v17 pre-release and no version-17 branch: nothing to plan, nothing written
    assert allowed.exit_code == 12, allowed.output
    assert "has no v17.x.y release tag and no version-17 branch: nothing was written" in " ".join(
        allowed.stderr.split()
    )
    assert not (ws / "apps.v17.json").exists()


def test_the_jump_rules() -> None:
    upgradeplan.check_jump(15, 16, allow_skip=False)
    upgradeplan.check_jump(15, 17, allow_skip=True)
    with pytest.raises(UsageError, match="skips 16, 17"):
        upgradeplan.check_jump(15, 18, allow_skip=False)
    with pytest.raises(UsageError, match="does not go forward"):
        upgradeplan.check_jump(16, 16, allow_skip=True)
    assert upgradeplan.current_major("version-15", None) == 15
    assert upgradeplan.current_major("lab-15", 15) == 15
    with pytest.raises(UsageError, match="--from"):
        upgradeplan.current_major("lab-15", None)


@pytest.mark.parametrize(
    ("spec", "fits"),
    [(">=16.0.0-dev,<17.0.0", True), (">=15.0.0,<16.0.0", False), ("~=16.1", True), ("not a spec", None)],
)
def test_a_declared_frappe_dependency_fits_a_major_or_not(spec: str, fits: bool | None) -> None:
    assert upgradeplan.fits(spec, 16) is fits


def test_required_apps_are_read_never_run() -> None:
    app = upgradeplan.AppPlan(upgradeplan.Request("x", "https://h/o/x", "v1"), ref="v2", name="x")
    hooks = 'import os\nos.system("touch /tmp/pwned")\nrequired_apps = ["erpnext", "org/hrms", "Bad Name"]\n'
    assert upgradeplan.required_apps(hooks, app) == ["erpnext", "hrms"]
    assert upgradeplan.required_apps("required_apps = [", app) == []
    assert app.problems == ["x: hooks.py at v2 is not valid Python"]
    assert upgradeplan.frappe_dependencies('[tool.bench.frappe-dependencies]\nfrappe = ">=16"\n', app) == {
        "frappe": ">=16"
    }
    long = '[tool.bench.frappe-dependencies]\nfrappe = ">=16' + "0" * 500 + '"\n"Bad Name" = ">=1"\n'
    assert upgradeplan.frappe_dependencies(long, app) == {"frappe": ">=16" + "0" * 96}  # remote text, capped


def test_upgrade_plan_is_listed_with_its_help() -> None:
    listed = invoke("--help")
    assert "upgrade-plan" in listed.stdout
    helped = invoke("upgrade-plan", "--help")
    assert helped.exit_code == 0
    assert "--allow-skip" in helped.stdout and "apps.vMAJOR.json" in helped.stdout


def test_the_proposed_env_file_must_be_left_out_of_git_and_the_build_context(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("# secrets\n.env*\n")
    (tmp_path / ".dockerignore").write_text(".env\n*.env\n!de-example.env\n")
    note = upgradeplan.ignore_note(tmp_path, ".env.v16")
    assert note == (
        ".env.v16 holds .env's tokens and passwords, and .dockerignore would not leave it out: add a line "
        ".env.v16 (or .env*) to .dockerignore."
    )
    (tmp_path / ".dockerignore").write_text("/.env.v16\n")
    assert upgradeplan.ignore_note(tmp_path, ".env.v16") is None


def test_the_proposed_files_are_files_of_the_workspace_with_their_own_lock(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path, env_file=".env.v16", apps_file="apps.v16.json")
    assert (ws.env_file, ws.apps_file) == (tmp_path / ".env.v16", tmp_path / "apps.v16.json")
    assert ws.lock_file == tmp_path / "apps.v16.lock.json"  # apps.lock.json stays the current one's
    assert Workspace.at(tmp_path).lock_file == tmp_path / "apps.lock.json"
    for bad in ("../.env", "/etc/passwd", "-rf", ".."):
        with pytest.raises(UsageError, match="is not a file name of the workspace"):
            Workspace.at(tmp_path, env_file=bad)
