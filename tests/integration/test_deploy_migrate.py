# ruff: noqa: F811 - pytest fixtures are parameters of the same name
"""deploy with the fake bench replaying real Frappe v15 migrate transcripts (shared/reference):
exec, parse, the patches.txt lookup, the report, next steps (pasted and run) and exit codes."""

from __future__ import annotations

import json
import shlex
import subprocess

from frappe_imagekit.deploy.migrate_report import step_commands
from frappe_imagekit.deploy.sequence import deploy
from frappe_imagekit.errors import ExitCode
from frappe_imagekit.runner import LocalRunner
from tests.support.benchimage.fixtures import (  # noqa: F401 - fixtures
    Project,
    bench_image,
    options,
    project,
    workspace,
)
from tests.support.benchimage.transcripts import load
from tests.support.cli import cli


def replay(project: Project, site: str, name: str) -> dict:
    """Make the fake bench print transcript ``name`` (its site renamed) and exit as it did."""
    transcript = load(name)
    text = transcript.text_bytes.replace(transcript.truth["site"].encode(), site.encode())
    project.site_file(site, "replay.txt").write_bytes(text)
    project.site_file(site, "replay_exit").write_text(f"{transcript.exit_code}\n")
    return transcript.truth


def paste(line: str) -> subprocess.CompletedProcess:
    """Run a next-step command as an operator pasting it into a terminal would (a shell, a TTY)."""
    return subprocess.run(["script", "-qec", line, "/dev/null"], capture_output=True, text=True, timeout=120)


def test_patch_failure_from_a_real_transcript_and_the_pasted_run_patch(project: Project):
    truth = replay(project, "a.local", "11-patch-comment-rerun-then-fail")

    result = cli(*project.cli_args("--version", "v1"))

    assert result.exit_code == ExitCode.PATCH_FAILED == 9, result.output
    line = truth["failed_patch"]  # "de_macrs.patches.lab.validate_costs # re-run 2026-03"
    assert f"a.local: FAILED in patch {line} (post_model_sync)" in result.output
    assert f"  {truth['exception']}" in result.output
    assert 'de_macrs/patches/lab/validate_costs.py", line 8, in execute' in result.output
    site_a, site_b = project.records()[-1]["sites"]
    assert (site_a["result"], site_a["failure"], site_a["failed_patch"]) == ("patch-failed", "patch", line)
    assert site_a["exception_type"] == "frappe.exceptions.ValidationError"
    assert site_b["status"] == "ok"
    commands = [c for step in site_a["next_steps"] for c in step_commands(step)]
    (run_patch,) = [c for c in commands if " run-patch " in c]
    assert shlex.split(run_patch) == [
        "docker-compose", "-p", project.name, "-f", str(project.compose), "exec", "-T", "backend",
        "bench", "--site", "a.local", "run-patch", line, "--force",
    ]  # fmt: skip

    pasted = paste(run_patch)

    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    args = project.site_file("a.local", "run_patch_args").read_text().splitlines()
    assert args == [line, "--force"]  # the '#' did not start a shell comment, nothing was split


def test_import_failure_names_the_line_from_patches_txt_and_the_patch_log(project: Project):
    truth = replay(project, "b.local", "07-patch-module-missing")
    project.site_file("b.local", "patch_log.txt").write_text(
        "de_macrs.patches.v1_0.seed_assets # run again 2026-03, Laptop was missing\n"
        "de_macrs.patches.lab.rate_lookup\nde_macrs.patches.v1_0.set_conventions\n"
    )

    report = deploy(LocalRunner(), workspace(project), options(project, "v1"))

    assert (report.result, report.exit_code) == ("migrate-failed", ExitCode.MIGRATE_FAILED)
    site_a, site_b = report.sites
    assert site_a.status == "ok"
    assert (site_b.result, site_b.failure) == ("import-failed", "import")
    assert site_b.failed_module == "de_macrs.patches.v1_3"
    assert site_b.failed_patch == truth["failed_patch"] == "de_macrs.patches.v1_3.fix_asset_names"
    assert site_b.exception == truth["exception"]
    assert "read from apps/de_macrs/de_macrs/patches.txt" in site_b.migrate_notes[0]
    assert not any("--migrate-only" in step for step in site_b.next_steps)
    assert "fixed release of de_macrs" in site_b.next_steps[0]


