"""A pure parser of ``bench migrate`` (and ``bench run-patch``) output: which site failed, where, why.

Input is the captured output (stdout and stderr merged, in order), with or without a TTY: ``\\r``
redraws are reduced to their last state, ANSI colours and NULs are dropped. Tracebacks are read
as whole groups (chained ones included: frames, code lines, the final exception with its whole,
possibly multi-line message), and the rest is cut into one section per ``Migrating <site>`` line.

The result classes come from what frappe v15 itself can produce (frappe/migrate.py,
frappe/modules/patch_handler.py, frappe/model/sync.py, frappe/modules/import_file.py,
frappe/utils/synchronization.py, frappe/commands/site.py); docs/DESIGN.md lists them with the
marker each is recognised by. An exit status of 0 means the site migrated: tracebacks in such
output (an app's broken ``commands`` module, a patch that printed a handled error) are warnings.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

OK = "ok"
FAILED = "failed"

# result classes (``SiteResult.result``)
PATCH_FAILED = "patch-failed"
IMPORT_FAILED = "import-failed"
DOCTYPE_FAILED = "doctype-failed"
PATCHES_TXT_INVALID = "patches-txt-invalid"
HOOK_FAILED = "hook-failed"
SYNC_FAILED = "sync-failed"
LOCK_HELD = "lock"
SERVICES_DOWN = "services-down"
SITE_NOT_FOUND = "site-not-found"
ERROR = "error"

RESULTS = (OK, PATCH_FAILED, IMPORT_FAILED, DOCTYPE_FAILED, PATCHES_TXT_INVALID, HOOK_FAILED,
           SYNC_FAILED, LOCK_HELD, SERVICES_DOWN, SITE_NOT_FOUND, ERROR)  # fmt: skip

# the short failure kind kept in deploy records (schema 1) for each result class
FAILURE_KINDS = {
    PATCH_FAILED: "patch",
    IMPORT_FAILED: "import",
    DOCTYPE_FAILED: "doctype",
    PATCHES_TXT_INVALID: "patches-txt",
    HOOK_FAILED: "hook",
    SYNC_FAILED: "sync",
    LOCK_HELD: "lock",
    SERVICES_DOWN: "services",
    SITE_NOT_FOUND: "site",
    ERROR: "error",
}

PRE_MODEL_SYNC = "pre_model_sync"
POST_MODEL_SYNC = "post_model_sync"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# a TTY run starts with a NUL, which `script` writes in caret notation
_NUL = re.compile(r"\x00|^(?:\^@)+", re.MULTILINE)
_MIGRATING = re.compile(r"^Migrating (?P<site>\S+)\s*$")
# Greedy ``.+``: a patch line may itself contain " in ", the site part is the last one.
_EXECUTING = re.compile(r"^Executing (?P<patch>.+) in (?P<site>\S+) \((?P<db>[^()]*)\)\s*$")
_SUCCESS = re.compile(r"^Success: Done in ")
_UPDATING_DOCTYPES = re.compile(r"^Updating DocTypes for ")
_PROGRESS = re.compile(r"^(Migrating |Executing |Success: Done in |Updating (DocTypes|Dashboard) for )")
_QUEUED = re.compile(r"^Queued rebuilding of search index for ")
# Markers read by plain string operations, not by a regex: a lazy ``.+?\s*$`` is quadratic on a
# long line (issue 19 item 10: every parser of outside text is linear).
_DOCTYPE = "There was an issue while migrating the DocType: "
_ALTER = re.compile(r"^Failed to alter schema using query: ")
_BAD_JSON = "bad json: "
_SERVICE_DOWN = re.compile(r"^Service (?P<service>\S+) is not running\.\s*$")
_STOPPED = re.compile(r"^(?P<patch>.+): failed: STOPPED\s*$")
_SKIPPED = re.compile(r"^Failed to execute patch\s*$")
_LOCK = re.compile(r"Failed to a(?:c)?quire lock: (?P<name>[^.\s]+)")
_LOCK_PATH = re.compile(r"remove the lock if you think it's safe: (?P<path>\S+)")
_TB_HEADER = re.compile(r"^Traceback (?:with variables )?\(most recent call last\):\s*$")
_CHAIN = re.compile(r"^(During handling of the above exception|The above exception was the direct)")
_FRAME = re.compile(r'^  File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::(?:\s(?P<message>.*))?)?$")
_NO_MODULE = re.compile(r"No module named '(?P<module>[^']+)'")
_APP_NAME = re.compile(r"[A-Za-z_]\w*/")
_NOT_IN_PATH = re.compile(r'[\s"]')
_CONNECTION_CODES = re.compile(r"^\((2002|2003|2006|2013),")
_IMPORT_TYPES = {"ModuleNotFoundError", "ImportError", "SyntaxError", "IndentationError", "TabError"}
# frappe's own frames that only relay an error (frappe.throw -> msgprint -> _raise_exception)
_RELAY = {("__init__.py", "throw"), ("__init__.py", "msgprint"), ("__init__.py", "_raise_exception")}


@dataclass
class Frame:
    """One ``File "...", line N, in func`` frame of a traceback and its code line(s)."""

    path: str
    line: int
    func: str | None
    code: list[str] = field(default_factory=list)

    @property
    def app(self) -> str | None:
        """The app the file belongs to (``apps/<app>/<app>/...``), frappe included."""
        found = app_path(self.path)
        return found[0] if found else None

    @property
    def module(self) -> str | None:
        found = app_path(self.path)
        return found[1].replace("/", ".").removesuffix(".__init__") if found else None

    def key(self) -> tuple[str, str]:
        return self.path.rsplit("/", 1)[-1], self.func or ""

    def lines(self) -> list[str]:
        where = f", in {self.func}" if self.func else ""
        return [f'  File "{self.path}", line {self.line}{where}', *(f"    {c}" for c in self.code)]


def app_path(path: str) -> tuple[str, str] | None:
    """(app, path under the app folder without ``.py``) of the first ``apps/<app>/<app>/...py``
    in ``path`` (at its start or after a ``/``), in one pass over the path."""
    if not path.endswith(".py"):
        return None
    # the part from "apps/" to the end holds no whitespace or quote: only the tail after the last one
    tail = max((m.end() for m in _NOT_IN_PATH.finditer(path)), default=0)
    start = path.find("apps/", tail)
    while start != -1:
        found = _app_at(path, start)
        if found:
            return found
        start = path.find("apps/", start + 1)
    return None


def _app_at(path: str, start: int) -> tuple[str, str] | None:
    if start > 0 and path[start - 1] != "/":
        return None
    name = _APP_NAME.match(path, start + 5)
    if name is None:
        return None
    app = name.group()[:-1]
    rel_start = name.end()
    if not path.startswith(app + "/", rel_start) or len(path) - 3 <= rel_start + len(app) + 1:
        return None
    return app, path[rel_start:-3]


@dataclass
class Traceback:
    """A traceback group (chained tracebacks included) and where it sat in the output."""

    start: int
    end: int
    frames: list[Frame]  # of every chained block, outermost block first
    last_frames: list[Frame]  # of the last block only
    exception: str | None  # the final exception: type and whole message

    @property
    def exception_type(self) -> str | None:
        match = _EXCEPTION.match(self.exception.split("\n", 1)[0]) if self.exception else None
        return match["type"] if match else None

    @property
    def short_type(self) -> str:
        return (self.exception_type or "").rsplit(".", 1)[-1]

    @property
    def message(self) -> str:
        if not self.exception:
            return ""
        _, _, message = self.exception.partition(": ")
        return message

    def calls(self, name: str, func: str | None = None) -> bool:
        return any(f.key()[0] == name and (func is None or f.func == func) for f in self.frames)

    def is_commands_import(self) -> bool:
        """frappe's bench_helper printing an app's broken ``<app>.commands`` import (it carries on)."""
        return self.calls("bench_helper.py", "get_app_commands")


@dataclass
class SiteResult:
    """What one site's migrate did (docs/DESIGN.md, "Migrate report")."""

    site: str | None
    status: str = OK  # ok | failed
    result: str = OK  # one of RESULTS
    failed_patch: str | None = None  # the full patches.txt line
    failed_module: str | None = None  # import failure: the module named by the traceback
    failed_file: str | None = None  # the file of the traceback's last app frame
    section: str | None = None  # pre_model_sync | post_model_sync (patches)
    doctype: str | None = None
    doctype_file: str | None = None  # a doctype JSON that does not parse
    services: list[str] = field(default_factory=list)  # services-down: the services frappe named
    lock_path: str | None = None
    step: str | None = None  # hook-failed / sync-failed: the hook or the sync step
    exception: str | None = None  # the final exception: type and whole message
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: list[str] = field(default_factory=list)  # app frames, alter query, exception
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    patch_output: list[str] = field(default_factory=list)  # printed after the Executing line
    patches_run: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)  # filled by migrate_report / deploy

    @property
    def failure(self) -> str | None:
        """The short failure kind of deploy records (patch, import, ...); None when ok."""
        return FAILURE_KINDS.get(self.result)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failure": self.failure}


