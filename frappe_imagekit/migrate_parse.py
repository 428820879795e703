"""A pure parser of ``bench migrate`` output: which site failed, where, and why.

Input is the captured output (stdout and stderr merged, in order). Progress bars redrawn with
``\\r`` are reduced to their last state, ANSI colours are dropped, and the output is cut into one
section per ``Migrating <site>`` line. For each section the parser reports the patch that was
running when it failed (the last ``Executing ...`` line without a following ``Success: Done in``),
the doctype whose sync failed, a failed patch-module import, or the migrate lock held by another
process, plus the last exception line and a short traceback excerpt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

OK = "ok"
FAILED = "failed"

# failure kinds
PATCH = "patch"
IMPORT = "import"
DOCTYPE = "doctype"
LOCK = "lock"
ERROR = "error"

TRACEBACK_EXCERPT_LINES = 8

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MIGRATING = re.compile(r"^Migrating (?P<site>\S+)\s*$")
# Greedy ``.+``: a patch line may itself contain " in ", the site part is the last one.
_EXECUTING = re.compile(r"^Executing (?P<patch>.+) in (?P<site>\S+) \((?P<db>[^()]*)\)\s*$")
_SUCCESS = re.compile(r"^Success: Done in ")
_DOCTYPE = re.compile(r"There was an issue while migrating the DocType: (?P<doctype>.+?)\s*$")
_LOCK = re.compile(r"Failed to a(?:c)?quire lock: (?P<name>\S+)")
_TB_HEADER = re.compile(r"^Traceback (?:with variables )?\(most recent call last\):\s*$")
_CHAIN = re.compile(r"^(During handling of the above exception|The above exception was the direct)")
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::(?:\s(?P<message>.*))?)?$")
_NO_MODULE = re.compile(r"No module named '(?P<module>[^']+)'")
_QUEUED = re.compile(r"^Queued rebuilding of search index for ")


@dataclass
class SiteResult:
    """What one site's migrate did."""

    site: str | None
    status: str = OK
    failure: str | None = None  # patch | import | doctype | lock | error
    failed_patch: str | None = None  # the full patches.txt line
    failed_module: str | None = None  # for an import failure
    doctype: str | None = None
    exception: str | None = None  # the last exception line
    traceback: list[str] = field(default_factory=list)  # a short excerpt
    patch_output: list[str] = field(default_factory=list)  # printed after the Executing line
    patches_run: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clean_lines(text: str) -> list[str]:
    """Split output into lines, keeping only the last redraw of ``\\r`` progress lines."""
    lines = []
    for raw in _ANSI.sub("", text).split("\n"):
        parts = [part for part in raw.split("\r") if part.strip()]
        lines.append(parts[-1].rstrip() if parts else "")
    return lines


def parse_migrate_output(
    text: str, *, sites: Sequence[str] = (), exit_code: int | None = None
) -> list[SiteResult]:
    """Parse one migrate run's output into a result per site, in the order they ran.

    ``sites`` names the site(s) expected (used when the output never says ``Migrating``);
    a non-zero ``exit_code`` marks the last section failed even without a traceback.
    """
    sections = _split_sites(clean_lines(text), sites)
    results = [_parse_section(site, lines) for site, lines in sections]
    if exit_code and results and all(r.status == OK for r in results):
        last = results[-1]
        last.status, last.failure = FAILED, ERROR
        if last.patch_output and last.failed_patch is None:
            last.exception = last.exception or last.patch_output[-1]
    return results


def _split_sites(lines: list[str], sites: Sequence[str]) -> list[tuple[str | None, list[str]]]:
    sections: list[tuple[str | None, list[str]]] = []
    preamble: list[str] = []
    for line in lines:
        match = _MIGRATING.match(line)
        if match:
            sections.append((match["site"], []))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    if not sections:
        return [(sites[0] if sites else None, preamble)]
    if any(line.strip() for line in preamble):
        # e.g. the lock message printed before "Migrating": it belongs to the first site
        first_site, first_lines = sections[0]
        sections[0] = (first_site, preamble + first_lines)
    return sections


def _parse_section(site: str | None, lines: list[str]) -> SiteResult:
    result = SiteResult(site=site)
    pending: str | None = None
    tracebacks: list[list[str]] = []
    in_traceback = False
    for line in lines:
        if _TB_HEADER.match(line):
            tracebacks.append([line])
            in_traceback = True
            continue
        if in_traceback and not (_EXECUTING.match(line) or _SUCCESS.match(line)):
            # Everything after the first header is traceback: chained ones start a new block.
            # (Executing/Success lines are stdout that arrived late, so they are still scanned.)
            if line.strip() and not _CHAIN.match(line):
                tracebacks[-1].append(line)
                if not line.startswith((" ", "\t")) and _EXCEPTION.match(line.strip()):
                    result.exception = line.strip()
            _scan_markers(result, line)
            continue
        pending = _scan_line(result, line, pending)
    _classify(result, pending, tracebacks)
    return result


def _scan_line(result: SiteResult, line: str, pending: str | None) -> str | None:
    executing = _EXECUTING.match(line)
    if executing:
        result.patch_output = []
        return executing["patch"]
    if _SUCCESS.match(line):
        if pending is not None:
            result.patches_run.append(pending)
        result.patch_output = []
        return None
    if _scan_markers(result, line):
        return pending
    if pending is not None and line.strip() and not _QUEUED.match(line):
        result.patch_output.append(line)
    return pending


def _scan_markers(result: SiteResult, line: str) -> bool:
    """Note a doctype-sync failure or a held migrate lock; True when the line was one."""
    doctype = _DOCTYPE.search(line)
    if doctype:
        result.doctype = doctype["doctype"]
        return True
    if _LOCK.search(line):
        result.failure = LOCK
        result.exception = result.exception or line.strip()
        return True
    return False


def _classify(result: SiteResult, pending: str | None, tracebacks: list[list[str]]) -> None:
    if tracebacks:
        result.traceback = _excerpt(tracebacks[-1])
    if result.failure == LOCK:
        result.status, result.failed_patch = FAILED, None
        return
    if not tracebacks and result.doctype is None:
        return
    result.status = FAILED
    if pending is not None:
        result.failure, result.failed_patch = PATCH, pending
    elif result.doctype is not None:
        result.failure = DOCTYPE
    elif _is_import_failure(result.exception, tracebacks[-1] if tracebacks else []):
        result.failure = IMPORT
        module = _NO_MODULE.search(result.exception or "")
        result.failed_module = module["module"] if module else None
    else:
        result.failure = ERROR


def _is_import_failure(exception: str | None, traceback: list[str]) -> bool:
    if exception is None:
        return False
    kind = _EXCEPTION.match(exception)
    name = kind["type"].rsplit(".", 1)[-1] if kind else ""
    return name in {"ModuleNotFoundError", "ImportError"} or any(
        "import_module" in line for line in traceback
    )


def _excerpt(traceback: list[str]) -> list[str]:
    """The last frames and the exception line; variable dumps are dropped."""
    frames = [
        line
        for line in traceback[1:]
        if line.startswith("  File ")
        or not line.startswith((" ", "\t"))
        or (line.startswith("    ") and not line.startswith("      ") and "=" not in line)
    ]
    return frames[-TRACEBACK_EXCERPT_LINES:]
