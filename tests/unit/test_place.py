"""deploy/place.py: one place per project on one Docker daemon (issue 18 item 9)."""

from __future__ import annotations

import pytest

from frappe_imagekit.deploy import place
from frappe_imagekit.deploy.sequence import DeployReport, record_dict

DAEMON = "ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP"
UUID = "0b6b0b0e-3f0c-4a53-9f7c-2f5b6f1d7a11"


def test_the_deploy_record_keeps_the_daemon_id() -> None:
    report = DeployReport(version="v1", image="acme/erp:v1", project="erp", host="root@10.0.0.5:22",
                          user="ops", started="2026-12-01T10:00:00+00:00", daemon_id=DAEMON)  # fmt: skip
    assert record_dict(report)["daemon_id"] == DAEMON


@pytest.mark.parametrize("value", [DAEMON, UUID])
def test_daemon_ids_of_docker_20_and_26_are_used(value: str) -> None:
    assert place.daemon_id(value) == value


@pytest.mark.parametrize("value", [None, 5, "", "short", "../../etc", "a b c d e f", "-x" * 10, "A" * 200])
def test_other_values_are_not(value: object) -> None:
    assert place.daemon_id(value) is None


def test_places() -> None:
    places = place.Places([("erp", "local", DAEMON), ("erp", "root@h:22", DAEMON), ("erp", "ops@b:22", None)])
    assert places.key("erp", "local") == places.key("erp", "root@h:22") == f"erp@docker:{DAEMON}"
    assert places.key("shop", "local") == "shop@local"  # another project on the same daemon
    assert places.key("erp", "ops@b:22") == "erp@ops@b:22"
    assert places.key("erp", "ops@b:22", "bad id!") == "erp@ops@b:22"
