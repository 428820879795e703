"""deploy's truth checks on plain data: image plan, apps, running image ids (pure)."""

from __future__ import annotations

import pytest

from frappe_imagekit.deploy.composeconfig import ImagePlan
from frappe_imagekit.deploy.verify import (
    first_json,
    images_by_service,
    require_apps,
    require_image_plan,
    require_running_image,
)
from frappe_imagekit.errors import DeployError, ExitCode

REF = "acme/erp:v2"
NEW_ID = "sha256:" + "a" * 64
OLD_ID = "sha256:" + "b" * 64


def inspect(name: str, service: str, image: str) -> dict:
    """Trimmed from a real `docker inspect` of a compose v1 container."""
    labels = {"com.docker.compose.service": service, "com.docker.compose.project": "erp"}
    return {"Id": "f" * 64, "Name": f"/{name}", "Image": image, "Config": {"Image": REF, "Labels": labels}}


def test_image_plan_pinned_and_none_are_refused_with_the_fix():
    with pytest.raises(DeployError) as pinned:
        require_image_plan(
            ImagePlan(["queue"], {"backend": "acme/erp:v1"}, {}),
            REF,
            ["/srv/erp.yaml:4"],
            "CUSTOM_IMAGE",
            "CUSTOM_TAG",
        )
    assert pinned.value.exit_code == ExitCode.DEPLOY_FAILED
    assert pinned.value.message.startswith("services backend (acme/erp:v1) pin another tag of the image")
    assert "change the image line (/srv/erp.yaml:4) to ${CUSTOM_IMAGE}:${CUSTOM_TAG}" in pinned.value.message
    with pytest.raises(DeployError, match=r"would run acme/erp:v2 \(their images: db=mariadb:10.6\)"):
        require_image_plan(ImagePlan([], {}, {"db": "mariadb:10.6"}), REF, [], "I", "T")
    require_image_plan(ImagePlan(["backend"], {}, {"db": "mariadb"}), REF, [], "I", "T")  # fine


def test_missing_apps_name_site_and_app():
    require_apps({"a.local": ["frappe", "erpnext"]}, ["frappe", "erpnext", "hrms"], REF)
    with pytest.raises(DeployError) as info:
        require_apps({"b.local": ["frappe", "payments", "hrms"], "a.local": ["frappe"]}, ["frappe"], REF)
    assert "(site b.local has payments, hrms)" in info.value.message


def test_running_image_mismatch_names_the_services():
    running = images_by_service(
        [inspect("erp_backend_1", "backend", NEW_ID), inspect("erp_queue_1", "queue", OLD_ID),
         inspect("erp_db_1", "db", OLD_ID)]
    )  # fmt: skip
    assert running["queue"] == {"erp_queue_1": OLD_ID}
    require_running_image(running, ["backend"], NEW_ID, REF)
    with pytest.raises(DeployError) as info:
        require_running_image(running, ["backend", "queue"], NEW_ID, REF)
    assert info.value.message.startswith(
        f"after up, containers do not run {REF} ({NEW_ID[:19]}): queue (erp_queue_1: {OLD_ID[:19]})"
    )


def test_first_json_skips_bench_chatter():
    assert first_json('WARN: no redis\n{"a.local": ["frappe"]}\n') == {"a.local": ["frappe"]}
    assert first_json("nothing") is None


def test_backup_files_from_bench_output():
    from frappe_imagekit.deploy.backups import files_in_output

    output = (
        "Backup Summary for a.local at 2026-12-01 16:00:00\n\n"
        "Config  : ./a.local/private/backups/20261201_160000-a_local-site_config_backup.json 2.0B\n"
        "Database: ./a.local/private/backups/20261201_160000-a_local-database.sql.gz 40.0B\n"
        "Public  : ./a.local/private/backups/20261201_160000-a_local-files.tar 10.0KiB\n"
        "Backup for Site a.local has been successfully completed\n"
    )
    assert files_in_output(output) == [
        "sites/a.local/private/backups/20261201_160000-a_local-site_config_backup.json",
        "sites/a.local/private/backups/20261201_160000-a_local-database.sql.gz",
        "sites/a.local/private/backups/20261201_160000-a_local-files.tar",
    ]
