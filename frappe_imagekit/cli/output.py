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


def safe(text: str) -> str:
    """``text`` with every known secret masked, and anything shaped like a token too: files others
    edit (a manifest, a deploy record) may carry one that no redactor knows."""
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

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(safe(cell) for cell in row))
    console().print(table)
