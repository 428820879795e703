"""The swarm deploy record (issue 21 item 7): one typed reader, and `imagekit history` naming the
engine of each deploy (a swarm deploy's workspace copy in deploys/swarm/, beside compose's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_history_data import make_deploy, make_manifest, write, write_deploy
from typer.testing import CliRunner

from frappe_imagekit.cli.main import _load_commands
from frappe_imagekit.cli.main import app as cli_app
from frappe_imagekit.deploy.swarm import records
from frappe_imagekit.deploy.swarm.deploy import SiteOutcome, SwarmReport

_load_commands()

REPO = "127.0.0.1:5000/fb"
V1, V2 = (f"{REPO}@sha256:{c * 64}" for c in "12")


def report(version: str, ref: str, started: str, **fields: object) -> dict:
    """A record as the swarm deploy writes it (SwarmReport.to_dict)."""
    done = SwarmReport("erp", version, ref, deploy_id=started.replace("-", "").replace(":", "")[:15] + "Z",
                       started=started, finished=started, rolled_out=True,
                       sites=[SiteOutcome("a.local", "ok", "off")])  # fmt: skip
    for key, value in fields.items():
        setattr(done, key, value)
    return done.to_dict()


def keep(ws: Path, data: dict) -> None:
    records.write_workspace(ws / "deploys", data["deploy_id"], data["stack"], data)


def test_a_record_as_written_is_read_back_typed_and_its_result_named():
    data = report("v2", V2, "2026-12-07T20:00:00+00:00", previous_image=V1, previous_version="v1")
    record = records.parse_record(json.loads(json.dumps(data)))
    assert (record.stack, record.version, record.pin and record.pin.ref, record.result) == (
        "erp", "v2", V2, "succeeded"
    )  # fmt: skip
    assert (record.previous and record.previous.ref, record.previous_version, record.rolled_out) == (
        V1, "v1", True
    )  # fmt: skip
    failed = report("v3", V2, "2026-12-07T20:01:00+00:00", exit_code=9,
                    sites=[SiteOutcome("a.local", "patch-failed", "on"), SiteOutcome("b.local")])  # fmt: skip
    assert records.parse_record(failed).result == "patch-failed"
    assert records.parse_record({**failed, "exit_code": 130}).result == "interrupted"
    assert records.parse_record({**failed, "exit_code": 13, "sites": []}).result == "failed"
    old = {k: v for k, v in data.items() if k not in ("rolled_out", "deploy_id", "host")}  # before the fields
    assert (records.parse_record(old).rolled_out, records.parse_record(old).host) == (True, "local")
    assert records.parse_record({**old, "exit_code": 10}).rolled_out is False


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"engine": "compose"}, "not a swarm deploy record"),
        ({"stack": "../erp"}, "stack"),
        ({"version": "v2 --force"}, "version"),
        ({"ref": f"{REPO}:v2"}, "ref is not IMAGE@sha256:DIGEST"),
        ({"ref": f"{REPO}@sha256:short"}, "ref"),
        ({"exit_code": "0"}, "exit_code"),
        ({"exit_code": True}, "exit_code"),
        ({"kind": "rehearsal"}, "kind"),
        ({"host": ["local"]}, "host"),
        ({"started": "yesterday"}, "started is not a time"),
        ({"deploy_id": "../../x"}, "deploy_id"),
        ({"rolled_out": "yes"}, "rolled_out"),
        ({"sites": [{"site": "a.local; rm -rf /", "result": "ok", "maintenance": "off"}]}, "sites"),
        ({"sites": [{"site": "a.local", "result": "ok", "maintenance": "maybe"}]}, "maintenance"),
        ({"sites": {"a.local": "ok"}}, "sites is not a list"),
    ],
)
def test_every_field_a_record_gives_is_checked(change: dict, named: str):
    data = {**report("v2", V2, "2026-12-07T20:00:00+00:00"), **change}
    with pytest.raises(ValueError, match=named):
        records.parse_record(data)


def test_history_lists_swarm_deploys_beside_compose_ones_and_names_the_engine(tmp_path: Path):
    for version, created in (("v1", "2026-12-07T18:00:00+00:00"), ("v2", "2026-12-07T19:00:00+00:00")):
        write(tmp_path / "builds", make_manifest(version, created))
    write_deploy(tmp_path / "deploys", make_deploy("v1", "2026-12-07T18:30:00+00:00", project="erp"))
    keep(tmp_path, report("v1", V1, "2026-12-07T19:30:00+00:00"))
    second = report("v2", V2, "2026-12-07T20:00:00+00:00", previous_image=V1, previous_version="v1")
    keep(tmp_path, second)
    keep(tmp_path, report("v1", V1, "2026-12-07T20:10:00+00:00", previous_image=V2, previous_version="v2",
                          kind="rollback", rollback_of=second["deploy_id"]))  # fmt: skip
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["history", "-w", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    cells = {line.split("\t")[0]: line.split("\t")[6] for line in listed.stdout.splitlines()[2:4]}
    assert cells == {
        "v2": "was erp@local (swarm, rolled back to v1)",
        "v1": "erp@local (swarm, rollback from v2)",
    }
    data = json.loads(runner.invoke(cli_app, ["history", "--json", "-w", str(tmp_path)]).stdout)
    v1 = next(b for b in data["builds"] if b["version"] == "v1")
    assert [(d["engine"], d["kind"], d["finished"], d["digest"]) for d in v1["deploys"]] == [
        ("compose", "deploy", "2026-12-07T18:30:00+00:00", None),
        ("swarm", "deploy", "2026-12-07T19:30:00+00:00", V1.split("@")[1]),
        ("swarm", "rollback", "2026-12-07T20:10:00+00:00", V1.split("@")[1]),
    ]
    shown = runner.invoke(cli_app, ["history", "v2", "-w", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.stdout.splitlines() if "2026-12-07T20:00:00" in x)
    assert line.split() == ["erp@local", "2026-12-07T20:00:00+00:00", "swarm,", "rolled", "back", "to",
                            "v1", "pulled", "by", V2.split("@")[1]]  # fmt: skip


def test_a_swarm_record_that_cannot_be_used_is_skipped_and_named(tmp_path: Path):
    write(tmp_path / "builds", make_manifest("v2", "2026-12-07T19:00:00+00:00"))
    keep(tmp_path, report("v2", V2, "2026-12-07T20:00:00+00:00") | {"ref": "evil:latest"})
    listed = CliRunner().invoke(cli_app, ["history", "-w", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "skipped deploys/swarm/20261207T200000Z-erp.json: ref is not IMAGE@sha256:DIGEST" in listed.stderr
    assert listed.stdout.splitlines()[2].split("\t")[6] == "-"


def test_the_version_running_is_the_newest_that_rolled_its_image_out_even_a_failed_one():
    """A rollback of a failed patch (exit 9, v3 rolled out) rolls back from v3; it said
    "rollback from ?" when only deploys that ended with exit 0 were counted (Debian 13 test)."""
    V3 = f"{REPO}@sha256:{'3' * 64}"
    found = [records.parse_record(r) for r in (
        report("v2", V2, "2026-12-07T20:00:00+00:00"),
        report("v3", V3, "2026-12-07T20:01:00+00:00", exit_code=9,
               sites=[SiteOutcome("a.local", "patch-failed", "on"), SiteOutcome("b.local")]),
        report("v3-rc", V3, "2026-12-07T20:02:00+00:00", exit_code=13, rolled_out=False),
    )]  # fmt: skip
    assert records.version_running(found, V3) == "v3"  # not v3-rc: that deploy never rolled out
    assert records.version_running(found, V2) == "v2"
    assert records.version_running(found, V1) is None
