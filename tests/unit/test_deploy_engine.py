"""Issue 23: the Engine seam (chosen by name, recorded), one send_image step, one Target."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from frappe_imagekit.cli.targetopts import Where, build_target, from_target
from frappe_imagekit.deploy import compose, engine
from frappe_imagekit.deploy.compose import ComposeCLI
from frappe_imagekit.deploy.engine import ComposeEngine, Stack, engine_name, open_engine
from frappe_imagekit.deploy.lastup import last_up_engine, parse_last_up
from frappe_imagekit.deploy.record import DeployRecord
from frappe_imagekit.deploy.rollback import RollbackOptions, plan_rollback
from frappe_imagekit.deploy.sequence import DeployOptions
from frappe_imagekit.errors import DeployError, UsageError
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import LocalRunner
from frappe_imagekit.workspace import Workspace

PACKAGE = Path(__file__).resolve().parents[2] / "frappe_imagekit"
V1 = ComposeCLI(("docker-compose",), "1.29.2")
V2 = ComposeCLI(("docker", "compose"), "2.29.1")
STACK = Stack("erp", ("/srv/compose.yaml", "/srv/over.yaml"), "/srv", "/srv/erp.env")


@pytest.mark.parametrize("cli", [V1, V2])
def test_the_compose_engine_runs_the_argv_deploy_rollback_and_sandbox_ran(cli: ComposeCLI) -> None:
    eng = ComposeEngine(LocalRunner(), cli)
    where = {"project_dir": "/srv", "env_file": "/srv/erp.env"}
    files = list(STACK.files)
    assert eng.up_argv(STACK, stop_timeout=7) == compose.compose_argv(
        cli, "erp", files, *compose.up_args(cli, 7), **where
    )
    assert eng.down_argv(STACK, stop_timeout=7) == compose.compose_argv(
        cli, "erp", files, *compose.down_args(cli, 7), **where
    )
    # rollback: `up -d --remove-orphans SERVICE`; sandbox: `up -d`
    assert eng.up_argv(STACK, ["backend"])[-4:] == ["up", "-d", "--remove-orphans", "backend"]
    assert eng.up_argv(STACK, orphans=False)[-3:] == ["/srv/erp.env", "up", "-d"]
    assert eng.exec_argv("c1", ["bench", "version"]) == ["docker", "exec", "c1", "bench", "version"]
    assert eng.exec_argv("c1", ["sh"], stdin=True) == ["docker", "exec", "-i", "c1", "sh"]
    assert eng.command_base() == cli.base and eng.name == "compose"
    assert eng.describe() == f"{' '.join(cli.base)} {cli.version}"
    assert ("unmaintained" in " ".join(eng.notes())) is (not cli.is_v2)


class ComposeVersion:
    host = "local"

    def run(self, argv: list[str], **_: Any) -> Completed:
        ok = argv[:2] == ["docker", "compose"]
        return Completed(tuple(argv), 0 if ok else 1, "v2.29.1\n" if ok else "", "")


def test_engines_are_chosen_by_name_and_an_unknown_name_is_refused() -> None:
    assert engine_name(None) == "compose"  # records and last-up.json from before engines
    with pytest.raises(UsageError, match="'swarmish' is not one imagekit knows"):
        engine_name("swarmish")
    with pytest.raises(DeployError, match="is not one imagekit knows"):
        open_engine("swarmish", LocalRunner())
    opened = open_engine("compose", ComposeVersion())  # type: ignore[arg-type]
    assert isinstance(opened, ComposeEngine) and opened.describe() == "docker compose 2.29.1"


def test_records_name_their_engine_and_those_without_one_ran_on_compose() -> None:
    base = {"version": "v1", "project": "erp", "started": "2026-12-01T10:00:00+00:00"}
    assert DeployRecord.from_dict(base).engine == "compose"
    assert DeployRecord.from_dict({**base, "engine": "compose"}).to_dict()["engine"] == "compose"
    with pytest.raises(ValueError, match="engine"):
        DeployRecord.from_dict({**base, "engine": "-rf"})
    last_up = {"config_files": "/srv/compose.yaml", "sha256": "ab"}
    assert last_up_engine(parse_last_up(json.dumps(last_up))) == "compose"
    with pytest.raises(ValueError, match="engine"):
        parse_last_up(json.dumps({**last_up, "engine": "kubernetes"}))


def _deployed(ws: Path, state: Path, last_up: dict[str, Any]) -> None:
    (ws / "deploys").mkdir()
    record = {"schema_version": 2, "version": "v1", "image": "de/erp:v1", "project": "erp", "host": "local",
              "started": "2026-12-01T10:00:00+00:00", "result": "succeeded", "served": True,
              "sites": [{"site": "a.local"}]}  # fmt: skip
    (ws / "deploys" / "20261201T100000Z-erp.json").write_text(json.dumps(record))
    (state / "projects" / "erp").mkdir(parents=True)
    (state / "projects" / "erp" / "last-up.json").write_text(json.dumps(last_up))


@pytest.mark.parametrize("recorded", [None, "compose", "recorded-one"])
def test_rollback_opens_the_engine_its_last_up_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: str | None
) -> None:
    opened: list[str] = []

    def opener(name: str) -> Any:
        def fail(_runner: Any) -> Any:
            opened.append(name)
            raise DeployError(f"{name} opened")

        return fail

    monkeypatch.setitem(engine.ENGINES, "compose", opener("compose"))
    monkeypatch.setitem(engine.ENGINES, "recorded-one", opener("recorded-one"))
    last_up = {"config_files": "/srv/compose.yaml", "sha256": "ab", "project_dir": "/srv"}
    _deployed(tmp_path, tmp_path / "state", {**last_up, **({"engine": recorded} if recorded else {})})
    opts = RollbackOptions.of("erp", state_dir=str(tmp_path / "state"), to_version="v0", no_restore=True)
    with pytest.raises(DeployError, match="opened"):
        plan_rollback(LocalRunner(), Workspace.at(tmp_path), opts)
    assert opened == [recorded or "compose"]


def _lists_starting(tree: ast.AST, *words: str) -> bool:
    return any(
        isinstance(node, ast.List)
        and [getattr(e, "value", None) for e in node.elts[: len(words)]] == list(words)
        for node in ast.walk(tree)
    )


def test_one_send_image_step_streams_the_image_for_deploy_rollback_and_sandbox() -> None:
    """Only transfer/send.py builds `docker save` / `docker load` (sandbox had a copy of deploy's);
    deploy/send.py's one send_image step uses it (and the registry way, issue 20)."""
    senders = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _lists_starting(ast.parse(path.read_text()), "docker", "load")
        or _lists_starting(ast.parse(path.read_text()), "docker", "save")
    )
    assert senders == ["transfer/send.py"]


