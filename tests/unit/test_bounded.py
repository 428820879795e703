"""Issue 19 item 14: a deeply nested (or huge) imagekit.toml, deploy record or lock file is one
sentence and a documented exit code, never a RecursionError (exit 70). Each reader is fed a
document nested 100 000 deep (json and tomllib recurse per level) and one just over the bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from frappe_imagekit import bounded
from frappe_imagekit.appslock import read_lock
from frappe_imagekit.deploy import backuplist, lock
from frappe_imagekit.deploy.composeconfig import parse_config
from frappe_imagekit.deploy.record import iter_deploy_records
from frappe_imagekit.errors import ConfigError, DeployError, ExitCode
from frappe_imagekit.history import load_deploys
from frappe_imagekit.prune import needed
from frappe_imagekit.runner import json_object
from frappe_imagekit.targets import load_targets
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke

DEEP = 100_000
JUST_OVER = bounded.MAX_DEPTH + 1


def deep_json(depth: int) -> str:
    return '{"version": "v1", "project": "erp", "extra": ' + "[" * depth + "]" * depth + "}"


def deep_toml(depth: int) -> str:
    return '[targets.prod]\nproject = "erp"\ncompose = "c.yaml"\nx = ' + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize("depth", [DEEP, JUST_OVER])
def test_imagekit_toml(tmp_path: Path, depth: int) -> None:
    (tmp_path / "imagekit.toml").write_text(deep_toml(depth))
    with pytest.raises(
        ConfigError, match=r"^imagekit.toml cannot be used \(nested deeper than 64 levels\): "
    ):
        load_targets(tmp_path)
    result = invoke("targets", "-w", str(tmp_path))
    assert result.exit_code == ExitCode.VALIDATION, result.output
    assert "nested deeper than 64 levels" in result.stderr and "Traceback" not in result.stderr


def test_imagekit_toml_at_the_bound_reaches_the_usual_checks(tmp_path: Path) -> None:
    (tmp_path / "imagekit.toml").write_text(deep_toml(bounded.MAX_DEPTH - 1))  # + the [targets] table
    with pytest.raises(ConfigError, match=r"\[targets.prod\] has unknown key 'x'"):
        load_targets(tmp_path)


@pytest.mark.parametrize("depth", [DEEP, JUST_OVER])
def test_apps_lock(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "apps.lock.json"
    path.write_text(deep_json(depth))
    with pytest.raises(ConfigError, match=r"^apps.lock.json is not a lock file imagekit wrote"):
        read_lock(path)


def test_apps_lock_too_large_or_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "apps.lock.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(
        ConfigError, match=r"^apps.lock.json cannot be used \(not UTF-8 text\): run `imagekit lock`"
    ):
        read_lock(path)
    path.write_bytes(b" " * (bounded.MAX_BYTES + 1))
    with pytest.raises(ConfigError, match=r"cannot be used \(larger than 8 MiB\)"):
        read_lock(path)


@pytest.mark.parametrize("depth", [DEEP, JUST_OVER])
def test_deploy_record_readers(tmp_path: Path, depth: int) -> None:
    (tmp_path / "deploys").mkdir()
    (tmp_path / "deploys" / "20261201T000000Z-erp.json").write_text(deep_json(depth))
    ws = Workspace.at(tmp_path)
    [(_, broken)] = list(iter_deploy_records(ws))  # history, rollback, deploy's preflight
    assert "nested deeper than 64 levels" in str(getattr(broken, "reason", ""))
    assert load_deploys(ws) == []
    assert backuplist.deploy_records(ws, "erp") == {}
    with pytest.raises(ConfigError, match=r"deploys/20261201T000000Z-erp.json cannot be read"):
        needed(ws, keep_deploys=3)  # prune
    result = invoke("history", "-w", str(tmp_path))
    assert result.exit_code == 0 and "Traceback" not in result.stderr


@pytest.mark.parametrize("depth", [DEEP, JUST_OVER])
def test_deploy_lock_details_and_last_up(depth: int) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        json_object(deep_json(depth))
    details = lock.parse_details(deep_json(depth))  # a lock whose details cannot be read: no crash
    assert details is None or "extra" not in details


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]"}',
        '"\\"' + "[" * 70 + '"',
    ],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    assert bounded.check_json(text) == text


def test_toml_strings_and_comments_do_not_count() -> None:
    text = "a = '" + "[" * 70 + '\'\nb = """\n' + "{" * 70 + '\n"""\n# ' + "[" * 70 + "\n"
    assert bounded.check_toml(text) == text


@pytest.mark.parametrize(
    "text",
    [
        '{"services": {}, "x-a": ' + "[" * DEEP + "]" * DEEP + "}",
        "services: {}\nx-a:\n" + "".join("  " * i + "- \n" for i in range(1, 3000)),
    ],
)
def test_compose_config_nested_too_deeply_is_a_deploy_error(text: str) -> None:
    with pytest.raises(DeployError, match="nested too deeply"):
        parse_config(text)
