"""Issue 19 item 10: every parser of outside text runs in linear time. Each parser is fed lines
of 1 MB and 10 MB built from the tokens its patterns look for (repeated, padded with the
whitespace a lazy ``\\s*$`` backtracks over, one a line), and the 10 MB run must cost about ten
times the 1 MB one, not a hundred (a quadratic parser takes hours on these inputs)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from frappe_imagekit.cli import output
from frappe_imagekit.deploy import backuplist, backups, migrate_report, verify
from frappe_imagekit.deploy.record import DeployRecord

MB = 1_000_000
TOKENS = [
    "Migrating ", "Executing ", " in a (", "There was an issue while migrating the DocType: ",
    "bad json: ", "Service ", "Failed to acquire lock: ", "remove the lock if you think it's safe: ",
    '  File "', "/apps/a/a/", "apps/x", "No module named '", "Traceback (most recent call last):",
    ": failed: STOPPED", "Success: Done in ", "ValueError: ", "\x1b[", "\x1b]", "\x1bP", "\x9b", "\r",
    "\x00", "^@", "Config", "Database : ", "[", "{", '{"a": [', "1 /b/", "@",
]  # fmt: skip


def shapes(size: int) -> Iterator[tuple[str, str]]:
    for token in TOKENS:
        yield f"{token!r} repeated", token * (size // len(token))
        yield f"{token!r} then spaces", token + "a" + " " * size + "b"
        yield f"{token!r} a line", (token + "a\n") * (size // (len(token) + 2))
    yield "a frame path", '  File "' + "/apps/a" * (size // 7) + '.py", line 1, in x'
    frame = '  File "' + "apps/a/a/" * (size // 9) + ' x.py"\n'
    yield "a traceback", "Traceback (most recent call last):\n" + frame


def composite(size: int) -> str:
    """Every shape once, at ``size`` bytes together."""
    count = sum(1 for _ in shapes(1000))
    return "\n".join(text for _name, text in shapes(size // count))


def one_line(size: int) -> str:
    """One line of ``size`` bytes: every token after the other, again and again."""
    tokens = "".join(TOKENS).replace("\r", "")
    return (tokens * (size // len(tokens) + 1))[:size]


def _migrate(text: str) -> object:
    return migrate_report.report_transcript(text, exit_code=1)


def _record(text: str) -> object:
    try:
        return DeployRecord.from_dict({"version": "v1", "project": "erp", "result": text, "error": text,
                                       "sites": [{"site": "a.local", "status": text}]})  # fmt: skip
    except ValueError:
        return None


PARSERS: dict[str, Callable[[str], object]] = {
    "migrate report (migrate_parse)": _migrate,
    "backup output": backups.files_in_output,
    "backup listing": lambda text: backuplist.parse_listing(text, "/s/backups", []),
    "bench JSON output": verify.first_json,
    "patches.txt": migrate_report.patches_txt_lines,
    "printed text (clean)": output.clean,
    "deploy record": _record,
}


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a quadratic parser on 10 MB would run for hours."""

    def stop(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still parsing after {seconds} s: not linear")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _cost(parse: Callable[[str], object], text: str) -> float:
    started = time.process_time()
    parse(text)
    return time.process_time() - started


@pytest.mark.parametrize("name", PARSERS)
def test_parser_cost_grows_linearly_from_1_to_10_mb(name: str) -> None:
    parse = PARSERS[name]
    with deadline(120):
        small = min(_cost(parse, composite(MB)) for _ in range(2))
        big = _cost(parse, composite(10 * MB))
    # linear: ~10x; quadratic: ~100x. CPU time, and a floor for the tiny costs, keep it steady.
    assert big < 30 * max(small, 0.05), f"{name}: 1 MB {small:.2f} s, 10 MB {big:.2f} s"


@pytest.mark.parametrize("name", PARSERS)
def test_one_10_mb_line_of_every_token(name: str) -> None:
    with deadline(120):
        assert _cost(PARSERS[name], one_line(10 * MB)) < 60  # linear: about a second