def clean_lines(text: str) -> list[str]:
    """Split output into lines, keeping only the last redraw of ``\\r`` progress lines."""
    lines = []
    for raw in _ANSI.sub("", _NUL.sub("", text)).split("\n"):
        parts = [part for part in raw.split("\r") if part.strip()]
        lines.append(parts[-1].rstrip() if parts else "")
    return lines


def progress_detail(line: str) -> str | None:
    """What one line of ``bench migrate`` says it is doing, for a progress display: ``patch
    PATCH`` for an ``Executing`` line, ``Updating DocTypes for APP`` for its progress bar (its
    redraws, tests/fixtures/frappe-v15-lab/67-migrate-v1.2.0-patch-keyerror.txt, say no more);
    None for any other line."""
    (text,) = clean_lines(line)[:1] or [""]
    if match := _EXECUTING.match(text):
        return f"patch {match['patch']}"
    if _UPDATING_DOCTYPES.match(text) or text.startswith("Updating Dashboard for "):
        return " ".join(text.partition(":")[0].split())
    return None


def parse_migrate_output(
    text: str, *, sites: Sequence[str] = (), exit_code: int | None = None
) -> list[SiteResult]:
    """Parse one migrate (or run-patch) run's output into a result per site, in the order they ran.

    ``sites`` names the site(s) expected (used when the output never says ``Migrating``, and to
    tell a patch's own ``Executing`` prints from frappe's). ``exit_code`` is the run's exit
    status when known: 0 means success whatever was printed; non-zero marks the last site
    failed even without a traceback; unknown (None) judges from the output alone.
    """
    lines = clean_lines(text)
    plain, tracebacks = _split_tracebacks(lines)
    sections = _split_sites(plain, tracebacks, sites)
    results = []
    for number, (site, section_lines, section_tbs, migrating) in enumerate(sections):
        last = number == len(sections) - 1
        code = exit_code if last else 0  # bench stops at the first failing site
        results.append(_parse_section(site, section_lines, section_tbs, code, migrating))
    return results


