"""`imagekit completion show|install`: scripts for bash, zsh and fish, opt-in, and they complete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from frappe_imagekit.cli.completion_cmd import chosen_shell, install_path
from frappe_imagekit.errors import ExitCode, UsageError
from tests.support.cli import invoke

IMAGEKIT = Path(sys.executable).parent / "imagekit"


def test_show_bash():
    result = invoke("completion", "show", "bash")
    assert result.exit_code == 0, result.output
    assert "_imagekit_completion() {" in result.stdout
    assert "_IMAGEKIT_COMPLETE=complete_bash $1" in result.stdout
    assert result.stdout.rstrip().endswith("complete -o default -F _imagekit_completion imagekit")


def test_show_zsh():
    result = invoke("completion", "show", "zsh")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("#compdef imagekit\n")
    assert "_IMAGEKIT_COMPLETE=complete_zsh imagekit" in result.stdout
    assert "compdef _imagekit_completion imagekit" in result.stdout


def test_show_fish():
    result = invoke("completion", "show", "fish")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("complete --command imagekit --no-files")
    assert "_IMAGEKIT_COMPLETE=complete_fish" in result.stdout


def test_show_takes_the_shell_of_SHELL():
    result = invoke("completion", "show", env={"SHELL": "/usr/bin/zsh"})
    assert result.stdout.startswith("#compdef imagekit")


def test_unknown_shell_is_refused():
    result = invoke("completion", "show", "tcsh")
    assert result.exit_code == ExitCode.USAGE
    assert "imagekit has completion for bash, zsh and fish, not 'tcsh'" in result.stderr
    with pytest.raises(UsageError, match=r"\$SHELL is not set"):
        chosen_shell(None, {})


@pytest.mark.parametrize(
    ("shell", "relative", "first"),
    [
        ("bash", ".local/share/bash-completion/completions/imagekit", "_imagekit_completion() {"),
        ("zsh", ".zfunc/_imagekit", "#compdef imagekit"),
        ("fish", ".config/fish/completions/imagekit.fish", "complete --command imagekit"),
    ],
)
def test_install_writes_where_the_shell_loads_it_and_edits_no_rc_file(
    shell: str, relative: str, first: str, monkeypatch
):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    home = Path.home()
    result = invoke("completion", "install", shell)
    assert result.exit_code == 0, result.output
    path = home / relative
    assert path == install_path(shell, home, {})
    assert path.read_text().startswith(first)
    assert f"written to {path}" in result.stdout
    assert not (home / ".bashrc").exists() and not (home / ".zshrc").exists()
    if shell == "zsh":
        assert "fpath+=~/.zfunc; autoload -Uz compinit; compinit" in result.stdout


@pytest.mark.skipif(not IMAGEKIT.exists(), reason="the imagekit console script is not installed")
def test_the_bash_script_completes_commands():
    """What bash runs on TAB (the script's own call) lists the matching commands and subcommands."""
    env = {
        **os.environ,
        "_IMAGEKIT_COMPLETE": "complete_bash",
        "COMP_WORDS": "imagekit si",
        "COMP_CWORD": "1",
    }
    done = subprocess.run([str(IMAGEKIT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["site"], done.stderr
    env.update(COMP_WORDS="imagekit site ", COMP_CWORD="2")
    done = subprocess.run([str(IMAGEKIT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["new"], done.stderr
