# ruff: noqa: E501 - transcripts and records keep their real line lengths
"""migrate-report (typer's CliRunner) and next steps: quoted, pasteable, said where to run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from frappe_imagekit.cli.main import _load_commands, app
from frappe_imagekit.deploy.migrate_parse import SiteResult
from frappe_imagekit.deploy.migrate_report import (
    BenchPlace,
    StepContext,
    next_steps,
    patches_txt_lines,
    pending_patch_line,
    ssh_prefix,
    step_commands,
)
from tests.support.benchimage.transcripts import load

_load_commands()
APPS = "/home/frappe/frappe-bench/apps"
REF = {name: load(name) for name in (
    "04-patch-validationerror-post", "07-patch-module-missing", "16-patch-execute-line-fails",
    "17-migrate-db-down", "19-migrate-lock-held", "23-app-commands-import-traceback-migrate-ok",
    "25-patch-multiline-exception-message", "13-run-patch-force-failing",
)}  # fmt: skip


def run(*args: str, stdin: bytes | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["migrate-report", *args], input=stdin)


def saved(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.txt"
    path.write_bytes(REF[name].text_bytes)
    return str(path)


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("04-patch-validationerror-post", 9, "s1.lab: FAILED in patch de_macrs.patches.lab.validate_costs"),
        ("07-patch-module-missing", 10, "FAILED in import of patch module de_macrs.patches.v1_3"),
        ("17-migrate-db-down", 10, "FAILED in services down: mariadb not running"),
        ("19-migrate-lock-held", 10, "FAILED in the migrate lock is held by another migrate"),
        ("23-app-commands-import-traceback-migrate-ok", 0, "warning: an app's bench commands failed"),
    ],
)
def test_exit_status_and_headline(tmp_path: Path, name: str, code: int, expected: str):
    result = run(saved(tmp_path, name), "--exit-code", str(REF[name].exit_code))
    assert result.exit_code == code, result.output
    assert expected in result.output


def test_without_exit_code_the_output_decides(tmp_path: Path):
    assert run(saved(tmp_path, "04-patch-validationerror-post")).exit_code == 9
    assert run(saved(tmp_path, "23-app-commands-import-traceback-migrate-ok")).exit_code == 0


def test_exit_code_zero_wins_over_a_traceback(tmp_path: Path):
    result = run(saved(tmp_path, "04-patch-validationerror-post"), "--exit-code", "0")
    assert result.exit_code == 0, result.output
    assert "warning: a traceback was printed" in result.output


def test_stdin_dash_and_json(tmp_path: Path):
    result = run(
        "-", "--exit-code", "1", "--json", stdin=REF["25-patch-multiline-exception-message"].text_bytes
    )
    assert result.exit_code == 9, result.output
    data = json.loads(result.output)
    assert (data["schema_version"], data["result"], data["exit_code"], data["run_exit_code"]) == (
        1, "patch-failed", 9, 1,
    )  # fmt: skip
    assert "docker compose -p PROJECT -f FILE ... exec -T backend" in data["where"]
    (site,) = data["sites"]
    assert site["site"] == "s1.lab" and site["status"] == "failed" and site["failure"] == "patch"
    assert site["failed_patch"] == "de_macrs.patches.lab.bulk_update"
    assert site["exception_type"] == "frappe.exceptions.ValidationError"
    assert site["exception_message"].endswith(
        "Laptop: no placed-in-service date\nForklift: no placed-in-service date"
    )
    assert site["traceback"][0].endswith('de_macrs/patches/lab/bulk_update.py", line 7, in execute')
    assert site["next_steps"] and site["warnings"] == []


def test_default_file_is_stdin():
    result = run(stdin=REF["17-migrate-db-down"].text_bytes)
    assert result.exit_code == 10 and "mariadb not running" in result.output


def test_site_option_names_the_site_of_a_transcript_without_migrating_line():
    text = REF["13-run-patch-force-failing"].text_bytes.replace(b" in s1.lab (", b" in s9.lab (")
    result = run("--site", "s1.lab", "--json", "--exit-code", "1", stdin=text)
    site = json.loads(result.output)["sites"][0]
    # the Executing line is for another site: it is not this site's patch
    assert (site["site"], site["failed_patch"]) == ("s1.lab", None)
    result = run("--site", "s9.lab", "--json", "--exit-code", "1", stdin=text)
    site = json.loads(result.output)["sites"][0]
    assert (site["site"], site["failed_patch"]) == (
        "s9.lab",
        "de_macrs.patches.lab.validate_costs # re-run 2026-03",
    )


def test_missing_file_is_one_sentence_exit_12(tmp_path: Path):
    result = run(str(tmp_path / "nope.txt"))
    assert result.exit_code == 12
    assert result.output.strip() == (
        f"error: transcript {tmp_path / 'nope.txt'} does not exist or is not a file: pass the file the "
        "migrate output was saved to, or - to read it from stdin."
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "../x"], "--site '../x' is not a valid site name"),
        (["--exit-code", "300"], "--exit-code 300"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str):
    result = run(*args, stdin=b"")
    assert result.exit_code == 2
    assert message in result.output


# ---------------------------------------------------------------- next steps


def _commands(steps: list[str]) -> list[str]:
    return [command for step in steps for command in step_commands(step)]


def test_execute_line_is_quoted_so_that_pasting_runs_exactly_it():
    line = REF["16-patch-execute-line-fails"].truth["failed_patch"]
    site = SiteResult("s1.lab", "failed", "patch-failed", failed_patch=line,
                      exception_type="frappe.exceptions.ValidationError",
                      exception="frappe.exceptions.ValidationError: x")  # fmt: skip
    place = BenchPlace(
        project="erp", compose_files=("/srv/erp/compose.yaml",), ssh=ssh_prefix("deploy@erp.example:2222")
    )
    (run_patch,) = [c for c in _commands(next_steps(site, StepContext(place=place))) if "run-patch" in c]
    ssh_argv = shlex.split(run_patch)
    assert ssh_argv[:4] == ["ssh", "-p", "2222", "deploy@erp.example"]
    assert shlex.split(ssh_argv[4]) == [
        "docker", "compose", "-p", "erp", "-f", "/srv/erp/compose.yaml", "exec", "-T", "backend",
        "bench", "--site", "s1.lab", "run-patch", line, "--force",
    ]  # fmt: skip


def test_code_failure_offers_a_release_not_migrate_only():
    site = SiteResult("s1.lab", "failed", "patch-failed", failed_patch="de_macrs.patches.lab.rate_lookup",
                      exception="KeyError: '5'", exception_type="KeyError",
                      failed_file=f"{APPS}/de_macrs/de_macrs/patches/lab/rate_lookup.py")  # fmt: skip
    ctx = StepContext(again="imagekit deploy erp --version v2 --migrate-only", deploy_new="imagekit deploy erp",
                      go_back="or go back: imagekit rollback ...\n    imagekit rollback erp --dry-run")  # fmt: skip
    steps = next_steps(site, ctx)
    assert not any("--migrate-only" in step for step in steps)
    assert "fixed release of de_macrs" in steps[0]
    assert step_commands(steps[0]) == ["imagekit build", "imagekit deploy erp"]
    assert steps[-1] == ctx.go_back  # deploy's own way back (imagekit rollback), as given


def test_from_a_transcript_the_way_back_says_restore_asks_for_the_root_password():
    site = SiteResult("s1.lab", "failed", "patch-failed", failed_patch="de_macrs.patches.lab.rate_lookup",
                      exception="KeyError: '5'", exception_type="KeyError")  # fmt: skip
    steps = next_steps(site, StepContext())
    assert steps[-1].startswith("or go back (frappe has no reverse migrations): restore the backup you took")
    text = " ".join(steps[-1].split("\n")[0].split())
    assert "reads it from standard input; typed there (exec -T, no terminal) the password is echoed" in text
    assert "Put the backup's path in the sites volume for BACKUP and your env file for ENV_FILE:" in text
    assert step_commands(steps[-1]) == [
        "sed -n 's/^DB_PASSWORD=//p' ENV_FILE | bench --site s1.lab restore BACKUP"
    ]
    place = BenchPlace(project="erp", compose=("docker-compose",), compose_files=("c.yaml", "db.yaml"),
                       env_file="/srv/erp.env", ssh=("ssh", "-p", "2222", "deploy@erp.example.com"))  # fmt: skip
    (remote,) = step_commands(next_steps(site, StepContext(place=place))[-1])
    assert remote == (
        "ssh -p 2222 deploy@erp.example.com 'sed -n '\"'\"'s/^DB_PASSWORD=//p'\"'\"' /srv/erp.env | docker-compose "
        "-p erp -f c.yaml -f db.yaml --env-file /srv/erp.env exec -T backend bench --site s1.lab restore BACKUP'"
    )


def test_services_down_starts_the_service_on_the_compose_host():
    site = SiteResult("s1.lab", "failed", "services-down", services=["redis_cache"])
    place = BenchPlace(project="erp", compose=("docker-compose",), compose_files=("c.yaml", "redis.yaml"),
                       env_file="erp.env", up_env=(("CUSTOM_IMAGE", "de/erp"), ("CUSTOM_TAG", "v2")))  # fmt: skip
    steps = next_steps(site, StepContext(place=place))
    compose = "docker-compose -p erp -f c.yaml -f redis.yaml --env-file erp.env"
    assert step_commands(steps[0]) == [f"env CUSTOM_IMAGE=de/erp CUSTOM_TAG=v2 {compose} up -d redis-cache"]
    migrate = f"{compose} exec -T backend bench --site s1.lab migrate"
    assert steps[-1] == f"then migrate again:\n    {migrate}"


def test_ssh_prefix():
    assert ssh_prefix("local") == ()
    assert ssh_prefix("root@10.0.0.5:22") == ("ssh", "root@10.0.0.5")
    assert ssh_prefix("u@[::1]:2200") == ("ssh", "-p", "2200", "u@::1")


PATCHES_TXT = """[pre_model_sync]
de_macrs.patches.v1_0.seed_assets # run again 2026-03, Laptop was missing
# a comment
de_macrs.patches.v1_3.fix_asset_names

