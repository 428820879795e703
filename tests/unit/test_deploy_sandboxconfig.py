"""deploy/sandboxconfig.py: the sandbox's name, refusals and compose file (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from frappe_imagekit.deploy import sandboxconfig as sc
from frappe_imagekit.errors import UsageError

LABELS = sc.SandboxLabels("erp", "v1.2", "a.local@20261201T101500Z", "erp-sandbox-v1-2",
                          "http://127.0.0.1:8081/", "2026-12-01T10:20:00+00:00")  # fmt: skip


def frappe_docker(**changes: Any) -> dict[str, Any]:
    """A config shaped like compose v2's rendering of frappe_docker (project erp-sandbox-v1-2)."""
    data: dict[str, Any] = {
        "name": "erp-sandbox-v1-2",
        "services": {
            "backend": {"image": "org/erp:v1.2", "volumes": [
                {"type": "volume", "source": "sites", "target": "/home/frappe/frappe-bench/sites"}]},
            "frontend": {"image": "org/erp:v1.2", "container_name": "erp-nginx",
                         "ports": [{"mode": "ingress", "target": 8080, "published": "8080"}],
                         "environment": {"BACKEND": "backend:8000", "FRAPPE_SITE_NAME_HEADER": "$$host"}},
            "db": {"image": "mariadb:10.6", "labels": ["keep=1"],
                   "volumes": ["db-data:/var/lib/mysql:rw"]},
        },
        "volumes": {"sites": {"name": "erp-sandbox-v1-2_sites"},
                    "db-data": {"name": "erp-sandbox-v1-2_db-data"}},
        "networks": {"default": {"name": "erp-sandbox-v1-2_default"}},
    }  # fmt: skip
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("project", "version", "expected"),
    [
        ("erp", "v1", "erp-sandbox-v1"),
        ("erp", "V1.2.0", "erp-sandbox-v1-2-0"),
        ("erp_prod", "2026.12.01_rc1", "erp_prod-sandbox-2026-12-01_rc1"),
        ("a" * 60, "v1", ("a" * 60 + "-sandbox-v1")[:63]),
        ("erp", "v1." + "x" * 70, ("erp-sandbox-v1-" + "x" * 70)[:63]),
    ],
)
def test_sandbox_name_is_a_compose_project_name(project: str, version: str, expected: str) -> None:
    assert sc.sandbox_name(project, version) == expected


def test_sandbox_name_never_ends_in_a_dash() -> None:
    name = sc.sandbox_name("e" * 50, "v1.............")
    assert not name.endswith(("-", "_")) and len(name) <= 63


def test_default_site_is_the_name_as_a_host_name() -> None:
    assert sc.site_for("erp_prod-sandbox-v1") == "erp-prod-sandbox-v1"


def test_a_config_that_shares_nothing_has_no_problem() -> None:
    assert sc.problems(frappe_docker(), "erp-sandbox-v1-2", "erp") == []
    v1 = {
        "services": {"backend": {"volumes": ["sites:/x:rw", "/data", "/srv/ca:/ca:ro"]}},
        "volumes": {"sites": {}},
    }
    assert sc.problems(v1, "erp-sandbox-v1-2", "erp") == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"volumes": {"db-data": {"external": True, "name": "db-data"}}}, "volume db-data is external"),
        ({"volumes": {"sites": {"name": "erp_sites"}}}, "volume sites has a fixed name (erp_sites)"),
        ({"networks": {"proxy": {"external": True}}}, "network proxy is external or has a fixed name"),
        ({"networks": {"default": {"name": "erp_default"}}}, "network default is external"),
    ],
)
def test_shared_volumes_and_networks_are_refused(change: dict[str, Any], expected: str) -> None:
    (problem,) = sc.problems(frappe_docker(**change), "erp-sandbox-v1-2", "erp")
    assert expected in problem


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            {"volumes": ["/srv/erp/sites:/home/frappe/frappe-bench/sites:rw"]},
            "host folder /srv/erp/sites writable",
        ),
        (
            {"volumes": [{"type": "bind", "source": "/srv/erp", "target": "/x"}]},
            "host folder /srv/erp writable",
        ),
        ({"volumes_from": ["erp-backend-1"]}, "uses volumes_from"),
        ({"network_mode": "host"}, "network_mode host"),
        ({"network_mode": "container:erp-backend-1"}, "network_mode container:erp-backend-1"),
    ],
)
def test_sharing_services_are_refused(service: dict[str, Any], expected: str) -> None:
    config = {"services": {"backend": service}}
    (problem,) = sc.problems(config, "erp-sandbox-v1", "erp")
    assert problem.startswith("service backend ") and expected in problem


def test_the_production_name_is_refused() -> None:
    (problem,) = sc.problems({"services": {}}, "erp", "erp")
    assert "is the production project's" in problem