# ---------------------------------------------------------------- tracebacks


def _split_tracebacks(lines: list[str]) -> tuple[list[tuple[int, str]], list[Traceback]]:
    """(numbered lines outside tracebacks, traceback groups)."""
    plain: list[tuple[int, str]] = []
    tracebacks: list[Traceback] = []
    i = 0
    while i < len(lines):
        if _TB_HEADER.match(lines[i]):
            tb = _read_traceback(lines, i)
            tracebacks.append(tb)
            i = tb.end
        else:
            plain.append((i, lines[i]))
            i += 1
    return plain, tracebacks


def _read_traceback(lines: list[str], start: int) -> Traceback:
    """A traceback group from its header at ``start``: blocks joined by "During handling of the
    above exception" / "The above exception was the direct cause" lines."""
    frames: list[Frame] = []
    i = start
    while True:
        block, exception, i = _read_block(lines, i + 1)
        frames.extend(block)
        follow = _skip_blank(lines, i)
        if follow < len(lines) and _CHAIN.match(lines[follow]):
            header = _skip_blank(lines, follow + 1)
            if header < len(lines) and _TB_HEADER.match(lines[header]):
                i = header
                continue
        return Traceback(start, i, frames, block, exception)


def _read_block(lines: list[str], i: int) -> tuple[list[Frame], str | None, int]:
    """Frames and the exception of one traceback block; returns the index after it."""
    frames: list[Frame] = []
    while i < len(lines):
        line = lines[i]
        frame = _FRAME.match(line)
        if frame:
            frames.append(Frame(frame["path"], int(frame["line"]), frame["func"]))
        elif line.startswith(("    ", "\t")) and frames:
            _code_line(frames[-1], line)
        elif line.strip():
            break
        i += 1
    if i >= len(lines) or not _EXCEPTION.match(lines[i].split(": ", 1)[0].strip() or "-"):
        return frames, None, i
    message = [lines[i].strip()]
    i += 1
    while i < len(lines) and _continues_message(lines[i]):
        message.append(lines[i].rstrip())
        i += 1
    return frames, "\n".join(message), i


