"""The maintenance window: while deploy (or a rollback) changes a site, the site answers 503 and
its scheduler starts no job, so a backup taken inside the window holds every write.

Frappe keeps both switches in the site's ``site_config.json``, in the ``sites`` volume, so they
outlive ``down`` and ``up``: ``bench --site S set-maintenance-mode on`` writes
``"maintenance_mode": 1`` (frappe then raises SessionStopped, HTTP 503, for every request, ping
included) and ``bench --site S scheduler pause`` writes ``"pause_scheduler": true``.
``bench --site S ready-for-migration`` exits 1 (``NOT READY for migration: ...``) while
background jobs are queued: a warning, not a stop.

``window(...)`` is the context manager around the risky part. On a normal exit it ends the
window of every site the block did not ``keep`` (a failed migrate keeps its site: it is
broken). On an exception it ends the window only while ``stack_changed()`` has not been called
(nothing was changed yet, the old version still serves); after that it leaves the sites in
maintenance and records why (``SiteWindow.left_on``). Every command runs in the bench container
through ``docker exec``; argv are built by the pure functions below.

What a site was in before the window opened is read from the site (``read_states``: the two
keys of its ``site_config.json``, over ``common_site_config.json``, as frappe merges them) and
given to ``Window.found``: a site found in maintenance (an earlier deploy left it broken) is left
as found when the block stops before the stack changed, never switched off by a deploy that did
not open its window. A paused scheduler found outside maintenance stays paused.

A migrate deploy started in the backend would go on after deploy was interrupted (killing the
local ``docker exec`` does not stop it): ``migrate_argv`` records its pid in the container and
``stop_migrate`` sends it SIGINT (frappe unwinds: click prints ``Aborted!``), then SIGKILL.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from frappe_imagekit import validate
from frappe_imagekit.deploy.migrate_report import BenchPlace, step
from frappe_imagekit.deploy.record import now as now_iso
from frappe_imagekit.errors import DeployError, ImagekitError
from frappe_imagekit.interrupts import interrupts_held
from frappe_imagekit.process import Completed
from frappe_imagekit.runner import Runner

EventSink = Callable[[str], None]
ON, OFF = "on", "off"
NOT_READY = "NOT READY for migration"
BENCH_TIMEOUT = 300.0
MIGRATE_PID = "/tmp/.imagekit-migrate.pid"
STOP_GRACE = 20  # seconds a migrate gets to unwind after SIGINT before SIGKILL


# ---------------------------------------------------------------- argv (pure)


def maintenance_argv(site: str, on: bool) -> list[str]:
    return ["bench", "--site", site, "set-maintenance-mode", ON if on else OFF]


def scheduler_argv(site: str, pause: bool) -> list[str]:
    return ["bench", "--site", site, "scheduler", "pause" if pause else "resume"]


def ready_argv(site: str) -> list[str]:
    return ["bench", "--site", site, "ready-for-migration"]


def exec_argv(container_id: str, argv: Sequence[str]) -> list[str]:
    return ["docker", "exec", container_id, *argv]


# The bench commands of a site's window, by step name: opening and ending a site's window runs its
# steps in one ``docker exec`` (each exec costs dockerd, containerd and runc about 70 ms of CPU; a
# deploy of two sites ran ten of them), each step's output and exit status kept apart.
STEPS: dict[str, Callable[[str], list[str]]] = {
    "on": lambda site: maintenance_argv(site, True),
    "pause": lambda site: scheduler_argv(site, True),
    "ready": ready_argv,
    "off": lambda site: maintenance_argv(site, False),
    "resume": lambda site: scheduler_argv(site, False),
}
CHECKED = ("on", "pause", "off", "resume")  # a failure stops the steps after it; ready only warns
_MARK = "@@imagekit-window-step"


def _steps_script() -> str:
    """$1 the site, then the step names: for each, a mark line on stdout and stderr (after a line
    break: bench may end without one), the step's bench command (the site passed as an argument,
    never in the script's text), its exit status on stderr; a checked step that fails ends it."""
    cases = "".join(
        f'        {name}) {shlex.join(argv("SITE")[:2])} "$site" {shlex.join(argv("SITE")[3:])} ;;\n'
        for name, argv in STEPS.items()
    )
    mark = f"printf '\\n{_MARK} %s\\n' $step"
    return (
        f"site=$1; shift\nfor step; do\n    {mark}; {mark} >&2\n"
        f"    case $step in\n{cases}        *) echo unknown step >&2; false ;;\n    esac\n"
        f"    rc=$?; printf '\\n{_MARK}-exit %s\\n' $rc >&2\n"
        f'    case " {" ".join(CHECKED)} " in *" $step "*) [ $rc -eq 0 ] || exit 0 ;; esac\ndone\n'
    )


