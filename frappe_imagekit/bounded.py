"""Bounded reads of the documents others edit (issue 19 item 14): deploy records, lock files,
imagekit.toml. A file larger than ``MAX_BYTES`` or nesting deeper than ``MAX_DEPTH`` is refused
before a parser sees it (json and tomllib recurse per level: a deep file would end in a
RecursionError, exit 70). Both checks are one linear pass; ``ValueError`` says which limit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MAX_BYTES = 8 * 1024 * 1024  # a deploy record, a lock or imagekit.toml is a few KB
MAX_DEPTH = 64  # imagekit writes 4 levels at most

# JSON: a string (escapes included, unterminated to the end) or a bracket
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?|[\[\]{}]')
# TOML: multi-line and one-line strings of both kinds, a comment, or a bracket
_TOML_TOKEN = re.compile(
    r'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
    r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"?|\'[^\'\n]*\'?|#[^\n]*|[\[\]{}]'
)


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of ``path``; ``ValueError`` when it is larger than ``limit`` bytes or not
    UTF-8 (``OSError`` when it cannot be read)."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None


def json_text(path: Path, limit: int = MAX_BYTES) -> str:
    """``read_text`` of a JSON document whose nesting is checked (``check_json``)."""
    return check_json(read_text(path, limit))


def read_json(path: Path, what: str) -> object:
    """The JSON document in ``path`` (size and nesting bounded); ``ValueError`` names why it
    cannot be read, ``what`` naming the kind of document (``a manifest``, ``a deploy record``)."""
    try:
        return json.loads(json_text(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}): corrupt or half-written") from None
    except UnicodeDecodeError:
        raise ValueError(f"not UTF-8 text: corrupt or not {what}") from None
    except RecursionError:
        raise ValueError(f"nested too deeply to be {what}") from None
    except OSError as exc:
        raise ValueError(f"unreadable: {exc.strerror}") from None


def check_json(text: str, depth: int = MAX_DEPTH) -> str:
    """``text`` when its arrays and objects nest at most ``depth`` deep, else ``ValueError``."""
    return _check(_JSON_TOKEN, text, depth)


def check_toml(text: str, depth: int = MAX_DEPTH) -> str:
    """``text`` when its arrays and inline tables nest at most ``depth`` deep, else ``ValueError``."""
    return _check(_TOML_TOKEN, text, depth)


def _check(token: re.Pattern[str], text: str, limit: int) -> str:
    depth = 0
    for match in token.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                raise ValueError(f"nested deeper than {limit} levels")
        elif char in "]}":
            depth = max(0, depth - 1)
    return text
