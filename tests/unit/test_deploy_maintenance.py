"""The maintenance window on plain data: argv, the window's states on success, failure and
interrupt, what an interrupted migrate reports, next steps and the --dry-run steps (pure; the
real effects are asserted in tests/integration/test_deploy.py)."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from frappe_imagekit.deploy import maintenance
from frappe_imagekit.deploy.maintenance import (
    CHECKED,
    MIGRATE_PID,
    STEPS,
    STEPS_SCRIPT,
    Window,
    end_step,
    maintenance_argv,
    migrate_argv,
    ready_argv,
    scheduler_argv,
    stop_interrupted_migrate,
    stop_migrate_argv,
    window,
)
from frappe_imagekit.deploy.migrate_report import BenchPlace, step_commands
from frappe_imagekit.deploy.plan import PlanFacts, steps
from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed


class _Bench:
    """A runner that records each bench command run in a container and answers like bench."""

    host = "local"

    def __init__(self, failing: Sequence[str] = (), pending: Sequence[str] = (), stdout: str = "") -> None:
        self.calls: list[tuple[str, ...]] = []
        self.failing = failing  # "set-maintenance-mode off" -> exit 1
        self.pending = pending  # sites with queued jobs
        self.stdout = stdout

    def run(self, argv, **_kwargs):  # type: ignore[no-untyped-def]
        if argv[3:6] == ["sh", "-c", STEPS_SCRIPT]:
            return self._steps(argv[:3], argv[7], argv[8:])
        return self._one(argv)

    def _steps(self, docker_exec: list[str], site: str, steps: list[str]) -> Completed:
        """A window's steps as the script runs them (marks, exit status, a checked failure stops)."""
        out = err = ""
        for step in steps:
            done = self._one([*docker_exec, *STEPS[step](site)])
            out += f"\n@@imagekit-window-step {step}\n{done.stdout}"
            err += f"\n@@imagekit-window-step {step}\n{done.stderr}"
            err += f"\n@@imagekit-window-step-exit {done.returncode}\n"
            if done.returncode and step in CHECKED:
                break
        return Completed(tuple(docker_exec), 0, out, err)

    def _one(self, argv):  # type: ignore[no-untyped-def]
        self.calls.append(tuple(argv))
        line = " ".join(argv)
        if any(f in line for f in self.failing):
            return Completed(tuple(argv), 1, "", "Site x does not exist!\n")
        if "ready-for-migration" in line:
            site = argv[argv.index("--site") + 1]
            if site in self.pending:
                return Completed(
                    tuple(argv), 1, f"NOT READY for migration: site {site} has pending background jobs\n", ""
                )
            return Completed(
                tuple(argv), 0, f"READY for migration: site {site} does not have any background jobs\n", ""
            )
        return Completed(tuple(argv), 0, self.stdout, "")

    def bench(self) -> list[str]:
        return [" ".join(c[c.index("bench") :]) + f" @{c[2]}" for c in self.calls if "bench" in c]


def test_argv_are_frappes_commands():
    assert maintenance_argv("a.local", True) == ["bench", "--site", "a.local", "set-maintenance-mode", "on"]
    assert maintenance_argv("a.local", False)[-1] == "off"
    assert scheduler_argv("a.local", True) == ["bench", "--site", "a.local", "scheduler", "pause"]
    assert scheduler_argv("a.local", False)[-1] == "resume"
    assert ready_argv("a.local") == ["bench", "--site", "a.local", "ready-for-migration"]


def test_migrate_records_its_pid_then_becomes_bench():
    argv = migrate_argv("c0ffee", "a.local")
    assert argv[:5] == ["docker", "exec", "-e", "PYTHONUNBUFFERED=1", "c0ffee"]
    assert argv[5:7] == ["sh", "-c"] and argv[7] == f'echo $$ > {MIGRATE_PID}; exec "$@" 2>&1'
    assert argv[8:] == ["sh", "bench", "--site", "a.local", "migrate"]
    stop = stop_migrate_argv("c0ffee", 5)
    assert stop[:5] == ["docker", "exec", "c0ffee", "sh", "-c"] and stop[6:] == ["stop", MIGRATE_PID, "5"]
    assert "kill -INT" in stop[5] and "kill -KILL" in stop[5] and "/proc/$pid/cmdline" in stop[5]