def _code_line(frame: Frame, line: str) -> None:
    body = line.strip()
    # caret lines (^^^, ~~~) and the variable dumps of "Traceback with variables" are dropped
    if not body or set(body) <= set("^~ ") or line.startswith(("      ", "\t\t")):
        return
    frame.code.append(body)


def _continues_message(line: str) -> bool:
    """A line after the exception line that still belongs to a multi-line message."""
    if not line.strip() or line.startswith("  File "):
        return False
    return not (_TB_HEADER.match(line) or _CHAIN.match(line) or _PROGRESS.match(line) or _QUEUED.match(line))


def _skip_blank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


# ---------------------------------------------------------------- sites


# (site, its lines outside tracebacks, its tracebacks, whether a "Migrating" line opened it)
Section = tuple[str | None, list[tuple[int, str]], list[Traceback], bool]


def _split_sites(
    plain: list[tuple[int, str]], tracebacks: list[Traceback], sites: Sequence[str]
) -> list[Section]:
    starts = [(i, m["site"]) for i, line in plain if (m := _MIGRATING.match(line))]
    if not starts:
        return [(sites[0] if sites else _executing_site(plain), plain, tracebacks, False)]
    # one pass: what came before the first Migrating line is the first site's
    sections: list[Section] = [(site, [], [], True) for _, site in starts]
    begins = [i for i, _ in starts]
    opening = set(begins)
    for i, line in plain:
        if i not in opening:
            sections[max(0, bisect_right(begins, i) - 1)][1].append((i, line))
    for tb in tracebacks:
        sections[max(0, bisect_right(begins, tb.start) - 1)][2].append(tb)
    return sections


def _executing_site(plain: list[tuple[int, str]]) -> str | None:
    for _, line in plain:
        match = _EXECUTING.match(line)
        if match:
            return match["site"]
    return None


@dataclass
class _Scan:
    """What the plain lines of a section said."""

    pending: str | None = None  # the Executing line without a Success after it
    pending_at: int = -1
    pending_section: str | None = None
    synced: bool = False  # an "Updating DocTypes" line was seen (patches after it are post_model_sync)
    migrating: bool = False
    doctype: str | None = None
    alter: str | None = None
    bad_json: str | None = None
    services: list[str] = field(default_factory=list)
    stopped: str | None = None
    lock: str | None = None
    skipped: int = 0
    last_line: str | None = None
    progress_at: int = -1  # the index of the last Executing/Success/Updating line


def _parse_section(
    site: str | None,
    lines: list[tuple[int, str]],
    tracebacks: list[Traceback],
    exit_code: int | None,
    migrating: bool,
) -> SiteResult:
    result = SiteResult(site=site)
    scan = _Scan(migrating=migrating)
    _scan_lines(result, lines, scan)
    failing = _failing_traceback(scan, tracebacks, exit_code)
    for tb in tracebacks:
        if tb is not failing:
            result.warnings.append(_warning(tb))
    if scan.skipped:
        result.warnings.append(f"{scan.skipped} patch(es) failed and were skipped (--skip-failing)")
    failed = failing is not None or bool(scan.services or scan.lock) or exit_code not in (None, 0)
    if exit_code == 0 or not failed:
        return result
    result.status = FAILED
    if failing is not None:
        _from_traceback(result, failing, scan)
    else:
        _without_traceback(result, scan)
    return result


