"""`imagekit completion show|install [bash|zsh|fish]`: shell completion, opt-in.

The scripts are typer's own (they call ``imagekit`` with ``_IMAGEKIT_COMPLETE`` set; typer
answers that before any command runs). Nothing here is imported by ``--help``: typer's
completion module is loaded only inside these commands.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import app, handle_errors
from frappe_imagekit.errors import UsageError

PROG = "imagekit"
COMPLETE_VAR = "_IMAGEKIT_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
ZSH_LINE = "fpath+=~/.zfunc; autoload -Uz compinit; compinit"

completion_app = typer.Typer(
    help="Shell completion for imagekit (bash, zsh, fish); nothing is installed unless asked.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(completion_app, name="completion")

SHELL_ARGUMENT = typer.Argument(None, help="bash, zsh or fish (default: the shell of $SHELL).")


def script(shell: str) -> str:
    """The completion script for ``shell`` (typer's, for the program ``imagekit``)."""
    from typer import completion  # typer's completion code: only here

    text: str = completion.get_completion_script(  # type: ignore[attr-defined] # re-exported by typer
        prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell
    )
    return text + "\n"


def chosen_shell(shell: str | None, environ: dict[str, str] | None = None) -> str:
    """``shell``, or the basename of $SHELL; refused unless bash, zsh or fish."""
    env = os.environ if environ is None else environ
    name = shell or Path(env.get("SHELL", "")).name
    if not name:
        raise UsageError("no shell named and $SHELL is not set: pass bash, zsh or fish.")
    if name not in SHELLS:
        raise UsageError(f"imagekit has completion for bash, zsh and fish, not {name!r}: pass one of those.")
    return name


def install_path(shell: str, home: Path, environ: dict[str, str] | None = None) -> Path:
    """Where each shell loads a completion file by itself (bash-completion, zsh's fpath, fish)."""
    env = os.environ if environ is None else environ
    if shell == "bash":
        data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
        return data / "bash-completion" / "completions" / PROG
    if shell == "zsh":
        return home / ".zfunc" / f"_{PROG}"
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return config / "fish" / "completions" / f"{PROG}.fish"


def _show(shell: str | None = SHELL_ARGUMENT) -> None:
    """Print the completion script; try it with: eval "$(imagekit completion show bash)"."""
    output.out(script(chosen_shell(shell)).rstrip("\n"))


def _install(shell: str | None = SHELL_ARGUMENT) -> None:
    """Write the completion script where the shell loads it; no rc file is edited."""
    name = chosen_shell(shell)
    home = Path.home()
    path = install_path(name, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script(name), encoding="utf-8")
    output.out(f"{name} completion for imagekit written to {path}; it works in new shells.")
    if name == "zsh" and ZSH_LINE not in _read(home / ".zshrc"):
        output.out(f"add this line to ~/.zshrc once (imagekit does not edit it): {ZSH_LINE}")
    if name == "bash":
        output.out("bash loads it through the bash-completion package (apt install bash-completion).")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def register_shells() -> None:
    """Teach typer's completion the three shells. The app is made with ``add_completion=False``
    (no --install-completion option, and nothing of it loaded by --help), so typer does not do
    this itself; it is needed only when a shell asks for completions."""
    from typer import completion  # only while completing

    completion.completion_init()  # type: ignore[attr-defined] # re-exported by typer


completion_app.command("show")(handle_errors(_show))
completion_app.command("install")(handle_errors(_install))
if os.environ.get(COMPLETE_VAR):  # a shell's TAB: imagekit runs only to list completions
    register_shells()
