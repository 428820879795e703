"""build/plan.py pure parts: fingerprint, build args, labels, the plan's argv and child environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit.appsjson import InjectedApps, inject
from frappe_imagekit.build import plan as build
from frappe_imagekit.build.containerfile import parse_containerfile
from frappe_imagekit.build.execute import replaced_tag
from frappe_imagekit.build.plan import BuildOptions
from frappe_imagekit.check import Secrets
from frappe_imagekit.errors import ConfigError, ExitCode
from frappe_imagekit.workspace import Workspace
from tests.support import buildplan
from tests.support.buildplan import APPS, APPS_JSON, CANARY, CLI, ENV, FRAPPE
from tests.support.buildplan import make_plan as _plan

# ---------------------------------------------------------------- fingerprint


def test_fingerprint_ignores_app_order_and_changes_with_any_sha() -> None:
    first = build.fingerprint("a" * 40, APPS)
    assert first == build.fingerprint("a" * 40, list(reversed(APPS)))
    assert len(first) == 16 and int(first, 16) >= 0
    moved = [APPS[0], {**APPS[1], "sha": "d" * 40}]
    assert build.fingerprint("a" * 40, moved) != first
    assert build.fingerprint("e" * 40, APPS) != first
    # a ref renamed to the same commit does not bust the cache: only SHAs count
    assert build.fingerprint("a" * 40, [{**APPS[0], "ref": "version-15"}, APPS[1]]) == first


def test_fingerprint_changes_when_an_app_is_added() -> None:
    extra = {"name": "hrms", "ref": "v15.13.1", "sha": "f" * 40}
    assert build.fingerprint("a" * 40, [*APPS, extra]) != build.fingerprint("a" * 40, APPS)


# ---------------------------------------------------------------- build args, labels


def test_only_declared_build_args_are_passed() -> None:
    declared = {"FRAPPE_BRANCH": None, "PYTHON_VERSION": "3.11.6", "CACHE_BUST": None, "X": None}
    assert build.select_build_args(declared, ENV, "fp") == {
        "FRAPPE_BRANCH": "version-15",
        "PYTHON_VERSION": "3.11.6",
        "CACHE_BUST": "fp",
    }
    assert build.select_build_args({}, ENV, "fp") == {}


def test_labels_set_every_oci_key_and_the_apps_summary() -> None:
    labels = build.make_labels(
        version="v1.1.5", created="2026-11-21T05:00:00+00:00", revision=None, source="https://x",
        title="acme/erp", description="d", base_name="python:3.11.6-slim-bookworm",
        frappe=FRAPPE, apps=APPS, fingerprint_value="fp",
    )  # fmt: skip
    keys = ["version", "created", "revision", "source", "title", "description", "base.name"]
    assert [k for k in labels if k.startswith("org.opencontainers.image.")] == [
        f"org.opencontainers.image.{k}" for k in keys
    ]
    assert labels["org.opencontainers.image.revision"] == ""  # set, so the base's is not inherited
    assert json.loads(labels["io.imagekit.apps"]) == [
        {"name": "frappe", "ref": "version-15", "sha": "a" * 40},
        {"name": "erpnext", "ref": "v15.17.0", "sha": "b" * 40},
        {"name": "de_macrs", "ref": "v0.0.4", "sha": "c" * 40},
    ]
    assert labels["io.imagekit.fingerprint"] == "fp"


def test_base_name_follows_stage_names_and_arg_defaults() -> None:
    text = (
        "ARG PYTHON_VERSION=3.11.6\nARG DEBIAN_BASE=bookworm\n"
        "FROM python:${PYTHON_VERSION}-slim-${DEBIAN_BASE} AS base\n"
        "FROM base AS builder\nRUN true\nFROM base AS backend\nRUN true\n"
    )
    cf = parse_containerfile(text)
    assert build.base_name(cf, {}) == "python:3.11.6-slim-bookworm"
    assert build.base_name(cf, {"PYTHON_VERSION": "3.11.9"}) == "python:3.11.9-slim-bookworm"


def test_next_version_and_replaced_tag() -> None:
    assert build.next_version("v1.1.5", {"v1.1.5", "v1.1.6"}) == "v1.1.7"
    assert replaced_tag("v1.1.5", "sha256:0123456789abcdef0123") == ("v1.1.5-replaced-0123456789ab")


# ---------------------------------------------------------------- the plan


def test_secret_plan_argv_is_token_free_and_the_secret_is_only_in_the_child_env(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path)
    argv = plan.command()
    injected = inject(APPS_JSON, ENV)
    assert CANARY not in " ".join(argv) and injected.base64 not in " ".join(argv)
    assert argv[argv.index("--secret") + 1] == "id=apps_json,env=IMAGEKIT_APPS_JSON"
    assert plan.secret_env() == {"DOCKER_BUILDKIT": "1", "IMAGEKIT_APPS_JSON": injected.text}
    assert plan.build_args == {
        "FRAPPE_BRANCH": "version-15",
        "FRAPPE_PATH": "https://github.com/frappe/frappe",
        "PYTHON_VERSION": "3.11.6",
        "CACHE_BUST": build.fingerprint("a" * 40, APPS),
    }
    assert "NODE_VERSION" not in plan.build_args  # not declared by this Containerfile
    assert plan.tag == "v1.1.5" and plan.ref == "desiredeffect/erpnext-custom:v1.1.5"
    assert plan.iidfile == tmp_path / "builds" / ".v1.1.5.iid"
    assert plan.warnings == []
    assert plan.to_dict()["command_env"] == {
        "DOCKER_BUILDKIT": "1",
        "IMAGEKIT_APPS_JSON": "<the injected apps.json: secret, never shown>",
    }
    dumped = json.dumps(plan.to_dict())
    assert CANARY not in dumped and injected.text not in dumped


def test_build_arg_plan_passes_the_base64_by_name_and_warns(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "base64.Containerfile")
    argv = plan.command()
    assert argv[argv.index("APPS_JSON_BASE64") - 1] == "--build-arg"
    assert "--secret" not in argv
    assert plan.secret_env()["APPS_JSON_BASE64"] == inject(APPS_JSON, ENV).base64
    assert len(plan.warnings) == 1
    warning = plan.warnings[0]
    assert "stores the token in the image history" in warning
    assert "RUN --mount=type=secret,id=apps_json" in warning
    assert "containerfiles/Containerfile" in warning


def test_plan_redactor_masks_the_injected_document_and_its_base64(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    injected: InjectedApps = plan.injected
    line = f"#6 RUN echo {injected.base64} && echo {injected.text}"
    assert plan.redactor.redact(line) == "#6 RUN echo *** && echo ***"


def test_the_scan_cache_key_is_the_tokens_not_the_apps_json_a_bump_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release-tag bump rewrites apps.json; the leak-scan cache stays keyed on the same tokens
    (real lab, 2026-12-07: every tag bump re-read the whole 1.9 GB image), while every layer that
    is read is still searched for the document too."""
    first = _plan(tmp_path / "a")
    bumped = [dict(app, branch="v0.0.5") if "de_macrs" in app["url"] else app for app in APPS_JSON]
    monkeypatch.setattr(buildplan, "APPS_JSON", bumped)
    second = _plan(tmp_path / "b")
    assert first.injected.text != second.injected.text
    assert first.redactor.value_forms == second.redactor.value_forms
    assert CANARY in first.redactor.value_forms
    assert (
        first.injected.text in first.redactor.forms and first.injected.text not in first.redactor.value_forms
    )
    assert first.injected.base64 not in first.redactor.value_forms
    assert first.redactor.forms != second.redactor.forms  # the search still looks for each document


