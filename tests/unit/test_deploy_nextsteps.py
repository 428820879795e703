"""The commands a failed deploy prints (deploy/nextsteps.py, BenchPlace): they name the deploy's
own stack, need no terminal, and a step is offered only when it fits the failure (pure)."""

from __future__ import annotations

import shlex
from pathlib import Path

from frappe_imagekit.cli.sandbox_cmd import down_where_argv
from frappe_imagekit.cli.targetopts import Where, repeated_options, ssh_flags
from frappe_imagekit.deploy.migrate_report import BenchPlace, ssh_prefix, step_commands
from frappe_imagekit.deploy.nextsteps import go_back_step, health_failed_step, imagekit_call, redeploy_step
from frappe_imagekit.deploy.record import DeployRecord
from frappe_imagekit.deploy.rollback import RollbackOptions, RollbackPlan, again_argv
from frappe_imagekit.deploy.sequence import SiteReport, next_steps
from frappe_imagekit.workspace import Workspace

FILES = ["/srv/erp/compose.yaml", "/srv/erp/overrides/compose.mariadb.yaml", "/srv/erp/overrides/ports.yaml"]
PLACE = BenchPlace(
    project="erp",
    compose=("docker-compose",),
    compose_files=tuple(FILES),
    env_file="/srv/erp/erp.env",
    up_env=(("CUSTOM_IMAGE", "de/erp"), ("CUSTOM_TAG", "v1.3.0"), ("PULL_POLICY", "never")),
)
COMPOSE = "docker-compose -p erp -f " + " -f ".join(FILES) + " --env-file /srv/erp/erp.env"


def test_a_named_target_is_printed_by_name_with_what_overrode_it():
    call = imagekit_call("lab", "labik", FILES, env_file="/x.env", options=[("-w", "/ws"), ("--host", "h")])
    assert call.deploy("--version", "v1.3.0") == "imagekit deploy lab -w /ws --host h --version v1.3.0"
    assert call.rollback("--yes") == "imagekit rollback lab -w /ws --host h --yes"


def test_without_a_target_every_file_the_env_file_and_the_state_folder_are_named():
    call = imagekit_call(None, "labik", FILES, env_file="/srv/erp/erp.env", state_dir="/srv/state",
                         options=[("--image-var", "APP_IMAGE")])  # fmt: skip
    assert shlex.split(call.deploy("--version", "v1")) == [
        "imagekit", "deploy", "--project", "labik", "--compose", FILES[0], "--compose", FILES[1],
        "--compose", FILES[2], "--env-file", "/srv/erp/erp.env", "--state-dir", "/srv/state",
        "--image-var", "APP_IMAGE", "--version", "v1",
    ]  # fmt: skip
    # rollback reads the files of the last up from the state folder: it takes no --compose
    assert call.rollback("--dry-run") == "imagekit rollback --project labik --state-dir /srv/state --dry-run"


def test_a_remote_target_repeats_the_host_and_the_ssh_options():
    call = imagekit_call(None, "erp", FILES[:1], host="deploy@erp.example.com:2222",
                         options=[("--known-hosts", "/me/kh"), ("--identity", "/me/id")])  # fmt: skip
    expected = "--host deploy@erp.example.com:2222 --known-hosts /me/kh --identity /me/id"
    assert call.rollback("--yes") == f"imagekit rollback --project erp {expected} --yes"
    assert call.deploy().endswith(f"--compose {FILES[0]} {expected}")


