"""Build a real workspace folder (.env, de-example.env, apps.json) in tmp_path for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CANARY = "ghp_CANARY0123456789abcdefCANARY"  # a token that must never appear in any output

DEFAULT_ENV = {
    "DE_SITE_VERSION": "v1.0.0",
    "IMAGE_NAME": "desiredeffect/erpnext-custom",
    "FRAPPE_PATH": "https://github.com/frappe/frappe",
    "FRAPPE_BRANCH": "version-15",
    "PYTHON_VERSION": "3.11.6",
    "NODE_VERSION": "20.19.2",
    "DE_MACRS_PAT": CANARY,
    # the mirror keys of de-example.env, as it ships them (today's sources)
    "PYTHON_IMAGE": "python",
    "NODE_SOURCE": "nvm",
    "WKHTMLTOPDF_SOURCE": "github",
    "PIP_INDEX_URL": "",
    "NPM_REGISTRY": "",
    # building without internet: empty, as de-example.env ships them
    "BUILD_NETWORK": "",
    "CA_CERTS_FILE": "",
}

DEFAULT_APPS = [
    {"url": "https://github.com/frappe/erpnext", "branch": "v15.17.0"},
    {"url": "https://${DE_MACRS_PAT}@github.com/desiredeffect/de_macrs.git", "branch": "v0.0.4"},
]


def make_workspace(
    root: Path,
    env: dict[str, str | None] | None = None,
    apps: list[dict[str, Any]] | str | None = None,
    example: str | None = None,
) -> Path:
    """Write a workspace; ``env`` overrides DEFAULT_ENV (a None value drops the key)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "de-example.env").write_text(
        example if example is not None else (REPO_ROOT / "de-example.env").read_text()
    )
    values = {**DEFAULT_ENV, **(env or {})}
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None))
    apps = DEFAULT_APPS if apps is None else apps
    (root / "apps.json").write_text(apps if isinstance(apps, str) else json.dumps(apps, indent=2))
    return root