def test_containerfile_that_never_reads_apps_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _plan(tmp_path, "no-apps.Containerfile")
    assert caught.value.exit_code == ExitCode.VALIDATION
    assert caught.value.message.startswith("this Containerfile never reads apps.json")
    assert "RUN --mount=type=secret,id=apps_json" in caught.value.message


def test_missing_cache_bust_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "Containerfile"
    path.write_text(
        "FROM imagekit-test/busybox:1\n"
        "RUN --mount=type=secret,id=apps_json,target=/a.json cat /a.json >/dev/null\n"
    )
    secrets = Secrets(injected=inject(APPS_JSON, ENV))
    sources = build.Sources(ENV, parse_containerfile(path.read_text(), path), FRAPPE, APPS, "[]", secrets)
    plan = build.assemble_plan(Workspace.at(tmp_path), BuildOptions(), sources, CLI)
    assert "CACHE_BUST" not in plan.build_args
    assert any("does not declare ARG CACHE_BUST" in w for w in plan.warnings)


def test_options_reach_the_argv(tmp_path: Path) -> None:
    plan = _plan(tmp_path, no_cache=True, pull=True, context=tmp_path / "ctx")
    argv = plan.command()
    assert argv[-3:] == ["--no-cache", "--pull", str((tmp_path / "ctx").resolve())]


@pytest.mark.parametrize(
    ("dockerignore", "warned"),
    [(None, True), ("builds\n", True), (".env\n", False), ("/.env\n", False), ("*\n", False)],
)
def test_a_context_holding_env_needs_dockerignore(
    tmp_path: Path, dockerignore: str | None, warned: bool
) -> None:
    (tmp_path / ".env").write_text(f"DE_MACRS_PAT={CANARY}\n")
    if dockerignore is not None:
        (tmp_path / ".dockerignore").write_text(dockerignore)
    warnings = [w for w in _plan(tmp_path).warnings if ".dockerignore" in w]
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].endswith("add a line `.env` to .dockerignore.")
    assert build._context_warning(tmp_path / "missing") is None


def test_cli_rejects_an_unknown_progress_mode() -> None:
    from tests.support.cli import invoke

    result = invoke("build", "--progress", "fancy")
    assert result.exit_code == 2
    assert "'fancy' is not one of 'auto', 'plain', 'none', 'tty'" in result.stderr


def test_cli_refuses_to_build_a_workspace_with_check_errors(tmp_path: Path) -> None:
    from tests.support.cli import invoke
    from tests.support.workspace import make_workspace

    # file:// remotes only: no test talks to anything but this machine
    missing = (tmp_path / "missing.git").as_uri()
    env = {"IMAGE_NAME": "Not A Valid Name", "FRAPPE_PATH": missing}
    ws = make_workspace(tmp_path / "ws", env=env, apps=[{"url": missing, "branch": "v1.0.0"}])
    result = invoke("build", "-w", str(ws), "--dry-run")
    assert result.exit_code == 1
    assert "imagekit check found" in result.stderr and "IMAGE_NAME" in result.stderr
    assert "run `imagekit check` for all of them" in result.stderr


# ---------------------------------------------------------------- tag only after the scan


def test_the_build_command_names_no_tag(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert "--tag" not in plan.command() and "--iidfile" in plan.command()
    assert plan.to_dict()["image"] == plan.ref  # the tag it gets after a clean scan