def test_no_cli_command_hands_on_its_locals() -> None:
    """deploy, rollback, sandbox, backups and rehearse build a ``Where`` from their options, and
    their Target through ``cli/targetopts.py`` (on f848349 sandbox_cmd and rehearse_cmd did not)."""
    passing = sorted(
        path.name
        for path in (PACKAGE / "cli").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "locals"
    )
    assert passing == []


def test_one_target_from_a_named_target_and_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "imagekit.toml").write_text(
        '[targets.prod]\nproject = "erp"\ncompose = ["/srv/compose.yaml", "/srv/over.yaml"]\n'
        'host = "deploy@erp.example.com"\nidentity = "/keys/id"\nbackend_service = "web"\nup_timeout = 90\n'
    )
    where = from_target(tmp_path, "prod", Where(env_file="/srv/other.env"))
    target = build_target(where, name="prod", image_var="IMG", oneshot=("setup",))
    assert (target.project, target.compose_files) == ("erp", ("/srv/compose.yaml", "/srv/over.yaml"))
    assert (target.env_file, target.backend_service, target.up_timeout) == ("/srv/other.env", "web", 90)
    assert target.connection.host == "deploy@erp.example.com"
    assert target.connection.identity_file == "/keys/id" and "-i" in target.connection.ssh_flags
    assert (target.image_var, target.oneshot_services, target.name) == ("IMG", ("setup",), "prod")
    assert target.image_env("de/erp", "v2") == {"IMG": "de/erp", "CUSTOM_TAG": "v2", "PULL_POLICY": "never"}
    opts = DeployOptions(target, "de/erp", "v2")
    assert (opts.project, opts.compose_file, opts.compose_overrides) == ("erp", "/srv/compose.yaml",
                                                                         ("/srv/over.yaml",))  # fmt: skip
    assert RollbackOptions(target).backend_service == "web"


def test_the_flat_option_names_still_build_the_same_target() -> None:
    opts = DeployOptions.of("erp", "/a.yaml", "de/erp", "v1", compose_overrides=("/b.yaml",), state_dir="/s",
                            send_image=False, source_docker_host="unix:///d", ssh_flags=("-i", "/k"),
                            target="prod", backup=False)  # fmt: skip
    assert opts.where.compose_files == ("/a.yaml", "/b.yaml") and opts.state_dir == "/s"
    assert (opts.send_image, opts.source_docker_host) == (False, "unix:///d")
    assert (opts.ssh_flags, opts.target, opts.backup) == (("-i", "/k"), "prod", False)
    assert DeployOptions.of("", "", "", "").compose_file == ""


def test_the_stacks_containers_are_listed_through_the_engine() -> None:
    """Issue 23 item 1: a stack's containers are listed by the engine that runs it
    (``Engine.containers``/``services``/``backend``), not by compose's label in each module. On
    f848349 rehearse (4 places), backupcheck (2), verify.running_images, the migrator's wait and
    deploy's kept-services check listed them themselves. Left: context.all_containers before
    preflight chose the engine (a record written on the way out) and sitenew (`imagekit site new`
    has no state folder to read the engine from)."""
    listing = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "project_containers"
        and isinstance(node.value, ast.Name) and node.value.id == "compose"
    )  # fmt: skip
    assert listing == ["deploy/context.py", "deploy/engine.py", "deploy/sitenew.py"]
