"""`imagekit --help` stays fast: it must not import docker, paramiko or git."""

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
"""


def test_help_imports_no_heavy_library():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert "Usage" in result.stdout
    assert "HEAVY=\n" in result.stderr, result.stderr
