"""Named targets in imagekit.toml: loading, validation of repository content, identity rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frappe_imagekit.errors import ConfigError, ExitCode, NotFoundError, UsageError
from frappe_imagekit.targets import Target, check_identity, get_target, load_targets
from tests.support.cli import invoke

GOOD = """
[targets.production]
project = "erp"
compose = ["compose.yaml", "overrides/compose.mariadb.yaml"]
host = "deploy@erp.example.com"
env_file = "/home/deploy/gitops/erp.env"
sites = ["erp.example.com"]
up_timeout = 300

[targets.staging]
project = "erp-staging"
compose = "compose.yaml"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "imagekit.toml").write_text(text)
    return tmp_path


def test_loads_every_target(tmp_path: Path) -> None:
    targets = load_targets(write(tmp_path, GOOD))
    assert targets["production"] == Target(
        name="production",
        project="erp",
        compose=("compose.yaml", "overrides/compose.mariadb.yaml"),
        host="deploy@erp.example.com",
        env_file="/home/deploy/gitops/erp.env",
        sites=("erp.example.com",),
        up_timeout=300.0,
    )
    assert targets["staging"].compose == ("compose.yaml",) and targets["staging"].sites is None


def test_no_file_means_no_targets(tmp_path: Path) -> None:
    assert load_targets(tmp_path) == {}
    with pytest.raises(NotFoundError, match=r"defines none; add a \[targets.prod\] table"):
        get_target(tmp_path, "prod")


def test_unknown_target_suggests_the_closest(tmp_path: Path) -> None:
    suggestion = "there is no target 'prodution' \\(did you mean 'production'\\?\\)"
    with pytest.raises(NotFoundError, match=suggestion):
        get_target(write(tmp_path, GOOD), "prodution")


A = "[targets.a]\nproject = 'erp'\ncompose = 'c.yaml'\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[targets.a]\nproject = 'erp'\n", "needs project and compose"),
        ("[targets.a]\nproject = 'ERP'\ncompose = 'c.yaml'\n", "compose would use 'erp'"),
        ("[targets.a]\nproject = '../../x'\ncompose = 'c.yaml'\n", "not a compose project name"),
        ("[targets.a]\nproject = 'erp'\ncompose = '--upload-pack=x'\n", "cannot start with '-'"),
        ("[targets.a]\nproject = 'erp'\ncompose = []\n", "compose must be a file name or a list"),
        (A + "sites = ['../etc']\n", "not a valid site name"),
        (A + "sites = 'x'\n", 'sites must be "all"'),
        (A + "up_timeout = -1\n", "positive number"),
        (A + "up_timeout = true\n", "positive number"),
        (A + "hots = 'x'\n", "unknown key 'hots' \\(did you mean 'host'\\?\\)"),
        (A + "host = 5\n", "must be a string, not int"),
        (A + "backend_service = 'a b'\n", "not a compose service"),
        # found by tests/unit/test_properties_readers.py (issue 19 "Tests")
        (A + "host = 'a b;rm'\n", r"\[targets.a\] host 'a b;rm' cannot be used: .*use user@server\[:port\]"),
        (A + "up_timeout = inf\n", "positive number"),
        (A + "up_timeout = nan\n", "positive number"),
        ("[targets]\na = 1\n", "must be a table of settings"),
        ("targets = 1\n", "'targets' must be tables"),
        ("[other]\n", "unknown table 'other'"),
        ('[targets."a b"]\nproject = "erp"\ncompose = "c"\n', "a target name is letters"),
        ("[targets.a\n", "is not valid TOML"),
    ],
)
def test_bad_files_are_one_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_targets(write(tmp_path, text))
    assert caught.value.exit_code == ExitCode.VALIDATION


def test_a_target_keeps_its_project_and_compose_files(tmp_path: Path) -> None:
    target = load_targets(write(tmp_path, GOOD))["production"]
    check_identity(target, None, None)
    check_identity(target, "erp", ["compose.yaml", "overrides/compose.mariadb.yaml"])
    with pytest.raises(UsageError, match="target production is project 'erp', not 'erp2'"):
        check_identity(target, "erp2", None)
    with pytest.raises(UsageError, match="a stack keeps its compose files"):
        check_identity(target, None, ["compose.yaml"])


def test_targets_command_lists_and_prints_json(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = invoke("targets", "-w", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "target\thost\tproject\tcompose\tsites"
    compose = "compose.yaml, overrides/compose.mariadb.yaml"
    assert lines[2] == f"production\tdeploy@erp.example.com\terp\t{compose}\terp.example.com"
    assert lines[3] == "staging\tthis machine\terp-staging\tcompose.yaml\tall"
    data = json.loads(invoke("targets", "-w", str(tmp_path), "--json").stdout)
    assert [t["name"] for t in data] == ["production", "staging"] and data[1]["sites"] == "all"


def test_targets_command_on_a_broken_file_exits_1(tmp_path: Path) -> None:
    write(tmp_path, "[targets.a]\nproject = 'erp'\n")
    result = invoke("targets", "-w", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: imagekit.toml [targets.a] needs project and compose: they are what keeps a stack the same."
    )