def _scan_lines(result: SiteResult, lines: list[tuple[int, str]], scan: _Scan) -> None:
    for index, line in lines:
        if _PROGRESS.match(line):
            scan.progress_at = index
        executing = _EXECUTING.match(line)
        if executing and (result.site is None or executing["site"] == result.site):
            result.patch_output = []
            scan.pending, scan.pending_at = executing["patch"], index
            scan.pending_section = _section(scan)
            continue
        if _SUCCESS.match(line):
            if scan.pending is not None:
                result.patches_run.append(scan.pending)
            result.patch_output, scan.pending = [], None
            continue
        _scan_marker(scan, line)
        if scan.pending is not None and line.strip() and not _QUEUED.match(line):
            result.patch_output.append(line)
        if line.strip():
            scan.last_line = line.strip()


def _section(scan: _Scan) -> str | None:
    if not scan.migrating:
        return None
    return POST_MODEL_SYNC if scan.synced else PRE_MODEL_SYNC


def _scan_marker(scan: _Scan, line: str) -> None:
    if _UPDATING_DOCTYPES.match(line):
        scan.synced = True
    elif doctype := _after(line, line.find(_DOCTYPE), _DOCTYPE):
        scan.doctype = doctype
    elif _ALTER.match(line):
        scan.alter = line.strip()
    elif bad_json := _after(line, 0 if line.startswith(_BAD_JSON) else -1, _BAD_JSON):
        scan.bad_json = bad_json
    elif match := _SERVICE_DOWN.match(line):
        scan.services.append(match["service"])
    elif match := _STOPPED.match(line):
        scan.stopped = match["patch"]
    elif _SKIPPED.match(line):
        scan.skipped += 1
    elif _LOCK.search(line):
        scan.lock = line.strip()


def _after(line: str, at: int, marker: str) -> str | None:
    """What follows ``marker`` found at ``at`` (-1: not found), trailing whitespace dropped."""
    return (line[at + len(marker) :].rstrip() or None) if at >= 0 else None


def _failing_traceback(scan: _Scan, tracebacks: list[Traceback], exit_code: int | None) -> Traceback | None:
    """The traceback that ended the run: the last one that is not a carried-on warning."""
    if exit_code == 0:
        return None
    candidates = [tb for tb in tracebacks if not tb.is_commands_import()]
    if not candidates:
        return None
    last = candidates[-1]
    if exit_code is None and _carried_on(last, scan):
        return None
    return last


def _carried_on(tb: Traceback, scan: _Scan) -> bool:
    """Migrate went on after this traceback (a progress line came after it)."""
    return scan.progress_at > tb.end


def _warning(tb: Traceback) -> str:
    frames = [f for f in tb.frames if f.app and f.app != "frappe"]
    where = f" in {frames[-1].path}" if frames else ""
    if tb.is_commands_import():
        return (
            f"an app's bench commands failed to import ({tb.exception}){where}; frappe printed the "
            "traceback and carried on (the app's own bench commands are missing)"
        )
    return f"a traceback was printed and migrate carried on: {tb.exception}{where}"


# ---------------------------------------------------------------- classification


def _from_traceback(result: SiteResult, tb: Traceback, scan: _Scan) -> None:
    result.exception = tb.exception
    result.exception_type = tb.exception_type
    result.exception_message = tb.message if tb.exception else None
    result.traceback = _excerpt(tb, scan.alter)
    app_frames = [f for f in tb.frames if f.app and f.app != "frappe"]
    if app_frames:
        result.failed_file = app_frames[-1].path
    result.result = _classify(result, tb, scan)


def _classify(result: SiteResult, tb: Traceback, scan: _Scan) -> str:
    kind = tb.short_type
    if kind == "LockTimeoutError" or _LOCK.search(tb.exception or ""):
        lock = _LOCK_PATH.search(tb.exception or "")
        result.lock_path = lock["path"] if lock else None
        return LOCK_HELD
    if kind == "IncorrectSitePath":
        return SITE_NOT_FOUND
    if _connection_lost(tb):
        result.services = ["redis" if "redis" in (tb.exception_type or "") else "mariadb"]
        return SERVICES_DOWN
    if scan.pending is not None or scan.stopped is not None:
        result.failed_patch = scan.pending if scan.pending is not None else scan.stopped
        result.section = scan.pending_section
        return PATCH_FAILED
    return _classify_by_frames(result, tb, scan)


