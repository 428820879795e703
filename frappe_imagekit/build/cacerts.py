"""Extra CA certificates for builds on networks that intercept TLS.

``CA_CERTS_FILE`` in ``.env`` names a PEM file (relative to the workspace or absolute). The build
passes its content as the optional BuildKit secret ``ca_certs``, which imagekit's Containerfile
installs before anything is downloaded, and sets ``CA_CERTS_SHA256`` so that changed certificates
re-run that step (a secret is not part of the cache key). Certificates are public, but the file
is checked: a private key named by mistake would otherwise end up in the image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from frappe_imagekit.errors import ConfigError

ENV_KEY = "CA_CERTS_FILE"
SECRET_ID = "ca_certs"
SECRET_ENV = "IMAGEKIT_CA_CERTS"
SHA_ARG = "CA_CERTS_SHA256"
MAX_BYTES = 1 << 20
_BEGIN = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class CaCerts:
    """The checked PEM text of ``CA_CERTS_FILE`` and its sha256."""

    path: Path
    text: str
    sha256: str


def load(root: Path, env: dict[str, str]) -> CaCerts | None:
    """``CA_CERTS_FILE`` of ``env`` read and checked; None when it is not set."""
    value = env.get(ENV_KEY, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else root / path
    text = _read(path)
    if _BEGIN not in text:
        raise ConfigError(
            f"{ENV_KEY} {path} holds no PEM certificate ({_BEGIN}): name a CA certificate file."
        )
    if "PRIVATE KEY" in text:
        raise ConfigError(
            f"{ENV_KEY} {path} holds a private key, which would be built into the image: name only "
            "the CA certificate(s)."
        )
    return CaCerts(path, text, hashlib.sha256(text.encode()).hexdigest())


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{ENV_KEY} {path} is larger than 1 MiB: name a CA certificate file.")
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"{ENV_KEY} names {path}, which does not exist: fix the path in .env.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ENV_KEY} {path} cannot be read as PEM text ({exc}): fix the file.") from None