def test_read_only_binds_and_named_volumes_pass() -> None:
    assert sc.mount_source("/srv/ca:/ca:ro") == ("/srv/ca", "bind", True)
    assert sc.mount_source("./sites:/sites") == ("./sites", "bind", False)
    assert sc.mount_source("sites:/sites:rw") == ("sites", "volume", False)
    assert sc.mount_source("/data") == ("", "anonymous", False)
    assert sc.mount_source({"type": "volume", "target": "/x"}) == ("", "anonymous", False)
    assert sc.mount_source({"type": "bind", "source": "/a", "read_only": True}) == ("/a", "bind", True)


@pytest.mark.parametrize(
    ("ports", "published"),
    [
        (["127.0.0.1:8080:8000/tcp", {"target": 9000}], {8080}),
        (["8080:8080", "9000-9001:9000-9001"], {8080, 9000, 9001}),
        ([{"target": 8080, "published": "8080"}, {"target": 80, "published": 81}], {8080, 81}),
        (["8000"], set()),
    ],
)
def test_published_ports(ports: list[object], published: set[int]) -> None:
    assert sc.published_ports({"services": {"frontend": {"ports": ports}}}) == published


def test_a_port_production_publishes_is_refused() -> None:
    assert "port 8080 is published by the production compose files" in str(
        sc.port_problem(frappe_docker(), 8080)
    )
    assert sc.port_problem(frappe_docker(), 8081) is None


def test_ports_in_use_from_docker_ps() -> None:
    lines = ["127.0.0.1:8080->8000/tcp, 0.0.0.0:9000->9000/tcp, :::9000->9000/tcp", "", "8000/tcp"]
    assert sc.ports_in_use(lines) == {8080, 9000}


def test_sandbox_config_publishes_one_port_on_loopback_and_labels_everything() -> None:
    original = frappe_docker()
    before = json.dumps(original, sort_keys=True)
    made = sc.sandbox_config(original, LABELS, 8081)
    assert json.dumps(original, sort_keys=True) == before  # a new value; the input is untouched
    assert "name" not in made
    assert made["services"]["frontend"]["ports"] == ["127.0.0.1:8081:8080"]
    assert [s.get("ports") for n, s in made["services"].items() if n != "frontend"] == [None, None]
    assert all("container_name" not in s for s in made["services"].values())
    assert made["services"]["frontend"]["environment"] == {
        "BACKEND": "backend:8000", "FRAPPE_SITE_NAME_HEADER": "erp-sandbox-v1-2"}  # fmt: skip
    assert made["services"]["db"]["labels"]["keep"] == "1"
    for service in made["services"].values():
        assert sc.read_labels(service["labels"]) == LABELS
    for section in ("volumes", "networks"):
        assert all(
            body["labels"] == {sc.LABEL: "erp", sc.STAMP: LABELS.created} for body in made[section].values()
        )
    assert made["volumes"]["sites"]["name"] == "erp-sandbox-v1-2_sites"


def test_without_frontend_the_backend_is_published_on_its_gunicorn_port() -> None:
    config = {"version": "3.7", "services": {"backend": {"image": "x"}, "queue": {"image": "x"}}}
    made = sc.sandbox_config(config, LABELS, 9999)
    assert made["services"]["backend"]["ports"] == ["127.0.0.1:9999:8000"]
    assert made["networks"] == {
        "default": {"labels": {sc.LABEL: "erp", sc.STAMP: LABELS.created}}
    }  # default too
    assert made["version"] == "3.7"


def test_no_service_to_publish_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="neither a frontend nor a backend service"):
        sc.sandbox_config({"services": {"queue": {}}}, LABELS, 8081)


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {sc.LABEL: ""},
        {sc.LABEL: "erp", **{sc.LABEL_PREFIX + f: "x" for f in sc.FIELDS}, sc.LABEL_PREFIX + "url": "a\nb"},
        {sc.LABEL: "erp"},  # the other labels are missing
    ],
)
def test_labels_that_are_not_a_sandboxs_are_none(labels: dict[str, object]) -> None:
    assert sc.read_labels(labels) is None


def test_a_bad_project_in_the_labels_is_refused() -> None:
    labels = {**LABELS.as_dict(), sc.LABEL: "../etc"}
    with pytest.raises(Exception, match="not a compose project name"):
        sc.read_labels(labels)


