"""Progress of long work (issue 24 item 4): named tasks that start, advance and finish.

The work (build steps, the image transfer, backups, restores, migrates) reports to a
``Reporter`` passed down as an argument; it never prints. The CLI chooses the reporter
(``--progress auto|plain|none``) and owns its lifetime:

- ``LiveReporter``: a live status on a terminal (rich), one row per running task with its detail,
  bytes and elapsed time; a finished task leaves one line above it;
- ``PlainReporter``: plain lines (``progress: backup s1.lab done in 3.2 s``) to a sink the CLI
  gives (stderr), for logs and pipes;
- ``SILENT``: nothing (``--progress none``).

Every text shown passes the ``mask`` the CLI gives (its redactor and sanitizer). rich is imported
only when a live reporter is made, never for ``--help``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover - rich loads only when a live reporter is made
    from rich.console import Console, RenderableType
    from rich.live import Live

DONE = "done"
CACHED = "cached"
FAILED = "failed"
_BYTES_EVERY = 1.0  # seconds between two plain lines of bytes for one task
_SPINNER = "|/-\\"


class Reporter(Protocol):
    """What long work reports. Task names are short and human (``backup s1.lab``); one name is
    one task while it runs. Safe to call from several threads."""

    def start(self, task: str, *, total: int | None = None, detail: str = "") -> None:
        """``task`` began; ``total``: the bytes it will move, when known."""

    def advance(self, task: str, *, done: int | None = None, detail: str | None = None) -> None:
        """``done``: bytes moved so far (a count, not an increment); ``detail``: what it does now."""

    def finish(self, task: str, *, outcome: str = DONE, seconds: float | None = None) -> None:
        """``task`` ended: ``done``, ``cached``, ``failed`` or a short word; ``seconds`` when the
        work measured them itself (BuildKit's DONE 4.9s), else the time since ``start``."""


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - the loop returns


def finished_line(task: str, outcome: str, seconds: float) -> str:
    """``backup s1.lab done in 3.2 s``, ``build frappe cached``, ``migrate s1 failed after 9.0 s``."""
    if outcome == CACHED:
        return f"{task} cached"
    if outcome == DONE:
        return f"{task} done in {seconds:.1f} s"
    if outcome == FAILED:
        return f"{task} failed after {seconds:.1f} s"
    return f"{task} {outcome} ({seconds:.1f} s)"


@dataclass
class _Task:
    name: str
    started: float
    total: int | None = None
    done: int | None = None
    detail: str = ""
    said_bytes: float = field(default=0.0)  # when the last plain bytes line was written

    def amount(self) -> str:
        if self.done is None:
            return ""
        moved = human_bytes(self.done)
        return f"{moved} of {human_bytes(self.total)}" if self.total else moved


class _Silent:
    """``--progress none``: nothing is shown."""

    def start(self, task: str, *, total: int | None = None, detail: str = "") -> None:
        return None

    def advance(self, task: str, *, done: int | None = None, detail: str | None = None) -> None:
        return None

    def finish(self, task: str, *, outcome: str = DONE, seconds: float | None = None) -> None:
        return None


SILENT: Reporter = _Silent()


class _Tasks:
    """The running tasks, behind one lock (build lines arrive on docker's reader threads)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.running: dict[str, _Task] = {}

    def begin(self, task: str, total: int | None, detail: str) -> _Task:
        entry = _Task(task, self.clock(), total=total, detail=detail)
        self.running[task] = entry
        return entry

    def end(self, task: str, seconds: float | None) -> float:
        entry = self.running.pop(task, None)
        if seconds is not None:
            return seconds
        return self.clock() - entry.started if entry is not None else 0.0


class PlainReporter:
    """One plain line per start, detail change, finish (and bytes, at most once a second)."""

    def __init__(
        self,
        write: Callable[[str], None],
        mask: Callable[[str], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write, self._mask = write, mask
        self._tasks = _Tasks(clock)

    def _say(self, text: str) -> None:
        self._write("progress: " + self._mask(text))

    def start(self, task: str, *, total: int | None = None, detail: str = "") -> None:
        with self._tasks.lock:
            self._tasks.begin(task, total, detail)
            self._say(f"{task} started" + (f": {detail}" if detail else ""))

    def advance(self, task: str, *, done: int | None = None, detail: str | None = None) -> None:
        with self._tasks.lock:
            entry = self._tasks.running.get(task)
            if entry is None:
                return
            if detail is not None and detail != entry.detail:
                entry.detail = detail
                self._say(f"{task}: {detail}")
            if done is not None:
                entry.done = done
                now = self._tasks.clock()
                if now - entry.said_bytes >= _BYTES_EVERY:
                    entry.said_bytes = now
                    self._say(f"{task}: {entry.amount()}")

    def finish(self, task: str, *, outcome: str = DONE, seconds: float | None = None) -> None:
        with self._tasks.lock:
            entry = self._tasks.running.get(task)
            moved = f" ({entry.amount()})" if entry is not None and entry.done is not None else ""
            self._say(finished_line(task, outcome, self._tasks.end(task, seconds)) + moved)


class LiveReporter:
    """A live status on a terminal (rich): one row per running task (spinner, name, detail, bytes,
    elapsed); a finished task prints one line above the rows. Use it as a context manager: the
    display stops (and the terminal is given back) on every exit, Ctrl-C included. Lines other
    code writes to stdout or stderr meanwhile are printed above the rows by rich."""

    def __init__(
        self,
        console: Console,
        mask: Callable[[str], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.live import Live

        self._console, self._mask = console, mask
        self._tasks = _Tasks(clock)
        self._live: Live = Live(
            console=console, get_renderable=self._rows, refresh_per_second=8, transient=True
        )

    def __enter__(self) -> LiveReporter:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def _rows(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        with self._tasks.lock:
            tasks = list(self._tasks.running.values())
            now = self._tasks.clock()
        frame = _SPINNER[int(now * 8) % len(_SPINNER)]
        width = max(20, self._console.width)
        for task in tasks:
            elapsed = f"{now - task.started:5.1f} s"
            detail = self._mask(" ".join(x for x in (task.detail, task.amount()) if x))
            # Text, not str: a task's detail is outside text, never rich markup
            grid.add_row(frame, Text(self._mask(task.name)), Text(detail[: width // 2]), elapsed)
        return grid

    def start(self, task: str, *, total: int | None = None, detail: str = "") -> None:
        with self._tasks.lock:
            self._tasks.begin(task, total, detail)
        self._live.refresh()

    def advance(self, task: str, *, done: int | None = None, detail: str | None = None) -> None:
        with self._tasks.lock:
            entry = self._tasks.running.get(task)
            if entry is None:
                return
            entry.detail = entry.detail if detail is None else detail
            entry.done = entry.done if done is None else done

    def finish(self, task: str, *, outcome: str = DONE, seconds: float | None = None) -> None:
        from rich.text import Text

        with self._tasks.lock:
            entry = self._tasks.running.get(task)
            moved = f" ({entry.amount()})" if entry is not None and entry.done is not None else ""
            line = finished_line(task, outcome, self._tasks.end(task, seconds)) + moved
        mark = "x" if outcome == FAILED else "-" if outcome == CACHED else "+"
        self._live.refresh()  # the rows without this task, before its line goes above them
        self._console.print(Text(f"{mark} {self._mask(line)}"))
