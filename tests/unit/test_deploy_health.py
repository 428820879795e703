"""Health check pieces on plain data: the probe argv, answers, the assets manifest (pure)."""

from __future__ import annotations

import json

import pytest

from frappe_imagekit.deploy.health import (
    BACKEND_URL,
    FRONTEND_URL,
    Answer,
    base_url,
    check_site,
    first_asset,
    get,
    parse_answer,
    probe_argv,
)
from frappe_imagekit.deploy.plan import PlanFacts, steps
from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed


def test_probe_runs_inside_the_container_with_the_host_header():
    argv = probe_argv("c0ffee", "http://frontend:8080/api/method/ping", "erp.example.com")
    assert argv[:6] == ["docker", "exec", "c0ffee", "sh", "-c", argv[5]]
    assert argv[6:9] == ["probe", "http://frontend:8080/api/method/ping", "erp.example.com"]
    assert "curl" in argv[5] and "python3" in argv[5] and "wget" in argv[5]


def test_answers_and_first_body_line():
    assert parse_answer('200\n{"message":"pong"}') == Answer(200, '{"message":"pong"}')
    assert parse_answer("502\n<html>\n<h1>502 Bad Gateway</h1>\n").first_line == "<html>"
    assert parse_answer("503\n").first_line == "(empty body)"
    assert parse_answer("curl: (7) Failed to connect") is None


def test_frontend_when_the_config_has_one():
    assert base_url({"backend": 1, "frontend": 1}) == FRONTEND_URL
    assert base_url({"backend": 1}) == BACKEND_URL


def test_first_asset_from_a_v15_assets_json():
    manifest = {
        "frappe-web.bundle.js": "/assets/frappe/dist/js/frappe-web.bundle.5TDS2KWX.js",
        "desk.bundle.css": "/assets/frappe/dist/css/desk.bundle.2QJHYF3A.css",
        "rtl_desk.bundle.css": None,
    }
    assert first_asset(json.dumps(manifest)) == "/assets/frappe/dist/css/desk.bundle.2QJHYF3A.css"
    assert first_asset('{"x": "/assets/a b.js"}') is None  # never a value that needs quoting
    assert first_asset("not json") is None and first_asset(None) is None


def test_dry_run_steps_for_a_migrator_stack_without_running_containers():
    facts = PlanFacts(
        project="erp", image_ref="acme/erp:v2", lock_dir="/s/lock", sites=[], running=False, backup=True,
        down_argv=None, up_argv=["docker", "compose", "-p", "erp", "up", "-d"], up_env={"CUSTOM_TAG": "v2"},
        image_services=["backend", "migrator"], oneshot=["configurator", "migrator"], migrator="migrator",
    )  # fmt: skip
    assert steps(facts) == [
        "take the deploy lock /s/lock",
        "up: CUSTOM_TAG=v2 docker compose -p erp up -d",
        "wait for the one-shot services to exit 0: configurator, migrator",
        "wait for the other services to run (healthy where they have a healthcheck)",
        "check that backend, migrator run the image id of acme/erp:v2",
        "follow the migrator service's logs (it runs bench --site all migrate on start); no second migrate",
        "record the deploy in deploys/ and the target's audit.log; release the lock",
    ]


class _Answering:
    """A runner that answers every command with one result (the probe's exit and output)."""

    host = "local"

    def __init__(self, returncode: int, stdout: str = "", stderr: str = "") -> None:
        self.result = (returncode, stdout, stderr)

    def run(self, argv, **_kwargs):  # type: ignore[no-untyped-def]
        return Completed(tuple(argv), *self.result)


def test_probe_failures_are_sentences_with_the_fix():
    no_tool = _Answering(127, stderr="no curl, python3 or wget in the container\n")
    with pytest.raises(DeployError) as info:
        get(no_tool, "c1", BACKEND_URL + "/api/method/ping", "a.local")  # type: ignore[arg-type]
    assert info.value.message == (
        "cannot check a.local: no curl, python3 or wget in the container; add curl to the image, "
        "or pass --no-health-check."
    )
    refused = _Answering(3, stderr="curl: (7) Failed to connect to frontend port 8080: Connection refused\n")
    with pytest.raises(
        DeployError, match=r"^a.local did not answer at http://frontend:8080/api/method/ping "
    ):
        get(refused, "c1", FRONTEND_URL + "/api/method/ping", "a.local")  # type: ignore[arg-type]
    bad_gateway = _Answering(0, stdout="502\n<html><title>502 Bad Gateway</title>\n")
    with pytest.raises(DeployError) as info:
        check_site(bad_gateway, "c1", FRONTEND_URL, "a.local", None)  # type: ignore[arg-type]
    assert "site a.local answered /api/method/ping with 502: <html><title>502 Bad Gateway</title>" in (
        info.value.message
    )
