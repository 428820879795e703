"""cli/output.py: every printed line goes through here."""

from __future__ import annotations

import subprocess
import sys

PY = sys.executable


def test_a_closed_pipe_ends_output_not_the_command(tmp_path) -> None:
    """`imagekit migrate-report F | head -1`: no internal error, and the exit code is the
    report's own (10 here), not a crash."""
    transcript = tmp_path / "t.txt"
    transcript.write_text("Migrating s1.lab\nService mariadb is not running.\n" + "x\n" * 5000)
    script = (
        f"{PY} -m frappe_imagekit migrate-report {transcript} --site s1.lab --exit-code 1"
        " | head -c1 >/dev/null;"
        ' echo "status=${PIPESTATUS[0]}"'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "status=10"