STEPS_SCRIPT = _steps_script()


def steps_argv(container_id: str, site: str, steps: Sequence[str]) -> list[str]:
    return ["docker", "exec", container_id, "sh", "-c", STEPS_SCRIPT, "window", site, *steps]


@dataclass(frozen=True)
class StepRun:
    """What one step of ``steps_argv`` printed and how it ended (``code`` None: it did not run)."""

    stdout: str
    stderr: str
    code: int | None

    @property
    def why(self) -> str:
        lines = (self.stderr or self.stdout).strip().splitlines()
        return lines[-1] if lines else "it did not run" if self.code is None else f"exit status {self.code}"


def parse_steps(done: Completed, steps: Sequence[str]) -> dict[str, StepRun]:
    """Each step's output and exit status from one run of ``steps_argv``; a step that printed no
    exit status failed with what the exec printed outside every step (the container was gone)."""
    out, err = _marked(done.stdout), _marked(done.stderr)
    runs = {}
    for name in steps:
        text = err.get(name, "")
        code = _exit_of(text) if name in out or name in err else None
        runs[name] = StepRun(out.get(name, ""), _without_exit(text), code)
    if all(run.code is None for run in runs.values()) and steps:
        code = done.returncode or 1
        runs[steps[0]] = StepRun(out.get("", ""), err.get("", ""), code)
    return runs


