"""progress.py: the plain lines, the live (rich) view on a fake terminal, and the silent one."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import pytest
from rich.console import Console

from frappe_imagekit import progress
from frappe_imagekit.progress import CACHED, FAILED, SILENT, LiveReporter, PlainReporter, human_bytes

CANARY = "ghp_progressCANARY0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain() -> tuple[PlainReporter, list[str], Clock]:
    lines: list[str] = []
    clock = Clock()
    return PlainReporter(lines.append, lambda t: t.replace(CANARY, "***"), clock), lines, clock


def test_plain_lines_say_start_detail_bytes_and_how_each_task_ended() -> None:
    reporter, lines, clock = plain()
    reporter.start("migrate s1.lab")
    reporter.advance("migrate s1.lab", detail="Executing lab_app.patches.v1_1.a")
    reporter.advance("migrate s1.lab", detail="Executing lab_app.patches.v1_1.a")  # unchanged: no line
    clock.now += 2.5
    reporter.finish("migrate s1.lab")
    reporter.start("install frappe", detail="builder 3/6")
    reporter.finish("install frappe", outcome=CACHED)
    reporter.start("backup s2.lab")
    reporter.finish("backup s2.lab", outcome=FAILED, seconds=9.04)
    assert lines == [
        "progress: migrate s1.lab started",
        "progress: migrate s1.lab: Executing lab_app.patches.v1_1.a",
        "progress: migrate s1.lab done in 2.5 s",
        "progress: install frappe started: builder 3/6",
        "progress: install frappe cached",
        "progress: backup s2.lab started",
        "progress: backup s2.lab failed after 9.0 s",
    ]


def test_plain_bytes_lines_come_at_most_once_a_second_and_the_total_is_said() -> None:
    reporter, lines, clock = plain()
    reporter.start("send image", total=120_000_000)
    for sent in range(0, 120_000_001, 10_000_000):  # 13 chunks, one every 1/8 s
        clock.now += 0.125
        reporter.advance("send image", done=sent)
    reporter.finish("send image")
    assert lines == [
        "progress: send image started",
        "progress: send image: 0 B of 120.0 MB",
        "progress: send image: 80.0 MB of 120.0 MB",  # 1 s after the first
        "progress: send image done in 1.6 s (120.0 MB of 120.0 MB)",
    ]


def test_plain_masks_every_text_and_ignores_tasks_it_never_started() -> None:
    reporter, lines, _ = plain()
    reporter.advance("nothing", detail="x")
    reporter.start(f"install {CANARY}", detail=f"token {CANARY}")
    assert lines == ["progress: install *** started: token ***"]


def test_silent_says_nothing() -> None:
    SILENT.start("x", total=3)
    SILENT.advance("x", done=1, detail="y")
    SILENT.finish("x")  # no output and no error: there is nothing to capture


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 2_500_000, 3_200_000_000)] == [
        "0 B", "999 B", "1.0 kB", "2.5 MB", "3.2 GB"
    ]  # fmt: skip


def terminal() -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=100, color_system=None), screen


def _visible(screen: io.StringIO) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())


def test_live_rows_show_running_tasks_and_finished_ones_leave_a_line() -> None:
    console, screen = terminal()
    clock = Clock()
    with LiveReporter(console, lambda t: t.replace(CANARY, "***"), clock) as reporter:
        reporter.start("install alpha", detail="builder 4/6")
        reporter.start("send image", total=10_000_000)
        reporter.advance("send image", done=2_500_000)
        reporter.advance("install alpha", detail=f"imagekit: fetching alpha with {CANARY}")
        clock.now += 4.0
        reporter._live.refresh()  # what rich's refresh thread does 8 times a second
        rows = _visible(screen)
        reporter.finish("install alpha", seconds=4.9)
        reporter.finish("send image", outcome=FAILED)
    shown = _visible(screen)
    assert re.search(r"install alpha +imagekit: fetching alpha with \*\*\* +4\.0 s", rows), rows
    assert re.search(r"send image +2\.5 MB of 10\.0 MB +4\.0 s", rows), rows
    assert "+ install alpha done in 4.9 s\n" in shown
    assert "x send image failed after 4.0 s (2.5 MB of 10.0 MB)\n" in shown
    assert CANARY not in screen.getvalue()
    assert screen.getvalue().endswith("\x1b[?25h\r\x1b[1A\x1b[2K")  # cursor back, rows erased


def test_live_display_gives_the_terminal_back_when_the_work_raises() -> None:
    console, screen = terminal()
    with pytest.raises(KeyboardInterrupt), LiveReporter(console) as reporter:
        reporter.start("migrate s1.lab")
        raise KeyboardInterrupt
    assert "\x1b[?25h" in screen.getvalue()  # the cursor is shown again
    assert not console._live_stack  # no live display left on the console


PROBE = """
import sys
sys.argv = ["imagekit", *sys.argv[1:]]
from frappe_imagekit.cli import main
try:
    main()
except SystemExit:
    pass
live = sorted(m for m in sys.modules if m in ("rich.live", "rich.progress"))
print("LIVE=" + ",".join(live), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["deploy", "--help"]])
def test_help_does_not_load_the_live_display(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    assert "Usage" in done.stdout
    assert "LIVE=\n" in done.stderr, done.stderr


def test_a_task_block_finishes_done_or_its_own_outcome_or_failed_when_it_raises() -> None:
    reporter, lines, _ = plain()
    with progress.task(reporter, "backup a.local"):
        pass
    with progress.task(reporter, "system tier") as ended:
        ended.outcome = "reused"
    with pytest.raises(KeyboardInterrupt), progress.task(reporter, "restore a.local"):
        raise KeyboardInterrupt
    assert [line for line in lines if "started" not in line] == [
        "progress: backup a.local done in 0.0 s",
        "progress: system tier reused (0.0 s)",
        "progress: restore a.local failed after 0.0 s",
    ]


def test_the_cli_reporter_masks_the_token_in_every_form_and_names_survive(capsys) -> None:
    from frappe_imagekit.cli.progress_view import reporting
    from frappe_imagekit.redact import Redactor

    redactor = Redactor([CANARY])
    encoded = base64.b64encode(CANARY.encode()).decode()
    with reporting("plain", redactor) as reporter:  # captured: not a terminal
        reporter.start("install bravo", detail=f"DE_MACRS_PAT={CANARY} {encoded}")
        reporter.finish("install bravo", outcome=FAILED)
    with reporting("none", redactor) as reporter:
        reporter.start("install charlie")
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "progress: install bravo started: DE_MACRS_PAT=*** ***"
    assert "charlie" not in err and CANARY not in err and encoded not in err
