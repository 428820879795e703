"""Issue 19 item 10: every parser of outside text runs in linear time.

Each parser is fed an output of 1 MB and one of 10 MB, each made of one line per hostile shape
(the tokens the parsers look for repeated, padded with the whitespace a lazy ``\\s*$``
backtracks over, or one a line): about 120 lines of 8 KB and of 80 KB (the issue's line was
150 KB). The 10 MB run must cost about ten times the 1 MB one, not a hundred; then one 10 MB
line of every token together. Workspace files (.env, de-example.env, a Containerfile) are read
up to 1 MiB, so they get 100 KB and 1 MiB. A quadratic parser takes hours on these inputs: a
deadline fails it instead."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from frappe_imagekit import envfile
from frappe_imagekit.build import containerfile
from frappe_imagekit.cli import output
from frappe_imagekit.deploy import backuplist, backups, composeconfig, migrate_report, verify
from frappe_imagekit.deploy.record import DeployRecord

MB = 1_000_000
MIGRATE = re.compile(r"\bmigrate\b")
TOKENS = [
    "Migrating ", "Executing ", " in a (", "There was an issue while migrating the DocType: ",
    "bad json: ", "Service ", "Failed to acquire lock: ", "remove the lock if you think it's safe: ",
    '  File "', "/apps/a/a/", "apps/x", "No module named '", "Traceback (most recent call last):",
    ": failed: STOPPED", "Success: Done in ", "ValueError: ", "\x1b[", "\x1b]", "\x1bP", "\x9b", "\r",
    "\x00", "^@", "Config", "Database : ", "[", "{", '{"a": [', "1 /b/", "@", "# @pattern ", "# escape=",
    "#@required x ", " bench ", "bench\n", "KEY=", "export ", "'", '"', "${",
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


WORKSPACE_FILE = envfile.MAX_FILE_BYTES  # .env, de-example.env, a Containerfile: read up to 1 MiB
PARSERS: dict[str, tuple[Callable[[str], object], int]] = {  # parser, the largest input it gets
    "migrate report (migrate_parse)": (_migrate, 10 * MB),
    "backup output": (backups.files_in_output, 10 * MB),
    "backup listing": (lambda text: backuplist.parse_listing(text, "/s/backups", []), 10 * MB),
    "bench JSON output": (verify.first_json, 10 * MB),
    "patches.txt": (migrate_report.patches_txt_lines, 10 * MB),
    "printed text (clean)": (output.clean, 10 * MB),
    "deploy record": (_record, 10 * MB),
    "compose command (bench ... migrate)": (lambda text: composeconfig.bench_then(MIGRATE, text), 10 * MB),
    ".env": (envfile.parse_env_text, WORKSPACE_FILE),
    "de-example.env": (
        lambda t: (envfile.parse_example_text(t), envfile.example_annotation_issues(t)),
        WORKSPACE_FILE,
    ),
    "Containerfile": (containerfile.parse_containerfile, WORKSPACE_FILE),
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
def test_parser_cost_grows_linearly_to_10_mb(name: str) -> None:
    parse, size = PARSERS[name]
    with deadline(120):
        small = min(_cost(parse, composite(size // 10)) for _ in range(2))
        big = _cost(parse, composite(size))
    # linear: ~10x; quadratic: ~100x. CPU time, and a floor for the tiny costs, keep it steady.
    assert big < 30 * max(small, 0.05), f"{name}: {size // 10} B {small:.2f} s, {size} B {big:.2f} s"


@pytest.mark.parametrize("name", PARSERS)
def test_one_10_mb_line_of_every_token(name: str) -> None:
    parse, size = PARSERS[name]
    with deadline(120):
        assert _cost(parse, one_line(size)) < 60  # linear: about a second