def _marked(text: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if line.startswith(_MARK + " "):
            current = line[len(_MARK) + 1 :].strip()
            parts[current] = []
        else:
            parts[current].append(line)
    return {name: "\n".join(lines) for name, lines in parts.items()}


def _exit_of(text: str) -> int | None:
    ends = [line for line in text.splitlines() if line.startswith(_MARK + "-exit ")]
    word = ends[-1].split()[-1] if ends else ""
    return int(word) if word.isdigit() else None


def _without_exit(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(_MARK + "-exit "))


def migrate_argv(container_id: str, site: str) -> list[str]:
    """``docker exec`` of ``bench --site S migrate`` (output merged, unbuffered) whose shell
    writes its pid to ``MIGRATE_PID`` in the container, then becomes bench (``exec``)."""
    script = f'echo $$ > {MIGRATE_PID}; exec "$@" 2>&1'
    return ["docker", "exec", "-e", "PYTHONUNBUFFERED=1", container_id,
            "sh", "-c", script, "sh", "bench", "--site", site, "migrate"]  # fmt: skip


# $1 pid file, $2 grace seconds: SIGINT the migrate named there (if it still is one), wait, SIGKILL
_STOP = r"""
pid=$(cat "$1" 2>/dev/null) || { echo none; exit 0; }
grep -q migrate "/proc/$pid/cmdline" 2>/dev/null || { echo finished; exit 0; }
kill -INT "$pid"
n=0
while grep -q migrate "/proc/$pid/cmdline" 2>/dev/null; do
    if [ "$n" -ge "$(($2 * 10))" ]; then kill -KILL "$pid"; echo killed; exit 0; fi
    sleep 0.1; n=$((n + 1))
done
echo stopped
"""


def stop_migrate_argv(container_id: str, grace: int = STOP_GRACE) -> list[str]:
    return ["docker", "exec", container_id, "sh", "-c", _STOP, "stop", MIGRATE_PID, str(grace)]


def stop_migrate(runner: Runner, container_id: str, grace: int = STOP_GRACE) -> str:
    """Stop the migrate deploy started in the container; return what happened: ``stopped``
    (it ended on SIGINT), ``killed`` (SIGKILL after ``grace`` s), ``finished`` (it had ended),
    ``none`` (no pid recorded) or ``unknown`` (the container could not be asked)."""
    try:
        done = runner.run(stop_migrate_argv(container_id, grace), timeout=grace + 30)
    except ImagekitError:
        return "unknown"
    word = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
    return word[0] if word and word[0] in ("stopped", "killed", "finished", "none") else "unknown"


_STOPPED = {
    "stopped": "imagekit stopped it in the backend (SIGINT; frappe unwound and exited): it did not finish",
    "killed": f"it did not end within {STOP_GRACE}s of SIGINT, so imagekit killed it (SIGKILL): it did "
    "not finish",
    "finished": "it had already ended in the backend when imagekit went to stop it",
}


def stop_interrupted_migrate(runner: Runner, container_id: str, site: str, top: str | None = None) -> str:
    """On Ctrl-C or SIGTERM during migrate: stop the migrate in the backend (a second interrupt
    meanwhile is held); return the sentence for the report. ``top``: the printed ``docker top``
    line, as it runs where the stack is (``BenchPlace.on_host``: ssh, DOCKER_HOST)."""
    how = "unknown"
    try:
        with interrupts_held():
            how = stop_migrate(runner, container_id)
    except KeyboardInterrupt:
        pass  # the deploy is being interrupted already
    said = _STOPPED.get(how) or (
        f"imagekit could not tell whether it still runs ({how}): look with "
        f"`{top or shlex.join(['docker', 'top', container_id[:12]])}`"
    )
    return f"deploy was interrupted during the migrate of {site}: {said}."


# ---------------------------------------------------------------- the state a site is in

# $@ the sites: one line each, "SITE MAINTENANCE_MODE PAUSE_SCHEDULER", from the files frappe reads
# (the site's site_config.json over common_site_config.json); only these two keys leave the
# container: site_config.json also holds the database password and the encryption key.
_READ = r"""
value() { sed -n "s/.*\"$1\": *\([A-Za-z0-9]*\).*/\1/p" "$2" 2>/dev/null | tail -n 1; }
for site; do
    [ -f "sites/$site/site_config.json" ] || { echo "$site missing missing"; continue; }
    m=$(value maintenance_mode "sites/$site/site_config.json")
    [ -n "$m" ] || m=$(value maintenance_mode sites/common_site_config.json)
    p=$(value pause_scheduler "sites/$site/site_config.json")
    [ -n "$p" ] || p=$(value pause_scheduler sites/common_site_config.json)
    echo "$site ${m:-0} ${p:-0}"
done
"""
_TRUE = ("1", "true", "True")  # frappe: cint(conf.maintenance_mode), cint(conf.pause_scheduler)
_FALSE = ("0", "false", "False", "null", "None")


@dataclass(frozen=True)
class SiteState:
    """What a site's configuration says, read back from the site."""

    maintenance: bool  # maintenance_mode set: every request answers 503
    scheduler_paused: bool

    @property
    def word(self) -> str:
        return ON if self.maintenance else OFF


def read_states_argv(container_id: str, sites: Sequence[str]) -> list[str]:
    return ["docker", "exec", container_id, "sh", "-c", _READ, "read", *sites]


def parse_states(stdout: str, sites: Sequence[str]) -> dict[str, SiteState]:
    """The states ``_READ`` printed for ``sites`` (anything else, or a value that is not one of
    frappe's, is left out: that site's state is unknown)."""
    states: dict[str, SiteState] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[0] not in sites or fields[0] in states:
            continue
        mode, paused = (_flag(value) for value in fields[1:])
        if mode is not None and paused is not None:
            states[fields[0]] = SiteState(mode, paused)
    return states


def _flag(value: str) -> bool | None:
    return True if value in _TRUE else False if value in _FALSE else None


def read_states(runner: Runner, container_id: str, sites: Sequence[str]) -> dict[str, SiteState]:
    """Each site's maintenance state as the site's configuration has it now ({} when the
    container cannot be asked; a site missing from the answer is unknown)."""
    if not sites:
        return {}
    try:
        done = runner.run(read_states_argv(container_id, sites), timeout=60)
    except ImagekitError:
        return {}
    return parse_states(done.stdout, sites) if done.returncode == 0 else {}


# ---------------------------------------------------------------- the window


@dataclass
class SiteWindow:
    """One site's maintenance window, as the report and the deploy record show it."""

    site: str
    state: str = ON  # on: in maintenance (503, scheduler paused); off: the window ended
    opened: str = ""  # UTC, ISO 8601
    closed: str | None = None
    seconds: float | None = None  # how long the site was in maintenance (None while it is)
    pending_jobs: bool = False  # ready-for-migration said NOT READY as the window opened
    left_on: str | None = None  # why the window was left open
    found: str | None = None  # on | off: the site's maintenance mode before the window opened


class Window:
    """The sites in maintenance, opened and closed in the bench container given each time
    (deploy opens it in the old backend and closes it in the new one)."""

    def __init__(self, runner: Runner, emit: EventSink | None = None, *, enabled: bool = True) -> None:
        self.runner = runner
        self.emit: EventSink = emit or (lambda _line: None)
        self.enabled = enabled
        self.sites: dict[str, SiteWindow] = {}
        self.changed = False  # the stack was changed: a failure now leaves the sites in maintenance
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self._since: dict[str, float] = {}
        self._kept: set[str] = set()
        self._found: dict[str, SiteState] = {}
        self._found_why: dict[str, str] = {}

    def found(self, states: dict[str, SiteState], why: dict[str, str] | None = None) -> None:
        """What the sites were in before the window opens (``read_states``); ``why`` says, per
        site found in maintenance, since when (the deploy that left it on)."""
        self._found.update(states)
        self._found_why.update(why or {})

    def found_on(self) -> list[str]:
        """The sites that were in maintenance before this window opened them."""
        return [name for name, state in self._found.items() if state.maintenance]

    def found_reason(self, name: str) -> str:
        since = self._found_why.get(name)
        return f"it was in maintenance before this deploy{f' ({since})' if since else ''}: left as found"

    def found_running(self) -> list[str]:
        """Sites found in maintenance whose scheduler ran, that this window paused."""
        found = self._found
        return [name for name in self.found_on() if not found[name].scheduler_paused and name in self.sites]

    def resume_found(self, container_id: str, sites: Sequence[str]) -> None:
        """Leaving ``sites`` as found: resume the scheduler this window paused (it ran)."""
        for name in sites:
            what = f"resume the scheduler of {name} (as found)"
            self._bench(container_id, scheduler_argv(name, False), what)
            site = self.sites[name]
            site.left_on = f"{site.left_on or 'left as found'}, its scheduler running as found"

    def open_sites(self) -> list[str]:
        return [name for name, site in self.sites.items() if site.state == ON]

    def stack_changed(self) -> None:
        """From here on a failure or an interrupt leaves the sites in maintenance."""
        self.changed = True

    def open(self, container_id: str, sites: Sequence[str]) -> list[SiteWindow]:
        """Put each site (not yet in the window) in maintenance and pause its scheduler."""
        if not self.enabled:
            return []
        started = time.monotonic()
        opened = []
        for name in sites:
            name = validate.site_name(name, "a site of the backend", DeployError)
            if name not in self.open_sites():
                opened.append(self._open_site(container_id, name))
        self._timed("maintenance_on", started)
        return opened

    def close(self, container_id: str, sites: Sequence[str] | None = None) -> None:
        """End the window of ``sites`` (default: every site in it); raise naming the sites whose
        window could not be ended (the others are ended first)."""
        started = time.monotonic()
        failed = []
        wanted = self.open_sites() if sites is None else sites
        for name in [s for s in wanted if s in self.open_sites()]:
            try:
                self._close_site(container_id, name)
            except DeployError as exc:
                failed.append(exc.message)
        self._timed("maintenance_off", started)
        if failed:
            raise DeployError(" ".join(failed))

    def keep(self, sites: Sequence[str], reason: str) -> None:
        """Leave ``sites`` in maintenance when the window ends, saying why."""
        for name in sites:
            if name in self.open_sites():
                self.sites[name].left_on = reason
                self._kept.add(name)

    def kept(self) -> list[str]:
        return [name for name in self.open_sites() if name in self._kept]

    def _open_site(self, container_id: str, name: str) -> SiteWindow:
        self.emit(f"maintenance mode on for {name}")
        site = self.sites[name] = SiteWindow(name, opened=now_iso())  # before the command: it may half-work
        if name in self._found:
            site.found = self._found[name].word
        self._since[name] = time.monotonic()
        refused = "nothing was stopped: fix that, or pass --no-maintenance"
        runs = self._steps(container_id, name, ("on", "pause", "ready"))
        self._check(runs["on"], name, "on", f"put {name} in maintenance mode", refused)
        self._check(runs["pause"], name, "pause", f"pause the scheduler of {name}", refused)
        site.pending_jobs = NOT_READY in runs["ready"].stdout
        if site.pending_jobs:
            self.warnings.append(
                f"{name} had background jobs queued as its maintenance window opened (bench "
                "ready-for-migration: NOT READY); the workers may run them during or after migrate."
            )
        return site

    def _close_site(self, container_id: str, name: str) -> None:
        self.emit(f"maintenance mode off for {name}")
        found = self._found.get(name)
        # a scheduler paused by someone else, outside maintenance, is left as found
        as_found = bool(found and found.scheduler_paused and not found.maintenance)
        runs = self._steps(container_id, name, ("off",) if as_found else ("off", "resume"))
        self._check(runs["off"], name, "off", f"end the maintenance mode of {name}")
        site = self.sites[name]
        site.state, site.closed, site.left_on = OFF, now_iso(), None
        site.seconds = round(time.monotonic() - self._since[name], 3)
        if not as_found:
            self._check(runs["resume"], name, "resume", f"resume the scheduler of {name} (it is live)")

    def _steps(self, container_id: str, site: str, steps: Sequence[str]) -> dict[str, StepRun]:
        done = self.runner.run(steps_argv(container_id, site, steps), timeout=BENCH_TIMEOUT * len(steps))
        return parse_steps(done, steps)

    def _check(self, run: StepRun, site: str, step: str, what: str, fix: str = "") -> None:
        if run.code != 0:
            argv = STEPS[step](site)
            raise DeployError(
                f"could not {what} ({run.why}): {fix or f'run `{shlex.join(argv)}` in the backend'}."
            )

    def _bench(self, container_id: str, argv: list[str], what: str, fix: str = "") -> None:
        done = self.runner.run(exec_argv(container_id, argv), timeout=BENCH_TIMEOUT)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit status {done.returncode}"
            raise DeployError(
                f"could not {what} ({why}): {fix or f'run `{shlex.join(argv)}` in the backend'}."
            )

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0) + time.monotonic() - started, 3)


