"""runner: files on the target (argv built by pure functions, run by LocalRunner in tmp_path)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from frappe_imagekit.errors import DeployError
from frappe_imagekit.runner import (
    LocalRunner,
    append_file_command,
    json_object,
    read_file_command,
    write_file_command,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_commands_are_argv_lists_with_the_path_as_an_argument() -> None:
    path = "/state/projects/erp/last-up.json"
    assert read_file_command(path) == ["cat", path]
    write = write_file_command(path)
    assert write[:2] == ["sh", "-c"] and write[3:] == ["sh", path]
    assert 'cat > "$1.tmp"' in write[2] and 'mv -f "$1.tmp" "$1"' in write[2]
    append = append_file_command(path)
    assert append[3:] == ["sh", path] and 'cat >> "$1"' in append[2]
    for script in (write[2], append[2]):
        assert script.startswith("umask 077 && ") and 'chmod 700 "$(dirname "$1")"' in script


def test_a_path_with_shell_characters_stays_one_argument(tmp_path: Path) -> None:
    runner = LocalRunner()
    odd = tmp_path / "a dir; touch pwned" / "$(x) 'q'.json"
    runner.write_file(str(odd), b"{}")
    assert odd.read_bytes() == b"{}" and not (Path.cwd() / "pwned").exists()
    assert runner.read_file(str(odd)) == "{}"
    done = subprocess.run(write_file_command(str(tmp_path / "b" / "c")), input=b"x", check=True)
    assert done.returncode == 0 and (tmp_path / "b" / "c").read_bytes() == b"x"


def test_read_file_of_a_missing_file_is_none_and_a_failed_write_names_the_path(tmp_path: Path) -> None:
    runner = LocalRunner()
    assert runner.read_file(str(tmp_path / "missing")) is None
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DeployError, match=r"^cannot write .*/file/x on local: "):
        runner.write_file(str(tmp_path / "file" / "x"), b"data")
    with pytest.raises(DeployError, match=r"^cannot append to .*/file/x on local: "):
        runner.append_file(str(tmp_path / "file" / "x"), b"data")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ("[1]", "not a JSON object"),
        ('"x"', "not a JSON object"),
    ],
)
def test_json_object_names_why_a_file_is_unusable(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"^{why}$"):
        json_object(text)
    assert json_object('{"a": [1]}') == {"a": [1]}


def test_state_files_are_0600_in_0700_folders(tmp_path: Path) -> None:
    runner = LocalRunner()
    project = tmp_path / "state" / "projects" / "erp"
    project.mkdir(parents=True, mode=0o755)
    project.chmod(0o755)  # a folder an older imagekit made
    (project / "env").write_text("old")
    (project / "env").chmod(0o644)
    runner.write_file(str(project / "env"), b"DE_MACRS_PAT=secret\n")
    runner.append_file(str(project / "audit.log"), b"{}\n")
    runner.write_file(str(tmp_path / "fresh" / "a" / "last-up.json"), b"{}")
    assert _mode(project) == 0o700
    assert _mode(project / "env") == 0o600 and (project / "env").read_text() == "DE_MACRS_PAT=secret\n"
    assert _mode(project / "audit.log") == 0o600
    assert (
        _mode(tmp_path / "fresh" / "a") == 0o700 and _mode(tmp_path / "fresh" / "a" / "last-up.json") == 0o600
    )
    assert not list(project.glob("*.tmp"))
