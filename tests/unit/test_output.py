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


def test_the_redactor_lives_only_as_long_as_the_command_block(capsys) -> None:
    """No module global: lines inside ``redacting`` are masked, the message of an error leaving
    the block is masked before the one handler prints it, and nothing is masked after."""
    import pytest

    from frappe_imagekit.cli import output
    from frappe_imagekit.errors import ImagekitError
    from frappe_imagekit.redact import Redactor

    token = "s3cret-outputCANARY0123456789abcdef"  # not token-shaped: those are masked always
    with pytest.raises(ImagekitError) as caught, output.redacting(Redactor([token])):
        output.out(f"cloning https://{token}@github.com/o/a")
        try:
            raise ValueError(f"inner {token}")
        except ValueError:
            raise ImagekitError(f"git refused {token}: renew it") from None
    assert capsys.readouterr().out == "cloning https://***@github.com/o/a\n"
    assert caught.value.message == "git refused ***: renew it" and token not in str(caught.value)
    assert token not in str(caught.value.__context__)
    output.out("after s3cret-outputCANARY0123456789abcdef")
    assert capsys.readouterr().out == f"after {token}\n"


def test_a_token_shaped_string_no_redactor_knows_is_masked(capsys):
    from frappe_imagekit.cli import output

    canary = "ghp_" + "UnkN0wnC4n4ry" * 3
    output.out(f'{{"containerfile": {{"{canary}": null}}}}')
    output.err(f"bad key {canary} in builds/v1.json")
    captured = capsys.readouterr()
    assert canary not in captured.out + captured.err
    assert '"ghp_***": null' in captured.out
    assert "bad key ghp_*** in" in captured.err
