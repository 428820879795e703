"""Rendered compose config: parsing v1 YAML and v2 JSON, images, one-shot services (pure)."""

from __future__ import annotations

import json

import pytest

from frappe_imagekit.deploy.compose import ComposeCLI
from frappe_imagekit.deploy.composeconfig import (
    compose_env,
    config_argv,
    image_lines,
    image_plan,
    layout_from_env,
    migrator_services,
    oneshot_services,
    parse_config,
    resolve_config_files,
    split_image,
)
from frappe_imagekit.errors import DeployError

V1 = ComposeCLI(("docker-compose",), "1.29.2")
V2 = ComposeCLI(("docker", "compose"), "2.26.1")
IMAGE = "desiredeffect/erpnext-custom"

# Shaped like `docker compose -f compose.yaml -f overrides/compose.mariadb.yaml
# -f overrides/compose.migrator.yaml config --format json` of frappe_docker (trimmed).
V2_JSON = {
    "name": "erp",
    "services": {
        "backend": {
            "depends_on": {"configurator": {"condition": "service_completed_successfully", "required": True}},
            "image": f"{IMAGE}:v2",
            "restart": "unless-stopped",
        },
        "configurator": {
            "command": ["ls -1 apps > sites/apps.txt; bench set-config -g db_host $$DB_HOST"],
            "entrypoint": ["bash", "-c"],
            "image": f"{IMAGE}:v2",
            "restart": "on-failure",
        },
        "db": {"image": "mariadb:10.6", "restart": "unless-stopped"},
        "frontend": {"command": ["nginx-entrypoint.sh"], "image": f"{IMAGE}:v2"},
        "migrator": {
            "command": ["bench --site all migrate"],
            "entrypoint": ["bash", "-c"],
            "image": f"{IMAGE}:v2",
            "restart": "on-failure",
        },
        "queue-short": {"command": ["bench", "worker", "--queue", "short,default"], "image": f"{IMAGE}:v2"},
        "scheduler": {"command": ["bench", "schedule"], "image": f"{IMAGE}:v2"},
        "websocket": {
            "command": ["node", "/home/frappe/frappe-bench/apps/frappe/socketio.js"],
            "image": f"{IMAGE}:v2",
        },  # fmt: skip
    },
}

# docker-compose 1.29.2 `config` of a file written by `docker compose config` (fixed image).
V1_YAML = """\
services:
  backend:
    image: desiredeffect/erpnext-custom:v1
    restart: unless-stopped
  configurator:
    command:
    - sh
    - -c
    - echo configured
    image: desiredeffect/erpnext-custom:v1
    restart: "no"
  queue:
    image: desiredeffect/erpnext-custom:v2
  redis:
    image: redis:6.2-alpine
version: '3.7'
"""


def test_config_argv_asks_v2_for_json():
    assert config_argv(V2, "erp", ["/a.yaml", "/b.yaml"], env_file="/e.env") == [
        "docker", "compose", "-p", "erp", "-f", "/a.yaml", "-f", "/b.yaml", "--env-file", "/e.env",
        "config", "--format", "json",
    ]  # fmt: skip
    assert config_argv(V1, "erp", ["/a.yaml"])[-1] == "config"


def test_v2_json_images_oneshot_and_migrator():
    config = parse_config(json.dumps(V2_JSON))
    plan = image_plan(config, IMAGE, "v2")
    assert plan.new == [
        "backend",
        "configurator",
        "frontend",
        "migrator",
        "queue-short",
        "scheduler",
        "websocket",
    ]
    assert plan.pinned == {} and plan.others == {"db": "mariadb:10.6"}
    assert oneshot_services(config) == ["configurator", "migrator"]
    assert migrator_services(config) == ["migrator"]
    assert config.dependents_completed("configurator") == ["backend"]


def test_v1_yaml_generated_file_pins_tags():
    config = parse_config(V1_YAML)
    plan = image_plan(config, IMAGE, "v2")
    assert plan.new == ["queue"]
    assert plan.pinned == {"backend": f"{IMAGE}:v1", "configurator": f"{IMAGE}:v1"}
    assert plan.others == {"redis": "redis:6.2-alpine"}
    assert oneshot_services(config, ["queue", "absent"]) == ["configurator", "queue"]
    assert migrator_services(config) == []


def test_image_lines_name_the_file_and_line():
    files = {"/srv/erp.yaml": V1_YAML, "/srv/other.yaml": "services:\n  x:\n    image: 'a/b:v1'\n"}
    assert image_lines(files, [f"{IMAGE}:v1", "a/b:v1"]) == [
        "/srv/erp.yaml:3", "/srv/erp.yaml:10", "/srv/other.yaml:3",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("ref", "split"),
    [
        ("a/b:v1", ("a/b", "v1")),
        ("localhost:5000/a/b:v1", ("localhost:5000/a/b", "v1")),
        ("localhost:5000/a/b", ("localhost:5000/a/b", "latest")),
        ("a/b@sha256:" + "0" * 64, ("a/b", "@sha256:" + "0" * 64)),
    ],
)
def test_split_image(ref: str, split: tuple[str, str]):
    assert split_image(ref) == split


def test_bad_config_output_and_bad_service_names_are_refused():
    with pytest.raises(DeployError, match="no services"):
        parse_config("version: '3'\n")
    with pytest.raises(DeployError, match="is not a compose service name"):
        parse_config(json.dumps({"services": {"-x": {"image": "a"}}}))


def test_v1_relative_config_files_are_resolved_against_working_dir():
    label = "compose.yaml,overrides/compose.mariadb.yaml,../shared/compose.redis.yaml"
    assert resolve_config_files(label, "/srv/erp") == (
        "/srv/erp/compose.yaml,/srv/erp/overrides/compose.mariadb.yaml,/srv/shared/compose.redis.yaml"
    )
    assert resolve_config_files("/srv/a.yaml,/srv/b.yaml", "/elsewhere") == "/srv/a.yaml,/srv/b.yaml"  # v2
    assert resolve_config_files("", "/srv") == ""


def test_compose_file_and_project_from_environment_then_env_file():
    env_text = "COMPOSE_FILE=compose.yaml:overrides/compose.migrator.yaml\nCOMPOSE_PROJECT_NAME=erp\n"
    found = compose_env({}, env_text)
    assert layout_from_env(found, "/srv/erp") == (
        ["/srv/erp/compose.yaml", "/srv/erp/overrides/compose.migrator.yaml"], "erp",
    )  # fmt: skip
    environ = {"COMPOSE_FILE": "/a.yaml;b.yaml", "COMPOSE_PATH_SEPARATOR": ";"}
    assert layout_from_env(compose_env(environ, env_text), "/cwd") == (["/a.yaml", "/cwd/b.yaml"], "erp")
    assert layout_from_env(compose_env({}, None), "/cwd") == ([], None)
