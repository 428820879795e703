"""Issue 19 item 11: text from outside (a transcript, bench's live output, a deploy record)
reaches the terminal only through the one sanitizer in cli/output.py (``clean``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_history_data import make_deploy, make_manifest, write, write_deploy

from frappe_imagekit.cli import deploy_cmd, output
from frappe_imagekit.deploy.sequence import DeployReport
from tests.support.cli import invoke

OSC52 = "\x1b]52;c;ZWNobyBwd25lZAo=\x07"  # writes "echo pwned" to the clipboard
TITLE = "\x1b]0;sudo rm -rf /\x1b\\"
LINK = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
C1 = "\x9b2J\x9d0;t\x9c"  # 8-bit CSI (erase screen), OSC, ST
CURSOR = "\x1b[2J\x1b[1;1H\x1b[?25l"
# no \r: the migrate parser keeps only the last redraw of a \r line, as a terminal shows it
HOSTILE = f"A{OSC52}B{TITLE}C{LINK}D{C1}E{CURSOR}F\x07\x08\x00\u202eG"


def raw_controls(text: str) -> list[str]:
    """Every control character left in ``text`` (tab and newline are text)."""
    return [c for c in text if (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F or c == "\u202e"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (OSC52, ""),
        (TITLE + "x", "x"),
        (LINK, "click"),
        (C1, "2J0;t"),
        (CURSOR, ""),
        ("\x1b[31mred\x1b[0m \x1b[1;32mok\x1b[m", "\x1b[31mred\x1b[0m \x1b[1;32mok\x1b[m"),
        ("\x1b[38;5;196mx\x1b[8mhidden\x1b[5mblink", "xhiddenblink"),  # not plain colours
        ("a\tb\nc\r\n", "a\tb\nc\n"),
        ("\x1b", ""),
        ("\x1b]52;c;unterminated", ""),
        ("\u202eevil\u2066", "evil"),
    ],
)
def test_clean_drops_every_control_but_plain_colours(text: str, expected: str) -> None:
    assert output.clean(text) == expected


def test_clean_without_colours_drops_sgr_too() -> None:
    assert output.clean("\x1b[31mred\x1b[0m", colours=False) == "red"


def test_clean_runs_before_the_token_mask() -> None:
    token = "ghp_" + "A" * 36
    assert output.safe(token[:10] + "\x00" + token[10:]) == "ghp_***"


@pytest.mark.parametrize(
    "line", ["\x1b]" * 500_000, "\x1b[" + "1;" * 500_000, "\x1bP" * 500_000, "\x9b" * 1_000_000]
)
def test_clean_is_linear(line: str) -> None:
    started = time.perf_counter()
    assert raw_controls(output.clean(line)) == []
    assert time.perf_counter() - started < 20  # linear: well under a second on an idle machine


def test_migrate_report_prints_no_raw_escape(tmp_path: Path) -> None:
    transcript = tmp_path / "migrate.txt"
    transcript.write_text(
        "Migrating a.local\nExecuting app.patches.v1.fix in a.local (_db)\n"
        f"printed by the patch {HOSTILE}\n"
        "Traceback (most recent call last):\n"
        '  File "apps/app/app/patches/v1/fix.py", line 3, in execute\n'
        f"    raise ValueError('{OSC52}')\n"
        f"ValueError: bad {HOSTILE}\n"
    )
    for extra in ([], ["--json"]):
        result = invoke("migrate-report", str(transcript), "--exit-code", "1", *extra)
        assert result.exit_code == 9, result.output
        assert raw_controls(result.stdout) == [] and raw_controls(result.stderr) == []
    plain = invoke("migrate-report", str(transcript), "--exit-code", "1").stdout
    assert "bad ABCclickD2J0;tEFG" in plain


def test_history_prints_no_raw_escape_from_a_record(tmp_path: Path) -> None:
    write(tmp_path / "builds", make_manifest("v1.1.5", "2026-11-01T10:00:00+00:00"))
    record = make_deploy("v1.1.5", "2026-11-02T10:00:00+00:00", result=f"failed{HOSTILE}")
    record["error"], record["served"] = f"boom{OSC52}", True
    write_deploy(tmp_path / "deploys", record)
    for args in (["history"], ["history", "v1.1.5"], ["history", "--json"]):
        result = invoke(*args, "-w", str(tmp_path))
        assert result.exit_code == 0, result.output
        assert raw_controls(result.stdout + result.stderr) == [], args
    assert "failedABCclickD2J0;tEFG" in invoke("history", "v1.1.5", "-w", str(tmp_path)).stdout


def test_deploy_live_output_goes_through_the_sanitizer(tmp_path: Path, monkeypatch) -> None:
    def fake_deploy(runner, ws, options, on_event, reporter) -> DeployReport:
        on_event(f"Executing app.patches.x in a.local (_db) {HOSTILE}")  # a migrate line, live
        return DeployReport(project=options.project, version=options.version, host="local")

    monkeypatch.setattr(deploy_cmd, "deploy", fake_deploy)
    monkeypatch.setattr(deploy_cmd, "choose_image", lambda ws, version, project: ("de/erp", "v1"))
    compose = tmp_path / "compose.yaml"
    compose.write_text("services: {}\n")
    result = invoke("deploy", "-w", str(tmp_path), "--project", "erp", "--compose", str(compose),
                    "--version", "v1")  # fmt: skip
    assert "Executing app.patches.x in a.local (_db) ABCclickD2J0;tEFG" in result.stderr
    assert raw_controls(result.stdout + result.stderr) == []


def test_print_json_keeps_controls_escaped_not_dropped() -> None:
    data = {"result": f"x{OSC52}"}
    assert json.loads(output.clean(json.dumps(data))) == data
