"""`imagekit site new`: the bench command, the passwords on stdin, the apps of the image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit.deploy import benchsite, sitenew
from frappe_imagekit.errors import ConfigError, ExitCode, NotFoundError, UsageError
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke

ROOT = "Root-CANARY-0123456789abcdef"
ADMIN = "Admin-CANARY-0123456789abcdef"
LAB = Path(__file__).resolve().parents[1] / "fixtures" / "frappe-v15-lab"


def test_argv_is_frappe_dockers_new_site_without_any_password():
    argv = benchsite.new_site_argv("abc123", "erp.localhost", apps=["erpnext", "hrms"])
    assert argv == [
        "docker", "exec", "-i", "-e", "PYTHONUNBUFFERED=1", "abc123", "bench", "new-site", "erp.localhost",
        "--mariadb-user-host-login-scope=%", "--install-app", "erpnext", "--install-app", "hrms",
    ]  # fmt: skip
    assert not any("password" in part for part in argv)


def test_argv_refuses_an_option_as_site_or_app():
    with pytest.raises(UsageError, match="not a valid site name"):
        benchsite.new_site_argv("abc", "--force")
    with pytest.raises(ConfigError, match="not a Python package name"):
        benchsite.new_site_argv("abc", "a.local", apps=["--admin-password=x"])


def test_stdin_answers_the_real_prompts_in_order():
    """Transcript 48: the root password first, then the Administrator password twice (49: once
    is not enough, click aborts at the re-enter prompt)."""
    transcript = (LAB / "48-new-site-s2.txt").read_text()
    prompts = [p for p in ("MySQL root password: ", "Set Administrator password: ",
                           "Re-enter Administrator password: ") if p in transcript]  # fmt: skip
    assert len(prompts) == 3
    assert transcript.index(prompts[0]) < transcript.index(prompts[1]) < transcript.index(prompts[2])
    answers = sitenew.Passwords(ROOT, ADMIN).stdin().decode().splitlines()
    assert answers == [ROOT, ADMIN, ADMIN]
    assert "Aborted!" in (LAB / "49-new-site-admin-password-once-aborted.txt").read_text()


def test_passwords_come_from_the_env_file():
    got = sitenew.passwords(f"# x\nDB_PASSWORD={ROOT}\nADMIN_PASSWORD='{ADMIN}'\n", "/srv/erp.env")
    assert (got.root, got.admin) == (ROOT, ADMIN)


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (None, NotFoundError, "env file /srv/erp.env cannot be read"),
        (f"ADMIN_PASSWORD={ADMIN}\n", ConfigError, "/srv/erp.env has no DB_PASSWORD: set it there"),
        (f"DB_PASSWORD={ROOT}\nADMIN_PASSWORD=\n", ConfigError, "has no ADMIN_PASSWORD"),
        (f'DB_PASSWORD="{ROOT}\nx"\nADMIN_PASSWORD={ADMIN}\n', ConfigError, "spans lines"),
    ],
)
def test_bad_env_file_is_one_sentence_without_the_secret(text, error, message):
    with pytest.raises(error) as info:
        sitenew.passwords(text, "/srv/erp.env")
    assert message in str(info.value)
    assert ROOT not in str(info.value) and ADMIN not in str(info.value)


def write_build(ws: Path, version: str, apps: list[str]) -> None:
    (ws / "builds").mkdir(parents=True, exist_ok=True)
    data = {
        "schema_version": 1, "version": version, "status": "succeeded",
        "frappe": {"ref": "version-15"},
        "apps": [{"name": name, "ref": "version-15"} for name in apps],
    }  # fmt: skip
    (ws / "builds" / f"{version}.json").write_text(json.dumps(data))


def test_apps_come_from_the_build_record_of_the_running_tag(tmp_path: Path):
    write_build(tmp_path, "v1.0.0", ["frappe", "erpnext", "hrms"])
    assert sitenew.image_apps(Workspace.at(tmp_path), "local/erp:v1.0.0") == ("v1.0.0", ["erpnext", "hrms"])
    with pytest.raises(NotFoundError, match="unknown version v2.0.0"):
        sitenew.image_apps(Workspace.at(tmp_path), "local/erp:v2.0.0")
    with pytest.raises(NotFoundError, match="which has no tag"):
        sitenew.image_apps(Workspace.at(tmp_path), "local/erp@sha256:" + "a" * 64)


def test_failure_message_from_the_real_wrong_password_transcript():
    text = (LAB / "53-new-site-wrong-root-password.txt").read_text()
    message = sitenew.failure_message("sc.lab", text, "erp-backend-1")
    assert message.startswith("bench new-site sc.lab failed (pymysql.err.OperationalError: (1045")
    assert "set DB_PASSWORD in the env file to the database's root password" in message
    # 53c: drop-site of the half-made site asks for the root password
    drop = "drop it with `docker exec -i erp-backend-1 bench drop-site sc.lab --no-backup` (it asks for"
    assert drop in message
    assert "Dropping site database and user" in (LAB / "53c-drop-site-half-made.txt").read_text()
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    taken = sitenew.failure_message("sb.lab", (LAB / "52-new-site-source-sql-existing.txt").read_text(), "c")
    assert taken == (
        "bench new-site sb.lab failed (Site sb.lab already exists): a site of that name is there; "
        "pick another name."
    )


def test_cli_refuses_a_bad_site_name_before_connecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from frappe_imagekit.cli import site_cmd

    opened: list[object] = []
    monkeypatch.setattr(site_cmd, "open_runner", lambda *a, **k: opened.append(a) or pytest.fail("connected"))
    (tmp_path / "imagekit.toml").write_text(
        '[targets.prod]\nproject = "erp"\ncompose = ["compose.yaml"]\nenv_file = "/srv/erp.env"\n'
    )
    result = invoke("site", "new", "a_b.local", "prod", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "not a valid site name" in result.stderr and opened == []


def test_cli_unknown_target_and_target_without_env_file(tmp_path: Path):
    (tmp_path / "imagekit.toml").write_text('[targets.prod]\nproject = "erp"\ncompose = ["compose.yaml"]\n')
    unknown = invoke("site", "new", "erp.localhost", "-w", str(tmp_path))
    assert unknown.exit_code == ExitCode.NOT_FOUND, unknown.output
    assert "there is no target 'local'" in unknown.stderr
    bare = invoke("site", "new", "erp.localhost", "prod", "-w", str(tmp_path))
    assert bare.exit_code == ExitCode.USAGE, bare.output
    assert "target prod names no env_file: pass --env-file" in bare.stderr


def test_cli_env_file_without_admin_password_stops_before_docker(tmp_path: Path):
    env_file = tmp_path / "stack.env"
    env_file.write_text(f"DB_PASSWORD={ROOT}\n")
    (tmp_path / "imagekit.toml").write_text(
        f'[targets.local]\nproject = "erp"\ncompose = ["compose.yaml"]\nenv_file = "{env_file}"\n'
        'docker_host = "unix:///nonexistent/docker.sock"\n'
    )
    result = invoke("site", "new", "erp.localhost", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.VALIDATION, result.output
    assert f"{env_file} has no ADMIN_PASSWORD: set it there" in result.stderr
    assert ROOT not in result.output


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8080\n", "127.0.0.1:8080"),
        ("0.0.0.0:49153\n[::]:49153\n", "127.0.0.1:49153"),  # docker 20.10 on every address
        ("[::1]:8080\n", "[::1]:8080"),
        ("[::1]:8080\n10.0.0.5:8081\n", "10.0.0.5:8081"),  # IPv4 first
        ("", None),
        ("Error: No public port '8080/tcp' published for x\n", None),
        ("127.0.0.1:99999\nexample.com:80\n$(reboot):80\n", None),  # not an address: not shown
    ],
)
def test_the_published_address_is_read_from_docker_port(text: str, address: str | None):
    assert sitenew.first_address(text) == address


def test_the_open_line_names_the_url_and_what_a_browser_needs():
    assert sitenew.open_line("erp.localhost", "127.0.0.1:8080") == (
        "open http://erp.localhost:8080/ (the frontend is published on 127.0.0.1:8080)."
    )
    assert sitenew.open_line("erp.example.com", "127.0.0.1:8080") == (
        "open http://erp.example.com:8080/ (the frontend is published on 127.0.0.1:8080); "
        "erp.example.com must resolve to this machine: a line `127.0.0.1 erp.example.com` in /etc/hosts "
        "does it."
    )
    assert sitenew.open_line("erp.localhost", "127.0.0.1:8080", "deploy@srv:22") == (
        "the frontend is published on 127.0.0.1:8080 of deploy@srv:22: open http://erp.localhost:8080/ "
        "there or through a tunnel."
    )
    assert sitenew.open_line("erp.localhost", None) == (
        "no frontend port is published: publish the frontend's 8080 to reach the site from a browser."
    )
