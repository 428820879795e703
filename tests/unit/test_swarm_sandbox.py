"""The swarm sandbox's pure parts (issue 21 item 6): which deploy it starts, the stack rewritten
for it, the one way in (argv), the restore job, and the CLI's refusals before anything connects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_swarm_stack import DIGEST, IMAGE, PIN, config

from frappe_imagekit.deploy.swarm import records, stack
from frappe_imagekit.deploy.swarm import sandbox as swarm_sandbox
from frappe_imagekit.deploy.swarm.records import SiteBackup, SwarmRecord
from frappe_imagekit.errors import NotFoundError, UsageError
from tests.support.cli import cli

OLD = stack.Pin("registry.example/erp", "sha256:" + "01" * 32)
DUMP = SiteBackup(
    "a.local", "sites/a.local/private/backups/20261207_120000-a_local-database.sql.gz", "f" * 64
)
LABELS = {"io.imagekit.sandbox": "erp", "io.imagekit.sandbox.version": "v1"}


def record(
    version: str, previous_version: str | None, backups: tuple[SiteBackup, ...] = (DUMP,)
) -> SwarmRecord:
    return SwarmRecord("erp", version, PIN, 0, deploy_id=f"2026120{version[-1]}T120000Z",
                       previous=OLD if previous_version else None, previous_version=previous_version,
                       backups=backups)  # fmt: skip


def test_the_newest_deploy_that_replaced_the_version_with_backups_is_chosen():
    found = [record("v2", "v1"), record("v3", "v2"), record("v4", "v1", backups=()), record("v5", "v1")]
    assert swarm_sandbox.choose(found, "erp", "v1").deploy_id == "20261205T120000Z"
    assert swarm_sandbox.choose(found[:3], "erp", "v1").deploy_id == "20261202T120000Z"  # v4 kept no backup
    with pytest.raises(NotFoundError, match=r"no swarm deploy of erp replaced v5 with a backup of its sites"):
        swarm_sandbox.choose(found, "erp", "v5")


def test_the_sandbox_stack_publishes_nothing_is_labelled_and_its_networks_are_attachable():
    rendered = stack.render_stack(config(), IMAGE, PIN, oneshot=["configurator"])
    before = repr(rendered.data)
    sandbox = swarm_sandbox.sandbox_stack(rendered, LABELS)
    assert repr(rendered.data) == before  # the production rendering is not changed
    services = sandbox.data["services"]
    assert all("ports" not in body for body in services.values())
    assert all(body["deploy"]["labels"] == body["labels"] == LABELS for body in services.values())
    assert services["frontend"]["deploy"]["replicas"] == 2  # the rest as production's
    assert sandbox.data["networks"]["default"] == {"driver": "overlay", "attachable": True, "labels": LABELS}
    assert sandbox.data["volumes"] == {"sites": {"labels": LABELS}, "db-data": {"labels": LABELS}}
    assert sandbox.pinned == rendered.pinned and sandbox.left_out == ("configurator",)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"volumes": {"sites": {"external": True}}}, "volume sites is external"),
        ({"networks": {"default": {"external": True}}}, "network default is external"),
        ({"bind": True}, "mounts the host folder /srv/sites writable"),
    ],
)
def test_what_the_compose_sandbox_refuses_is_refused(change: dict, said: str):
    data = own()
    data.update({k: v for k, v in change.items() if k != "bind"})
    if change.get("bind"):
        data["services"]["backend"]["volumes"] = ["/srv/sites:/home/frappe/frappe-bench/sites"]
    with pytest.raises(UsageError, match=said) as raised:
        swarm_sandbox.refuse_shared(data, "erp-sandbox-v1", "erp")
    assert raised.value.message.endswith("Nothing was started.")
    swarm_sandbox.refuse_shared(own(), "erp-sandbox-v1", "erp")  # its own volumes: nothing to say
    with pytest.raises(UsageError, match=r"volume sites has a fixed name \(erp_sites\)"):
        swarm_sandbox.refuse_shared(config(), "erp-sandbox-v1", "erp")  # production's names


def own() -> dict:
    """The config as compose renders it under the sandbox's project (no fixed names)."""
    data = config()
    del data["volumes"]["sites"]["name"], data["networks"]["default"]["name"]
    return data


