"""Issue 19 "Tests": the first round's property tests extended to the lock file, the targets of
imagekit.toml, and the deploy records rollback and backups read. Any input is either accepted
with values that pass validate.py or refused with an ImagekitError; never another exception."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_properties_state import CANARY, FAST, documents, json_values

from frappe_imagekit import validate
from frappe_imagekit.appslock import read_lock
from frappe_imagekit.deploy import backuplist
from frappe_imagekit.deploy.record import DeployRecord, iter_deploy_records
from frappe_imagekit.errors import ImagekitError
from frappe_imagekit.targets import load_targets
from frappe_imagekit.workspace import Workspace

SHA = "c9d02e1d382c0a07061603243bd92b4730940efc"
GOOD_LOCK = {
    "schema_version": 1,
    "frappe": {"name": "frappe", "url": "https://github.com/frappe/frappe", "ref": "version-15", "sha": SHA},
    "apps": [{"name": "payments", "url": "https://github.com/frappe/payments", "ref": "v1.0.0", "sha": SHA}],
}
GOOD_RECORD = {
    "schema_version": 2, "version": "v1.1.0", "project": "erp", "image": "acme/erp:v1.1.0", "host": "local",
    "daemon_id": "ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP",
    "started": "2026-12-01T10:00:00+00:00", "finished": "2026-12-01T10:05:00+00:00", "result": "succeeded",
    "kind": "deploy", "previous_version": "v1.0.0", "served": True, "progress": [],
    "sites": [{"site": "a.local", "status": "ok", "backup_files": [
        {"path": "/state/backups/20261201T100000Z/a.local/x-database.sql.gz", "size": 3,
         "sha256": "ab" * 32}]}],
}  # fmt: skip


_PARENT: list[Path] = []  # this module's folder, which holds every example's workspace


@pytest.fixture(scope="module", autouse=True)
def _examples_folder() -> Iterator[None]:
    """One folder for the module's examples, removed after them (each run left 600 in /tmp)."""
    _PARENT.append(Path(tempfile.mkdtemp(prefix="ik-prop-")))
    yield
    shutil.rmtree(_PARENT.pop())


def _workspace() -> Path:
    return Path(tempfile.mkdtemp(dir=_PARENT[-1]))


# -- the lock file -----------------------------------------------------------------------------


@FAST
@given(st.one_of(documents(GOOD_LOCK).map(json.dumps), st.text(max_size=60)))
def test_any_lock_file_is_read_checked_or_refused(text: str) -> None:
    path = _workspace() / "apps.lock.json"
    path.write_text(text)
    try:
        lock = read_lock(path)
    except ImagekitError as exc:
        assert CANARY not in exc.message
        return
    assert lock is not None
    for name, entry in lock.items():
        assert entry["name"] == name
        if name != "frappe":
            validate.app_name(name)
        validate.git_url(entry["url"])
        validate.git_ref(entry["ref"], "ref")
        validate.commit_sha(entry["sha"], "sha")


# -- targets (imagekit.toml) -----------------------------------------------------------------------

_KEYS = ["project", "compose", "host", "env_file", "sites", "docker_host", "state_dir", "known_hosts",
         "identity", "ssh_config", "backend_service", "up_timeout", "description", "bogus"]  # fmt: skip
_toml_scalars = st.one_of(
    st.text(max_size=20).map(json.dumps),  # a TOML basic string
    st.sampled_from(['"-x"', '"../x"', '"all"', '"ops@erp.example.com:22"', '"a b"', f'"{CANARY}"',
                     '"compose.yaml"', '"a.local"', "0", "-5", "1e400", "nan", "inf", "true", "30"]),
    st.integers().map(str),
)  # fmt: skip
_toml_values = st.one_of(
    _toml_scalars, st.lists(_toml_scalars, max_size=3).map(lambda v: f"[{', '.join(v)}]")
)