[post_model_sync]
de_macrs.patches.v1_3.fix_asset_names #again
execute:frappe.db.sql("update `tabMACRS Asset` set x=1")
finally:de_macrs.patches.v1_3.last
"""


def test_patches_txt_is_read_like_frappe():
    assert patches_txt_lines(PATCHES_TXT) == [
        ("pre_model_sync", "de_macrs.patches.v1_0.seed_assets # run again 2026-03, Laptop was missing"),
        ("pre_model_sync", "de_macrs.patches.v1_3.fix_asset_names"),
        ("post_model_sync", "de_macrs.patches.v1_3.fix_asset_names #again"),
        ("post_model_sync", 'execute:frappe.db.sql("update `tabMACRS Asset` set x=1")'),
        ("post_model_sync", "finally:de_macrs.patches.v1_3.last"),
    ]
    assert patches_txt_lines("app.patches.a\napp.patches.b\n") == [
        ("pre_model_sync", "app.patches.a"), ("pre_model_sync", "app.patches.b"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("executed", "module", "section", "expected"),
    [
        ([], "de_macrs.patches.v1_3", None, "de_macrs.patches.v1_3.fix_asset_names"),
        (["de_macrs.patches.v1_3.fix_asset_names"], "de_macrs.patches.v1_3", None,
         "de_macrs.patches.v1_3.fix_asset_names #again"),
        ([], "de_macrs.patches.v1_3", "post_model_sync", "de_macrs.patches.v1_3.fix_asset_names #again"),
        (["de_macrs.patches.v1_3.fix_asset_names", "de_macrs.patches.v1_3.fix_asset_names #again"],
         "de_macrs.patches.v1_3.last", None, "finally:de_macrs.patches.v1_3.last"),
        ([], "other.patches", None, None),
        ([], None, None, None),
    ],
)  # fmt: skip
def test_pending_patch_line(executed, module, section, expected):
    assert pending_patch_line(PATCHES_TXT, executed, module, section) == expected


def test_deploy_next_steps_on_a_remote_host_go_through_ssh():
    from frappe_imagekit.deploy.nextsteps import imagekit_call
    from frappe_imagekit.deploy.sequence import SiteReport
    from frappe_imagekit.deploy.sequence import next_steps as deploy_next_steps

    site = SiteReport("a.local", status="failed", result="lock", failure="lock",
                      lock_path="/home/frappe/frappe-bench/sites/a.local/locks/bench_migrate.lock")  # fmt: skip
    files = ["/srv/erp/compose.yaml", "/srv/erp/overrides/compose.mariadb.yaml"]
    place = BenchPlace(
        project="erp", compose_files=tuple(files), ssh=ssh_prefix("deploy@erp.example.com:2222")
    )
    call = imagekit_call(None, "erp", files, env_file="/srv/erp/erp.env", host="deploy@erp.example.com:2222",
                         options=[("--known-hosts", "/home/me/kh"), ("--identity", "/home/me/key")])  # fmt: skip
    steps = deploy_next_steps(site, place, call, "v2")
    again, remove = step_commands(steps[0]) + step_commands(steps[1])
    assert shlex.split(again) == [
        "imagekit", "deploy", "--project", "erp", "--compose", files[0], "--compose", files[1],
        "--env-file", "/srv/erp/erp.env", "--host", "deploy@erp.example.com:2222",
        "--known-hosts", "/home/me/kh", "--identity", "/home/me/key", "--version", "v2", "--migrate-only",
    ]  # fmt: skip
    ssh = shlex.split(remove)
    assert ssh[:4] == ["ssh", "-p", "2222", "deploy@erp.example.com"]
    assert shlex.split(ssh[4]) == [
        "docker", "compose", "-p", "erp", "-f", files[0], "-f", files[1], "exec", "-T", "backend",
        "rm", "-f", "/home/frappe/frappe-bench/sites/a.local/locks/bench_migrate.lock",
    ]  # fmt: skip


def test_any_text_gives_a_result_never_an_exception():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from frappe_imagekit.deploy.migrate_parse import parse_migrate_output
    from frappe_imagekit.deploy.migrate_report import report_transcript

    pieces = st.sampled_from([
        "Migrating s1.lab\n", "Executing a.b in s1.lab (_x)\n", "Success: Done in 0.1s\n", "\r", "\n",
        "Traceback (most recent call last):\n", '  File "/x/apps/a/a/p.py", line 3, in execute\n', "    code\n",
        "KeyError: 'x'\n", "During handling of the above exception, another exception occurred:\n",
        "Service mariadb is not running.\n", "Failed to aquire lock: bench_migrate.\n", "\x1b[32m", "^@",
        "There was an issue while migrating the DocType: X\n", "bad json: /x.json\n",
    ])  # fmt: skip
    text = st.one_of(st.text(), st.lists(st.one_of(pieces, st.text(max_size=5)), max_size=40).map("".join))

    @settings(max_examples=300, deadline=None)
    @given(text, st.one_of(st.none(), st.integers(0, 255)))
    def check(value: str, code: int | None) -> None:
        results = parse_migrate_output(value, exit_code=code)
        assert results and all(r.result for r in results)
        if code == 0:
            assert all(r.status == "ok" for r in results)
        report_transcript(value, exit_code=code).to_dict()

    check()
