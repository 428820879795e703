"""``--progress auto|plain|none``: which ``progress.Reporter`` a command passes to its work.

auto: a live status (rich) when stderr is a terminal, else plain lines; plain: lines on stderr
(``progress: install erpnext done in 42.1 s``); none: nothing; tty: the live status even when
stderr is no terminal. Progress goes to stderr only, never into ``--json`` output (stdout).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING

import typer

from frappe_imagekit import progress
from frappe_imagekit.cli import output
from frappe_imagekit.progress import Reporter
from frappe_imagekit.redact import Redactor

if TYPE_CHECKING:  # pragma: no cover - rich's console loads only for a live display
    from rich.console import Console


class Progress(StrEnum):
    AUTO = "auto"
    PLAIN = "plain"
    NONE = "none"
    TTY = "tty"


PROGRESS_OPTION = typer.Option(
    Progress.AUTO,
    "--progress",
    help="auto (a live status on a terminal, else plain lines), plain (lines on stderr), none, "
    "or tty (the live status anyway).",
)


def masker(redactor: Redactor | None) -> Callable[[str], str]:
    """What every shown text passes: ``redactor`` (reporters run on docker's reader threads and
    rich's refresh thread, which do not see ``output.redacting``), then the CLI's sanitizer."""

    def mask(text: str) -> str:
        return output.safe(redactor.redact(text) if redactor is not None else text, colours=False)

    return mask


@contextmanager
def reporting(mode: str, redactor: Redactor | None = None) -> Iterator[Reporter]:
    """The reporter for ``mode``, live for the block (a live display stops on every exit)."""
    live = mode == Progress.TTY or (mode == Progress.AUTO and sys.stderr.isatty())
    if mode == Progress.NONE:
        yield progress.SILENT
    elif live:
        with progress.LiveReporter(_console(force=mode == Progress.TTY), masker(redactor)) as reporter:
            yield reporter
    else:
        yield progress.PlainReporter(output.err, masker(redactor))


def _console(*, force: bool) -> Console:
    from rich.console import Console  # rich loads only for a live display, never for --help

    return Console(stderr=True, highlight=False, force_terminal=True if force else None)
