"""Everything the CLI prints goes through here, and through the redactor."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

from frappe_imagekit import validate
from frappe_imagekit.errors import ImagekitError
from frappe_imagekit.redact import Redactor

if TYPE_CHECKING:  # pragma: no cover - rich is imported only when a table is drawn
    from rich.console import Console

_active: ContextVar[Redactor | None] = ContextVar("imagekit_output_redactor", default=None)

# The one sanitizer of printed text (issue 19 item 11): text from outside (bench output, a
# transcript, a deploy record, docker) reaches the terminal only through ``clean``. Each
# alternative stops at the next ESC, so one pass is linear in the text.
_CONTROL = re.compile(
    r"\x1b\[(?P<sgr>[0-9;]*)m"  # SGR: kept when it only sets plain colours and weights
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"  # any other CSI: cursor moves, erasing, reports
    r"|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: title, clipboard (52), hyperlink (8)
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # any other escape sequence, and a lone ESC
    # C0 controls but tab and newline, DEL, C1 controls, bidi overrides and marks
    r"|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
# SGR parameters that only pick a plain colour or a weight (no 38/48 extended colours, no
# conceal or blink)
_PLAIN_SGR = frozenset(
    {"", "0", "1", "2", "3", "4", "7", "9", "21", "22", "23", "24", "27", "29", "39", "49"}
    | {str(n) for n in (*range(30, 38), *range(40, 48), *range(90, 98), *range(100, 108))}
)


def clean(text: str, *, colours: bool = True) -> str:
    """``text`` without terminal control sequences: escape sequences (OSC 52 clipboard writes,
    window titles, hyperlinks, cursor moves), C0/C1 controls other than tab and newline, and
    bidi overrides are dropped; SGR colour sequences stay when ``colours`` and plain."""

    def keep(match: re.Match[str]) -> str:
        sgr = match["sgr"]
        plain = sgr is not None and all(p in _PLAIN_SGR for p in sgr.split(";"))
        return match.group() if colours and plain else ""

    return _CONTROL.sub(keep, text)


@contextmanager
def redacting(redactor: Redactor) -> Iterator[None]:
    """Every line printed inside the block passes ``redactor``, and so does the message of an
    error leaving it (the one handler in ``main`` prints that after the block has ended)."""
    token = _active.set(redactor)
    try:
        yield
    except BaseException as exc:
        _mask_exception(exc, redactor)
        raise
    finally:
        _active.reset(token)


def _mask_exception(exc: BaseException, redactor: Redactor) -> None:
    """Mask the message of ``exc`` and of every exception chained to it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ImagekitError):
            current.message = redactor.redact(current.message)
        current.args = tuple(redactor.redact(a) if isinstance(a, str) else a for a in current.args)
        current = current.__cause__ or current.__context__


def safe(text: str, *, colours: bool = True) -> str:
    """``text`` with every known secret masked, and anything shaped like a token too: files others
    edit (a manifest, a deploy record) may carry one that no redactor knows. ``clean`` runs
    first, so a control character cannot split a secret out of the redactor's sight."""
    text = clean(text, colours=colours)
    redactor = _active.get()
    text = redactor.redact(text) if redactor is not None else text
    return validate.TOKEN_SHAPE.sub(_mask_token, text)


def _mask_token(match: re.Match[str]) -> str:
    return f"{match.group(1)}***"


def out(text: str = "") -> None:
    """One line (or block) to stdout, redacted."""
    _write(sys.stdout, safe(text) + "\n")


def err(text: str) -> None:
    """One line to stderr, redacted."""
    _write(sys.stderr, safe(text) + "\n")


def _write(stream: TextIO, text: str) -> None:
    # A reader that closed the pipe (`imagekit history | head`) wants no more output; the
    # command still runs to its end and exits with its own code.
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        _silence(stream)


def _silence(stream: TextIO) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass  # not a real file (a test's capture): nothing to point elsewhere
    finally:
        os.close(devnull)


def warn(text: str) -> None:
    err(f"warning: {text}")


def print_json(data: Any) -> None:
    out(json.dumps(data, indent=2, default=str))


def is_terminal() -> bool:
    return sys.stdout.isatty()


def console() -> Console:
    """A rich console writing to stdout (rich is imported only when a table is drawn)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def print_table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    """A table on a terminal, tab-separated plain lines otherwise."""
    if not is_terminal():
        if title:
            out(title)
        out("\t".join(columns))
        for row in rows:
            out("\t".join(row))
        return
    from rich.table import Table
    from rich.text import Text

    # Text, not str: rich would read "[link=...]" in a cell as markup
    heading = Text(safe(title, colours=False)) if title else None
    table = Table(title=heading, title_justify="left")
    for column in columns:
        table.add_column(Text(safe(column, colours=False)))
    for row in rows:
        table.add_row(*(Text(safe(cell, colours=False)) for cell in row))
    console().print(table)
