"""Transfer progress: bytes and layers sent, as plain lines (a bar when the sink is a terminal).

``Progress.bytes(n)`` and ``Progress.layer()`` are called as data moves. They go to the shared
``progress.Reporter`` the caller passes (task ``send image``: bytes as ``done``, the layers as
its detail; the CLI's live view draws the bar on a terminal, its plain reporter writes lines),
and to the caller's event sink as plain lines at most every ``every`` seconds plus one final
line from ``done()``. ``bar=True`` redraws one line with ``\\r`` on ``stream`` itself, for a
caller without a live reporter.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from frappe_imagekit.progress import SILENT, Reporter

EventSink = Callable[[str], None]
WIDTH = 30
TASK = "send image"  # the progress.Reporter task name


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class Progress:
    def __init__(
        self,
        emit: EventSink,
        what: str,
        *,
        bar: bool = False,
        every: float = 2.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        reporter: Reporter = SILENT,
        counts_layers: bool = True,
    ) -> None:
        self.counts_layers = counts_layers
        self.emit, self.what, self.bar, self.every = emit, what, bar, every
        self.reporter = reporter
        self.stream = stream or sys.stderr
        self.clock = clock
        self.sent = 0
        self.layers = 0
        self.total: int | None = None  # at most this many bytes (the compressed image)
        self._last = clock()
        self._lock = threading.Lock()

    def bytes(self, sent: int) -> None:
        with self._lock:
            self.sent = sent
            self._maybe_show()
        self.reporter.advance(TASK, done=sent)

    def layer(self) -> None:
        with self._lock:
            self.layers += 1
            self._maybe_show(force=not self.bar and math.isfinite(self.every))
        self.reporter.advance(TASK, detail=f"{self.layers} layer(s) fetched")

    def line(self) -> str:
        total = f" of at most {megabytes(self.total)}" if self.total else ""
        layers = f", {self.layers} layer(s) fetched" if self.counts_layers else ""
        return f"  {self.what}: {megabytes(self.sent)}{total} sent{layers}"

    def _maybe_show(self, force: bool = False) -> None:
        now = self.clock()
        if self.bar:
            self._draw()
        elif force or now - self._last >= self.every:
            self._last = now
            self.emit(self.line())

    def _draw(self) -> None:
        share = min(1.0, self.sent / self.total) if self.total else 0.0
        filled = int(share * WIDTH)
        self.stream.write(f"\r[{'#' * filled}{'.' * (WIDTH - filled)}]{self.line()}")
        self.stream.flush()

    def done(self) -> None:
        with self._lock:
            if self.bar:
                self.stream.write("\n")
                self.stream.flush()
            self.emit(self.line().strip())