@contextmanager
def window(
    runner: Runner,
    backend: Callable[[], str],
    emit: EventSink | None = None,
    *,
    sites: Sequence[str] = (),
    enabled: bool = True,
) -> Iterator[Window]:
    """The maintenance window around a block (module docstring): ``sites`` are opened at once
    in the container ``backend()`` names (more with ``Window.open``); ``backend`` is asked
    again when the window ends, since the block may have replaced the container."""
    win = Window(runner, emit, enabled=enabled)
    try:
        if sites:
            win.open(backend(), sites)
        yield win
    except BaseException as exc:
        _after_failure(win, backend, exc)
        raise
    closing = [name for name in win.open_sites() if name not in win.kept()]
    if closing:
        win.close(backend(), closing)


def _after_failure(win: Window, backend: Callable[[], str], exc: BaseException) -> None:
    if not win.open_sites():
        return
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by an error: {exc}"
    if win.changed:
        win.keep(win.open_sites(), f"{why}, after the stack was changed")
        return
    for name in win.found_on():  # not this deploy's window to end: as found
        win.keep([name], win.found_reason(name))
    closing = [name for name in win.open_sites() if name not in win.kept()]
    resuming = win.found_running()
    if not closing and not resuming:
        return
    try:
        with interrupts_held():  # nothing changed yet: the old version serves again
            win.resume_found(backend(), resuming)
            win.close(backend(), closing)
    except (ImagekitError, KeyboardInterrupt) as failed:
        still = [name for name in closing if name in win.open_sites()]
        win.keep(still, f"{why}; ending the window failed too ({failed})")


# ---------------------------------------------------------------- next steps


def end_step(place: BenchPlace, site: SiteWindow) -> str:
    """The next step of a site left in maintenance: the commands that end the window."""
    return step(
        f"{site.site} is still in maintenance mode ({site.left_on or 'left on'}): it answers 503 "
        "while its services run, and its scheduler is paused. A deploy that migrates it ends that; "
        "once the site works, end it by hand:",
        place.bench(*maintenance_argv(site.site, False)[1:]),  # bench(...) names bench itself
        place.bench(*scheduler_argv(site.site, False)[1:]),
    )
