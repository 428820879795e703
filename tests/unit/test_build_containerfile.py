"""Containerfile parsing: apps.json mode detection, declared ARGs, and the Containerfile we ship."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest

from frappe_imagekit.build.containerfile import (
    AppsJsonMode,
    default_containerfile,
    parse_containerfile,
    read_containerfile,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "containerfiles"

# --- mode detection ---------------------------------------------------------------------

SECRET_VARIANTS = {
    "upstream": (
        "FROM base\n"
        "RUN --mount=type=secret,id=apps_json,target=/opt/frappe/apps.json,uid=1000,gid=1000 \\\n"
        "    bench init --apps_path=/opt/frappe/apps.json /home/frappe/frappe-bench\n",
        "apps_json",
        "/opt/frappe/apps.json",
    ),
    "options in another order, lower-case run": (
        "from base as builder\n"
        "run --mount=target=/opt/frappe/apps.json,uid=1000,id=apps_json,type=secret cat x\n",
        "apps_json",
        "/opt/frappe/apps.json",
    ),
    "another flag first, mount on a continuation line": (
        "FROM base\n"
        "RUN --network=default \\\n"
        "    --mount=type=cache,target=/root/.cache/pip \\\n"
        "    # a comment inside the instruction is dropped\n"
        "    --mount=type=secret,id=apps_json \\\n"
        "    cat /run/secrets/apps_json\n",
        "apps_json",
        "/run/secrets/apps_json",
    ),
    "other id, target apps.json": (
        "FROM base\nRUN --mount=type=secret,id=frappe_apps,target=/opt/frappe/apps.json ls\n",
        "frappe_apps",
        "/opt/frappe/apps.json",
    ),
    "no id: the id is the target's file name": (
        "FROM base\nRUN --mount=type=secret,target=/opt/apps.json ls\n",
        "apps.json",
        "/opt/apps.json",
    ),
    "both generations: the secret wins": (
        "FROM base\nARG APPS_JSON_BASE64\n"
        "RUN --mount=type=secret,id=apps_json,dst=/opt/frappe/apps.json ls\n",
        "apps_json",
        "/opt/frappe/apps.json",
    ),
    "escape directive with backtick continuations": (
        "# escape=`\nFROM base\nRUN `\n  --mount=type=secret,id=apps_json `\n  ls\n",
        "apps_json",
        "/run/secrets/apps_json",
    ),
}


@pytest.mark.parametrize("case", list(SECRET_VARIANTS), ids=list(SECRET_VARIANTS))
def test_secret_mount_is_detected(case: str) -> None:
    text, secret_id, target = SECRET_VARIANTS[case]
    parsed = parse_containerfile(text)
    assert parsed.apps_json_mode is AppsJsonMode.SECRET
    assert parsed.secret_id == secret_id
    assert parsed.secret_target == target


def test_exact_secret_id_wins_over_a_target_match() -> None:
    parsed = parse_containerfile(
        "FROM base\nRUN --mount=type=secret,id=old,target=/x/apps.json ls\n"
        "RUN --mount=type=secret,id=apps_json ls\n"
    )
    assert (parsed.secret_id, parsed.secret_target) == ("apps_json", "/run/secrets/apps_json")
    assert [m.id for m in parsed.secret_mounts] == ["old", "apps_json"]


@pytest.mark.parametrize(
    "text",
    [
        "FROM base\nARG APPS_JSON_BASE64\nRUN echo ${APPS_JSON_BASE64} | base64 -d > /opt/a.json\n",
        "ARG APPS_JSON_BASE64=\nFROM base\nRUN ls\n",
        "FROM base\narg   FOO=1 APPS_JSON_BASE64\n",
    ],
    ids=["stage arg", "global arg", "lower case, second of a list"],
)
def test_base64_build_arg_is_detected(text: str) -> None:
    parsed = parse_containerfile(text)
    assert parsed.apps_json_mode is AppsJsonMode.BUILD_ARG
    assert parsed.secret_id is None
    assert "APPS_JSON_BASE64" in parsed.declared_args


@pytest.mark.parametrize(
    "text",
    [
        "FROM base\nRUN ls\n",
        "FROM base\n# RUN --mount=type=secret,id=apps_json ls\n# ARG APPS_JSON_BASE64\nRUN ls\n",
        "FROM base\nRUN --mount=type=secret,id=npmrc,target=/root/.npmrc npm ci\n",
        "FROM base\nRUN --mount=type=cache,id=apps_json,target=/opt/apps.json ls\n",
        "FROM base\nRUN echo APPS_JSON_BASE64 --mount=type=secret,id=apps_json\n",
    ],
    ids=["plain", "only in comments", "another secret", "a cache mount", "words in a command"],
)
def test_neither_generation_gives_none(text: str) -> None:
    parsed = parse_containerfile(text)
    assert parsed.apps_json_mode is None
    assert parsed.secret_id is None


# --- ARGs and stages --------------------------------------------------------------------


def test_args_global_and_per_stage_with_defaults() -> None:
    text = (
        "ARG PYTHON_VERSION=3.11.6\n"
        "ARG DEBIAN_BASE\n"
        "FROM python:${PYTHON_VERSION}-slim-${DEBIAN_BASE} AS base\n"
        "ARG NODE_VERSION=20.19.2 WKHTMLTOPDF_VERSION='0.12.6.1-3' LABEL=\"two words\"\n"
        "ARG PYTHON_VERSION\n"
        "FROM base AS builder\n"
        "ARG FRAPPE_BRANCH=version-15 \\\n"
        "    FRAPPE_PATH=https://github.com/frappe/frappe\n"
        "ARG CACHE_BUST\n"
        "ARG DEBIAN_BASE=bookworm\n"
    )
    parsed = parse_containerfile(text)
    assert parsed.global_args == {"PYTHON_VERSION": "3.11.6", "DEBIAN_BASE": None}
    assert [(s.name, s.base) for s in parsed.stages] == [
        ("base", "python:${PYTHON_VERSION}-slim-${DEBIAN_BASE}"),
        ("builder", "base"),
    ]
    assert parsed.stages[0].args == {
        "NODE_VERSION": "20.19.2",
        "WKHTMLTOPDF_VERSION": "0.12.6.1-3",
        "LABEL": "two words",
        "PYTHON_VERSION": None,
    }
    assert parsed.declared_args == {
        "PYTHON_VERSION": "3.11.6",  # a redeclaration without value keeps the global default
        "DEBIAN_BASE": "bookworm",  # the first default found wins over None
        "NODE_VERSION": "20.19.2",
        "WKHTMLTOPDF_VERSION": "0.12.6.1-3",
        "LABEL": "two words",
        "FRAPPE_BRANCH": "version-15",
        "FRAPPE_PATH": "https://github.com/frappe/frappe",
        "CACHE_BUST": None,
    }
    assert parsed.declares("CACHE_BUST") and not parsed.declares("APPS_JSON_BASE64")
    assert parsed.apps_json_mode is None


def test_instruction_lines_stages_flags_and_heredoc() -> None:
    text = (
        "FROM a AS one\n"
        "RUN <<EOF\n"
        "FROM not-a-stage\n"
        "ARG NOT_AN_ARG\n"
        "EOF\n"
        "\n"
        "FROM --platform=linux/amd64 b\n"
        "RUN --mount=type=cache,target=/x,sharing=locked \\\n"
        "    echo hi\n"
    )
    parsed = parse_containerfile(text)
    assert [(i.keyword, i.line, i.stage) for i in parsed.instructions] == [
        ("FROM", 1, 0),
        ("RUN", 2, 0),
        ("FROM", 7, 1),
        ("RUN", 8, 1),
    ]
    assert [(s.name, s.base) for s in parsed.stages] == [("one", "a"), (None, "b")]
    assert "NOT_AN_ARG" not in parsed.declared_args
    run = parsed.instructions[-1]
    assert run.flags == {"mount": ["type=cache,target=/x,sharing=locked"]}
    assert run.command == "echo hi"


def test_sha256_and_path_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "Containerfile"
    path.write_text("FROM base\nARG APPS_JSON_BASE64\n")
    parsed = read_containerfile(path)
    assert parsed.path == path
    assert parsed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert parsed.text == path.read_text()


# --- the production Containerfile -------------------------------------------------------


@pytest.fixture(scope="module")
def production():
    return read_containerfile(default_containerfile())


def test_default_containerfile_is_in_the_package_and_linked_at_top_level() -> None:
    shipped = default_containerfile()
    assert shipped.is_file()
    assert shipped.parent.name == "containerfiles"
    assert shipped.parent.parent.name == "frappe_imagekit"
    top = ROOT / "containerfiles" / "Containerfile"
    assert top.is_symlink()
    assert top.resolve() == shipped.resolve()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "containerfiles/*" in data["tool"]["setuptools"]["package-data"]["frappe_imagekit"]


def test_production_declares_what_imagekit_passes(production) -> None:
    for name in ("FRAPPE_PATH", "FRAPPE_BRANCH", "PYTHON_VERSION", "NODE_VERSION", "CACHE_BUST"):
        assert production.declares(name), name
    assert production.declared_args["PYTHON_VERSION"] == "3.11.6"
    assert production.declared_args["NODE_VERSION"] == "20.19.2"
    assert production.declared_args["FRAPPE_BRANCH"] == "version-15"
    assert production.declared_args["FRAPPE_PATH"] == "https://github.com/frappe/frappe"
    for name in ("DEBIAN_BASE", "WKHTMLTOPDF_VERSION", "INSTALL_CHROMIUM"):
        assert production.declares(name), name
    assert "APPS_JSON_BASE64" not in production.declared_args


def test_production_uses_secret_mode(production) -> None:
    assert production.apps_json_mode is AppsJsonMode.SECRET
    assert production.secret_id == "apps_json"
    assert production.secret_target == "/opt/frappe/apps.json"
    assert sorted(m.id for m in production.secret_mounts) == ["apps_json", "ca_certs"]
    (mount,) = [m for m in production.secret_mounts if m.id == "apps_json"]
    assert mount.options["uid"] == "1000" and mount.options["gid"] == "1000"
    assert mount.options["required"] == "true"
    (ca,) = [m for m in production.secret_mounts if m.id == "ca_certs"]
    assert ca.options["required"] == "false"  # optional: most networks need no extra CA


def test_production_stages_and_final_stage(production) -> None:
    assert [s.name for s in production.stages] == ["base", "builder", "backend"]
    assert production.stages[0].base == "${PYTHON_IMAGE}:${PYTHON_VERSION}-slim-${DEBIAN_BASE}"
    assert production.global_args["PYTHON_IMAGE"] == "python"  # Docker Hub's, unless a mirror is named
    final = production.stage_instructions(production.final_stage)
    users = [i.value for i in final if i.keyword == "USER"]
    assert users == ["frappe"]
    assert [i.value for i in final if i.keyword == "WORKDIR"] == ["/home/frappe/frappe-bench"]
    (volume,) = [i.value for i in final if i.keyword == "VOLUME"]
    assert "/home/frappe/frappe-bench/sites" in volume
    assert "/home/frappe/frappe-bench/logs" in volume
    assert "sites/assets" not in volume  # assets are baked in and linked at start (upstream #1879)
    (entrypoint,) = [i.value for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoint == '[ "/usr/local/bin/imagekit-entrypoint.sh" ]'
    (cmd,) = [i.value for i in final if i.keyword == "CMD"]
    assert cmd == '[ "/usr/local/bin/gunicorn-start.sh" ]'
    for setting in ('--workers="${GUNICORN_WORKERS:-2}"', '--threads="${GUNICORN_THREADS:-4}"',
                    '--timeout="${GUNICORN_TIMEOUT:-120}"', "--bind=0.0.0.0:8000"):  # fmt: skip
        assert setting in production.text, setting
    copy = [i.value for i in final if i.keyword == "COPY"]
    bench = "/home/frappe/frappe-bench"
    assert copy == [f"--from=builder --chown=frappe:frappe {bench} {bench}"]
    assert "useradd --uid 1000" in production.text


def test_the_run_that_clones_also_deletes_git_and_logs(production) -> None:
    clones = [i for i in production.instructions if "bench init" in i.command]
    assert len(clones) == 1
    run = clones[0].command
    for flag in (
        "--apps_path=/opt/frappe/apps.json",
        "--frappe-branch=${FRAPPE_BRANCH}",
        "--frappe-path=${FRAPPE_PATH}",
        "--no-procfile",
        "--no-backups",
        "--skip-redis-config-generation",
    ):
        assert flag in run, flag
    assert 'echo "{}" > sites/common_site_config.json' in run
    assert 'find apps -mindepth 1 -path "*/.git" | xargs rm -fr' in run
    assert "find logs -type f -exec rm -f {} +" in run
    assert "${CACHE_BUST}" in run
    assert 'env/bin/python -m pip install --quiet "${SETUPTOOLS_SPEC}"' in run
    assert production.stages[1].args["SETUPTOOLS_SPEC"] == "setuptools<81"
    assert "mv sites/assets assets" in run
    assert any("type=secret,id=apps_json" in m for m in clones[0].flags["mount"])
    # CACHE_BUST is declared in the builder stage, after the apt step and before bench init.
    builder = production.stages[1]
    assert builder.args["CACHE_BUST"] == ""
    steps = production.stage_instructions(builder)
    arg_line = next(i.line for i in steps if i.keyword == "ARG" and "CACHE_BUST" in i.value)
    assert production.stage_instructions(builder)[1].line < arg_line < clones[0].line


def test_production_cache_mounts_and_no_credential_files(production) -> None:
    mounts = [m for i in production.instructions for m in i.flags.get("mount", [])]
    assert "type=cache,target=/var/cache/apt,sharing=locked" in mounts
    assert "type=cache,target=/var/lib/apt,sharing=locked" in mounts
    assert "type=cache,target=/home/frappe/.cache/pip,uid=1000,gid=1000" in mounts
    assert "type=cache,target=/home/frappe/.cache/yarn,uid=1000,gid=1000" in mounts
    assert "type=cache,target=/home/frappe/.npm,uid=1000,gid=1000" in mounts
    assert "type=cache,target=/home/frappe/.cache/uv,uid=1000,gid=1000" in mounts
    assert "rm -f /etc/apt/apt.conf.d/docker-clean" in production.text
    assert "GIT_TERMINAL_PROMPT=0" in production.text
    code = "\n".join(i.value for i in production.instructions)
    assert "credential.helper" not in code and "git-credentials " not in code
    assert not re.search(r"^#\s*syntax\s*=", production.text, re.MULTILINE)
    assert "<<" not in code  # no heredocs: the frontend built into BuildKit 20.10 has none
    assert all(not i.value.startswith("resources/") for i in production.instructions)