def test_a_window_that_ends_normally_opens_in_one_container_and_closes_in_the_next():
    bench = _Bench(pending=["b.local"])
    containers = iter(["old", "new"])
    with window(bench, lambda: next(containers), sites=["a.local", "b.local"]) as win:  # type: ignore[arg-type]
        assert win.open_sites() == ["a.local", "b.local"]
        win.stack_changed()
    assert bench.bench() == [
        "bench --site a.local set-maintenance-mode on @old",
        "bench --site a.local scheduler pause @old",
        "bench --site a.local ready-for-migration @old",
        "bench --site b.local set-maintenance-mode on @old",
        "bench --site b.local scheduler pause @old",
        "bench --site b.local ready-for-migration @old",
        "bench --site a.local set-maintenance-mode off @new",
        "bench --site a.local scheduler resume @new",
        "bench --site b.local set-maintenance-mode off @new",
        "bench --site b.local scheduler resume @new",
    ]
    a, b = win.sites["a.local"], win.sites["b.local"]
    assert (a.state, a.pending_jobs, b.pending_jobs) == ("off", False, True)
    assert a.seconds is not None and a.seconds >= 0 and a.closed and a.opened
    assert win.warnings == [
        "b.local had background jobs queued as its maintenance window opened (bench ready-for-migration: "
        "NOT READY); the workers may run them during or after migrate."
    ]
    assert set(win.timings) == {"maintenance_on", "maintenance_off"}


def test_kept_sites_stay_in_maintenance_with_the_reason():
    bench = _Bench()
    with window(bench, lambda: "c1", sites=["a.local", "b.local"]) as win:  # type: ignore[arg-type]
        win.stack_changed()
        win.keep(["a.local"], "its migrate failed")
    assert win.open_sites() == ["a.local"]
    assert (win.sites["a.local"].left_on, win.sites["a.local"].seconds) == ("its migrate failed", None)
    assert "bench --site a.local set-maintenance-mode off @c1" not in bench.bench()
    assert "bench --site b.local set-maintenance-mode off @c1" in bench.bench()


@pytest.mark.parametrize("error", [KeyboardInterrupt(), DeployError("backup of a.local failed")])
def test_a_failure_before_the_stack_changed_ends_the_window(error: BaseException):
    bench = _Bench()
    with pytest.raises(type(error)), window(bench, lambda: "c1", sites=["a.local"]) as win:  # type: ignore[arg-type]
        raise error
    assert win.sites["a.local"].state == "off"
    assert bench.bench()[-2:] == [
        "bench --site a.local set-maintenance-mode off @c1",
        "bench --site a.local scheduler resume @c1",
    ]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (KeyboardInterrupt(), "interrupted, after the stack was changed"),
        (
            DeployError("compose up failed"),
            "stopped by an error: compose up failed, after the stack was changed",
        ),
    ],
)
def test_a_failure_after_the_stack_changed_leaves_the_sites_in_maintenance(error: BaseException, reason: str):
    bench = _Bench()
    with pytest.raises(type(error)), window(bench, lambda: "c1", sites=["a.local"]) as win:  # type: ignore[arg-type]
        win.stack_changed()
        raise error
    assert (win.sites["a.local"].state, win.sites["a.local"].left_on) == ("on", reason)
    assert not any("off" in call for call in bench.bench())


def test_a_window_that_cannot_end_is_named_and_the_others_still_end():
    bench = _Bench(failing=["--site a.local set-maintenance-mode off"])
    with pytest.raises(DeployError) as info, window(bench, lambda: "c1", sites=["a.local", "b.local"]):  # type: ignore[arg-type]
        pass
    assert info.value.message == (
        "could not end the maintenance mode of a.local (Site x does not exist!): run "
        "`bench --site a.local set-maintenance-mode off` in the backend."
    )
    assert "bench --site b.local set-maintenance-mode off @c1" in bench.bench()


def test_a_site_that_cannot_enter_maintenance_stops_and_ends_the_others():
    bench = _Bench(failing=["--site b.local set-maintenance-mode on"])
    with pytest.raises(DeployError) as info, window(bench, lambda: "c1", sites=["a.local", "b.local"]):  # type: ignore[arg-type]
        pytest.fail("the block must not run")
    assert info.value.message == (
        "could not put b.local in maintenance mode (Site x does not exist!): nothing was stopped: fix "
        "that, or pass --no-maintenance."
    )
    assert "bench --site a.local set-maintenance-mode off @c1" in bench.bench()