def test_import_failure_with_an_empty_patch_log_takes_the_first_line_under_the_module(project: Project):
    replay(project, "a.local", "07-patch-module-missing")  # no patch_log.txt: bench execute prints nothing
    report = deploy(LocalRunner(), workspace(project), options(project, "v1", sites=["a.local"]))
    (site,) = report.sites
    # an empty Patch Log: the first line under the module is the one
    assert site.failed_patch == "de_macrs.patches.v1_3.fix_asset_names"


def test_services_down_names_the_service_and_how_to_start_it(project: Project):
    truth = replay(project, "a.local", "17-migrate-db-down")

    result = cli(*project.cli_args("--version", "v1", "--json"))

    assert result.exit_code == ExitCode.MIGRATE_FAILED == 10, result.output
    data = json.loads(result.output[result.output.index("{") :])
    site_a = data["sites"][0]
    assert (site_a["result"], site_a["failure"], site_a["services"]) == (
        "services-down",
        "services",
        ["mariadb"],
    )
    assert site_a["exception"] == truth["exception"]
    start = step_commands(site_a["next_steps"][0])
    up_env = f"env CUSTOM_IMAGE={project.repo} CUSTOM_TAG=v1 PULL_POLICY=never"
    assert start == [f"{up_env} docker-compose -p {project.name} -f {project.compose} up -d db"]
    assert "--migrate-only" in step_commands(site_a["next_steps"][-2])[0]
    # and last, the site left in maintenance by the failed migrate: the commands that end it
    assert step_commands(site_a["next_steps"][-1])[0].endswith(
        "bench --site a.local set-maintenance-mode off"
    )
    assert data["sites"][1]["status"] == "ok"  # deploy migrates each site on its own


def test_successful_migrate_with_a_traceback_is_ok_with_a_warning(project: Project):
    replay(project, "a.local", "23-app-commands-import-traceback-migrate-ok")

    result = cli(*project.cli_args("--version", "v1"))

    assert result.exit_code == 0, result.output
    assert "a.local: warning: an app's bench commands failed to import" in result.output
    record = project.records()[-1]
    assert record["result"] == "succeeded"
    site_a = record["sites"][0]
    assert (site_a["status"], site_a["result"], site_a["exception"]) == ("ok", "ok", None)
    assert "No module named 'macrs_tables'" in site_a["warnings"][0]


def test_over_ssh_the_pasted_command_runs_on_the_target(project: Project, sshd, tmp_path):  # type: ignore[no-untyped-def]
    """The remote form ``ssh -i KEY -o UserKnownHostsFile=F -p PORT root@127.0.0.1 'docker-compose
    ... run-patch ...'`` is quoted twice; pasted as printed, with no terminal, the remote shell must
    hand bench the line unchanged."""
    line = replay(project, "a.local", "11-patch-comment-rerun-then-fail")["failed_patch"]
    args = ["--host", sshd.spec, "--known-hosts", str(sshd.known_hosts), "--identity", str(sshd.client_key)]
    result = cli(*project.cli_args("--version", "v1", *args))
    assert result.exit_code == ExitCode.PATCH_FAILED, result.output
    site_a = project.records()[-1]["sites"][0]
    commands = [c for step in site_a["next_steps"] for c in step_commands(step)]
    (run_patch,) = [c for c in commands if " run-patch " in c]
    assert shlex.split(run_patch)[:7] == [
        "ssh", "-i", str(sshd.client_key), "-o", f"UserKnownHostsFile={sshd.known_hosts}",
        "-p", str(sshd.port),
    ]  # fmt: skip
    again = [c for c in commands if "--migrate-only" in c][0]
    assert f"--host root@127.0.0.1:{sshd.port} --known-hosts {sshd.known_hosts} --identity" in again
    pasted = subprocess.run(["sh", "-c", run_patch], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL, cwd=tmp_path)  # fmt: skip
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert project.site_file("a.local", "run_patch_args").read_text().splitlines() == [line, "--force"]
