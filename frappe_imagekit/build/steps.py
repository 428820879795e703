"""Which build step BuildKit is at, read from its plain progress lines (issue 24 item 4).

BuildKit cuts a step's title (``#8 [builder 3/6] RUN --mount=... --mount=...``) long before
the app name of a bench step, so the title alone cannot say which app a step installs. Its
``[stage i/n]`` can: BuildKit numbers, per stage, the ``FROM`` of an image (not of an earlier
stage) and every RUN, COPY, ADD and WORKDIR (ARG, ENV, USER, LABEL, CMD are not numbered; seen
on BuildKit of docker 20.10 and in the real v15 builds, /work/shared/reference/real-lab-2026-12-07/
deploy-runs/A1-build-v1.0.0.txt: ``[builder 3/6]`` is frappe's step after the apt and helper
RUNs, the ARGs and USER between them uncounted). ``step_names`` reads the same numbers from the
Containerfile the build runs; a title whose instruction word differs from the file's gets no
name. ``StepTracker`` turns lines into a ``Reporter``'s start/advance/finish (pure: no I/O).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from frappe_imagekit.build import benchfile
from frappe_imagekit.build.containerfile import Containerfile, Instruction
from frappe_imagekit.progress import CACHED, DONE, FAILED, Reporter

_NUMBERED = frozenset({"RUN", "COPY", "ADD", "WORKDIR"})
_TITLE = re.compile(r"^#(\d+) \[(?:(\S+) +)?(\d+)/(\d+)\] (\S+)")
_EXPORT = re.compile(r"^#(\d+) exporting to image\s*$")
_FIRST = re.compile(r"^#1 \[internal\] load build definition")
_END = re.compile(r"^#(\d+) (CACHED|DONE (\d+(?:\.\d+)?)s|ERROR\b|CANCELED)")
_OUTPUT = re.compile(r"^#(\d+) \d+(?:\.\d+)? (imagekit: .*)$")  # the helper's own lines only
# a bench step of imagekit's generated file (one per repository) calls the helper by its path; the
# helper's own step only names it in comments
_APP_STEP = re.compile(re.escape(benchfile.HELPER) + r" fetch ['\"]?([A-Za-z_][A-Za-z0-9_]*)")
_ALL_APPS = re.compile(r"bench init\b.*--apps_path")  # frappe_docker's one step for every app
_HEAD = 48


@dataclass(frozen=True)
class StepName:
    """A numbered step: ``task`` for the reporter, ``detail`` the start of its command."""

    keyword: str
    task: str
    detail: str


def step_names(containerfile: Containerfile) -> dict[tuple[str, int, int], StepName]:
    """``(stage, i, n)`` -> the step's name, as BuildKit numbers the steps of ``containerfile``
    (stage: the ``AS`` name; "" for a stage without one. The one stage of a one-stage file is
    under both: dockerd 20.10's BuildKit shows no name, ``#4 [1/3] FROM``; buildx 0.13's does,
    ``#4 [base 1/3] FROM`` (tests/integration/test_build_docker26.py); its tasks are named without.)"""
    names: dict[tuple[str, int, int], StepName] = {}
    seen_stages: set[str] = set()
    for stage in containerfile.stages:
        counted: list[tuple[str, Instruction | None]] = []
        if stage.base.lower() not in seen_stages and stage.base.lower() != "scratch":
            counted.append(("FROM", None))
        counted += [(i.keyword, i) for i in containerfile.stage_instructions(stage) if i.keyword in _NUMBERED]
        label = (stage.name or "") if len(containerfile.stages) > 1 else ""
        for index, (keyword, ins) in enumerate(counted, start=1):
            names[(label, index, len(counted))] = _name(label, index, len(counted), keyword, ins)
            if stage.name and not label:  # one named stage: shown with its name by newer BuildKit
                names[(stage.name, index, len(counted))] = names[(label, index, len(counted))]
        if stage.name:
            seen_stages.add(stage.name.lower())
        seen_stages.add(str(stage.index))
    return names


def _name(stage: str, index: int, total: int, keyword: str, ins: Instruction | None) -> StepName:
    where = f"{stage} {index}/{total}".strip()
    if ins is None:
        return StepName(keyword, f"step {where}", "base image")
    command = " ".join(ins.command.split())
    if _ALL_APPS.search(command):
        return StepName(keyword, "install frappe and the apps", f"bench init ({where})")
    if match := _APP_STEP.search(command):
        return StepName(keyword, f"install {match.group(1)}", where)
    head = command if len(command) <= _HEAD else command[: _HEAD - 3] + "..."
    return StepName(keyword, f"step {where}", f"{keyword} {head}")


class StepTracker:
    """Feeds a ``Reporter`` from BuildKit plain lines (already redacted by the caller).

    One tracker follows successive docker builds (the system tier, then the image): vertex
    numbers start again at a new ``#1 [internal] load build definition``.
    """

    def __init__(self, names: dict[tuple[str, int, int], StepName], reporter: Reporter) -> None:
        self._names, self._reporter = names, reporter
        self._lock = threading.Lock()  # docker's stdout and stderr readers both call feed
        self._vertex: dict[str, str] = {}  # BuildKit vertex number -> task name
        self._ended: set[str] = set()

    @classmethod
    def of(cls, files: Iterable[Containerfile], reporter: Reporter) -> StepTracker:
        """A tracker for builds of ``files``; a number two files give different names is unnamed."""
        merged: dict[tuple[str, int, int], StepName] = {}
        clashes: set[tuple[str, int, int]] = set()
        for file in files:
            for key, name in step_names(file).items():
                if key in merged and merged[key] != name:
                    clashes.add(key)
                merged.setdefault(key, name)
        return cls({k: v for k, v in merged.items() if k not in clashes}, reporter)

    def feed(self, line: str) -> None:
        with self._lock:
            if _FIRST.match(line):
                self._vertex.clear()
                self._ended.clear()
            if title := _TITLE.match(line):
                self._title(title)
            elif export := _EXPORT.match(line):
                self._begin(export.group(1), "export image", "")
            elif end := _END.match(line):
                self._end(end)
            elif out := _OUTPUT.match(line):
                task = self._vertex.get(out.group(1))
                if task is not None and out.group(1) not in self._ended:
                    self._reporter.advance(task, detail=out.group(2)[:200])

    def _title(self, match: re.Match[str]) -> None:
        vertex, stage, index, total, keyword = match.groups()
        if vertex in self._vertex:
            return  # BuildKit repeats a title when its lines interleave with another step's
        key = (stage or "", int(index), int(total))
        name = self._names.get(key)
        if name is None or name.keyword != keyword.upper():
            where = f"{stage or ''} {index}/{total}".strip()
            name = StepName(keyword, f"step {where}", keyword)
        self._begin(vertex, name.task, name.detail)

    def _begin(self, vertex: str, task: str, detail: str) -> None:
        if task in self._vertex.values():
            task = f"{task} (#{vertex})"
        self._vertex[vertex] = task
        self._reporter.start(task, detail=detail)

    def _end(self, match: re.Match[str]) -> None:
        vertex, word, seconds = match.groups()
        task = self._vertex.get(vertex)
        if task is None or vertex in self._ended:
            return
        self._ended.add(vertex)
        if word == "CACHED":
            self._reporter.finish(task, outcome=CACHED)
        elif seconds is not None:
            self._reporter.finish(task, outcome=DONE, seconds=float(seconds))
        else:
            self._reporter.finish(task, outcome=FAILED if word.startswith("ERROR") else "canceled")