def test_a_disabled_window_runs_nothing_and_names_are_checked():
    bench = _Bench()
    with window(bench, lambda: "c1", sites=["a.local"], enabled=False) as win:  # type: ignore[arg-type]
        assert win.open("c1", ["b.local"]) == []
    assert bench.calls == []
    with pytest.raises(DeployError, match="a site of the backend"):
        Window(bench).open("c1", ["-rf"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stdout", "said"),
    [
        (
            "stopped\n",
            "imagekit stopped it in the backend (SIGINT; frappe unwound and exited): it did not finish.",
        ),
        (
            "killed\n",
            "it did not end within 20s of SIGINT, so imagekit killed it (SIGKILL): it did not finish.",
        ),
        ("finished\n", "it had already ended in the backend when imagekit went to stop it."),
        ("none\n", "imagekit could not tell whether it still runs (none): look with `docker top c0ffee`."),
    ],
)
def test_an_interrupted_migrate_is_stopped_and_said(stdout: str, said: str):
    bench = _Bench(stdout=stdout)
    note = stop_interrupted_migrate(bench, "c0ffee", "a.local")  # type: ignore[arg-type]
    assert note == f"deploy was interrupted during the migrate of a.local: {said}"
    assert bench.calls[0][:3] == ("docker", "exec", "c0ffee")


def test_end_step_names_pasteable_commands():
    place = BenchPlace(project="erp", compose=("docker", "compose"), compose_files=("/srv/compose.yaml",),
                       ssh=("ssh", "-t", "deploy@erp.example.com"))  # fmt: skip
    site = maintenance.SiteWindow("a.local", left_on="its migrate failed")
    base = "docker compose -p erp -f /srv/compose.yaml exec -T backend bench --site a.local"
    text = end_step(place, site)
    assert text.startswith(
        "a.local is still in maintenance mode (its migrate failed): it answers 503 while its services run"
    )
    assert step_commands(text) == [
        shlex.join(["ssh", "-t", "deploy@erp.example.com", f"{base} set-maintenance-mode off"]),
        shlex.join(["ssh", "-t", "deploy@erp.example.com", f"{base} scheduler resume"]),
    ]


def _facts(**kwargs) -> PlanFacts:  # type: ignore[no-untyped-def]
    values = dict(project="erp", image_ref="x/y:v2", lock_dir="/s/lock", sites=["a.local"], running=True,
                  backup=True, down_argv=["docker", "compose", "down"], up_argv=["docker", "compose", "up"],
                  up_env={}, image_services=["backend"], oneshot=[], migrator=None)  # fmt: skip
    return PlanFacts(**{**values, **kwargs})  # type: ignore[arg-type]


def test_dry_run_lists_the_window_around_backup_and_migrate():
    listed = steps(_facts(maintenance=True, backup_files=True))
    assert listed[1] == (
        "bench --site a.local set-maintenance-mode on; bench --site a.local scheduler pause; "
        "bench --site a.local ready-for-migration (a warning when jobs are queued)"
    )
    assert listed[2] == "bench --site a.local backup --with-files"
    assert listed[-2] == (
        "after a successful migrate: bench --site a.local set-maintenance-mode off; bench --site a.local "
        "scheduler resume (a failed site stays in maintenance)"
    )
    without = steps(_facts(maintenance=False))
    assert not any("maintenance" in line for line in without) and without[1] == "bench --site a.local backup"
    assert steps(_facts(maintenance=True, sites=[]))[1] == "maintenance window: none (no site yet)"


# ---------------------------------------------------------------- a site's steps in one exec

STUB_BENCH = """#!/bin/sh
echo "$*" >> "$BENCH_LOG"
case "$*" in *"scheduler pause"*) echo "Site b.local does not exist!" >&2; exit 1 ;; esac
case "$*" in *ready-for-migration*) printf 'NOT READY for migration: site has pending jobs'; exit 1 ;; esac
printf 'done without a line break'
"""


def _run_steps(tmp_path, site: str, steps: Sequence[str]) -> tuple[dict[str, maintenance.StepRun], list[str]]:
    """The window's script run by sh (not in a container) with a stub bench on PATH."""
    (tmp_path / "bench").write_text(STUB_BENCH)
    (tmp_path / "bench").chmod(0o755)
    log = tmp_path / "bench.log"
    argv = maintenance.steps_argv("c1", site, steps)
    assert argv[:6] == ["docker", "exec", "c1", "sh", "-c", STEPS_SCRIPT] and argv[6:8] == ["window", site]
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "BENCH_LOG": str(log)}
    ran = subprocess.run(argv[3:], capture_output=True, text=True, env=env, check=False)
    runs = maintenance.parse_steps(Completed(tuple(argv), ran.returncode, ran.stdout, ran.stderr), steps)
    return runs, log.read_text().splitlines() if log.exists() else []


