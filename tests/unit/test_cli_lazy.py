"""`imagekit NAME ...` imports the module of NAME alone, and `imagekit --help` lists every command
from cli/main.py's COMMANDS table without importing any: the table must say what the modules do."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import typer

main = importlib.import_module("frappe_imagekit.cli.main")  # the package exports the function main

PROBE = """
import sys
sys.argv = ["imagekit", *sys.argv[1:]]
from frappe_imagekit.cli import main
try:
    main()
except SystemExit:
    pass
cli = sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("frappe_imagekit.cli."))
print("LOADED=" + ",".join(m for m in cli if m.endswith("_cmd")), file=sys.stderr)
"""


EVERYTHING = (
    "import importlib; m = importlib.import_module('frappe_imagekit.cli.main'); "
    "m._load_commands(); m.app(prog_name='imagekit')"
)


def _loaded(*argv: str) -> tuple[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED="))
    return done.stdout, list(filter(None, line.removeprefix("LOADED=").split(",")))


def test_the_table_names_every_command_its_module_and_help_in_the_listed_order() -> None:
    main._load_commands()
    group = typer.main.get_command(main.app)
    ctx = group.context_class(group)  # the click that typer uses, whichever it is
    seen = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        callback = command.callback  # typer wraps it; a sub-app (group) has none
        module = callback.__module__.rsplit(".", 1)[1] if callback else None
        seen[name] = (module, (command.help or "").split("\n\n")[0])
    table = {name: (module, text) for name, (module, text) in main.COMMANDS.items()}
    groups = {name for name, (module, _) in seen.items() if module is None}  # typer sub-apps
    assert {n: v[1] for n, v in seen.items()} == {n: v[1] for n, v in table.items()}
    assert list(seen) == list(table)
    assert {n: v[0] for n, v in seen.items() if n not in groups} == {
        n: v[0] for n, v in table.items() if n not in groups
    }
    assert groups == {"completion", "site"}


def test_help_lists_every_command_as_the_loaded_app_does_and_imports_none() -> None:
    listed, loaded = _loaded("--help")
    assert loaded == []
    everything = subprocess.run(
        [sys.executable, "-c", EVERYTHING, "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed == everything.stdout
    assert "rollback" in listed and "site " in listed


@pytest.mark.parametrize(
    ("argv", "modules"),
    [(["check", "--help"], ["check_cmd"]),
     # rollback's target options come from cli/targetopts.py, no other command's module (issue 23)
     (["-v", "rollback", "--help"], ["rollback_cmd"]),
     (["prune", "--help"], ["build_cmd"]), (["site", "new", "--help"], ["site_cmd"])],
)  # fmt: skip
def test_a_command_imports_its_own_module_alone(argv: list[str], modules: list[str]) -> None:
    shown, loaded = _loaded(*argv)
    assert loaded == modules
    assert "Usage:" in shown and "--help" in shown


def test_an_unknown_command_is_an_error_listing_nothing_loaded() -> None:
    done = subprocess.run([sys.executable, "-m", "frappe_imagekit", "deplyo"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "No such command 'deplyo'" in done.stderr


def test_requested_command_skips_the_root_options() -> None:
    assert main.requested_command(["-v", "deploy", "x"]) == "deploy"
    assert main.requested_command(["--verbose", "--help"]) is None
    assert main.requested_command(["--version"]) is None
    assert main.requested_command([]) is None
