"""CA_CERTS_FILE: checked before it reaches a build (and the image)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from frappe_imagekit.build import cacerts
from frappe_imagekit.errors import ConfigError, ExitCode

PEM = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n"


def test_not_set_is_none(tmp_path: Path) -> None:
    assert cacerts.load(tmp_path, {}) is None
    assert cacerts.load(tmp_path, {"CA_CERTS_FILE": "  "}) is None


def test_relative_to_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(PEM)
    loaded = cacerts.load(tmp_path, {"CA_CERTS_FILE": "ca.pem"})
    assert loaded == cacerts.CaCerts(tmp_path / "ca.pem", PEM, hashlib.sha256(PEM.encode()).hexdigest())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "which does not exist: fix the path in .env"),
        ("hello\n", "holds no PEM certificate"),
        (PEM + "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", "holds a private key"),
        (PEM + "-----BEGIN OPENSSH PRIVATE KEY-----\n", "holds a private key"),
        ("\u00e9" + PEM, "cannot be read as PEM text"),
        ("x" * (cacerts.MAX_BYTES + 1), "larger than 1 MiB"),
    ],
)
def test_refused_files_are_one_config_error(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "ca.pem").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as caught:
        cacerts.load(tmp_path, {"CA_CERTS_FILE": "ca.pem"})
    assert caught.value.exit_code == ExitCode.VALIDATION
    assert "PRIVATE KEY-----\nx" not in caught.value.message


def test_a_containerfile_without_the_mount_gets_a_warning(tmp_path: Path) -> None:
    from frappe_imagekit.build.containerfile import (
        default_containerfile,
        parse_containerfile,
        read_containerfile,
    )
    from frappe_imagekit.build.plan import _ca_certs_warning

    (tmp_path / "ca.pem").write_text(PEM)
    certs = cacerts.load(tmp_path, {"CA_CERTS_FILE": "ca.pem"})
    own = parse_containerfile(
        "FROM x\nRUN --mount=type=secret,id=apps_json,target=/opt/frappe/apps.json true\n", tmp_path / "Own"
    )
    warning = _ca_certs_warning(own, certs)
    assert warning == (
        f"CA_CERTS_FILE is set, but {tmp_path / 'Own'} has no RUN --mount=type=secret,id=ca_certs: the "
        "certificates are passed but not installed; imagekit's containerfiles/Containerfile installs them."
    )
    assert _ca_certs_warning(read_containerfile(default_containerfile()), certs) is None
    assert _ca_certs_warning(own, None) is None