def _classify_by_frames(result: SiteResult, tb: Traceback, scan: _Scan) -> str:
    if tb.calls("patch_handler.py", "parse_as_configfile") or tb.calls("configparser.py"):
        result.failed_file = None
        return PATCHES_TXT_INVALID
    # frappe imports a patch module in execute_patch, before it prints Executing; an import
    # error without migrate.py frames (a hand-cut traceback) is taken for one too
    importing = tb.short_type in _IMPORT_TYPES and not tb.calls("migrate.py")
    if tb.calls("patch_handler.py", "execute_patch") or importing:
        return _import_failed(result, tb, scan)
    if scan.doctype or scan.bad_json or tb.calls("sync.py") or tb.calls("import_file.py"):
        result.doctype, result.doctype_file = scan.doctype, scan.bad_json
        return DOCTYPE_FAILED
    if tb.calls("migrate.py", "pre_schema_updates"):
        result.step = "before_migrate hook"
        return HOOK_FAILED
    post = [f for f in tb.frames if f.key() == ("migrate.py", "post_schema_updates")]
    if post:
        code = post[-1].code[0] if post[-1].code else ""
        if "get_attr(fn)" in code:
            result.step = "after_migrate hook"
            return HOOK_FAILED
        result.step = code.removesuffix("()").strip() or "post_schema_updates"
        return SYNC_FAILED
    return ERROR


def _import_failed(result: SiteResult, tb: Traceback, scan: _Scan) -> str:
    app_frames = [f for f in tb.frames if f.app and f.app != "frappe"]
    missing = _NO_MODULE.search(tb.exception or "")
    if app_frames:
        result.failed_module = app_frames[-1].module
    elif missing:
        result.failed_module = missing["module"]
    result.section = _section(scan)
    result.notes.append(
        "frappe imports a patch module before it prints 'Executing', so the patches.txt line "
        "cannot be told from the output"
        + (
            f"; it is the first line of the app's patches.txt under {result.failed_module} "
            "not yet in the site's Patch Log"
            if result.failed_module
            else ""
        )  # fmt: skip
    )
    return IMPORT_FAILED


def _connection_lost(tb: Traceback) -> bool:
    kind = tb.exception_type or ""
    if kind.startswith("redis.") and tb.short_type in {"ConnectionError", "TimeoutError"}:
        return True
    return tb.short_type in {"OperationalError", "InterfaceError"} and bool(
        _CONNECTION_CODES.match(tb.message)
    )


def _without_traceback(result: SiteResult, scan: _Scan) -> None:
    if scan.services:
        result.result, result.services = SERVICES_DOWN, list(scan.services)
        result.exception = "\n".join(f"Service {s} is not running." for s in scan.services)
        return
    if scan.lock is not None:
        result.result, result.exception = LOCK_HELD, scan.lock
        return
    if scan.stopped is not None:
        result.result, result.failed_patch = PATCH_FAILED, scan.stopped
        result.exception = f"{scan.stopped}: failed: STOPPED"
        return
    result.result = ERROR
    if scan.pending is not None:
        result.notes.append(f"the run ended while {scan.pending} was running")
    result.exception = (result.patch_output[-1] if result.patch_output else None) or scan.last_line


def _excerpt(tb: Traceback, alter: str | None) -> list[str]:
    """The app's frames with their code lines, the failed ALTER TABLE, and the exception."""
    frames = [f for f in tb.last_frames if f.app and f.app != "frappe"]
    if not frames:
        frames = [f for f in tb.frames if f.app and f.app != "frappe"]
    if not frames:
        inner = [f for f in tb.last_frames if f.app and f.key() not in _RELAY]
        frames = inner[-1:]
    lines = [line for frame in frames for line in frame.lines()]
    if alter:
        lines.append(alter)
    if tb.exception:
        lines.extend(tb.exception.split("\n"))
    return lines


def running_patch(text: str, site: str) -> str | None:
    """The patch an unfinished run of ``site`` was in (an interrupted migrate): its last
    ``Executing`` line with no ``Success`` after it; None when it was between patches."""
    plain, _ = _split_tracebacks(clean_lines(text))
    scan = _Scan(migrating=True)
    _scan_lines(SiteResult(site=site), plain, scan)
    return scan.pending
