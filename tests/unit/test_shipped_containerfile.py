"""The shipped production Containerfile and the files generated from it: what they run (the
nginx entrypoint, bench init's flags) read back from their text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit import benchfile, build
from frappe_imagekit.appsjson import inject
from frappe_imagekit.check import Secrets
from frappe_imagekit.cli.build_cmd import render_result
from frappe_imagekit.containerfile import default_containerfile, parse_containerfile
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace
from tests.support.printfscript import printed_script
from tests.unit.test_build import APPS, APPS_JSON, CANARY, CLI, ENV, FIXTURES, FRAPPE

ENTRYPOINT = "/usr/local/bin/nginx-entrypoint.sh"


def _shipped() -> str:
    return default_containerfile().read_text()


def _tier() -> str:
    return benchfile.render_tier(benchfile.split_template(_shipped()))


def _generated() -> str:
    return benchfile.render(["erpnext", "de_macrs"], benchfile.split_template(_shipped()))


@pytest.mark.parametrize("text", [_shipped, _tier], ids=["shipped", "system tier"])
def test_the_nginx_entrypoint_execs_nginx_so_it_is_pid_1_and_stops_on_sigterm(text) -> None:
    script = printed_script(text(), ENTRYPOINT).splitlines()
    assert script[0] == "#!/bin/bash"
    assert script[-1] == 'exec nginx -g "daemon off;"'
    assert [line for line in script if "nginx -g" in line] == [script[-1]]


@pytest.mark.parametrize("text", [_shipped, _generated], ids=["shipped", "generated"])
def test_bench_init_is_not_verbose_so_the_step_log_keeps_its_end(text) -> None:
    runs = [i.command for i in parse_containerfile(text()).instructions if "bench init" in i.command]
    assert len(runs) == 1
    assert "--skip-redis-config-generation" in runs[0]
    assert "--verbose" not in runs[0]


PEM = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n"


def _plan_with_ca_certs(tmp_path: Path, containerfile: Path) -> build.BuildPlan:
    (tmp_path / "ca.pem").write_text(PEM)
    env = {**ENV, "CA_CERTS_FILE": "ca.pem"}
    secrets = Secrets(injected=inject(APPS_JSON, env), redactor=Redactor([CANARY]))
    sources = build.Sources(
        env, parse_containerfile(containerfile.read_text(), containerfile), dict(FRAPPE),
        [dict(a) for a in APPS], json.dumps(APPS_JSON), secrets,
    )  # fmt: skip
    return build.assemble_plan(Workspace.at(tmp_path), build.BuildOptions(), sources, CLI)


def test_an_exact_build_with_ca_certs_gives_no_false_not_installed_warning(tmp_path: Path) -> None:
    plan = _plan_with_ca_certs(tmp_path, default_containerfile())
    assert plan.exact is not None and plan.ca_certs is not None
    assert not [w for w in plan.warnings if "CA_CERTS_FILE" in w], plan.warnings
    # the tier that installs them gets the secret and the certificates' hash
    assert "--mount=type=secret,id=ca_certs" in plan.exact.base.text
    assert plan.exact.base.build_args["CA_CERTS_SHA256"] == plan.ca_certs.sha256
    # a user's Containerfile without the mount still hears about it
    own = _plan_with_ca_certs(tmp_path, FIXTURES / "secret.Containerfile")
    (warning,) = [w for w in own.warnings if "CA_CERTS_FILE" in w]
    assert "the certificates are passed but not installed" in warning


def test_built_in_counts_the_build_and_the_leak_scan_is_timed_apart(capsys) -> None:
    # the lab's v1.1.0: 63.0 s in all, of which the leak scan took 33.0 s
    record = {
        "image": {"ref": "lab/ikf:v1.1.0", "id": "sha256:ab"},
        "duration_seconds": 63.0,
        "leak_scan": {"status": "clean", "seconds": 33.0},
        "version": "v1.1.0",
        "log_file": "v1.1.0.log",
    }
    render_result(record)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Built lab/ikf:v1.1.0 (sha256:ab) in 30.0 s"
    assert lines[1] == "Leak scan: clean (33.0 s)"
    assert build.build_seconds({"duration_seconds": 5.0, "leak_scan": {"status": "skipped"}}) == 5.0