@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        (
            {"driver_opts": {"type": "none", "o": "bind", "device": "/srv/erp/sites"}},
            "driver_opts (device: /srv/erp/sites",
        ),
        ({"driver_opts": {"type": "nfs", "o": "addr=10.0.0.5,rw", "device": ":/exports/erp"}}, "type: nfs"),
        ({"driver_opts": {"type": "cifs", "device": "//nas/erp", "o": "password=s3cret"}}, "type: cifs, o)"),
        ({"driver": "rexray/ebs"}, "the volume driver rexray/ebs"),
    ],
)
def test_volumes_whose_storage_is_outside_the_project_are_refused(
    volume: dict[str, Any], expected: str
) -> None:
    config = frappe_docker(volumes={"sites": {"name": "erp-sandbox-v1-2_sites", **volume}})
    (problem,) = sc.problems(config, "erp-sandbox-v1-2", "erp")
    assert (
        problem.startswith("volume sites has ") and expected in problem and "outside the project" in problem
    )


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ({"pid": "container:erp-backend-1"}, "has pid: container:erp-backend-1"),
        ({"pid": "service:backend"}, "has pid: service:backend"),
        ({"pid": "host"}, "has pid: host"),
        ({"ipc": "container:erp_db_1"}, "has ipc: container:erp_db_1"),
        ({"ipc": "service:db"}, "has ipc: service:db"),
        ({"cgroup": "host"}, "has cgroup: host"),
        ({"userns_mode": "host"}, "sets userns_mode"),
        ({"cgroup_parent": "erp.slice"}, "sets cgroup_parent"),
        ({"external_links": ["erp_db_1:db"]}, "sets external_links"),
    ],
)
def test_shared_namespaces_are_refused(service: dict[str, Any], expected: str) -> None:
    (problem,) = sc.problems({"services": {"backend": service}}, "erp-sandbox-v1", "erp")
    assert problem.startswith("service backend ") and expected in problem


def test_own_namespaces_pass() -> None:
    config = {"services": {"backend": {"pid": "", "ipc": "shareable", "cgroup": "private"}}}
    assert sc.problems(config, "erp-sandbox-v1", "erp") == []


@pytest.mark.parametrize(
    ("variable", "value", "host"),
    [
        ("DB_HOST", "mariadb.prod.internal", "mariadb.prod.internal"),
        ("DB_HOST", "10.0.0.5", "10.0.0.5"),
        ("REDIS_CACHE", "redis://:s3cret@cache.prod:6379/0", "cache.prod"),
        ("REDIS_QUEUE", "queue.prod:6379", "queue.prod"),
        ("REDIS_SOCKETIO", "rediss://user:pw@[fd00::5]:6380", "[fd00::5]"),
    ],
)
def test_servers_outside_the_compose_files_are_refused(variable: str, value: str, host: str) -> None:
    config = frappe_docker()
    config["services"]["configurator"] = {"environment": {variable: value, "DB_PORT": "3306"}}
    (problem,) = sc.problems(config, "erp-sandbox-v1-2", "erp")
    assert problem.startswith(f"{variable} of service configurator names the server {host},")
    assert "s3cret" not in problem and "pw" not in problem.split("server", 1)[1].split(",")[0]


def test_servers_that_are_services_of_the_files_pass() -> None:
    config = frappe_docker()
    config["services"]["redis-cache"] = {"image": "redis"}
    config["services"]["configurator"] = {"environment": [
        "DB_HOST=db", "REDIS_CACHE=redis-cache:6379", "REDIS_QUEUE=redis://redis-cache:6379",
        "REDIS_SOCKETIO=",
    ]}  # fmt: skip
    assert sc.problems(config, "erp-sandbox-v1-2", "erp") == []
    config["services"]["configurator"]["extra_hosts"] = ["db:10.0.0.5"]
    (problem,) = sc.problems(config, "erp-sandbox-v1-2", "erp")
    assert "extra_hosts mapping db" in problem


def test_reverse_proxy_labels_and_variables_are_stripped() -> None:
    config = frappe_docker()
    config["services"]["frontend"]["labels"] = {
        "traefik.enable": "true", "traefik.http.routers.erp.rule": "Host(`erp.example.com`)",
        "keep": "1",
    }  # fmt: skip
    config["services"]["frontend"]["environment"].update(
        VIRTUAL_HOST="erp.example.com", LETSENCRYPT_HOST="erp.example.com"
    )
    config["services"]["backend"]["labels"] = ["caddy=erp.example.com", "Traefik.http.services.x=1"]
    assert sc.proxy_routes(config) == [
        "backend: caddy", "backend: Traefik.http.services.x", "frontend: traefik.enable",
        "frontend: traefik.http.routers.erp.rule", "frontend: VIRTUAL_HOST", "frontend: LETSENCRYPT_HOST",
    ]  # fmt: skip
    made = sc.sandbox_config(config, LABELS, 8081)
    assert sc.proxy_routes(made) == []
    assert made["services"]["frontend"]["labels"]["keep"] == "1"
    assert set(made["services"]["frontend"]["environment"]) == {"BACKEND", "FRAPPE_SITE_NAME_HEADER"}