def test_a_sites_steps_run_in_order_each_with_its_own_output_and_exit_status(tmp_path):
    runs, called = _run_steps(tmp_path, "a.local", ["on", "ready", "off"])
    assert called == ["--site a.local set-maintenance-mode on", "--site a.local ready-for-migration",
                      "--site a.local set-maintenance-mode off"]  # fmt: skip
    assert runs["on"] == maintenance.StepRun("done without a line break", "", 0)
    # ready-for-migration only warns: the steps went on
    assert runs["ready"].code == 1 and "NOT READY for migration" in runs["ready"].stdout
    assert runs["off"].code == 0
    assert "a.local" not in STEPS_SCRIPT  # the site is an argument, never script text


def test_a_checked_step_that_fails_stops_the_steps_after_it_and_says_why(tmp_path):
    runs, called = _run_steps(tmp_path, "b.local", ["on", "pause", "ready"])
    assert called == ["--site b.local set-maintenance-mode on", "--site b.local scheduler pause"]
    assert (runs["pause"].code, runs["pause"].why) == (1, "Site b.local does not exist!")
    assert (runs["ready"].code, runs["ready"].why) == (None, "it did not run")


def test_an_exec_that_ran_no_step_fails_the_first_with_what_docker_said():
    done = Completed(("docker",), 1, "", "Error: No such container: c1\n")
    runs = maintenance.parse_steps(done, ["off", "resume"])
    assert (runs["off"].code, runs["off"].why) == (1, "Error: No such container: c1")
    assert runs["resume"].code is None


LAB = Path(__file__).resolve().parents[1] / "fixtures" / "frappe-v15-lab"


class _Recorded:
    """A runner answering a window's one exec with what real frappe 15.55.1 printed for it."""

    host = "local"

    def __init__(self, name: str) -> None:
        self.meta = json.loads((LAB / f"{name}.json").read_text())
        self.stdout = (LAB / f"{name}.txt").read_text()

    def run(self, argv, **_kwargs):  # type: ignore[no-untyped-def]
        assert argv[3:6] == ["sh", "-c", STEPS_SCRIPT]
        assert " ".join(argv[7:]) == self.meta["command"].split(" window ", 1)[1]
        return Completed(tuple(argv), self.meta["exit_code"], self.stdout, self.meta["stderr"])


def test_real_frappes_window_output_is_read_step_by_step():
    # frappe-v15-lab/73: on, pause, ready in one exec of s1.lab's backend
    win = Window(_Recorded("73-window-steps-on-pause-ready"))  # type: ignore[arg-type]
    win.open("c1", ["s1.lab"])
    assert (win.sites["s1.lab"].state, win.sites["s1.lab"].pending_jobs, win.warnings) == ("on", False, [])
    runs = maintenance.parse_steps(Completed(("x",), 0, _Recorded("73-window-steps-on-pause-ready").stdout,
                                             _Recorded("73-window-steps-on-pause-ready").meta["stderr"]),
                                   ["on", "pause", "ready"])  # fmt: skip
    assert runs["pause"].stdout.strip() == "Scheduler is paused for site s1.lab"
    assert runs["ready"].stdout.strip().startswith("READY for migration: site s1.lab")
    # 73b: off and resume
    win.runner = _Recorded("73b-window-steps-off-resume")  # type: ignore[assignment]
    win.close("c1")
    assert win.sites["s1.lab"].state == "off"


def test_real_frappes_missing_site_is_the_one_sentence_and_stops_the_steps():
    # frappe-v15-lab/73c: bench prints the error on stdout, exit 1; pause and ready never ran
    win = Window(_Recorded("73c-window-steps-missing-site"))  # type: ignore[arg-type]
    with pytest.raises(DeployError) as info:
        win.open("c1", ["nosuch.lab"])
    assert info.value.message == (
        "could not put nosuch.lab in maintenance mode (Site nosuch.lab does not exist!): nothing was "
        "stopped: fix that, or pass --no-maintenance."
    )