def test_the_one_way_in_is_a_plain_container_on_loopback_only_with_its_env_in_a_file():
    rendered = swarm_sandbox.sandbox_stack(stack.render_stack(config(), IMAGE, PIN, ["configurator"]), LABELS)
    rendered.data["services"]["frontend"].update(
        entrypoint=["nginx-entrypoint.sh"], command="nginx -g 'daemon off;'"
    )
    argv = swarm_sandbox.web_argv("erp-sandbox-v1", rendered, "frontend", 8099, "/state/sandboxes/x.web.env")
    assert argv == [
        "docker", "run", "-d", "--name", "erp-sandbox-v1-way-in",
        "--label", "io.imagekit.swarm-sandbox=erp-sandbox-v1",
        "--restart", "unless-stopped", "-p", "127.0.0.1:8099:8080", "--network", "erp-sandbox-v1_default",
        "--mount", "type=volume,source=erp-sandbox-v1_sites,target=/home/frappe/frappe-bench/sites",
        "--env-file", "/state/sandboxes/x.web.env", "--entrypoint", "nginx-entrypoint.sh",
        f"registry.example/erp@{DIGEST}", "nginx", "-g", "daemon off;",
    ]  # fmt: skip
    assert swarm_sandbox.env_text({"environment": {"BACKEND": "backend:8000", "EMPTY": None}}) == (
        "BACKEND=backend:8000\nEMPTY=\n"
    )
    with pytest.raises(Exception, match="line break"):
        swarm_sandbox.env_text({"environment": ["A=one\ntwo"]})


def test_the_restore_job_reads_productions_volume_read_only_and_restores_on_stdin():
    rendered = stack.render_stack(config(), IMAGE, PIN, ["configurator"])
    assert swarm_sandbox.production_sites("erp", rendered, "backend") == (
        "type=volume,source=erp_sites,target=/ik-production-sites,readonly"
    )
    argv = swarm_sandbox.restore_argv(DUMP)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "restore",
        DUMP.volume_path,
        "a.local",
        "/ik-production-sites",
        "/run/secrets/imagekit-db-root-password",
    ]
    assert 'restore "sites/$2/private/backups/${p##*/}" < "$4"' in argv[2]
    assert "set-maintenance-mode off" in argv[2] and argv[2].startswith("set -e\n")


def test_the_restore_job_refuses_a_site_config_naming_its_own_db_host(tmp_path: Path):
    """The script itself, run by sh here: a backup whose site config names a db_host stops
    before anything is written (the restore would drop a database outside the sandbox)."""
    backups = tmp_path / "prod" / "a.local" / "private" / "backups"
    backups.mkdir(parents=True)
    (backups / "20261207_120000-a_local-database.sql.gz").write_bytes(b"dump")
    config_file = backups / "20261207_120000-a_local-site_config_backup.json"
    config_file.write_text('{"db_name": "_x", "db_host": "prod-db.internal"}')
    argv = swarm_sandbox.restore_argv(DUMP)
    argv[6:8] = [str(tmp_path / "prod"), "/dev/null"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 3, done
    assert done.stdout.splitlines()[-1] == "the site config names its own db_host: not restored"
    assert done.stdout.startswith("sha256 ") and not (tmp_path / "sites").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["sandbox", "v1", "prod", "--backup", "a.local@20261207T120000Z"],
            "--backup is not taken on a swarm target",
        ),
        (["sandbox", "v1", "prod", "--site", "x.local"], "--site is not taken on a swarm target"),
        (["sandbox", "v1", "prod", "--name", "-rf"], "--name"),
        (["sandbox", "v1", "prod", "--port", "70000"], "--port must be a port number from 1 to 65535"),
        (["sandbox", "v1!", "prod"], "VERSION"),
        (
            ["sandbox", "--list", "prod", "--down", "x"],
            "--list and --down NAME take no --backup, and not each other.",
        ),
    ],  # fmt: skip
)
def test_a_swarm_sandbox_refuses_what_it_does_not_take_before_connecting(
    tmp_path: Path, argv: list, said: str
):
    (tmp_path / "imagekit.toml").write_text(
        '[targets.prod]\nproject = "erp"\ncompose = "compose.yaml"\nengine = "swarm"\n'
        'host = "ops@192.0.2.1"\n'  # nothing answers there: a connection attempt would fail otherwise
    )
    result = cli(*argv, "-w", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert said in result.stderr and "Traceback" not in result.output
    assert records.ENGINE == "swarm"
