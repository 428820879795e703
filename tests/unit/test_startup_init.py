"""The new commands' --help stays as fast as before: no library beyond what --help loaded already."""

import subprocess
import sys

import pytest

PROBE = """
import sys
sys.argv = ["imagekit", *sys.argv[1:]]
from frappe_imagekit.cli import main
try:
    main()
except SystemExit:
    pass
loaded = {m.split(".")[0] for m in sys.modules} | set(sys.modules)
heavy = sorted(loaded & {"docker", "paramiko", "git", "jsonschema", "yaml", "dotenv", "re2"})
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["init", "--help"], ["site", "new", "--help"], ["completion", "show", "--help"]],
)
def test_help_of_new_commands_imports_no_heavy_library(argv: list[str]):
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    assert "Usage" in result.stdout
    assert "HEAVY=\n" in result.stderr, result.stderr
