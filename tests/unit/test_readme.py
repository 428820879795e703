"""The README stays true: its exit code table matches the code, its quick start runs."""

import re
import shlex
import subprocess
import sys

from frappe_imagekit.errors import ExitCode
from tests.support.workspace import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_exit_code_table_matches_errors_module():
    section = README.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.M)}
    assert documented == {int(code) for code in ExitCode}


def test_quick_start_check_runs_as_written():
    block = README.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    command = block.strip().split("&&", 1)[1].strip()  # the part after `pip install .`
    assert command.startswith("imagekit check")
    argv = [sys.executable, "-m", "frappe_imagekit", *shlex.split(command)[1:]]
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "0 error(s)" in result.stdout


def test_test_command_is_what_ci_runs():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
    assert "bash scripts/test.sh" in README
