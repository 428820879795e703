"""`imagekit init`: the workspace it writes, its pins, and what it refuses."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from frappe_imagekit import initspace
from frappe_imagekit.envfile import parse_env_text, parse_example_text
from frappe_imagekit.errors import ExitCode, UsageError
from frappe_imagekit.targets import load_targets
from tests.support.cli import invoke
from tests.support.githttp import make_remote

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_FILES = {
    "de-example.env", ".env", "apps.json", "compose.yaml", "overrides/compose.mariadb.yaml",
    "overrides/compose.redis.yaml", "overrides/compose.noproxy.yaml", "imagekit.toml",
    ".gitignore", ".dockerignore",
}  # fmt: skip


def env_of(folder: Path) -> dict[str, str]:
    return parse_env_text((folder / ".env").read_text()).values


def test_init_offline_writes_the_workspace_and_check_passes(tmp_path: Path):
    folder = tmp_path / "erp"
    result = invoke("init", str(folder), "--offline", "--apps", "erpnext,hrms")
    assert result.exit_code == 0, result.output
    written = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert written == ALL_FILES
    assert stat.S_IMODE((folder / ".env").stat().st_mode) == 0o600
    env = env_of(folder)
    assert env["FRAPPE_BRANCH"] == "version-15"
    assert (env["PYTHON_VERSION"], env["NODE_VERSION"]) == ("3.11.6", "20.19.2")
    assert len(env["DB_PASSWORD"]) >= 32 and len(env["ADMIN_PASSWORD"]) >= 32
    assert env["DB_PASSWORD"] != env["ADMIN_PASSWORD"]
    assert env["FRAPPE_SITE_NAME_HEADER"] == "$host"  # nginx's variable, quoted in .env
    for secret in (env["DB_PASSWORD"], env["ADMIN_PASSWORD"]):  # never printed
        assert secret not in result.output
    apps = json.loads((folder / "apps.json").read_text())
    assert apps == [
        {"url": "https://github.com/frappe/erpnext", "branch": "version-15"},
        {"url": "https://github.com/frappe/hrms", "branch": "version-15"},
    ]
    assert "--offline: apps.json and FRAPPE_BRANCH name the branch version-15" in result.stderr
    assert "imagekit build && imagekit deploy local\n" in result.stdout
    assert "imagekit site new erp.localhost local\n" in result.stdout
    assert f"cd {folder}\n" in result.stdout
    (target,) = load_targets(folder).values()
    assert (target.name, target.project, target.env_file) == ("local", "erp", ".env")
    assert target.compose == initspace.COMPOSE_FILES

    check = invoke("check", "-w", str(folder), "--offline")
    assert check.exit_code == 0, check.output
    assert "0 error(s), 0 warning(s)." in check.stdout


@pytest.mark.parametrize(
    ("frappe_path", "exit_code"),
    [
        ("http://127.0.0.1:18418/frappe", 0),  # a loopback mirror: apps.json's URL rule (real lab)
        ("file:///srv/git/frappe", 0),
        ("http://git.example.com/frappe", 1),  # plain http off this machine: refused
    ],
)
def test_init_schema_takes_what_a_workspace_without_internet_sets(
    tmp_path: Path, frappe_path: str, exit_code: int
):
    """The keys a user without internet edits after `init --offline` (real lab, 2026-12-07): a
    loopback FRAPPE_PATH, BUILD_NETWORK, CA_CERTS_FILE and the stack's MariaDB/Redis images."""
    folder = tmp_path / "erp"
    assert invoke("init", str(folder), "--offline").exit_code == 0
    env = env_of(folder)
    assert (env["BUILD_NETWORK"], env["CA_CERTS_FILE"]) == ("", "")
    assert (env["MARIADB_IMAGE"], env["REDIS_IMAGE"]) == ("mariadb:10.11", "redis:6.2-alpine")
    text = (folder / ".env").read_text()
    text = text.replace("FRAPPE_PATH=https://github.com/frappe/frappe", f"FRAPPE_PATH={frappe_path}")
    text = text.replace("BUILD_NETWORK=\n", "BUILD_NETWORK=host\n")
    (folder / ".env").write_text(text)
    check = invoke("check", "-w", str(folder), "--offline")
    assert check.exit_code == exit_code, check.output
    assert "warning" not in check.stderr
    if exit_code:
        assert "FRAPPE_PATH" in check.stderr and "loopback" in check.stderr