@st.composite
def toml_files(draw) -> str:  # type: ignore[no-untyped-def]
    """imagekit.toml text: targets, mostly with a good project and compose, and a few keys
    (known and not) with hostile values."""
    lines = []
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["prod", "staging", "a b", "-x", "x" * 70]))
        lines.append(f"[targets.{json.dumps(name)}]")
        good = {"project": '"erp"', "compose": '["compose.yaml", "o.yaml"]'} if draw(st.booleans()) else {}
        for key in draw(st.lists(st.sampled_from(_KEYS), max_size=4, unique=True)):
            good[key] = draw(_toml_values)
        lines += [f"{key} = {value}" for key, value in good.items()]
    return "\n".join(lines) + "\n"


@FAST
@given(st.one_of(toml_files(), st.text(max_size=80)))
def test_any_imagekit_toml_gives_valid_targets_or_one_config_error(text: str) -> None:
    root = _workspace()
    (root / "imagekit.toml").write_text(text)
    try:
        targets = load_targets(root)
    except ImagekitError as exc:
        assert CANARY not in exc.message
        return
    for name, target in targets.items():
        assert target.name == name
        validate.project_name(target.project)
        assert target.compose and all(validate.not_an_option(f, "compose") for f in target.compose)
        for site in target.sites or ():
            validate.site_name(site)
        if target.host is not None:
            validate.host_spec(target.host)
        if target.backend_service is not None:
            validate.service_name(target.backend_service)
        for path in (target.env_file, target.docker_host, target.state_dir, target.known_hosts,
                     target.identity, target.ssh_config):  # fmt: skip
            assert path is None or validate.not_an_option(path, "a path") == path
        assert target.up_timeout is None or (math.isfinite(target.up_timeout) and target.up_timeout > 0)


# -- deploy records, as rollback and backups read them ----------------------------------------------


def _rollback_reads(ws: Workspace) -> list[DeployRecord]:
    """The records as rollback reads them (deploy/rollback.py): each readable one of
    ``iter_deploy_records`` (``read_deploys``), a ``DeployRecord``."""
    return [item for _, item in iter_deploy_records(ws) if isinstance(item, DeployRecord)]


def _write_record(data: Any) -> Workspace:
    root = _workspace()
    (root / "deploys").mkdir()
    (root / "deploys" / "20261201T100000Z-erp.json").write_text(json.dumps(data))
    return Workspace.at(root)


@FAST
@given(documents(GOOD_RECORD))
def test_any_deploy_record_rollback_reads_is_valid_or_left_out(data: Any) -> None:
    for record in _rollback_reads(_write_record(data)):
        validate.image_tag(record.version)
        validate.project_name(record.project)
        assert record.deploy_id is None or validate.deploy_id(record.deploy_id)  # rollback skips None
        for version in (record.previous_version, record.rolled_back_from):
            assert version is None or validate.image_tag(version) == version
        for site in record.sites:
            validate.site_name(site.site)
            for copy in site.backup_files:
                validate.not_an_option(copy.path, "path")
                validate.sha256_hex(copy.sha256)
                assert isinstance(copy.size, int) and copy.size >= 0


@FAST
@given(documents(GOOD_RECORD))
def test_any_deploy_record_backups_read_is_valid_or_left_out(data: Any) -> None:
    ws = _write_record(data)
    for deploy, info in backuplist.deploy_records(ws, "erp").items():  # never raises
        validate.deploy_id(deploy)
        validate.image_tag(info.version)
        assert info.previous is None or validate.image_tag(info.previous) == info.previous
        for name, sha in info.sha256.items():
            validate.sha256_hex(sha)
            site, _, file = name.partition("/")
            validate.site_name(site)
            assert file and "/" not in file


@FAST
@given(json_values)
def test_any_json_value_as_a_record_is_left_out_or_read(data: Any) -> None:
    ws = _write_record(data)
    assert backuplist.deploy_records(ws, "erp") == {} or isinstance(data, dict)
    assert _rollback_reads(ws) == [] or isinstance(data, dict)
