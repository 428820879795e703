"""The fake bench image and a compose project shaped like frappe_docker's, for deploy tests.

``build_fake_bench(docker_cli)`` builds ``imagekit-test/fakebench:<content hash>`` FROM the
busybox base (classic builder, about a second; idempotent). ``write_project(folder, sites)``
writes ``compose.yaml`` (configurator one-shot, backend, queue; a bind-mounted ``sites`` folder;
no network; PID 1 exits on SIGTERM; ``stop_grace_period: 1s``; optional websocket and scheduler
whose PID 1 ignores SIGTERM, as the real ones do, with compose's 10 s) and the sites. The backend
answers HTTP on port 8000 inside its container as frappe does (``web``, one shell per request
under busybox ``nc -ll``): ``/api/method/ping`` is ``pong``, 503 while the site's
``site_config.json`` has ``maintenance_mode`` on, and 500 while the database named in
``sites/common_site_config.json`` does not answer. ``write_overrides`` adds frappe_docker's
MariaDB and Redis override files (db answers on 3306) for a networked ``compose_yaml``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from frappe_imagekit import process
from tests.support.machinelock import machine_lock

HERE = Path(__file__).resolve().parent
REPOSITORY = "imagekit-test/fakebench"
# PID 1 of a service that only has to run: one `sleep` an hour, not one a second (the suite keeps
# dozens of these running; forking a sleep every second each was a few % of the 2-core machine).
# `wait` returns on SIGTERM, so the trap still ends it at once.
SLEEP_FOREVER = 'trap "exit 0" TERM; while :; do sleep 3600 & wait $$!; done'
# the backend answers on its gunicorn port like frappe: ping, 503 in maintenance (see web)
SERVE_BACKEND = "nc -ll -p 8000 -e /usr/local/bin/frappe-web & " + SLEEP_FOREVER

# frappe_docker's websocket (`node socketio.js`) and scheduler (`bench schedule`) run as PID 1
# and ignore SIGTERM: `down` waits out their stop timeout (compose's default 10 s) for them.
IGNORE_TERM = 'trap "" TERM; while :; do sleep 3600; done'

_SERVICE = """  {name}:
    image: ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}}
    network_mode: "none"
    stop_grace_period: {grace}
    volumes:
      - ./sites:/home/frappe/frappe-bench/sites
{extra}"""


def image_tag() -> str:
    digest = hashlib.sha256()
    files = [HERE / name for name in ("Dockerfile", "bench", "web", "patches.txt")]
    files += sorted(p for p in (HERE / "apps").rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def build_fake_bench(docker_cli: str) -> str:
    """Build (once, under a machine-wide lock for parallel workers) and return its reference."""
    ref = image_tag()
    with machine_lock("fakebench"):
        if process.run([docker_cli, "image", "inspect", ref], timeout=60).returncode == 0:
            return ref
        return _build(docker_cli, ref)


def _build(docker_cli: str, ref: str) -> str:
    done = process.run(
        [docker_cli, "build", "-q", "-t", ref, str(HERE)], env={"DOCKER_BUILDKIT": "0"}, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"building {ref} failed: {done.stderr}")
    return ref


def compose_yaml(
    services: Sequence[str] = ("configurator", "backend", "queue"), networked: bool = False
) -> str:
    """The app services; ``networked``: on the project's network (to reach a db service)
    instead of ``network_mode: none``."""
    parts = ['version: "3.7"', "services:"]
    for name in services:
        if name == "configurator":
            extra = '    restart: "no"\n    command: ["sh", "-c", "echo configured; ls sites"]\n'
        elif name == "backend":
            extra = f"    command: ['sh', '-c', '{SERVE_BACKEND}']\n"
        elif name in ("websocket", "scheduler"):
            extra = f"    command: ['sh', '-c', '{IGNORE_TERM}']\n"
        else:
            extra = f"    command: ['sh', '-c', '{SLEEP_FOREVER}']\n"
        grace = "10s" if name in ("websocket", "scheduler") else "1s"
        service = _SERVICE.format(name=name, extra=extra, grace=grace).rstrip("\n")
        parts.append(service.replace('    network_mode: "none"\n', "") if networked else service)
    return "\n".join(parts) + "\n"


# frappe_docker's frontend (nginx on 8080) stood in for by busybox httpd serving ./www
_FRONTEND = """\
  frontend:
    image: {busybox}
    init: true
    stop_grace_period: 1s
    command: ["httpd", "-f", "-p", "8080", "-h", "/srv/www"]
{ports}    volumes:
      - ./www:/srv/www
"""


def frontend_service(busybox: str, publish: str | None = None) -> str:
    """The compose text of a ``frontend`` service; ``publish``: its ``ports`` entry for 8080
    (``"127.0.0.1::8080"`` lets docker pick the host port)."""
    ports = f'    ports:\n      - "{publish}"\n' if publish else ""
    return _FRONTEND.format(busybox=busybox, ports=ports)


# frappe_docker keeps MariaDB and Redis in overrides/ (compose.mariadb.yaml, compose.redis.yaml):
# a file set without them drops those services (real-lab-2026-12-07 run 14). The fake MariaDB
# and Redis accept connections on 3306 and 6379: what the fake backend's web handler asks.
_OVERRIDE = """services:
{services}"""
_OTHER = """  {name}:
    image: {image}
    stop_grace_period: 1s
    command: ["sh", "-c", '{command}']
"""
DB_LISTEN = "nc -ll -p 3306 -e /bin/true & " + SLEEP_FOREVER
REDIS_LISTEN = "nc -ll -p 6379 -e /bin/true & " + SLEEP_FOREVER


def write_overrides(folder: Path, busybox: str) -> list[Path]:
    """``overrides/compose.mariadb.yaml`` (db) and ``overrides/compose.redis.yaml`` (redis-cache,
    redis-queue), images of another repository than the bench's; ``sites/common_site_config.json``
    names them (db_host, redis_cache, redis_queue: what frappe_docker's configurator writes)."""
    overrides = folder / "overrides"
    overrides.mkdir(parents=True, exist_ok=True)
    mariadb = overrides / "compose.mariadb.yaml"
    mariadb.write_text(_OVERRIDE.format(services=_OTHER.format(name="db", image=busybox, command=DB_LISTEN)))
    redis = overrides / "compose.redis.yaml"
    services = ("redis-cache", "redis-queue")
    body = "".join(_OTHER.format(name=n, image=busybox, command=REDIS_LISTEN) for n in services)
    redis.write_text(_OVERRIDE.format(services=body))
    (folder / "sites").mkdir(parents=True, exist_ok=True)
    (folder / "sites" / "common_site_config.json").write_text(
        '{"db_host": "db", "db_port": 3306, "redis_cache": "redis://redis-cache:6379", '
        '"redis_queue": "redis://redis-queue:6379"}\n'
    )
    return [mariadb, redis]


def write_project(
    folder: Path,
    sites: Sequence[str] = ("a.local", "b.local"),
    apps: Sequence[str] = ("frappe", "erpnext"),
    services: Sequence[str] = ("configurator", "backend", "queue"),
) -> Path:
    """Write compose.yaml and the sites; return the compose file path."""
    folder.mkdir(parents=True, exist_ok=True)
    for site in sites:
        site_dir = folder / "sites" / site
        site_dir.mkdir(parents=True, exist_ok=True)
        (site_dir / "site_config.json").write_text('{"db_name": "_x"}\n')
        (site_dir / "apps.txt").write_text("\n".join(apps) + "\n")
    compose = folder / "compose.yaml"
    compose.write_text(compose_yaml(services))
    return compose