def test_init_frappe_16_pairs_python_and_node(tmp_path: Path):
    result = invoke("init", str(tmp_path), "--offline", "--frappe", "16")
    assert result.exit_code == 0, result.output
    env = env_of(tmp_path)
    assert (env["FRAPPE_BRANCH"], env["PYTHON_VERSION"], env["NODE_VERSION"]) == (
        "version-16", "3.14.2", "24.12.0",
    )  # fmt: skip
    assert invoke("check", "-w", str(tmp_path), "--offline").exit_code == 0


def test_init_never_overwrites_an_existing_file(tmp_path: Path):
    (tmp_path / ".env").write_text("KEEP=1\n")
    result = invoke("init", str(tmp_path), "--offline")
    assert result.exit_code == ExitCode.TAG_EXISTS == 6, result.output
    assert f"{tmp_path} already has .env: nothing was written" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [".env"]
    assert (tmp_path / ".env").read_text() == "KEEP=1\n"


def test_init_force_overwrites_and_says_so(tmp_path: Path):
    (tmp_path / ".env").write_text("KEEP=1\n")
    result = invoke("init", str(tmp_path), "--offline", "--force")
    assert result.exit_code == 0, result.output
    assert ".env (overwritten)" in result.stdout
    assert "a database that exists keeps its old root password" in result.stderr
    assert "DB_PASSWORD" in env_of(tmp_path)


@pytest.mark.parametrize(
    ("apps", "message"),
    [
        ("hrms", "--apps has hrms without erpnext, which it needs"),
        ("erpnext,frappe", "--apps lists frappe"),
        ("erp-next", "is not a Python package name"),
        (",", "--apps names no app"),
    ],
)
def test_init_refuses_bad_apps_before_writing(tmp_path: Path, apps: str, message: str):
    result = invoke("init", str(tmp_path / "ws"), "--offline", "--apps", apps)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.stderr
    assert not (tmp_path / "ws").exists()


def test_init_refuses_unknown_major_and_bad_site(tmp_path: Path):
    assert (
        "--frappe 14 is not a Frappe major imagekit knows: use 15 or 16"
        in invoke("init", str(tmp_path), "--offline", "--frappe", "14").stderr
    )
    bad = invoke("init", str(tmp_path), "--offline", "--site", "-x")
    assert bad.exit_code == ExitCode.USAGE and "--site" in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_pins_the_newest_release_of_the_major_on_the_remotes(tmp_path: Path, monkeypatch):
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    make_remote(remotes, "frappe", tags=("v15.9.1", "v15.10.0", "v16.0.0"), annotated=("v15.10.0",))
    make_remote(remotes, "erpnext", tags=("v15.2.0", "v15.17.3", "v15.17.10-beta", "v14.99.0"))
    make_remote(remotes, "payments", tags=(), branches=("version-15", "develop"))
    monkeypatch.setenv(initspace.GIT_BASE_ENV, f"file://{remotes}")
    folder = tmp_path / "ws"
    result = invoke("init", str(folder), "--apps", "erpnext,payments")
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "apps.json").read_text()) == [
        {"url": f"file://{remotes}/erpnext", "branch": "v15.17.3"},
        {"url": f"file://{remotes}/payments", "branch": "version-15"},
    ]
    env = env_of(folder)
    assert (env["FRAPPE_PATH"], env["FRAPPE_BRANCH"]) == (f"file://{remotes}/frappe", "v15.10.0")
    assert "payments: no v15.x.y release tag on the remote; pinned to the branch version-15" in result.stderr
    assert "erpnext: v15.17.3 (tag)" in result.stdout


