"""The swarm engine's pure parts (issue 21): the stack file, the sites-volume refusal, job argv,
the merge of a job's two log streams, the rollout's judgement and the migrate judgement."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from frappe_imagekit.deploy.swarm import cli, jobs, rollout, stack
from frappe_imagekit.deploy.swarm import rollback as swarm_rollback
from frappe_imagekit.deploy.swarm.deploy import SwarmOptions, judge, registry_auth
from frappe_imagekit.errors import ConfigError, DeployError, ExitCode
from frappe_imagekit.targets import load_targets
from tests.support.benchimage.transcripts import load
from tests.support.cli import invoke

DIGEST = "sha256:" + "ab" * 32
PIN = stack.Pin("registry.example/erp", DIGEST)
IMAGE = "registry.example/erp:v2"


def config(**extra_volumes: dict) -> dict:
    """What `docker-compose config` prints for a frappe_docker-shaped project (v1 YAML, loaded)."""
    return {
        "version": "3.7",
        "services": {
            "configurator": {"image": IMAGE, "restart": "no", "command": ["bash", "-c", "configure"]},
            "backend": {
                "image": IMAGE,
                "restart": "unless-stopped",
                "container_name": "erp-backend",
                "depends_on": ["configurator"],
                "pull_policy": "never",
                "volumes": [
                    {"type": "volume", "source": "sites", "target": "/home/frappe/frappe-bench/sites"}
                ],
            },
            "frontend": {
                "image": IMAGE,
                "ports": ["127.0.0.1:8080:8080/tcp"],
                "deploy": {"endpoint_mode": "vip", "replicas": 2},
                "volumes": ["sites:/home/frappe/frappe-bench/sites:rw"],
            },
            "db": {"image": "mariadb:10.6", "network_mode": "bridge", "volumes": ["db-data:/var/lib/mysql"]},
        },
        "volumes": {"sites": {"name": "erp_sites", **extra_volumes.get("sites", {})}, "db-data": {}},
        "networks": {"default": {"name": "erp_default", "driver": "bridge"}},
    }


def test_every_frappe_service_is_pinned_and_what_stacks_refuse_is_dropped_and_named():
    rendered = stack.render_stack(config(), IMAGE, PIN, oneshot=["configurator"])
    services = rendered.data["services"]
    assert rendered.pinned == ("backend", "frontend")
    assert rendered.left_out == ("configurator",)
    assert sorted(services) == ["backend", "db", "frontend"]
    assert services["backend"]["image"] == services["frontend"]["image"] == f"registry.example/erp@{DIGEST}"
    assert services["db"]["image"] == "mariadb:10.6"
    assert set(services["backend"]) == {"image", "volumes", "deploy"}
    assert services["backend"]["deploy"] == {"endpoint_mode": "dnsrr", "restart_policy": {"condition": "any"}}
    assert services["frontend"]["deploy"] == {"endpoint_mode": "vip", "replicas": 2}  # the user's kept
    assert services["frontend"]["ports"] == [
        {"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"}
    ]
    assert rendered.notes == (
        "backend: container_name, depends_on, pull_policy dropped (stacks do not take them)",
        "db: network_mode dropped (stacks do not take them)",
        "frontend: port 8080 is published on every address of its node",
    )
    assert rendered.data["networks"] == {"default": {"driver": "overlay"}}
    assert rendered.data["volumes"] == {"sites": {}, "db-data": {}}
    assert json.loads(rendered.text()) == rendered.data


def test_a_null_compose_v2_prints_is_left_out_of_the_stack():
    """Compose v2 2.26 prints `"entrypoint": null` for a service without one; Docker 26's stack
    loader refuses it: "services.backend.entrypoint must be a string" (the Debian 13 host)."""
    data = config()
    data["services"]["backend"].update(entrypoint=None, command=["sh", "-c", "serve"])
    backend = stack.render_stack(data, IMAGE, PIN).data["services"]["backend"]
    assert "entrypoint" not in backend and backend["command"] == ["sh", "-c", "serve"]


def test_a_stack_without_the_image_and_a_digest_that_is_no_digest_are_refused():
    with pytest.raises(DeployError, match="no service of the compose files runs registry.example/erp:v3"):
        stack.render_stack(config(), "registry.example/erp:v3", PIN)
    for digest in ("sha256:abc", "latest", "--sha256:" + "ab" * 32):
        with pytest.raises(DeployError):
            stack.pin("registry.example/erp", digest)
    with pytest.raises(DeployError):
        stack.pin("registry.example/erp:v2", DIGEST)


@pytest.mark.parametrize(
    ("sites", "refused"),
    [
        ({}, "'sites', a volume using the local driver"),
        (
            {"driver": "local", "driver_opts": {"type": "none", "o": "bind", "device": "/srv/x"}},
            "local driver",
        ),
        ({"driver_opts": {"type": "nfs", "o": "addr=10.0.0.5,rw", "device": ":/export/sites"}}, None),
        ({"driver": "rexray/efs"}, None),
    ],
)
def test_more_than_one_node_needs_the_sites_on_shared_storage(sites: dict, refused: str | None):
    rendered = stack.render_stack(config(sites=sites), IMAGE, PIN, oneshot=["configurator"])
    stack.refuse_local_sites(rendered, nodes=1)  # one node: its local volume is the only one
    if refused is None:
        stack.refuse_local_sites(rendered, nodes=3)
        return
    with pytest.raises(DeployError) as caught:
        stack.refuse_local_sites(rendered, nodes=3)
    assert refused in caught.value.message
    assert "the swarm has 3 nodes" in caught.value.message and "NFS" in caught.value.message
    assert caught.value.message.endswith("nothing was changed.")


def test_a_bind_mounted_sites_folder_is_refused_on_two_nodes():
    data = config()
    data["services"]["backend"]["volumes"] = ["/srv/erp/sites:/home/frappe/frappe-bench/sites"]
    rendered = stack.render_stack(data, IMAGE, PIN, oneshot=["configurator"])
    with pytest.raises(DeployError, match="'/srv/erp/sites', a bind mount"):
        stack.refuse_local_sites(rendered, nodes=2)


def test_a_job_gets_the_services_volumes_and_networks_under_the_stacks_names():
    rendered = stack.render_stack(config(), IMAGE, PIN, oneshot=["configurator"])
    body, volumes = rendered.data["services"]["backend"], rendered.data["volumes"]
    mounts = stack.job_mounts("erp", body, volumes)
    assert mounts == ["type=volume,source=erp_sites,target=/home/frappe/frappe-bench/sites"]
    assert stack.job_networks("erp", body, rendered.data["networks"]) == ["erp_default"]
    spec = jobs.JobSpec("erp", "migrate", PIN.ref, ("bench", "--site", "a.local", "migrate"), tuple(mounts),
                        ("erp_default",), node_id="n1")  # fmt: skip
    assert jobs.create_argv(spec, "erp_ik-migrate-abc") == [
        "docker", "service", "create", "--detach", "--name", "erp_ik-migrate-abc", "--mode", "replicated-job",
        "--restart-condition", "none", "--label", "io.imagekit.job=erp",
        "--with-registry-auth",  # registry.example: the user's registry
        "--init", "--stop-signal", "SIGINT", "--stop-grace-period", "20s", "--mount", mounts[0],
        "--network", "erp_default", "--constraint", "node.id==n1",
        PIN.ref, "bench", "--site", "a.local", "migrate",
    ]  # fmt: skip
    with pytest.raises(DeployError, match="without commas"):
        stack.job_mounts("erp", {"volumes": ["/srv/a,b:/home/frappe/frappe-bench/sites"]}, {})


def test_the_two_log_streams_are_merged_in_the_order_they_were_printed():
    stdout = "2026-12-07T16:28:57.2845Z Migrating a.local\n2026-12-07T16:28:57.9Z Executing x in a.local\n"
    stderr = "2026-12-07T16:28:57.28457Z Traceback (most recent call last):\n"
    assert jobs.merge_streams([stdout, stderr]) == (
        "Migrating a.local\nTraceback (most recent call last):\nExecuting x in a.local\n"
    )


def task(
    name: str, state: str, image: str = PIN.ref, desired: str = "Running", tid: str = "t"
) -> cli.TaskRow:
    return cli.TaskRow(tid, name, image, desired, f"{state} 3 seconds ago", "")


def test_the_rollout_waits_for_every_replica_on_the_digest_and_names_a_restart():
    want = rollout.Want("erp", {"erp_backend": PIN.ref, "erp_db": ""})
    rows = [
        cli.ServiceRow("1", "erp_backend", PIN.ref, "2/2"),
        cli.ServiceRow("2", "erp_db", "mariadb", "1/1"),
    ]
    old = task("erp_backend.1", "Running", image="registry.example/erp@sha256:" + "cd" * 32, tid="old")
    new = [task("erp_backend.1", "Running", tid="a"), task("erp_backend.2", "Running", tid="b")]
    db = task("erp_db.1", "Running", image="mariadb", tid="d")
    assert rollout.ready(want, rows, [old, new[0], db]) == ["erp_backend"]
    assert rollout.ready(want, rows, [*new, db]) == []
    failed = cli.TaskRow(
        "c", "erp_backend.2", PIN.ref, "Shutdown", "Failed 1 second ago", "task: non-zero exit (1)"
    )
    assert rollout.problem(want, rows, [*new, failed, db], before={"old"}) == (
        "erp_backend: task failed (task: non-zero exit (1))"
    )
    assert rollout.problem(want, rows, [*new, failed, db], before={"c"}) is None  # an older rollout's


def test_a_migrate_job_is_judged_by_its_output_not_its_task_state():
    failed = load("04-patch-validationerror-post")
    site = failed.truth["site"]
    wrapped = jobs.JobRun("j", "complete", 0, failed.text_bytes.decode())  # a wrapper shell exited 0
    assert judge(wrapped, site).result == "patch-failed"
    clean = load("01-migrate-first-clean")
    ok_site = clean.truth["site"]
    assert judge(jobs.JobRun("j", "complete", 0, clean.text_bytes.decode()), ok_site).result == "ok"
    assert judge(jobs.JobRun("j", "failed", 1, clean.text_bytes.decode()), ok_site).status == "failed"
    silent = judge(jobs.JobRun("j", "complete", 0, ""), ok_site)
    assert (silent.result, silent.exception) == ("error", f"the migrate job ended complete without printing "
                                                         f"`Migrating {ok_site}`")  # fmt: skip


def test_a_target_names_its_engine(tmp_path):
    (tmp_path / "imagekit.toml").write_text(
        '[targets.prod]\nproject = "erp"\ncompose = "compose.yaml"\nengine = "swarm"\n'
        '[targets.old]\nproject = "erp2"\ncompose = "compose.yaml"\n'
    )
    targets = load_targets(tmp_path)
    assert (targets["prod"].engine, targets["old"].engine) == ("swarm", None)
    (tmp_path / "imagekit.toml").write_text(
        '[targets.k]\nproject = "erp"\ncompose = "c.yaml"\nengine = "k8s"\n'
    )
    with pytest.raises(ConfigError, match="engine must be one of compose, swarm"):
        load_targets(tmp_path)


@pytest.mark.parametrize("option", [["--to", "v1"], ["--deploy", "20261207T120000Z"]])
def test_a_swarm_rollback_refuses_what_it_does_not_build_before_connecting(tmp_path, option):
    (tmp_path / "imagekit.toml").write_text(
        '[targets.prod]\nproject = "erp"\ncompose = "compose.yaml"\nengine = "swarm"\n'
    )
    result = invoke("rollback", "prod", *option, "--yes", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--to and --deploy are not built for the swarm engine yet: roll back without them" in result.stderr


def swarm_record(**changes: object) -> dict:
    volume_path = "sites/a.local/private/backups/x-database.sql.gz"
    backup = {"site": "a.local", "path": "/state/backups/x-database.sql.gz", "size": 10,
              "sha256": "ab" * 32, "volume_path": volume_path}  # fmt: skip
    data = {"engine": "swarm", "stack": "erp", "version": "v2", "ref": f"{PIN.repo}@sha256:{'cd' * 32}",
            "exit_code": 0, "previous_version": "v1", "previous_image": PIN.ref,
            "backups": [backup]}  # fmt: skip
    for key, value in changes.items():
        if key.startswith("backup_"):
            backup[key.removeprefix("backup_")] = value
        else:
            data[key] = value
    return data


def test_a_swarm_record_is_checked_before_rollback_uses_it():
    last = swarm_rollback.parse_last(swarm_record())
    assert (last.previous, last.previous_version, last.version) == (PIN, "v1", "v2")
    assert [(b.site, b.volume_path, b.sha256) for b in last.backups] == [
        ("a.local", "sites/a.local/private/backups/x-database.sql.gz", "ab" * 32)
    ]
    with pytest.raises(ValueError, match="previous_image is not IMAGE@sha256:DIGEST"):
        swarm_rollback.parse_last(swarm_record(previous_image="registry.example/erp:v1"))
    with pytest.raises(DeployError, match="names no previous image by digest"):
        swarm_rollback.parse_last(swarm_record(previous_image=None))
    for change in (
        {"backup_volume_path": "sites/b.local/private/backups/x-database.sql.gz"},  # another site's
        {"backup_volume_path": "sites/a.local/private/backups/../../../etc/x.sql.gz"},
        {"backup_site": "a.local; rm -rf /"},
        {"backup_sha256": "not-hex"},
        {"previous_version": "v1 --force"},
        {"previous_image": "registry.example/erp@sha256:short"},
    ):
        with pytest.raises((ValueError, DeployError)):
            swarm_rollback.parse_last(swarm_record(**change))


@pytest.mark.parametrize(
    ("image", "auth"),
    [
        ("127.0.0.1:5000/fb@" + DIGEST, False),  # imagekit's own registry (transfer/registry.py)
        ("localhost:5000/fb@" + DIGEST, False),
        ("[::1]:5000/fb@" + DIGEST, False),
        ("registry.example/erp@" + DIGEST, True),  # the user's registry
        ("registry.example:5443/team/erp@" + DIGEST, True),
        ("127.0.0.1.registry.example/erp@" + DIGEST, True),  # a host name, not the loopback address
        ("erp@" + DIGEST, True),  # Docker Hub: the repository may be private
        ("team/erp@" + DIGEST, True),
    ],
)
def test_the_users_registry_gets_with_registry_auth_and_imagekits_loopback_one_does_not(image, auth):
    opts = SwarmOptions("erp", ("compose.yaml",), image.split("@")[0], "v2")
    argv = cli.stack_deploy_argv("/state/x.stack.json", "erp", registry_auth(opts, image))
    assert argv == ["docker", "stack", "deploy", *(["--with-registry-auth"] * auth), "-c",
                    "/state/x.stack.json", "erp"]  # fmt: skip
    job = jobs.create_argv(jobs.JobSpec("erp", "migrate", image, ("bench", "migrate")), "erp_ik-migrate-1")
    assert job.count("--with-registry-auth") == auth and job[-3:] == [image, "bench", "migrate"]
    forced = cli.stack_deploy_argv("/s", "erp", registry_auth(replace(opts, registry_auth=True), image))
    assert "--with-registry-auth" in forced