def test_the_command_line_options_repeated_with_and_without_a_target(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    given = {"host": "root@10.0.0.5", "env_file": "/srv/erp.env", "state_dir": None,
             "known_hosts": Path("kh"), "identity": None, "ssh_config": None}  # fmt: skip
    assert repeated_options("prod", given) == (
        ("--host", "root@10.0.0.5"), ("--env-file", "/srv/erp.env"), ("--known-hosts", str(tmp_path / "kh"))
    )  # fmt: skip
    # without a target, the deploy prints the host and the env file itself (resolved on the target)
    assert repeated_options(None, given) == (("--known-hosts", str(tmp_path / "kh")),)


def test_after_a_failed_migrate_the_way_back_is_imagekit_rollback_of_this_deploy():
    call = imagekit_call("lab", "labik", FILES)
    text = go_back_step(call, deploy_id="20261207T120935Z", version="v1.2.0", replaced=True, backed_up=True,
                        previous="v1.1.0")  # fmt: skip
    assert "runs v1.1.0 again (what ran before it), database and image together" in text
    assert step_commands(text) == [
        "imagekit rollback lab --deploy 20261207T120935Z --dry-run",
        "imagekit rollback lab --deploy 20261207T120935Z --yes",
    ]
    # no bench restore (it prompts for the root password): rollback feeds it from the env file
    assert not [c for c in step_commands(text) if "restore" in c]


def test_no_way_back_is_offered_where_none_fits():
    call = imagekit_call("lab", "labik", FILES)
    same = go_back_step(
        call, deploy_id="x", version="v1.3.0", replaced=True, backed_up=True, previous="v1.3.0"
    )
    assert same.startswith("v1.3.0 also ran before this deploy") and step_commands(same) == []
    first = go_back_step(call, deploy_id="x", version="v1", replaced=True, backed_up=True, previous=None)
    assert first.startswith("nothing ran on this stack before") and step_commands(first) == []
    unsaved = go_back_step(call, deploy_id="x", version="v2", replaced=True, backed_up=False, previous="v1")
    assert "took no backup (--no-backup)" in unsaved and step_commands(unsaved) == []


def test_after_a_migrate_only_rollback_undoes_the_deploy_that_put_the_version_in_place():
    call = imagekit_call("lab", "labik", FILES)
    text = go_back_step(call, deploy_id="x", version="v1.3.0", replaced=False, backed_up=False, previous=None)
    assert step_commands(text) == ["imagekit rollback lab --dry-run", "imagekit rollback lab --yes"]


def test_a_failed_health_check_after_a_good_migrate_advises_fixing_the_service_not_a_restore():
    call = imagekit_call("lab", "labik", FILES)
    text = health_failed_step(PLACE, call, "s1.lab", "frontend", "v1.3.0")
    assert "its health check through frontend (see the error below) after its migrate succeeded" in text
    assert "a restore under an older version would pair old code with the newer schema" in text
    assert step_commands(text) == [
        f"{COMPOSE} exec -T backend bench --site s1.lab set-maintenance-mode on",
        f"{COMPOSE} ps",
        f"{COMPOSE} logs --tail 50 frontend",
        f"env CUSTOM_IMAGE=de/erp CUSTOM_TAG=v1.3.0 PULL_POLICY=never {COMPOSE} up -d frontend",
        f"{COMPOSE} exec -T backend bench --site s1.lab set-maintenance-mode off",
    ]
    again = redeploy_step(call, "v1.3.0")
    assert step_commands(again) == ["imagekit deploy lab --version v1.3.0 --full-down"]
    assert "again with --full-down (it stops and recreates every service" in " ".join(again.split())


def test_a_docker_host_is_set_on_every_compose_line_and_ssh_needs_no_terminal():
    place = BenchPlace(project="erp", compose_files=(FILES[0],), ssh=("ssh", "deploy@erp"),
                       env=(("DOCKER_HOST", "unix:///run/other.sock"),))  # fmt: skip
    line = place.bench("--site", "a", "migrate")
    ssh, remote = shlex.split(line)[:2], shlex.split(line)[2]
    assert ssh == ["ssh", "deploy@erp"]
    assert remote == (
        f"env DOCKER_HOST=unix:///run/other.sock docker compose -p erp -f {FILES[0]} exec -T backend "
        "bench --site a migrate"
    )


def test_a_stopped_rollback_prints_itself_again_by_target_with_the_options_it_was_given():
    undo = DeployRecord(version="v2", project="erp", started="2026-12-01T16:55:00+00:00")
    options = RollbackOptions.of("erp", state_dir="/s", target="prod",
                              repeat=(("-w", "/ws"), ("--db-password-var", "MARIADB_ROOT")))  # fmt: skip
    made = RollbackPlan(options, "deploy@erp:2222", undo, "v1", "de/erp", [], True, {})
    assert again_argv(made) == [
        "imagekit", "rollback", "prod", "-w", "/ws", "--db-password-var", "MARIADB_ROOT",
        "--deploy", "20261201T165500Z", "--to", "v1", "--yes",
    ]  # fmt: skip


def test_the_printed_sandbox_down_names_the_same_place(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    given = Where(host="root@10.0.0.5:2222", state_dir="/srv/state", known_hosts=Path("kh"))
    ws = Workspace.at(tmp_path / "ws")
    assert down_where_argv(None, given, ws) == [
        "imagekit", "sandbox", "--host", "root@10.0.0.5:2222", "--state-dir", "/srv/state",
        "--known-hosts", str(tmp_path / "kh"), "-w", str(tmp_path / "ws"),
    ]  # fmt: skip
    here = Workspace.at(tmp_path)
    assert down_where_argv("lab", Where(), here) == ["imagekit", "sandbox", "lab"]


def test_the_release_step_builds_and_deploys_in_the_deploys_workspace():
    site = SiteReport("a.local", status="failed", failure="patch", result="patch-failed",
                      failed_patch="app.patches.v2.fix", exception="KeyError: '10'",
                      exception_type="KeyError")  # fmt: skip
    call = imagekit_call("lab", "labik", FILES, options=[("-w", "/srv/ws")])
    (release, _go_back) = next_steps(site, PLACE, call, "v2", go_back="or go back: ...")
    assert step_commands(release) == ["imagekit build -w /srv/ws", "imagekit deploy lab -w /srv/ws"]


def test_ssh_lines_carry_the_deploys_own_key_and_known_hosts():
    prefix = ssh_prefix("root@127.0.0.1:2322", ("-i", "/k", "-o", "UserKnownHostsFile=/kh"))
    assert prefix == ("ssh", "-i", "/k", "-o", "UserKnownHostsFile=/kh", "-p", "2322", "root@127.0.0.1")
    known = f"UserKnownHostsFile={Path.cwd() / 'kh'}"
    assert ssh_flags(Path("kh"), Path("/k"), None) == ("-i", "/k", "-o", known)