def test_init_names_offline_when_a_remote_is_missing(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(initspace.GIT_BASE_ENV, f"file://{tmp_path}/nothing")
    result = invoke("init", str(tmp_path / "ws"), "--apps", "erpnext")
    assert result.exit_code == ExitCode.GIT, result.output
    assert "imagekit init --offline" in result.stderr
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("base", ["ssh://git@host/frappe", "http://mirror.example/frappe", "-uhttps://x"])
def test_a_git_base_that_breaks_the_url_rules_is_refused(tmp_path: Path, monkeypatch, base: str):
    monkeypatch.setenv(initspace.GIT_BASE_ENV, base)
    result = invoke("init", str(tmp_path / "ws"))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert initspace.GIT_BASE_ENV in result.stderr
    assert not (tmp_path / "ws").exists()


def test_newest_release_ignores_other_majors_and_pre_releases():
    refs = {f"refs/tags/{t}": "x" for t in ("v15.9.9", "v15.10.1", "v16.1.0", "v15.11.0-beta.1")}
    refs["refs/heads/version-15"] = "y"
    assert initspace.newest_release(refs, 15) == "v15.10.1"
    assert initspace.newest_release(refs, 16) == "v16.1.0"
    with pytest.raises(UsageError, match="neither a v14.x.y release tag nor a version-14 branch"):
        initspace.pin_from_refs("x", "https://h/x", refs, 14)


def test_example_is_the_repository_schema_without_the_token_block():
    root = (REPO_ROOT / "de-example.env").read_text()
    assert root == initspace.example_template()  # one file: the root one links to the package's
    example = initspace.example_text("erp")
    specs = parse_example_text(example)
    assert "DE_MACRS_PAT" not in specs and "DE_MACRS_PAT" in parse_example_text(root)
    assert set(parse_example_text(root)) - {"DE_MACRS_PAT"} < set(specs)
    assert specs["DB_PASSWORD"].secret and specs["ADMIN_PASSWORD"].secret
    assert specs["COMPOSE_PROJECT_NAME"].required


def test_compose_layout_has_frappe_docker_shape_and_no_dollar_host():
    files = initspace.plan(
        initspace.Choices(Path("erp"), 15, ("erpnext",), "erp.localhost", True),
        initspace.resolve_pins(("frappe", "erpnext"), initspace.DEFAULT_GIT_BASE, 15, offline=True),
    ).files
    services: dict[str, dict] = {}
    for name in initspace.COMPOSE_FILES:
        assert "$host" not in files[name]
        for service, body in yaml.safe_load(files[name])["services"].items():
            services.setdefault(service, {}).update(body)
    assert set(services) == {
        "configurator", "backend", "frontend", "websocket", "queue-short", "queue-long", "scheduler",
        "db", "redis-cache", "redis-queue",
    }  # fmt: skip
    frappe_services = set(services) - {"db", "redis-cache", "redis-queue"}
    assert {services[s]["image"] for s in frappe_services} == {"${CUSTOM_IMAGE}:${CUSTOM_TAG}"}
    assert services["frontend"]["ports"] == ["127.0.0.1:${HTTP_PUBLISH_PORT:-8080}:8080"]
    assert "DB_PASSWORD" not in json.dumps(services["db"]["healthcheck"])  # no password in argv
    assert ".env" in files[".dockerignore"].splitlines() and ".env" in files[".gitignore"].splitlines()


def test_next_commands_cd_only_when_the_workspace_is_elsewhere(tmp_path: Path):
    here = initspace.next_commands(tmp_path, tmp_path, "a.localhost")
    assert here == ["imagekit build && imagekit deploy local", "imagekit site new a.localhost local"]
    there = initspace.next_commands(Path("my erp"), tmp_path, "a.localhost")
    assert there[0] == "cd 'my erp'"
