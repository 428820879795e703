"""Property-based tests for the state and repository files harden-state reads: build manifests,
deploy records, last-up.json, lock details and --host specs. Whatever they hold (JSON of any
shape, any text), the result is a value or an ImagekitError with a documented exit code, never
another exception, and never the canary secret in a message."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_history_data import make_deploy, make_manifest

from frappe_imagekit import manifest, ssh
from frappe_imagekit.deploy import lock
from frappe_imagekit.deploy.record import DeployRecord, load_deploy_record
from frappe_imagekit.deploy.sequence import parse_last_up
from frappe_imagekit.errors import ExitCode, ImagekitError
from tests.support.cli import invoke

CANARY = "ghp_" + "Pr0p3rtyC4n4ry" * 3
DOCUMENTED = {int(code) for code in ExitCode} - {int(ExitCode.INTERNAL)}
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLI = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", "-x", "--upload-pack=touch X", "../../x", CANARY, f"-{CANARY}", "v1.0.0", "a" * 300]
    ),
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _texts)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_texts, st.sampled_from(["ref", "sha"])), inner, max_size=4),
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside ``value`` (where a mutation can go)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated(draw, good: dict) -> Any:
    """``good`` with one value somewhere replaced by arbitrary JSON (or dropped)."""
    data = copy.deepcopy(good)
    path = draw(st.sampled_from(_paths(data)[1:]))
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return data


def documents(good: dict) -> st.SearchStrategy[Any]:
    return st.one_of(json_values, mutated(good), mutated(good).flatmap(lambda d: mutated(d)))


def _assert_clean(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code in DOCUMENTED, result.stderr
    assert "internal error" not in result.stderr
    assert CANARY not in result.stdout + result.stderr


@CLI
@given(documents(make_manifest("v1.0.1", "2026-11-02T10:00:00+00:00")))
def test_any_manifest_is_listed_shown_or_skipped(data: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        builds = Path(folder, "builds")
        builds.mkdir()
        (builds / "v1.0.0.json").write_text(json.dumps(make_manifest("v1.0.0")))
        (builds / "v1.0.1.json").write_text(json.dumps(data))
        try:
            checked = manifest.load_manifest(builds / "v1.0.1.json")
            assert isinstance(checked, dict)
        except ValueError as exc:
            assert CANARY not in str(exc)
        for args in (["history"], ["history", "v1.0.1", "--json"]):
            _assert_clean(invoke(*args, "-w", folder))
        diff = invoke("history", "--diff", "v1.0.0", "v1.0.1", "--offline", "-w", folder)
        _assert_clean(diff)


@CLI
@given(documents(make_deploy("v1.0.0", "2026-11-02T10:00:00+00:00")))
def test_any_deploy_record_is_joined_or_skipped(data: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        builds, deploys = Path(folder, "builds"), Path(folder, "deploys")
        builds.mkdir()
        deploys.mkdir()
        (builds / "v1.0.0.json").write_text(json.dumps(make_manifest("v1.0.0")))
        (deploys / "20261102T100000Z-erp.json").write_text(json.dumps(data))
        try:
            assert isinstance(load_deploy_record(deploys / "20261102T100000Z-erp.json"), DeployRecord)
        except ValueError as exc:
            assert CANARY not in str(exc)
        for args in (["history"], ["history", "v1.0.0", "--json"]):
            _assert_clean(invoke(*args, "-w", folder))


GOOD_LAST_UP = {
    "config_files": "/srv/compose.yaml",
    "sha256": "ab" * 32,
    "project_dir": "/srv",
    "env_file": "/srv/.env",
    "env": {"CUSTOM_IMAGE": "de/erp", "CUSTOM_TAG": "v1"},
    "version": "v1",
}


@FAST
@given(st.one_of(st.text(max_size=200), documents(GOOD_LAST_UP).map(json.dumps)))
def test_any_last_up_is_used_or_treated_as_missing(text: str) -> None:
    try:
        data = parse_last_up(text)
    except ValueError as exc:
        assert CANARY not in str(exc)
        return
    # what deploy reads from an accepted record has the types it needs
    assert isinstance(data["config_files"], str) and isinstance(data["sha256"], str)
    assert data.get("project_dir") is None or isinstance(data["project_dir"], str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.get("env", {}).items())


@FAST
@given(
    st.one_of(st.none(), st.text(max_size=200), documents(lock.lock_details("v1", "local")).map(json.dumps))
)
def test_any_lock_details_name_a_holder_or_none(text: str | None) -> None:
    details = lock.parse_details(text)
    assert details is None or isinstance(details, dict)
    lock.is_stale(details)
    message = lock.held_message("erp", details, "local")
    assert message.startswith("project erp")


_host_chars = st.sampled_from(
    list("abcz019-_.@:[]% /\\\x00é") + ["::1", "127.0.0.1", "ghp_", CANARY, "99999"]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_host_chars, max_size=8).map("".join)))
def test_any_host_spec_parses_or_is_a_usage_error(spec: str) -> None:
    try:
        user, host, port = ssh.parse_host(spec)
    except ImagekitError as exc:
        assert exc.exit_code == ExitCode.USAGE
        assert CANARY not in exc.message
        return
    assert host and (port is None or 0 < port < 65536)
    assert user is None or (user and not user.startswith("-"))
    assert not host.startswith("-")


_option_text = st.one_of(
    st.text(max_size=30), st.sampled_from(["erp", "ERP", "../x", "A=B", "-x", "a.local", ""])
)


@FAST
@given(
    project=_option_text,
    image_var=_option_text,
    service=_option_text,
    sites=st.one_of(st.none(), st.lists(_option_text, max_size=3)),
    env_file=st.one_of(st.none(), _option_text),
    lock_wait=st.one_of(st.floats(allow_nan=True), st.integers(), st.booleans()),
)
def test_any_deploy_options_pass_or_are_a_usage_error(
    project, image_var, service, sites, env_file, lock_wait
):
    from frappe_imagekit.deploy.sequence import DeployOptions, check_options

    opts = DeployOptions.of(project=project, compose_file="/srv/c.yaml", image="de/erp", version="v1",
                         image_var=image_var, backend_service=service, sites=sites,
                         env_file=env_file, lock_wait=lock_wait)  # fmt: skip
    try:
        check_options(opts)
    except ImagekitError as exc:
        assert exc.exit_code == ExitCode.USAGE
        return
    assert project == project.lower() and not project.startswith(("-", ".")) and "/" not in project
    assert "=" not in image_var and lock_wait >= 0


def test_a_lock_pid_beyond_any_process_is_not_alive() -> None:
    """A lock file naming pid 2**31 (hypothesis found it: os.kill raised OverflowError) is stale."""
    assert lock.pid_alive(2**31) is False
