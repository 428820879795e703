"""`imagekit --help` stays fast: it must not import docker, paramiko or git, nor the build wing."""

import subprocess
import sys

PROBE = """
import sys
sys.argv = ["imagekit", "--help"]
from frappe_imagekit.cli import main
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"docker", "paramiko", "git", "jsonschema"})
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
wing = sorted(m for m in sys.modules if m.startswith(("frappe_imagekit.build.", "frappe_imagekit.leakscan")))
print("WING=" + ",".join(wing), file=sys.stderr)
"""
# What `imagekit check` parses (check.py) and the manifest's typed records: small, no I/O.
HELP_MAY_LOAD = {"frappe_imagekit.build.containerfile", "frappe_imagekit.build.downloads",
                 "frappe_imagekit.build.records"}  # fmt: skip


def test_help_imports_no_heavy_library():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert "Usage" in result.stdout
    assert "HEAVY=\n" in result.stderr, result.stderr


def test_help_does_not_load_the_build_wing():
    """plan, execute, exact, tiers, rebuild, benchfile, cacerts and the leak scanner load when
    `imagekit build` or `history rebuild` runs (build/__init__.py loads them on first use)."""
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    line = next(line for line in result.stderr.splitlines() if line.startswith("WING="))
    loaded = set(filter(None, line.removeprefix("WING=").split(",")))
    assert loaded <= HELP_MAY_LOAD, sorted(loaded - HELP_MAY_LOAD)


def test_the_build_package_loads_its_modules_on_first_use():
    plan = "frappe_imagekit.build.plan"
    code = (
        f"import sys; from frappe_imagekit import build; loaded = {plan!r} in sys.modules; "
        f"build.plan.BuildOptions; print(loaded, {plan!r} in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


LOADED = """
import sys
sys.argv = {argv!r}
{run}
print("MODULES=" + ",".join(sorted(sys.modules)), file=sys.stderr)
"""
IMAGEKIT = """
from frappe_imagekit.cli import main
try:
    main()
except SystemExit:
    pass
"""
BARE_TYPER = """
import typer
app = typer.Typer(add_completion=False, rich_markup_mode=None)
@app.callback()
def root(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    pass
@app.command("check")
def check() -> None:
    pass
try:
    app()
except SystemExit:
    pass
"""
# What `imagekit check --help` may load beyond a bare typer app's `check --help` (the floor,
# benchmarks/startup): imagekit's own modules and these small standard ones. A module that is
# heavy to load (hashlib with OpenSSL, tomllib, configparser, packaging) is imported where it is
# used, so it does not appear here.
CHECK_HELP_MAY_ADD = {"json", "json.decoder", "json.encoder", "json.scanner", "_json", "shlex",
                      "concurrent.futures.thread", "queue", "_queue"}  # fmt: skip


def _loaded(argv: list[str], run: str) -> set[str]:
    code = LOADED.format(argv=argv, run=run)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Usage" in result.stdout, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES="))
    return set(line.removeprefix("MODULES=").split(","))


def test_check_help_loads_typers_floor_and_imagekits_own_modules_only():
    floor = _loaded(["bare", "check", "--help"], BARE_TYPER)
    added = _loaded(["imagekit", "check", "--help"], IMAGEKIT) - floor
    assert {m for m in added if not m.startswith("frappe_imagekit")} <= CHECK_HELP_MAY_ADD, sorted(added)
    assert "frappe_imagekit.check" in added
    assert not {m for m in added if m.startswith("frappe_imagekit.deploy")}, sorted(added)
