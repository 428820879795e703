"""process.run: argv only, output streamed line by line, env to the child, timeouts kill."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frappe_imagekit import process

PY = sys.executable


def python(code: str) -> list[str]:
    return [PY, "-c", code]


def test_returns_code_stdout_and_stderr() -> None:
    done = process.run(python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"))

    assert done.returncode == 3
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"
    assert done.argv[0] == PY and isinstance(done.argv, tuple)


def test_lines_reach_the_sinks_while_the_child_still_runs(tmp_path: Path) -> None:
    # The child waits for a file that only the stdout sink creates: without streaming the
    # run would hang until the timeout.
    flag = tmp_path / "flag"
    code = (
        "import os, sys, time\n"
        "print('first', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.02)\n"
        "print('second'); print('oops', file=sys.stderr)\n"
    )
    seen: list[str] = []
    errors: list[str] = []

    def on_stdout(line: str) -> None:
        seen.append(line)
        flag.touch()

    done = process.run(python(code), on_stdout=on_stdout, on_stderr=errors.append, timeout=20)

    assert seen == ["first", "second"]  # one call per line, newline stripped
    assert errors == ["oops"]
    assert done.stdout == "first\nsecond\n"


def test_env_reaches_the_child_only_and_never_argv() -> None:
    canary = "ghp_canary_process_0123456789abcdef"
    started: list[subprocess.Popen[bytes]] = []
    code = "import os, sys; print(os.environ['IK_SECRET']); print(os.environ.get('HOME', ''))"

    done = process.run(python(code), env={"IK_SECRET": canary}, on_start=started.append)

    assert done.stdout.splitlines() == [canary, os.environ.get("HOME", "")]
    assert canary not in " ".join(done.argv)
    assert canary not in " ".join(map(str, started[0].args))
    assert "IK_SECRET" not in os.environ


def test_child_env_merges_without_touching_our_environment() -> None:
    env = process.child_env({"IK_EXTRA": "1", "PATH": "/nowhere"})

    assert env["IK_EXTRA"] == "1" and env["PATH"] == "/nowhere"
    assert os.environ["PATH"] != "/nowhere" and "IK_EXTRA" not in os.environ
    assert process.child_env() == dict(os.environ)


def test_input_bytes_go_to_stdin() -> None:
    done = process.run(python("import sys; print(sys.stdin.read().upper())"), input_bytes=b"abc")

    assert done.stdout == "ABC\n"


def test_stdin_is_closed_when_no_input_is_given() -> None:
    done = process.run(python("import sys; print(repr(sys.stdin.read()))"), timeout=10)

    assert done.stdout == "''\n"


def test_cwd_is_used(tmp_path: Path) -> None:
    done = process.run(python("import os; print(os.getcwd())"), cwd=str(tmp_path))

    assert done.stdout.strip() == str(tmp_path)


def test_timeout_kills_the_child() -> None:
    started: list[subprocess.Popen[bytes]] = []
    begin = time.monotonic()

    with pytest.raises(subprocess.TimeoutExpired):
        process.run(python("import time; time.sleep(60)"), timeout=0.5, on_start=started.append)

    assert time.monotonic() - begin < 10
    assert started[0].poll() is not None  # reaped, not left running
    assert started[0].returncode == -9  # SIGKILL


def test_missing_program_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        process.run([str(tmp_path / "no-such-program")])


def test_undecodable_output_is_replaced_not_fatal() -> None:
    done = process.run(python("import sys; sys.stdout.buffer.write(b'ok \\xff\\n')"))

    assert done.stdout == "ok \ufffd\n"


def test_last_line_without_newline_is_kept() -> None:
    lines: list[str] = []

    done = process.run(python("import sys; sys.stdout.write('a\\nb')"), on_stdout=lines.append)

    assert lines == ["a", "b"]
    assert done.stdout == "a\nb"


def test_large_output_on_both_streams_does_not_deadlock() -> None:
    code = "import sys\nfor i in range(20000): print(i); print(i, file=sys.stderr)"

    done = process.run(python(code), timeout=30)

    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 20000 == len(done.stderr.splitlines())


def test_which_finds_programs_on_path() -> None:
    assert process.which("sh") is not None
    assert process.which("no-such-program-imagekit") is None


def test_own_group_kills_grandchildren_on_timeout(tmp_path: Path) -> None:
    # like `docker buildx build`: the CLI runs the buildx plugin as a child process
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    with pytest.raises(subprocess.TimeoutExpired):
        process.run(["sh", "-c", script], timeout=1, own_group=True)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_that_exits_without_reading_its_input_gives_its_exit_status():
    # the deploy's file writes feed `sh -c 'mkdir ... && cat > FILE'`; when mkdir fails, sh exits
    # without reading and the pipe breaks: that is the command's failure, not a crash
    for _ in range(20):
        done = process.run(["sh", "-c", "exit 3"], input_bytes=b"x" * 1_000_000)
        assert done.returncode == 3
