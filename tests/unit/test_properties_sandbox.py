"""Property-based tests of the sandbox's compose configuration (issue 19).

Any rendered configuration that ``sandboxconfig`` accepts (no problem, the port free) becomes a
sandbox file that shares nothing with production: no volume, network, namespace, published port,
reverse-proxy route or external server. The checker below is written from compose's and
Docker's rules, not from ``sandboxconfig``'s code.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from frappe_imagekit.deploy import sandboxconfig as sc
from frappe_imagekit.errors import UsageError

SANDBOX, PRODUCTION, PORT = "erp-sandbox-v1", "erp", 8081
LABELS = sc.SandboxLabels(
    PRODUCTION, "v1", "a.local@20261201T101500Z", SANDBOX, sc.url(PORT), "2026-12-01T10:20:00+00:00"
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERVICES = ("backend", "frontend", "db", "redis-cache", "configurator", "queue")
# DB_HOST / REDIS_* values and the host each names
SERVERS = {
    "db": "db",
    "db:3306": "db",
    "redis://redis-cache:6379": "redis-cache",
    "redis-cache:6379": "redis-cache",
    "": "",
    "localhost": "localhost",
    "127.0.0.1:6379": "127.0.0.1",
    "mariadb.prod.internal": "mariadb.prod.internal",
    "10.0.0.5": "10.0.0.5",
    "redis://:pw@cache.prod:6379/0": "cache.prod",
    "rediss://[fd00::5]:6380": "[fd00::5]",
    "redis://user:pw@db:6379": "db",
}
SHARED_NAMESPACE = ("host", "container:")

mounts = st.sampled_from(
    [
        "sites:/home/frappe/frappe-bench/sites",
        "sites:/x:ro",
        "db-data:/var/lib/mysql:rw",
        "/srv/erp:/x",
        "/srv/erp:/x:ro",
        "./data:/x",
        "/data",
        "~/erp:/x:rw",
        {"type": "bind", "source": "/srv/erp", "target": "/x"},
        {"type": "bind", "source": "/srv/erp", "target": "/x", "read_only": True},
        {"type": "volume", "source": "db-data", "target": "/y"},
        {"type": "tmpfs", "target": "/t"},
    ]
)
namespace = st.sampled_from([None, "", "host", "container:erp_db_1", "service:db", "shareable", "private"])
ports = st.sampled_from(
    [
        "8080:8080",
        "127.0.0.1:8000:8000",
        "0.0.0.0:8081:80",
        {"target": 80, "published": "81"},
        {"target": 80, "published": 8081},
        "9000",
        "8081-8082:80-81",
    ]
)
label_keys = st.sampled_from(
    [
        "traefik.enable",
        "traefik.http.routers.erp.rule",
        "Traefik.x",
        "caddy",
        "caddy.reverse_proxy",
        "keep",
        "com.example.role",
    ]
)
env_keys = st.sampled_from(
    [*sc.SERVER_VARIABLES, "VIRTUAL_HOST", "LETSENCRYPT_HOST", "VIRTUAL_PORT", "OTHER"]
)


@st.composite
def services(draw: st.DrawFn) -> dict[str, Any]:
    service: dict[str, Any] = {"image": "org/erp:v1"}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "volumes": st.lists(mounts, max_size=3),
        "network_mode": st.sampled_from(
            ["host", "container:erp_backend_1", "service:db", "bridge", "none", ""]
        ),
        "pid": namespace,
        "ipc": namespace,
        "cgroup": namespace,
        "userns_mode": st.sampled_from(["host", ""]),
        "cgroup_parent": st.sampled_from(["erp.slice", ""]),
        "volumes_from": st.sampled_from([["erp_backend_1"], []]),
        "external_links": st.sampled_from([["erp_db_1:db"], []]),
        "extra_hosts": st.sampled_from(
            [["db:10.0.0.5"], ["mirror.local:10.0.0.9"], {"redis-cache": "10.0.0.6"}]
        ),
        "ports": st.lists(ports, max_size=2),
        "container_name": st.just("erp-backend"),
        "labels": st.one_of(
            st.dictionaries(label_keys, st.just("x"), max_size=3),
            st.lists(label_keys.map(lambda k: f"{k}=x"), max_size=3),
        ),
        "environment": st.one_of(
            st.dictionaries(env_keys, st.sampled_from(sorted(SERVERS)), max_size=4),
            st.lists(st.tuples(env_keys, st.sampled_from(sorted(SERVERS))).map("=".join), max_size=4),
        ),
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)), max_size=4)):
        service[key] = draw(optional[key])
    return service


def top_bodies(key: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(
        [
            {},
            {"external": True},
            {"name": f"{PRODUCTION}_{key}"},
            {"name": f"{SANDBOX}_{key}"},
            {"driver": "local"},
            {"driver": "nfs"},
            {"driver_opts": {"type": "none", "o": "bind", "device": "/srv/erp/sites"}},
            {"driver": "local", "driver_opts": {"type": "nfs", "o": "addr=10.0.0.5", "device": ":/erp"}},
            {"labels": {"keep": "1"}},
        ]
    )


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(SERVICES), min_size=1, max_size=4))
    return {
        "services": {name: draw(services()) for name in sorted(names)},
        "volumes": {
            key: draw(top_bodies(key)) for key in draw(st.sets(st.sampled_from(["sites", "db-data"])))
        },
        "networks": {
            key: draw(top_bodies(key)) for key in draw(st.sets(st.sampled_from(["default", "proxy"])))
        },
    }


def _env(env: object) -> dict[str, str]:
    if isinstance(env, list):
        return dict(str(e).partition("=")[::2] for e in env)
    return {str(k): str(v) for k, v in (env or {}).items()}  # type: ignore[attr-defined]


def _bind_writable(mount: object) -> bool:
    if isinstance(mount, dict):
        return mount.get("type") == "bind" and not mount.get("read_only")
    parts = str(mount).split(":")
    return len(parts) > 1 and parts[0].startswith(("/", ".", "~")) and "ro" not in parts[2:3]


def shared_with_production(made: dict[str, Any]) -> list[str]:
    """Everything in a sandbox file that production could share, by compose's and Docker's rules."""
    found = []
    for section in ("volumes", "networks"):
        for key, body in (made.get(section) or {}).items():
            if body.get("external") or body.get("name") not in (None, f"{SANDBOX}_{key}"):
                found.append(f"{section} {key} is production's")
            if section == "volumes" and (
                body.get("driver") not in (None, "local") or body.get("driver_opts")
            ):
                found.append(f"volume {key} is stored outside the project")
    services = made["services"]
    published = []
    for name, service in services.items():
        found += [f"{name} writes a host folder" for m in service.get("volumes") or [] if _bind_writable(m)]
        for key in ("volumes_from", "external_links", "userns_mode", "cgroup_parent", "container_name"):
            if service.get(key):
                found.append(f"{name} has {key}")
        if str(service.get("network_mode") or "").startswith(SHARED_NAMESPACE):
            found.append(f"{name} shares a network namespace")
        for key in ("pid", "ipc", "cgroup"):
            if str(service.get(key) or "").startswith((*SHARED_NAMESPACE, "service:")):
                found.append(f"{name} shares its {key} namespace")
        labels = service.get("labels") or {}
        found += [f"{name} has proxy label {k}" for k in labels if k.lower().startswith(("traefik", "caddy"))]
        env = _env(service.get("environment"))
        found += [f"{name} has proxy variable {k}" for k in env if k.startswith(("VIRTUAL_", "LETSENCRYPT_"))]
        for variable in sc.SERVER_VARIABLES:
            host = SERVERS.get(env.get(variable, ""), "?")
            if host and host not in services and host not in ("localhost", "127.0.0.1"):
                found.append(f"{name}'s {variable} names the outside server {host}")
        hosts = service.get("extra_hosts") or []
        found += [f"{name} maps {h} elsewhere" for h in hosts if str(h).split(":")[0] in services]
        published += service.get("ports") or []
    one = [f"127.0.0.1:{PORT}:{str(published[0]).rsplit(':', 1)[-1]}"] if len(published) == 1 else None
    if published != one:
        found.append(f"published ports {published}")
    return found


PROXIED = {
    "backend": {
        "labels": ["traefik.enable=true", "caddy=erp.example.com"],
        "environment": {"VIRTUAL_HOST": "erp.example.com", "LETSENCRYPT_HOST": "erp.example.com"},
    }
}


@FAST
@given(configs())
@example({"services": PROXIED, "volumes": {}, "networks": {}})
@example(
    {
        "services": {"backend": {"environment": ["DB_HOST=mariadb.prod.internal"]}},
        "volumes": {},
        "networks": {},
    }
)
@example(
    {
        "services": {"backend": {"ipc": "service:db"}},
        "volumes": {"sites": {"driver_opts": {"device": "/srv"}}},
        "networks": {},
    }
)
def test_what_the_sandbox_accepts_shares_nothing_with_production(config: dict[str, Any]) -> None:
    refused = sc.problems(config, SANDBOX, PRODUCTION)
    assert all(isinstance(p, str) and p.endswith(".") for p in refused)
    if refused or sc.port_problem(config, PORT):
        return
    try:
        made = sc.sandbox_config(config, LABELS, PORT)
    except UsageError:
        assert not {"frontend", "backend"} & set(config["services"])
        return
    assert shared_with_production(made) == []
    assert PORT not in sc.published_ports(config)  # production does not publish the sandbox's port
    assert sc.problems(made, SANDBOX, PRODUCTION) == []  # the file written passes its own checks


@FAST
@given(configs())
def test_a_config_sharing_something_is_refused_or_made_private(config: dict[str, Any]) -> None:
    """The checker is not vacuous: whatever it finds in the input is refused, or gone from the
    sandbox's file (ports, container names and proxy routes are removed, not refused)."""
    refused = sc.problems(config, SANDBOX, PRODUCTION) or sc.port_problem(config, PORT)
    if refused:
        return
    if not {"frontend", "backend"} & set(config["services"]):
        return
    before = shared_with_production(
        {
            **config,
            "services": {
                n: {
                    k: v
                    for k, v in s.items()
                    if k not in ("ports", "container_name", "labels", "environment")
                }
                for n, s in config["services"].items()
            },
        }
    )
    assert before == ["published ports []"]  # only the sandbox's own published port is missing


def test_the_checker_finds_each_kind_of_sharing() -> None:
    backend = {
        "volumes": ["/srv:/x"],
        "pid": "container:erp_db_1",
        "labels": {"traefik.a": "1"},
        "environment": {"DB_HOST": "mariadb.prod.internal", "VIRTUAL_HOST": "e"},
        "ports": ["0.0.0.0:8080:8080"],
    }
    made = {
        "services": {"backend": backend},
        "volumes": {"sites": {"driver_opts": {"device": "/srv"}}},
        "networks": {"default": {"external": True}},
    }
    assert len(shared_with_production(made)) == 8
